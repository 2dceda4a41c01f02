package tokens

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/cloudflare/circl/oprf"
)

// Issuer is the server side: it evaluates blinded batches with its current
// key and redeems tokens issued under the current key or, until a grace
// period after the last rotation ends, the previous one. It reads no clock;
// methods that depend on time take now. It is safe for concurrent use.
type Issuer struct {
	grace time.Duration

	mu           sync.RWMutex
	current      *Key
	currentSince time.Time
	previous     *Key      // nil before the first rotation
	prevUntil    time.Time // previous redeems while now <= prevUntil
}

// NewIssuer returns an issuer whose current key is current, in use since
// since, that keeps a rotated-out key redeemable for grace.
func NewIssuer(current *Key, since time.Time, grace time.Duration) *Issuer {
	return &Issuer{grace: grace, current: current, currentSince: since}
}

// Rotate makes next the current key at now. The old current key stays
// redeemable (not issuable) until now+grace; a key rotated out before that
// is forgotten. Tokens a client holds for a forgotten key are lost, so the
// grace period should cover how long clients keep unspent tokens.
func (is *Issuer) Rotate(next *Key, now time.Time) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.previous = is.current
	is.prevUntil = now.Add(is.grace)
	is.current = next
	is.currentSince = now
}

// RotationDue reports whether the current key has been in use for period or
// longer at now; the caller then generates a key and calls [Issuer.Rotate].
func (is *Issuer) RotationDue(now time.Time, period time.Duration) bool {
	is.mu.RLock()
	defer is.mu.RUnlock()
	return !now.Before(is.currentSince.Add(period))
}

// PublishedKey is an issuer key as clients see it.
type PublishedKey struct {
	// ID is the key id.
	ID KeyID
	// PublicKey is the 32-byte public key.
	PublicKey []byte
	// Issuing is true for the current key, the only one Evaluate uses.
	Issuing bool
	// RedeemUntil is when a previous key stops being redeemable; zero for
	// the current key.
	RedeemUntil time.Time
}

// Current returns the current (issuing) key.
func (is *Issuer) Current() PublishedKey {
	is.mu.RLock()
	defer is.mu.RUnlock()
	return PublishedKey{ID: is.current.id, PublicKey: is.current.PublicKey(), Issuing: true}
}

// Keys returns the keys redeemable at now: the current key first, then the
// previous key if its grace period has not ended.
func (is *Issuer) Keys(now time.Time) []PublishedKey {
	is.mu.RLock()
	defer is.mu.RUnlock()
	keys := []PublishedKey{{ID: is.current.id, PublicKey: is.current.PublicKey(), Issuing: true}}
	if is.previous != nil && !now.After(is.prevUntil) {
		keys = append(keys, PublishedKey{ID: is.previous.id, PublicKey: is.previous.PublicKey(), RedeemUntil: is.prevUntil})
	}
	return keys
}

// Evaluate evaluates a batch of blinded elements with the current key and
// returns the evaluated elements, in order, and the batch DLEQ proof. keyID
// must be the current key's id ([CodeUnknownKey] otherwise, so a client that
// blinded for a rotated key learns to refetch). The batch holds 1 to
// [MaxBatch] elements ([CodeBadBatch]), each a valid non-identity ristretto255
// element ([CodeMalformed]).
//
// Evaluate takes no client identity: it cannot link its input to anything.
// The caller authenticates the client and charges its allowance before
// calling, and records only the count (TokensIssued).
func (is *Issuer) Evaluate(keyID KeyID, blinded [][]byte) (evaluated [][]byte, proof []byte, err error) {
	if len(blinded) == 0 || len(blinded) > MaxBatch {
		return nil, nil, errorf(CodeBadBatch, "batch of %d elements, want 1 to %d", len(blinded), MaxBatch)
	}
	is.mu.RLock()
	key := is.current
	is.mu.RUnlock()
	if keyID != key.id {
		return nil, nil, errorf(CodeUnknownKey, "key %s is not the issuing key %s", keyID, key.id)
	}
	g := suite.Group()
	req := &oprf.EvaluationRequest{Elements: make([]oprf.Blinded, len(blinded))}
	for i, b := range blinded {
		if len(b) != ElementSize {
			return nil, nil, errorf(CodeMalformed, "blinded element %d has %d bytes, want %d", i, len(b), ElementSize)
		}
		e := g.NewElement()
		if err := e.UnmarshalBinary(b); err != nil || e.IsIdentity() {
			return nil, nil, errorf(CodeMalformed, "blinded element %d is not a valid group element", i)
		}
		req.Elements[i] = e
	}
	ev, err := key.server.Evaluate(req)
	if err != nil {
		return nil, nil, fmt.Errorf("evaluate token batch: %w", err)
	}
	evaluated = make([][]byte, len(ev.Elements))
	for i, e := range ev.Elements {
		if evaluated[i], err = e.MarshalBinaryCompress(); err != nil {
			return nil, nil, fmt.Errorf("evaluate token batch: %w", err)
		}
	}
	if proof, err = ev.Proof.MarshalBinary(); err != nil {
		return nil, nil, fmt.Errorf("evaluate token batch: %w", err)
	}
	return evaluated, proof, nil
}

// Issue is [Issuer.Evaluate] on an [IssueRequest], returning the
// [IssueResponse].
func (is *Issuer) Issue(req IssueRequest) (IssueResponse, error) {
	ev, proof, err := is.Evaluate(req.KeyID, req.Blinded)
	if err != nil {
		return IssueResponse{}, err
	}
	return IssueResponse{KeyID: req.KeyID, Evaluated: ev, Proof: proof}, nil
}

// Redeem checks a token at now and returns its nonce, which the caller must
// look up in and add to the spent set (the event log) to refuse a second
// use. The token must name the current key, or the previous key while
// now <= rotation time + grace ([CodeUnknownKey] otherwise), and its output
// must be the PRF of its nonce under that key ([CodeInvalidToken]). Redeem
// learns nothing about which client the token was issued to.
func (is *Issuer) Redeem(t Token, now time.Time) (nonce []byte, err error) {
	is.mu.RLock()
	var key *Key
	switch {
	case t.KeyID == is.current.id:
		key = is.current
	case is.previous != nil && t.KeyID == is.previous.id && !now.After(is.prevUntil):
		key = is.previous
	}
	is.mu.RUnlock()
	if key == nil {
		return nil, errorf(CodeUnknownKey, "token key %s is not redeemable", t.KeyID)
	}
	if err := key.Verify(t); err != nil {
		return nil, err
	}
	return append([]byte(nil), t.Nonce...), nil
}

// stateVersion is the first byte of [Issuer.MarshalState].
const stateVersion = 1

// MarshalState encodes the issuer's keys and rotation times so the
// homeserver can keep them in its key directory and restart with the same
// state ([LoadIssuer]). The result is secret.
//
//	uint8 version = 1
//	current key (MarshalKey, 33 bytes)  int64 current_since (unix ms)
//	uint8 has_previous  [previous key (33 bytes)  int64 redeem_until (unix ms)]
func (is *Issuer) MarshalState() ([]byte, error) {
	is.mu.RLock()
	defer is.mu.RUnlock()
	cur, err := MarshalKey(is.current)
	if err != nil {
		return nil, err
	}
	b := append([]byte{stateVersion}, cur...)
	b = binary.BigEndian.AppendUint64(b, uint64(is.currentSince.UnixMilli()))
	if is.previous == nil {
		return append(b, 0), nil
	}
	prev, err := MarshalKey(is.previous)
	if err != nil {
		return nil, err
	}
	b = append(append(b, 1), prev...)
	return binary.BigEndian.AppendUint64(b, uint64(is.prevUntil.UnixMilli())), nil
}

// LoadIssuer restores an issuer from [Issuer.MarshalState] with grace as its
// grace period for future rotations. Errors have code [CodeMalformed] or
// [CodeUnsupportedVersion].
func LoadIssuer(state []byte, grace time.Duration) (*Issuer, error) {
	const keyLen = 33
	if len(state) == 0 {
		return nil, errorf(CodeMalformed, "empty issuer state")
	}
	if state[0] != stateVersion {
		return nil, errorf(CodeUnsupportedVersion, "issuer state version %d", state[0])
	}
	if len(state) != 1+keyLen+8+1 && len(state) != 1+keyLen+8+1+keyLen+8 {
		return nil, errorf(CodeMalformed, "issuer state has %d bytes", len(state))
	}
	cur, err := UnmarshalKey(state[1 : 1+keyLen])
	if err != nil {
		return nil, err
	}
	rest := state[1+keyLen:]
	is := NewIssuer(cur, time.UnixMilli(int64(binary.BigEndian.Uint64(rest))), grace)
	rest = rest[8:]
	switch {
	case rest[0] == 0 && len(rest) == 1:
		return is, nil
	case rest[0] == 1 && len(rest) == 1+keyLen+8:
		prev, err := UnmarshalKey(rest[1 : 1+keyLen])
		if err != nil {
			return nil, err
		}
		is.previous = prev
		is.prevUntil = time.UnixMilli(int64(binary.BigEndian.Uint64(rest[1+keyLen:])))
		return is, nil
	}
	return nil, errorf(CodeMalformed, "issuer state: bad previous-key flag")
}
