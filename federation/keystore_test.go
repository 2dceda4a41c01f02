package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlshome/homeserver/identity"
)

// wellKnown serves a homeserver's public keys document over httptest and
// returns the domain it answers for ("127.0.0.1:<port>").
type wellKnown struct {
	srv     *httptest.Server
	domain  string
	hits    atomic.Int32
	mu      sync.Mutex
	doc     []byte
	handler func(w http.ResponseWriter, hit int32) bool // true: handled
}

func newWellKnown(t *testing.T) *wellKnown {
	w := &wellKnown{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hit := w.hits.Add(1)
		if r.URL.Path != WellKnownPath {
			http.NotFound(rw, r)
			return
		}
		w.mu.Lock()
		h, doc := w.handler, w.doc
		w.mu.Unlock()
		if h != nil && h(rw, hit) {
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		rw.Write(doc)
	}))
	t.Cleanup(w.srv.Close)
	u, _ := url.Parse(w.srv.URL)
	w.domain = u.Host
	w.setKeys(t)
	return w
}

// setKeys publishes a fresh key set and returns it.
func (w *wellKnown) setKeys(t *testing.T) *identity.KeySet {
	ks := mustKeySet(t, w.domain)
	w.mu.Lock()
	w.doc = ks.PublicKeys().Marshal()
	w.mu.Unlock()
	return ks
}

func newTestKeyStore(t *testing.T, dir string) *KeyStore {
	k, err := NewKeyStore(KeyStoreConfig{Scheme: "http", PinDir: dir, RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond,
		RetryAfterMax: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

func TestKeyStoreFetchRetriesAfter503(t *testing.T) {
	w := newWellKnown(t)
	ks := w.setKeys(t)
	w.handler = func(rw http.ResponseWriter, hit int32) bool {
		if hit == 1 {
			// An hour: honoured only up to RetryAfterMax.
			rw.Header().Set("Retry-After", "3600")
			rw.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	k := newTestKeyStore(t, "")
	got, err := k.FederationKey(context.Background(), w.domain)
	if err != nil {
		t.Fatalf("FederationKey: %v", err)
	}
	if !bytes.Equal(got, ks.FederationPublicKey()) {
		t.Fatal("fetched key differs from the published one")
	}
	if h := w.hits.Load(); h != 2 {
		t.Fatalf("%d requests, want 2 (one 503, one success)", h)
	}
	// Pinned: no further request.
	if _, err := k.FederationKey(context.Background(), w.domain); err != nil || w.hits.Load() != 2 {
		t.Fatalf("second lookup: %v, %d requests", err, w.hits.Load())
	}
}

func TestRetryAfterClamped(t *testing.T) {
	now := time.Now()
	resp := func(status int, h string) *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{}}
		r.Header.Set("Retry-After", h)
		return r
	}
	if d, ok := retryAfter(resp(503, "7"), now); !ok || d != 7*time.Second {
		t.Fatalf("delay-seconds: %v %v", d, ok)
	}
	if d, ok := retryAfter(resp(429, now.Add(90*time.Second).UTC().Format(http.TimeFormat)), now); !ok || d < 88*time.Second || d > 90*time.Second {
		t.Fatalf("http-date: %v %v", d, ok)
	}
	if _, ok := retryAfter(resp(500, "7"), now); ok {
		t.Fatal("Retry-After honoured on a 500")
	}
	cfg := KeyStoreConfig{}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	c := newFetchClient(&cfg)
	if d := c.Backoff(0, 0, 1, resp(503, "86400")); d != 30*time.Second {
		t.Fatalf("Retry-After of a day waits %v, want the 30s clamp", d)
	}
	for attempt := range 10 {
		if d := c.Backoff(0, 0, attempt, nil); d <= 0 || d > cfg.RetryWaitMax {
			t.Fatalf("attempt %d waits %v, outside (0, %v]", attempt, d, cfg.RetryWaitMax)
		}
	}
}

func TestKeyStorePinnedKeyChange(t *testing.T) {
	w := newWellKnown(t)
	dir := t.TempDir()
	k := newTestKeyStore(t, dir)
	ctx := context.Background()
	first, err := k.FederationKey(ctx, w.domain)
	if err != nil {
		t.Fatal(err)
	}
	second := w.setKeys(t) // the domain now publishes another key
	if err := k.Refresh(ctx, w.domain); CodeOf(err) != CodeKeyChanged {
		t.Fatalf("Refresh after a key change: %v, want %s", err, CodeKeyChanged)
	}
	if _, err := k.FederationKey(ctx, w.domain); CodeOf(err) != CodeKeyChanged {
		t.Fatalf("lookup after a key change: %v, want %s", err, CodeKeyChanged)
	}
	// The pin and the change survive a restart.
	k2 := newTestKeyStore(t, dir)
	if _, err := k2.FederationKey(ctx, w.domain); CodeOf(err) != CodeKeyChanged {
		t.Fatalf("after restart: %v, want %s", err, CodeKeyChanged)
	}
	pins := k2.Pins()
	if len(pins) != 1 || !bytes.Equal(pins[0].Key, first) || !bytes.Equal(pins[0].Changed, second.FederationPublicKey()) {
		t.Fatalf("pins %+v", pins)
	}
	// The operator checked the new key and clears the pin.
	if err := k2.Unpin(w.domain); err != nil {
		t.Fatal(err)
	}
	got, err := k2.FederationKey(ctx, w.domain)
	if err != nil || !bytes.Equal(got, second.FederationPublicKey()) {
		t.Fatalf("after Unpin: %v", err)
	}
}

func TestKeyStoreConcurrentLookupsShareOneFetch(t *testing.T) {
	w := newWellKnown(t)
	release := make(chan struct{})
	w.handler = func(http.ResponseWriter, int32) bool { <-release; return false }
	k := newTestKeyStore(t, "")
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := k.FederationKey(context.Background(), w.domain)
			errs <- err
		}()
	}
	waitFor(t, "all lookups waiting on one fetch", func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		fl := k.flights[w.domain]
		return fl != nil && fl.waiters == n
	})
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if h := w.hits.Load(); h != 1 {
		t.Fatalf("%d requests, want 1", h)
	}
}

func TestKeyStoreUnknownOrigin(t *testing.T) {
	w := newWellKnown(t)
	w.handler = func(rw http.ResponseWriter, _ int32) bool { http.NotFound(rw, nil); return true }
	k := newTestKeyStore(t, "")
	if _, err := k.FederationKey(context.Background(), w.domain); CodeOf(err) != CodeUnknownOrigin {
		t.Fatalf("404: %v, want %s", err, CodeUnknownOrigin)
	}
	// The failure is remembered for a while: no request per envelope.
	if _, err := k.FederationKey(context.Background(), w.domain); CodeOf(err) != CodeUnknownOrigin || w.hits.Load() != 1 {
		t.Fatalf("second lookup: %v after %d requests", err, w.hits.Load())
	}
	// A document for another domain is refused.
	other := newWellKnown(t)
	other.mu.Lock()
	other.doc = mustKeySet(t, "evil.example").PublicKeys().Marshal()
	other.mu.Unlock()
	if _, err := k.FederationKey(context.Background(), other.domain); CodeOf(err) != CodeUnknownOrigin {
		t.Fatalf("document for another domain: %v", err)
	}
	// Configured keys are never fetched.
	pub := pubKey(t)
	kc, _ := NewKeyStore(KeyStoreConfig{Configured: map[string]ed25519.PublicKey{domC: pub}})
	if got, err := kc.FederationKey(context.Background(), domC); err != nil || !bytes.Equal(got, pub) {
		t.Fatalf("configured key: %v", err)
	}
}
