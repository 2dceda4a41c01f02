package federation

import (
	"context"
	"github.com/mlshome/homeserver/identity"
	"github.com/nats-io/nats.go"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The rendered production configuration parses, and its permissions are
// enough for request/reply and durable deliveries between two homeservers
// sharing one external server, while still refusing a publish as another
// origin.
func TestFED_2_ClusterConfigPermissions(t *testing.T) {
	dir := t.TempDir()
	conf, err := ClusterConfig(ClusterConfigParams{
		Listen:   "127.0.0.1:-1",
		StoreDir: filepath.Join(dir, "js"),
		Users:    []ClusterUser{{Domain: domA, Password: "pa"}, {Domain: domB, Password: "pb"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("rendered config does not parse: %v\n%s", err, conf)
	}
	opts.NoLog, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })

	keys := StaticKeys{}
	n := &testnet{t: t, keys: map[string]*identity.KeySet{}, known: keys}
	for _, d := range []string{domA, domB} {
		n.keys[d] = mustKeySet(t, d)
		keys[d] = n.keys[d].FederationPublicKey()
	}
	connect := func(domain, pw string) *home {
		u := url.URL{Scheme: "nats", User: url.UserPassword(domain, pw), Host: strings.TrimPrefix(ns.ClientURL(), "nats://")}
		bus, err := OpenBus(BusConfig{Name: domain, URL: u.String(), Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() })
		h := &home{domain: domain, keys: n.keys[domain], bus: bus, drops: &dropCounter{}}
		h.tr, err = NewTransport(TransportConfig{Conn: bus.Conn, Self: domain, Sign: h.keys.SignFederation, Keys: keys,
			Logger: testLogger(t), Metrics: Metrics{Dropped: h.drops.add}})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a, b := connect(domA, "pa"), connect(domB, "pb")

	serve(t, func(ctx context.Context) error { return b.tr.Serve(ctx, echo) })
	if _, err := request(t, a, domB, "lookup", []byte("x")); err != nil {
		t.Fatalf("request: %v", err)
	}

	inbox := &memInbox{t: t, keys: keys, cursor: make(map[string]uint64)}
	serve(t, newReceiver(t, b.tr, inbox).Run)
	outbox := newMemOutbox()
	outbox.add(domB, 20)
	serve(t, fastPublisher(t, a.tr, outbox).Run)
	waitFor(t, "20 deliveries", func() bool { return inbox.count() == 20 })
	waitFor(t, "outbox trimmed", func() bool { return outbox.trimmedTo(domB) == 20 })
	assertCommitted(t, inbox, 20)

	// Publishing as B is refused by the server.
	errs := make(chan error, 1)
	a.bus.Conn.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
	if err := a.bus.Conn.Publish(Subject(domB, domA, SuffixRequest), []byte("forged")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("got %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no permissions violation reported")
	}
}
