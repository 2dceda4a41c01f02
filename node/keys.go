package node

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"time"

	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/validation"
)

// credentialChecker verifies, for the validator, that a credential was
// signed by this homeserver for exactly the registered values.
func credentialChecker(keys *identity.KeySet) func(cred []byte, userID, clientID string, sigKey []byte) error {
	pub := keys.AuthPublicKey()
	domain := keys.Domain()
	return func(cred []byte, userID, clientID string, sigKey []byte) error {
		c, err := identity.VerifyCredential(cred, pub)
		if err != nil {
			return err
		}
		if c.UserID != userID || c.ClientID != clientID || !bytes.Equal(c.SignatureKey, sigKey) || c.Domain != domain {
			return fmt.Errorf("credential is for %s/%s, not %s/%s", c.UserID, c.ClientID, userID, clientID)
		}
		return nil
	}
}

// apiKeys adapts the key set to what the HTTP API needs.
type apiKeys struct {
	keys   *identity.KeySet
	window time.Duration
	now    func() time.Time
	replay *identity.ReplayCache
}

func newAPIKeys(keys *identity.KeySet, window time.Duration, now func() time.Time) *apiKeys {
	if window == 0 {
		window = 2 * time.Minute
	}
	return &apiKeys{keys: keys, window: window, now: now, replay: identity.NewReplayCache(window, 1<<20)}
}

func (a *apiKeys) IssueCredential(userID, clientID string, key ed25519.PublicKey, issuedAtUnix int64) ([]byte, error) {
	return a.keys.IssueCredential(identity.ClientCredential{
		UserID: userID, ClientID: clientID, SignatureKey: key, Domain: a.keys.Domain(), IssuedAt: issuedAtUnix * 1000,
	})
}

func (a *apiKeys) SignBundle(b identity.Bundle) ([]byte, error) { return a.keys.SignBundle(b) }

func (a *apiKeys) PublicKeysJSON() ([]byte, error) { return a.keys.PublicKeys().Marshal(), nil }

func (a *apiKeys) VerifyRequest(r *http.Request, body []byte, lookup func(string) (ed25519.PublicKey, error)) (string, error) {
	now := a.now()
	id, err := identity.VerifyRequest(r.Method, r.URL.RequestURI(), body, r.Header, lookup, now, a.window)
	if err != nil {
		if _, ok := validation.AsError(err); ok {
			return "", err
		}
		return "", validation.Reject(validation.CodeBadSignature, "%v", err)
	}
	if err := a.replay.Check(r.Header, now); err != nil {
		return "", validation.Reject(validation.CodeReplayed, "%v", err)
	}
	return id, nil
}
