package api

import (
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/validation"
)

// Keys is what the API needs of the homeserver's key set.
type Keys interface {
	// IssueCredential signs a client credential with the authentication key.
	IssueCredential(userID, clientID string, signatureKey ed25519.PublicKey, issuedAt int64) ([]byte, error)
	// PublicKeysJSON is the document served at /.well-known/mls-homeserver.
	PublicKeysJSON() ([]byte, error)
	// SignBundle signs a directory answer with the authentication key.
	SignBundle(b identity.Bundle) ([]byte, error)
	// VerifyRequest checks a client-signed request (signature by the key
	// that lookup returns for the claimed client, freshness, replay) and
	// returns the client id.
	VerifyRequest(r *http.Request, body []byte, lookup func(clientID string) (ed25519.PublicKey, error)) (string, error)
}

// RegisterUserRequest registers a user and its first client.
type RegisterUserRequest struct {
	// UserID is "name@domain" or just "name" (this homeserver's domain is
	// then implied).
	UserID       string `json:"user_id"`
	SignatureKey []byte `json:"signature_key"` // Ed25519 public key, base64 in JSON
}

// RegisterClientRequest adds a client to the user of the signing client.
type RegisterClientRequest struct {
	SignatureKey []byte `json:"signature_key"`
}

func (s *Server) wellKnown(w http.ResponseWriter, r *http.Request) {
	b, err := s.cfg.Keys.PublicKeysJSON()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusOK, b)
}

func (s *Server) clientReg(userID string, key []byte) (validation.ClientReg, error) {
	if len(key) != ed25519.PublicKeySize {
		return validation.ClientReg{}, validation.Reject(validation.CodeInvalidKey, "signature_key must be a %d-byte Ed25519 public key", ed25519.PublicKeySize)
	}
	c := validation.ClientReg{ClientID: validation.ClientIDFor(key), SignatureKey: key}
	cred, err := s.cfg.Keys.IssueCredential(userID, c.ClientID, key, s.cfg.Now().Unix())
	if err != nil {
		return validation.ClientReg{}, err
	}
	c.Credential = cred
	return c, nil
}

func (s *Server) registerUser(w http.ResponseWriter, r *http.Request) {
	if t := s.cfg.RegistrationToken; t != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+t)) != 1 {
		s.writeError(w, r, validation.Reject(validation.CodeUnauthenticated, "registration needs the registration token"))
		return
	}
	var req RegisterUserRequest
	if !s.jsonBody(w, r, &req) {
		return
	}
	if req.UserID != "" && !strings.Contains(req.UserID, "@") {
		req.UserID += "@" + s.cfg.Domain
	}
	if err := validation.ParseLocalUserID(req.UserID, s.cfg.Domain); err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := s.clientReg(req.UserID, req.SignatureKey)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.submit(w, r, eventlog.Command{Body: validation.RegisterUser{UserID: req.UserID, Client: c}}, http.StatusCreated)
}

func (s *Server) registerClient(w http.ResponseWriter, r *http.Request) {
	var req RegisterClientRequest
	signer := s.signedBody(w, r, &req)
	if signer == nil {
		return
	}
	c, err := s.clientReg(signer.UserID, req.SignatureKey)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.submit(w, r, eventlog.Command{Body: validation.RegisterClient{UserID: signer.UserID, Client: c}}, http.StatusCreated)
}

// authenticate verifies a client-signed request and returns the signing
// client's record.
func (s *Server) authenticate(r *http.Request, body []byte) (*projections.ClientRecord, error) {
	dir := projections.DirectoryView{R: s.cfg.Log.Reader()}
	var rec *projections.ClientRecord
	_, err := s.cfg.Keys.VerifyRequest(r, body, func(clientID string) (ed25519.PublicKey, error) {
		c, err := dir.Client(clientID)
		if errors.Is(err, eventlog.ErrNotFound) {
			return nil, validation.Reject(validation.CodeUnknownClient, "no client %q", clientID)
		}
		if err != nil {
			return nil, err
		}
		rec = c
		return ed25519.PublicKey(c.SignatureKey), nil
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// submit appends cmd and writes the writer's reply with status ok.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, cmd eventlog.Command, ok int) {
	out, err := s.cfg.Log.Append(r.Context(), cmd)
	if err != nil {
		var rej *eventlog.Rejection
		if errors.As(err, &rej) {
			err = rej.Err
		}
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, ok, out.Reply)
}
