package federation

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mlshome/homeserver/identity"
)

// Test domains: one DNS name, one loopback testnet domain with a port.
const (
	domA = "a.example"
	domB = "127.0.0.1:8102"
	domC = "c.example"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("FED_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func mustKeySet(t testing.TB, domain string) *identity.KeySet {
	t.Helper()
	ks, err := identity.GenerateKeySet(domain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// dropCounter records Metrics.Dropped calls.
type dropCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *dropCounter) add(code string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = make(map[string]int)
	}
	d.n[code]++
}

func (d *dropCounter) get(code string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[code]
}

// home is one homeserver's federation side in a test.
type home struct {
	domain string
	keys   *identity.KeySet
	bus    *Bus
	tr     *Transport
	drops  *dropCounter
	store  string
	leaf   string
}

// testnet is a hub and the homeservers on it, sharing static keys.
type testnet struct {
	t     *testing.T
	hub   *Hub
	keys  map[string]*identity.KeySet
	known StaticKeys
}

func newTestnet(t *testing.T, domains ...string) *testnet {
	t.Helper()
	hub, err := StartHub(HubConfig{Domains: domains, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Close)
	n := &testnet{t: t, hub: hub, keys: make(map[string]*identity.KeySet), known: make(StaticKeys)}
	for _, d := range domains {
		n.keys[d] = mustKeySet(t, d)
		n.known[d] = n.keys[d].FederationPublicKey()
	}
	return n
}

// start opens domain's embedded bus as a leaf of the hub and a transport
// on it. store is the JetStream directory ("" for a fresh one).
func (n *testnet) start(domain, store string) *home {
	t := n.t
	t.Helper()
	if store == "" {
		store = filepath.Join(t.TempDir(), "nats")
	}
	leaf, err := n.hub.LeafURL(domain)
	if err != nil {
		t.Fatal(err)
	}
	bus, err := OpenBus(BusConfig{Name: domain, StoreDir: store, LeafRemote: leaf, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	h := &home{domain: domain, keys: n.keys[domain], bus: bus, drops: &dropCounter{}, store: store, leaf: leaf}
	t.Cleanup(func() { h.bus.Close() })
	waitFor(t, "leaf connection of "+domain, func() bool { return bus.Server.NumLeafNodes() == 1 })
	h.tr, err = NewTransport(TransportConfig{
		Conn:    bus.Conn,
		Self:    domain,
		Sign:    h.keys.SignFederation,
		Keys:    n.known,
		Logger:  testLogger(t),
		Metrics: Metrics{Dropped: h.drops.add},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// serve runs fn in the background until the test ends.
func serve(t *testing.T, fn func(ctx context.Context) error) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return cancel
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pubKey returns a fresh random federation key.
func pubKey(t testing.TB) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
