package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/node"
)

// clock is a settable clock for the homeserver under test, so limits can
// be shown to recover without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	node  *node.Node
	conn  *client.Conn
	clock *clock
	dir   *client.Directory
}

func start(t testing.TB, domain string, limits *api.DirectoryLimits, opts ...func(*node.Config)) *harness {
	t.Helper()
	ck := &clock{t: time.Now()}
	cfg := node.Config{Domain: domain, DataDir: t.TempDir(), Listen: "127.0.0.1:0", Clock: ck.Now, DirectoryLimits: limits,
		GroupLimits: &api.GroupLimits{}}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	conn, err := client.Dial(context.Background(), n.URL(), domain)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{node: n, conn: conn, clock: ck, dir: &client.Directory{Conn: conn}}
}

// noLimits lifts the directory limits for tests about something else.
var noLimits = &api.DirectoryLimits{}

// user registers name with nClients clients, each publishing ordinary
// KeyPackages and one last-resort KeyPackage.
func (h *harness) user(t testing.TB, name string, nClients, ordinary int) []*client.Client {
	t.Helper()
	ctx := context.Background()
	first, err := h.conn.Register(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	cs := []*client.Client{first}
	for len(cs) < nClients {
		c, err := first.AddClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		kps, err := c.MakeKeyPackages(ordinary, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.PublishKeyPackages(ctx, kps); err != nil {
			t.Fatal(err)
		}
	}
	return cs
}

// storeContents returns every key and value of the homeserver's store.
func storeContents(t testing.TB, db *pebble.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	return out
}
