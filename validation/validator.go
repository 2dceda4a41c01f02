// Package validation holds the homeserver's stateful checks: pure
// functions of (command, read-only projection view, batch time) that return
// the events to append or a typed *Error. They read no clock and no
// randomness, so the audit can re-run them on replay (LOG-4).
package validation

import (
	"time"

	"crypto/sha256"
	"encoding/hex"
	"github.com/mlshome/homeserver/projections"

	"github.com/mlshome/homeserver/eventlog"
)

// Env is what the checks need to know about this homeserver.
type Env struct {
	Domain string
	// CheckCredential verifies that cred is a client credential signed by
	// this homeserver's authentication key for exactly these values.
	CheckCredential func(cred []byte, userID, clientID string, signatureKey []byte) error
	// CheckQueueConfig verifies that a sealed queue config opens with this
	// homeserver's queue key and names a queue it issued to clientID.
	CheckQueueConfig func(sealed []byte, clientID string) error
	// QueueID returns the secret queue id of a local client, told to the
	// client when it registers.
	QueueID func(clientID string) []byte
	// ResolveQueue opens a sealed queue config (local ones to a client id,
	// others to their domain).
	ResolveQueue projections.QueueResolver
	// TokenAllowance tokens per user per TokenWindow (GC-6).
	TokenAllowance int
	TokenWindow    time.Duration
	// EpochWindow is how many epochs back an application message may be.
	EpochWindow uint64
	// VerifyToken verifies a group-creation token at time now and returns
	// its key id and nonce (for audits; the API redeems on the request path).
	VerifyToken func(token []byte, now time.Time) (keyID, nonce []byte, err error)
}

// Validator decides commands. It implements eventlog.Handler's Decide.
type Validator struct {
	Env Env
}

// Decide checks one command against the state r at time now.
func (v *Validator) Decide(r eventlog.Reader, now int64, cmd any) (eventlog.Decision, error) {
	switch c := cmd.(type) {
	case RegisterUser:
		return v.registerUser(r, c)
	case RegisterClient:
		return v.registerClient(r, c)
	case PublishKeyPackages:
		return v.publishKeyPackages(r, now, c)
	case ClaimKeyPackages:
		return v.claimKeyPackages(r, now, c)
	case IssueTokens:
		return v.issueTokens(r, now, c)
	case CreateGroup:
		return v.createGroup(r, now, c)
	case Handshake:
		return v.handshake(r, now, c)
	case AppMessage:
		return v.appMessage(r, c)
	case AckQueue:
		return v.ackQueue(r, c)
	case DeliverFederated:
		return v.deliverFederated(r, c)
	case TrimOutbox:
		return v.trimOutbox(r, c)
	case SetFederationPolicy:
		return v.setFederationPolicy(c)
	case BlockGroup:
		return v.blockGroup(r, c)
	default:
		return eventlog.Decision{}, Reject(CodeUnknownCommand, "unknown command %T", cmd)
	}
}

// ClientIDFor derives a client's id from its signature key: the first 16
// bytes of its SHA-256, in hex. Deriving it keeps the writer free of
// randomness and makes a key usable by one client only.
func ClientIDFor(signatureKey []byte) string {
	h := sha256.Sum256(signatureKey)
	return hex.EncodeToString(h[:16])
}
