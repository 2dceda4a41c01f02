package audit

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/validation"
	"golang.org/x/mod/sumdb/note"
)

// keyFiles are the files of a complete key directory (see
// identity.LoadOrCreateKeySet). LoadKeySet refuses a directory that lacks
// any of them, because loading would create it.
var keyFiles = []string{"domain", "auth.pem", "federation.pem", "log.pem", "queue.pem"}

// ErrNoKeys is returned by LoadKeySet for a key directory that is missing
// or incomplete.
var ErrNoKeys = errors.New("no complete key set")

// LoadKeySet loads the key set in dir without ever creating anything: an
// audit must not change the directory it audits, and a key set made up on
// the spot would verify nothing. It returns ErrNoKeys if dir or any key
// file is missing.
func LoadKeySet(dir string) (*identity.KeySet, error) {
	for _, name := range keyFiles {
		ok, err := exists(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s: %w (%s is missing)", dir, ErrNoKeys, name)
		}
	}
	domain, err := os.ReadFile(filepath.Join(dir, "domain"))
	if err != nil {
		return nil, err
	}
	// Every file exists, so this only loads.
	return identity.LoadOrCreateKeySet(dir, strings.TrimSpace(string(domain)))
}

// VerifierName returns the name of a note verifier key, which for a
// homeserver's log key is its domain.
func VerifierName(verifierKey string) (string, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return "", fmt.Errorf("verifier key: %w", err)
	}
	return v.Name(), nil
}

// NewValidator returns a validator for a homeserver known only by its
// public keys, for auditors who hold none of its private keys. It runs the
// homeserver's checks with what public keys allow, and returns the names of
// the checks it can only do in part:
//
//   - client credentials are verified with authKey exactly as the
//     homeserver does; with a nil authKey they are still decoded and matched
//     against the registered user, client, key and domain, but their
//     signatures are not verified;
//   - a sealed queue config can be opened only with the homeserver's
//     private queue key, so only the domain it is sealed for is checked.
func NewValidator(domain string, authKey ed25519.PublicKey) (*validation.Validator, []string) {
	var partial []string
	if authKey == nil {
		partial = append(partial, "credential signatures (no authentication key)")
	}
	partial = append(partial, "sealed queue configs (domain only: opening them needs the private queue key)")
	check := func(cred []byte, userID, clientID string, sigKey []byte) error {
		var c identity.ClientCredential
		var err error
		if authKey != nil {
			c, err = identity.VerifyCredential(cred, authKey)
		} else {
			c, _, _, err = identity.DecodeCredential(cred)
		}
		if err != nil {
			return err
		}
		if c.UserID != userID || c.ClientID != clientID || !bytes.Equal(c.SignatureKey, sigKey) || c.Domain != domain {
			return fmt.Errorf("credential is for %s/%s, not %s/%s", c.UserID, c.ClientID, userID, clientID)
		}
		return nil
	}
	checkQueue := func(sealed []byte, _ string) error {
		d, err := identity.SealedQueueConfigDomain(sealed)
		if err != nil {
			return err
		}
		if d != domain {
			return fmt.Errorf("queue config is sealed for %s, not %s", d, domain)
		}
		return nil
	}
	return &validation.Validator{Env: validation.Env{
		Domain:           domain,
		CheckCredential:  check,
		CheckQueueConfig: checkQueue,
		// Queue ids are secret; replies are not re-created by an audit.
		QueueID: func(string) []byte { return nil },
		ResolveQueue: func(sealed []byte) (projections.QueueTarget, error) {
			d, err := identity.SealedQueueConfigDomain(sealed)
			if err != nil {
				return projections.QueueTarget{}, err
			}
			if d == domain {
				// Only the private key tells whether the queue is ours.
				return projections.QueueTarget{Domain: d, ClientID: "(unverified)"}, nil
			}
			return projections.QueueTarget{Domain: d, Sealed: sealed}, nil
		},
		TokenAllowance: node.DefaultTokenPolicy.Allowance,
		TokenWindow:    node.DefaultTokenPolicy.Window,
		EpochWindow:    node.DefaultEpochWindow,
	}}, append(partial, "group-creation tokens (verifying them needs the token issuer keys)")
}
