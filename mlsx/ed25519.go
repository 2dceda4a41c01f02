package mlsx

import (
	"bytes"
	"crypto/sha512"
	"sync"
	"sync/atomic"

	"filippo.io/edwards25519"
)

// Ed25519 verification with decompressed public keys kept in memory.
//
// crypto/ed25519 decompresses the public key on every Verify: a square
// root in the field, about 7% of a verification (3.6 of 51 µs on the test
// machine). A homeserver checks signature after signature by the same
// leaves (every application message, commit and KeyPackage of a client is
// signed with its one leaf key), so this package remembers the negated,
// decompressed point of the keys it has seen, as verifying-key types of
// other Ed25519 libraries do (ed25519-dalek's VerifyingKey, Go's own
// internal ed25519.PublicKey).
//
// The check itself is crypto/ed25519's for pure Ed25519, step for step,
// on filippo.io/edwards25519, the package that crypto/ed25519's internal
// copy comes from: signature length 64, the three top bits of S clear, S
// canonical, k = SHA-512(R || A || M) reduced mod ℓ, and the encoding of
// [S]B − [k]A equal to R (the cofactorless equation). Public keys decode
// with the same Point.SetBytes, so the same keys are refused. A
// differential test and a fuzz target compare it with crypto/ed25519.

// edKeyCacheSize bounds one generation of the key cache: two generations
// of up to this many keys (a point is 160 bytes) are kept.
const edKeyCacheSize = 8192

// edKeyCache holds -A for recently used public keys A, in two generations:
// when the current one is full it becomes the previous one, and the one
// before is dropped; a key found in the previous generation moves to the
// current one. So a key in use stays, while a stream of one-off keys
// (KeyPackages) cannot grow the cache.
type edKeyCache struct {
	size    int          // of one generation
	decoded atomic.Int64 // keys decoded so far
	mu      sync.RWMutex
	cur     map[[32]byte]*edwards25519.Point
	prev    map[[32]byte]*edwards25519.Point
}

func newEdKeyCache(size int) *edKeyCache {
	return &edKeyCache{size: size, cur: make(map[[32]byte]*edwards25519.Point)}
}

var edKeys = newEdKeyCache(edKeyCacheSize)

// minusA returns -A for the encoded public key pub (32 bytes), or false
// if pub is not a valid point encoding. The point returned is shared and
// must not be modified.
func (c *edKeyCache) minusA(pub []byte) (*edwards25519.Point, bool) {
	k := [32]byte(pub)
	c.mu.RLock()
	p, ok := c.cur[k]
	old := false
	if !ok {
		p, ok = c.prev[k]
		old = ok
	}
	c.mu.RUnlock()
	if ok && !old {
		return p, true
	}
	if !ok {
		a, err := new(edwards25519.Point).SetBytes(pub)
		if err != nil {
			return nil, false
		}
		p = new(edwards25519.Point).Negate(a)
		c.decoded.Add(1)
	}
	// A new key, or one in use again since the last rotation: into the
	// current generation.
	c.mu.Lock()
	if len(c.cur) >= c.size {
		c.prev, c.cur = c.cur, make(map[[32]byte]*edwards25519.Point, c.size)
	}
	c.cur[k] = p
	c.mu.Unlock()
	return p, true
}

// len is the number of keys held.
func (c *edKeyCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.prev)
}

// verifyEd25519 reports whether sig is pub's pure Ed25519 signature of
// msg (RFC 8032 §5.1.7), exactly as crypto/ed25519.Verify decides it.
func verifyEd25519(pub, msg, sig []byte) bool {
	if len(pub) != 32 || len(sig) != 64 || sig[63]&224 != 0 {
		return false
	}
	minusA, ok := edKeys.minusA(pub)
	if !ok {
		return false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(pub)
	h.Write(msg)
	var digest [64]byte
	k, err := new(edwards25519.Scalar).SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		return false // cannot happen: the digest is 64 bytes
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	// [S]B = R + [k]A  ⇔  [k](-A) + [S]B = R
	r := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k, minusA, s)
	return bytes.Equal(sig[:32], r.Bytes())
}
