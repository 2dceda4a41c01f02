package validation

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"regexp"
	"strings"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/projections"
)

// MaxClientsPerUser bounds the clients one user can register.
const MaxClientsPerUser = 32

// ClientReg is a client being registered: its id, its Ed25519 signature
// key and the credential the API layer had the homeserver sign for it.
type ClientReg struct {
	ClientID     string
	SignatureKey []byte
	Credential   []byte
}

// RegisterUser registers a new local user together with its first client.
type RegisterUser struct {
	UserID string
	Client ClientReg
}

// RegisterClient adds a client to an existing local user. The API layer
// has authenticated the request with a signature of one of the user's
// registered clients.
type RegisterClient struct {
	UserID string
	Client ClientReg
}

// RegisteredReply is the reply to both registrations.
type RegisteredReply struct {
	UserID     string `json:"user_id"`
	ClientID   string `json:"client_id"`
	Credential []byte `json:"credential"`
	// QueueID is the client's secret queue id, to seal into the queue
	// config of its KeyPackages.
	QueueID []byte `json:"queue_id"`
}

var userName = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)

// ParseLocalUserID checks that id is "name@domain" with a valid name and
// this homeserver's domain.
func ParseLocalUserID(id, domain string) error {
	name, d, ok := strings.Cut(id, "@")
	if !ok || !userName.MatchString(name) {
		return Reject(CodeInvalidUserID, "user id %q is not name@domain with name [a-z0-9._-]{1,64}", id)
	}
	if d != domain {
		return Reject(CodeWrongDomain, "user %q does not belong to %s", id, domain)
	}
	return nil
}

func (v *Validator) checkClient(r eventlog.Reader, userID string, c ClientReg) error {
	if len(c.SignatureKey) != ed25519.PublicKeySize {
		return Reject(CodeInvalidKey, "signature key must be %d bytes of Ed25519", ed25519.PublicKeySize)
	}
	if c.ClientID != ClientIDFor(c.SignatureKey) {
		return Reject(CodeMalformed, "client id does not match the signature key")
	}
	if err := v.Env.CheckCredential(c.Credential, userID, c.ClientID, c.SignatureKey); err != nil {
		return Reject(CodeBadCredential, "%v", err)
	}
	if _, err := (projections.DirectoryView{R: r}).Client(c.ClientID); err == nil {
		return Reject(CodeKeyInUse, "this signature key is already registered")
	} else if !errors.Is(err, eventlog.ErrNotFound) {
		return err
	}
	return nil
}

func (v *Validator) registerUser(r eventlog.Reader, c RegisterUser) (eventlog.Decision, error) {
	if err := ParseLocalUserID(c.UserID, v.Env.Domain); err != nil {
		return eventlog.Decision{}, err
	}
	dir := projections.DirectoryView{R: r}
	if _, err := dir.User(c.UserID); err == nil {
		return eventlog.Decision{}, Reject(CodeUserExists, "user %s already exists", c.UserID)
	} else if !errors.Is(err, eventlog.ErrNotFound) {
		return eventlog.Decision{}, err
	}
	if err := v.checkClient(r, c.UserID, c.Client); err != nil {
		return eventlog.Decision{}, err
	}
	return v.registered(c.UserID, c.Client,
		events.Draft(events.TypeUserRegistered, events.UserRegistered{UserID: c.UserID}))
}

func (v *Validator) registerClient(r eventlog.Reader, c RegisterClient) (eventlog.Decision, error) {
	dir := projections.DirectoryView{R: r}
	if _, err := dir.User(c.UserID); errors.Is(err, eventlog.ErrNotFound) {
		return eventlog.Decision{}, Reject(CodeUnknownUser, "no user %s", c.UserID)
	} else if err != nil {
		return eventlog.Decision{}, err
	}
	clients, err := dir.Clients(c.UserID)
	if err != nil {
		return eventlog.Decision{}, err
	}
	if len(clients) >= MaxClientsPerUser {
		return eventlog.Decision{}, Reject(CodeTooManyClients, "a user may register at most %d clients", MaxClientsPerUser)
	}
	if err := v.checkClient(r, c.UserID, c.Client); err != nil {
		return eventlog.Decision{}, err
	}
	return v.registered(c.UserID, c.Client)
}

func (v *Validator) registered(userID string, c ClientReg, first ...eventlog.Draft) (eventlog.Decision, error) {
	reply, err := json.Marshal(RegisteredReply{UserID: userID, ClientID: c.ClientID, Credential: c.Credential, QueueID: v.Env.QueueID(c.ClientID)})
	if err != nil {
		return eventlog.Decision{}, err
	}
	evs := append(first, events.Draft(events.TypeClientRegistered, events.ClientRegistered{
		UserID: userID, ClientID: c.ClientID, SignatureKey: c.SignatureKey, Credential: c.Credential,
	}))
	return eventlog.Decision{Events: evs, Reply: reply}, nil
}
