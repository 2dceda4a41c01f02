package testnet

import (
	"path/filepath"

	"context"
	"fmt"
	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/audit"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/projections"
	"testing"
	"time"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/node"
)

func startNet(t *testing.T, n int, opts ...func(i int, c *node.Config)) *Net {
	t.Helper()
	net, err := Start(Config{Servers: n, Dir: t.TempDir(), DirectoryLimits: &api.DirectoryLimits{}, GroupLimits: &api.GroupLimits{},
		Node: func(i int, c *node.Config) {
			c.Federation.RetryMax = 500 * time.Millisecond
			c.Federation.AdminToken = "admin-secret"
			for _, o := range opts {
				o(i, c)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	return net
}

// user registers name on s with clients clients, each with KeyPackages.
func user(t *testing.T, s *Server, name string, clients int) []*client.Client {
	t.Helper()
	ctx := context.Background()
	conn, err := s.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, err := conn.Register(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	cs := []*client.Client{first}
	for len(cs) < clients {
		c, err := first.AddClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		kps, _ := c.MakeKeyPackages(3, true)
		if err := c.PublishKeyPackages(ctx, kps); err != nil {
			t.Fatal(err)
		}
	}
	return cs
}

// receive fetches (long-polling) until c has processed want messages of
// the kinds counted, or fails after a deadline.
func receive(t *testing.T, c *client.Client, want int) []client.Incoming {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	var got []client.Incoming
	for len(got) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: got %d of %d messages", c.UserID, c.ClientID[:6], len(got), want)
		}
		in, err := c.Fetch(ctx, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range in {
			if m.Err != nil {
				t.Fatalf("%s seq %d: %v", c.UserID, m.Seq, m.Err)
			}
		}
		got = append(got, in...)
	}
	if err := c.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestCrossHomeserverEndToEnd: users on three homeservers, a group owned
// by the first, members added from the other two (their KeyPackages
// claimed through the adder's homeserver), commits and messages from all
// three; every client decrypts everything meant for it. Lookups of
// remote users verify (GUC-3 across homeservers).
func TestMD_1_GUC_1_GUC_3_CrossHomeserverEndToEnd(t *testing.T) {
	net := startNet(t, 3)
	ctx := context.Background()
	a := user(t, net.Servers[0], "alice", 1)[0]
	bs := user(t, net.Servers[1], "bob", 2)
	c := user(t, net.Servers[2], "carol", 1)[0]
	bob, carol := bs[0].UserID, c.UserID

	dir := net.Servers[0].Directory(a.Conn)
	res, err := dir.Lookup(ctx, bob, carol, a.UserID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Bundle == nil {
			t.Fatalf("lookup %s: %v", r.UserID, r.Err)
		}
	}
	if len(res[0].Bundle.Clients) != 2 {
		t.Fatalf("bob has %d clients", len(res[0].Bundle.Clients))
	}
	if err := a.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	g, err := a.CreateGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Add(ctx, dir, bob, carol); err != nil {
		t.Fatal(err)
	}
	for _, cl := range append(bs, c) {
		if in := receive(t, cl, 1); !in[0].Joined {
			t.Fatalf("%s did not join: %+v", cl.UserID, in)
		}
	}
	// Messages from all three homeservers.
	senders := []*client.Client{a, bs[0], c, bs[1]}
	everyone := append([]*client.Client{a}, append(bs, c)...)
	for round := 0; round < 5; round++ {
		for _, s := range senders {
			if err := s.Group(g.ID).Send(ctx, []byte(fmt.Sprintf("r%d from %s", round, s.ClientID[:6]))); err != nil {
				t.Fatalf("send from %s: %v", s.UserID, err)
			}
		}
	}
	for _, cl := range everyone {
		in := receive(t, cl, 15)
		want := 0
		for _, m := range in {
			if m.Plaintext != nil {
				want++
			}
		}
		if want != 15 {
			t.Fatalf("%s decrypted %d messages, want 15", cl.UserID, want)
		}
	}
	// A commit by a member on another homeserver (relayed to the owner),
	// then a message after it.
	if err := c.Group(g.ID).Update(ctx); err != nil {
		t.Fatalf("relayed commit: %v", err)
	}
	for _, cl := range []*client.Client{a, bs[0], bs[1]} {
		receive(t, cl, 1)
	}
	if err := bs[1].Group(g.ID).Send(ctx, []byte("after the update")); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client.Client{a, bs[0], c} {
		in := receive(t, cl, 1)
		if string(in[0].Plaintext) != "after the update" {
			t.Fatalf("%s got %q", cl.UserID, in[0].Plaintext)
		}
	}
	// Every homeserver's projections rebuild byte for byte from its log
	// (outbox, cursors and queues included), and every event it accepted
	// re-validates (LOG-2, LOG-4).
	for _, s := range net.Servers {
		checkReplayAndAudit(t, s)
	}
}

func checkReplayAndAudit(t *testing.T, s *Server) {
	t.Helper()
	n := s.Node
	snap := n.Log.DB().NewSnapshot()
	defer snap.Close()
	size, _ := eventlog.StoredSize(eventlog.NewReader(snap))
	fresh, err := pebble.Open(filepath.Join(t.TempDir(), "rebuilt"), eventlog.DefaultPebbleOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := n.Set.Rebuild(eventlog.NewReader(snap), fresh, size, nil); err != nil {
		t.Fatal(err)
	}
	if d, err := projections.Compare(snap, fresh); err != nil || !d.Equals {
		t.Fatalf("%s: rebuilt projections differ at %q (%v)", s.Domain, d.Key, err)
	}
	rep, err := audit.Run(context.Background(), n.Log, audit.Options{VerifierKey: n.Keys.LogVerifierKey(), Validator: n.Validator, Projections: n.Set, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Validation.RejectedCount != 0 {
		t.Fatalf("%s: audit rejects %d events: %+v", s.Domain, rep.Validation.RejectedCount, rep.Validation.Rejected[:min(3, len(rep.Validation.Rejected))])
	}
}
