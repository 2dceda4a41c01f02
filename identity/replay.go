package identity

import (
	"container/heap"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"
)

// ReplayCache remembers the signed requests accepted within the replay
// window and refuses a second use of one ([CodeReplayed]). Entries are keyed
// by the SHA-256 of the signature (Ed25519 signatures are deterministic and
// Go's verifier rejects non-canonical encodings, so one signed request has
// one signature) and expire when the request's own timestamp leaves the
// window, after which [VerifyRequest] refuses it anyway.
//
// Memory is bounded by max entries. When full of unexpired entries the cache
// refuses new requests ([CodeOverloaded]) instead of forgetting old ones,
// which would let a replay through. A ReplayCache reads no clock: every call
// takes now. It is safe for concurrent use.
type ReplayCache struct {
	window time.Duration
	max    int

	mu      sync.Mutex
	seen    map[[32]byte]int64 // signature hash → expiry, unix ms
	expires expiryHeap
}

// NewReplayCache returns a cache for requests verified with the given
// window, holding at most max entries (at least 1). Size max for the peak
// number of signed requests accepted in 2×window.
func NewReplayCache(window time.Duration, max int) *ReplayCache {
	if max < 1 {
		max = 1
	}
	return &ReplayCache{window: window, max: max, seen: make(map[[32]byte]int64)}
}

// Check records the signed request whose headers are h as used at now. Call
// it after [VerifyRequest] succeeded for the same header, with the same now.
// It fails with [CodeReplayed] for a request already recorded, [CodeExpired]
// if the request is outside the window, [CodeOverloaded] when full, and the
// [ParseRequestAuth] codes.
func (c *ReplayCache) Check(h http.Header, now time.Time) error {
	auth, err := ParseRequestAuth(h)
	if err != nil {
		return err
	}
	return c.Use(auth.Signature, auth.Timestamp, now)
}

// Use records a signature whose signed timestamp is timestampMs (unix ms) as
// used at now; see [ReplayCache.Check].
func (c *ReplayCache) Use(signature []byte, timestampMs int64, now time.Time) error {
	if e := checkWindow(timestampMs, now, c.window); e != nil {
		return e
	}
	key := sha256.Sum256(signature)
	expiry := timestampMs + c.window.Milliseconds()
	nowMs := now.UnixMilli()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(nowMs)
	if _, ok := c.seen[key]; ok {
		return errorf(CodeReplayed, "request was already used")
	}
	if len(c.seen) >= c.max {
		return errorf(CodeOverloaded, "replay cache full (%d requests in the window)", c.max)
	}
	c.seen[key] = expiry
	heap.Push(&c.expires, expiryEntry{expiry: expiry, key: key})
	return nil
}

// Len returns the number of requests remembered, expired or not.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// pruneLocked forgets entries whose request is no longer acceptable at
// nowMs: those with expiry < nowMs, matching checkWindow's inclusive bound.
func (c *ReplayCache) pruneLocked(nowMs int64) {
	for len(c.expires) > 0 && c.expires[0].expiry < nowMs {
		e := heap.Pop(&c.expires).(expiryEntry)
		delete(c.seen, e.key)
	}
}

type expiryEntry struct {
	expiry int64
	key    [32]byte
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expiry < h[j].expiry }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
