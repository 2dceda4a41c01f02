package node

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mlshome/homeserver/identity"
)

// queueIDs issues the secret queue id of each local client and recognises
// the ones this homeserver issued. A queue id is the client id (16 bytes)
// followed by a 16-byte HMAC of it under a secret that never leaves the
// keys directory, so a sealed queue config (which anyone can seal to the
// public queue key) proves a right to deliver only if the id in it came
// from this homeserver (FED-5). Ids are derived, not stored: the log never
// holds them.
type queueIDs struct {
	secret []byte
}

const queueSecretFile = "queue-id-secret"

func loadQueueIDs(keysDir string) (*queueIDs, error) {
	p := filepath.Join(keysDir, queueSecretFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
	} else if err != nil {
		return nil, err
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("%s: %d bytes, want 32", p, len(b))
	}
	return &queueIDs{secret: b}, nil
}

func (q *queueIDs) tag(clientID []byte) []byte {
	m := hmac.New(sha256.New, q.secret)
	m.Write([]byte("homeserver queue id v1\x00"))
	m.Write(clientID)
	return m.Sum(nil)[:16]
}

// QueueID returns the queue id of a client.
func (q *queueIDs) QueueID(clientID string) []byte {
	raw, err := hex.DecodeString(clientID)
	if err != nil || len(raw) != 16 {
		return nil
	}
	return append(raw, q.tag(raw)...)
}

// ClientOf returns the client a queue id was issued to.
func (q *queueIDs) ClientOf(queueID []byte) (string, bool) {
	if len(queueID) != 32 {
		return "", false
	}
	if !hmac.Equal(queueID[16:], q.tag(queueID[:16])) {
		return "", false
	}
	return hex.EncodeToString(queueID[:16]), true
}

// queueConfigChecker opens a sealed queue config with this homeserver's
// key and checks that it names a queue issued to clientID here.
func queueConfigChecker(keys *identity.KeySet, q *queueIDs) func(sealed []byte, clientID string) error {
	return func(sealed []byte, clientID string) error {
		qc, err := keys.OpenQueueConfig(sealed)
		if err != nil {
			return err
		}
		if qc.Domain != keys.Domain() {
			return fmt.Errorf("queue config names %s, not %s", qc.Domain, keys.Domain())
		}
		owner, ok := q.ClientOf(qc.QueueID)
		if !ok {
			return errors.New("queue id was not issued by this homeserver")
		}
		if owner != clientID {
			return errors.New("queue id belongs to another client")
		}
		return nil
	}
}
