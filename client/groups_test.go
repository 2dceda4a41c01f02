package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mlshome/homeserver/client"
)

// fetchAll fetches until the queue is empty and returns what arrived.
func fetchAll(t testing.TB, c *client.Client) []client.Incoming {
	t.Helper()
	var all []client.Incoming
	for {
		in, err := c.Fetch(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(in) == 0 {
			break
		}
		for _, m := range in {
			if m.Err != nil {
				t.Fatalf("%s seq %d: %v", c.UserID, m.Seq, m.Err)
			}
		}
		all = append(all, in...)
	}
	if err := c.Ack(context.Background()); err != nil {
		t.Fatal(err)
	}
	return all
}

func TestGroupLifecycleBasic(t *testing.T) {
	h := start(t, "grp.test", noLimits)
	ctx := context.Background()
	alice := h.user(t, "alice", 1, 2)[0]
	bobs := h.user(t, "bob", 2, 2)
	if err := alice.GetTokens(ctx, 2); err != nil {
		t.Fatal(err)
	}
	g, err := alice.CreateGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Add(ctx, h.dir, "bob@grp.test"); err != nil {
		t.Fatal(err)
	}
	for _, b := range bobs {
		in := fetchAll(t, b)
		if len(in) != 1 || !in[0].Joined {
			t.Fatalf("bob got %+v", in)
		}
	}
	if err := g.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for _, b := range bobs {
		in := fetchAll(t, b)
		if len(in) != 1 || string(in[0].Plaintext) != "hello" {
			t.Fatalf("bob got %+v", in)
		}
	}
	// bob replies, alice reads.
	if err := bobs[0].Group(g.ID).Send(ctx, []byte("hi alice")); err != nil {
		t.Fatal(err)
	}
	in := fetchAll(t, alice)
	if len(in) != 1 || string(in[0].Plaintext) != "hi alice" {
		t.Fatalf("alice got %+v", in)
	}
	got := fetchAll(t, bobs[1])
	if len(got) != 1 || string(got[0].Plaintext) != "hi alice" {
		t.Fatalf("bob's other client got %+v", got)
	}
	// Remove bob's second client; update; send.
	if err := g.Remove(ctx, bobs[1].Group(g.ID).Member().LeafIndex()); err != nil {
		t.Fatal(err)
	}
	if err := g.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Send(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	in = fetchAll(t, bobs[0])
	if len(in) != 3 || string(in[2].Plaintext) != "after" {
		t.Fatalf("bob after remove/update: %+v", in)
	}
	_ = time.Second
	_ = fmt.Sprint
}

// A long poll returns as soon as a message arrives, with the message.
func TestLongPollWakesOnNewMessage(t *testing.T) {
	h := start(t, "poll.test", noLimits)
	ctx := context.Background()
	alice := h.user(t, "alice", 1, 1)[0]
	bob := h.user(t, "bob", 1, 1)[0]
	if err := alice.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	g, err := alice.CreateGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Add(ctx, h.dir, "bob@poll.test"); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, bob)
	got := make(chan []client.Incoming, 1)
	go func() {
		// Long enough that an empty answer means the poll never woke.
		in, err := bob.Fetch(ctx, 50*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- in
	}()
	time.Sleep(100 * time.Millisecond) // let the poll start waiting
	if err := g.Send(ctx, []byte("wake up")); err != nil {
		t.Fatal(err)
	}
	in := <-got
	if len(in) != 1 || string(in[0].Plaintext) != "wake up" {
		t.Fatalf("long poll returned %+v", in)
	}
}
