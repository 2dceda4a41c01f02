package client_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/audit"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/projections"
)

// TestEndToEndGroupWorkload: 3 users with 2 clients each, one group, adds,
// removes, updates and 1,000 messages. Every client decrypts every message
// meant for it, in order, and nothing else. Then the log replays into
// byte-identical projections (LOG-2) and the audit re-validates every
// event (LOG-4).
func TestEndToEndGroupWorkload(t *testing.T) {
	messages := 1000
	if testing.Short() {
		messages = 200
	}
	h := start(t, "e2e.test", noLimits)
	ctx := context.Background()
	users := [][]*client.Client{h.user(t, "u0", 2, 4), h.user(t, "u1", 2, 4), h.user(t, "u2", 2, 4)}
	owner := users[0][0]
	if err := owner.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	g, err := owner.CreateGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gid := g.ID
	all := append(append(append([]*client.Client{}, users[0]...), users[1]...), users[2]...)
	inGroup := map[*client.Client]bool{owner: true}
	got := map[*client.Client][]string{}
	want := map[*client.Client][]string{}

	sync := func() {
		for _, c := range all {
			for {
				in, err := c.Fetch(ctx, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(in) == 0 {
					break
				}
				for _, m := range in {
					if m.Err != nil {
						t.Fatalf("%s/%s seq %d (%s): %v", c.UserID, c.ClientID[:6], m.Seq, m.Type, m.Err)
					}
					if m.Plaintext != nil {
						got[c] = append(got[c], string(m.Plaintext))
					}
				}
			}
			if err := c.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	add := func(u int) {
		if err := g.Add(ctx, h.dir, users[u][0].UserID); err != nil {
			t.Fatalf("add u%d: %v", u, err)
		}
		for _, c := range users[u] {
			if c != owner {
				inGroup[c] = true
			}
		}
		sync()
	}
	add(1)
	add(2)
	if err := g.Add(ctx, h.dir, owner.UserID); err != nil { // the owner's second client
		t.Fatal(err)
	}
	inGroup[users[0][1]] = true
	sync()

	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	removed := -1
	for i := 0; i < messages; i++ {
		if i%100 == 50 {
			switch {
			case removed < 0:
				// Remove both clients of u1 or u2.
				removed = 1 + rng.IntN(2)
				var leaves []uint32
				for _, c := range users[removed] {
					leaves = append(leaves, c.Group(gid).Member().LeafIndex())
				}
				if err := g.Remove(ctx, leaves...); err != nil {
					t.Fatal(err)
				}
				for _, c := range users[removed] {
					delete(inGroup, c)
				}
				sync()
				for _, c := range users[removed] {
					if c.Group(gid) != nil {
						t.Fatalf("%s did not learn it was removed", c.ClientID)
					}
				}
			default:
				add(removed)
				removed = -1
			}
		}
		if i%100 == 25 {
			// A random member updates its keys.
			members := members(inGroup)
			u := members[rng.IntN(len(members))]
			if err := u.Group(gid).Update(ctx); err != nil {
				t.Fatal(err)
			}
			sync()
		}
		members := members(inGroup)
		sender := members[rng.IntN(len(members))]
		text := fmt.Sprintf("m%04d from %s", i, sender.ClientID[:6])
		if err := sender.Group(gid).Send(ctx, []byte(text)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		for _, c := range members {
			if c != sender {
				want[c] = append(want[c], text)
			}
		}
		if i%10 == 9 {
			sync()
		}
	}
	sync()
	total := 0
	for _, c := range all {
		if !slices.Equal(got[c], want[c]) {
			t.Fatalf("%s/%s decrypted %d messages, want %d (first difference at %d)", c.UserID, c.ClientID[:6], len(got[c]), len(want[c]), firstDiff(got[c], want[c]))
		}
		total += len(got[c])
	}
	t.Logf("%d messages, %d deliveries decrypted, log size %d", messages, total, h.node.Log.Size())

	// LOG-2: the projections rebuild byte for byte.
	snap := h.node.Log.DB().NewSnapshot()
	defer snap.Close()
	size, _ := eventlog.StoredSize(eventlog.NewReader(snap))
	fresh, err := pebble.Open(filepath.Join(t.TempDir(), "rebuilt"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := h.node.Set.Rebuild(eventlog.NewReader(snap), fresh, size, nil); err != nil {
		t.Fatal(err)
	}
	if d, err := projections.Compare(snap, fresh); err != nil || !d.Equals {
		t.Fatalf("rebuilt projections differ at %q (%v)", d.Key, err)
	}
	// LOG-4: every event re-validates.
	ckpt, err := h.node.Log.SignedCheckpoint(h.node.Log.Size())
	if err != nil {
		t.Fatal(err)
	}
	_ = ckpt
	rep, err := audit.Run(ctx, h.node.Log, audit.Options{VerifierKey: h.node.Keys.LogVerifierKey(), Validator: h.node.Validator, Projections: h.node.Set, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Validation.RejectedCount != 0 {
		t.Fatalf("audit rejects %d events: %+v", rep.Validation.RejectedCount, rep.Validation.Rejected[:min(5, len(rep.Validation.Rejected))])
	}
}

func members(in map[*client.Client]bool) []*client.Client {
	var out []*client.Client
	for c := range in {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *client.Client) int {
		if a.ClientID < b.ClientID {
			return -1
		}
		return 1
	})
	return out
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
