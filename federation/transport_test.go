package federation

import (
	"bytes"
	"context"
	"errors"
	"github.com/nats-io/nats.go"
	"testing"
	"time"
)

func echo(_ context.Context, origin, kind string, payload []byte) ([]byte, error) {
	if kind == "fail" {
		return nil, Errorf("rate_limited", "slow down, %s", origin)
	}
	return append([]byte(origin+"/"+kind+":"), payload...), nil
}

// request retries while the hub is still propagating interest.
func request(t *testing.T, h *home, dest, kind string, payload []byte) ([]byte, error) {
	t.Helper()
	var out []byte
	var err error
	waitFor(t, "a responder on "+dest, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err = h.tr.Request(ctx, dest, kind, payload)
		return CodeOf(err) != CodeUnreachable
	})
	return out, err
}

func TestFED_2_RequestReplyThroughHub(t *testing.T) {
	n := newTestnet(t, domA, domB, domC)
	a, b := n.start(domA, ""), n.start(domB, "")
	serve(t, func(ctx context.Context) error { return b.tr.Serve(ctx, echo) })

	got, err := request(t, a, domB, "lookup", []byte("alice@127.0.0.1:8102"))
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if want := []byte(domA + "/lookup:alice@127.0.0.1:8102"); !bytes.Equal(got, want) {
		t.Fatalf("reply %q, want %q", got, want)
	}

	// A coded handler error reaches the caller as a remote *Error.
	_, err = a.tr.Request(context.Background(), domB, "fail", nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != "rate_limited" || e.Remote != domB {
		t.Fatalf("error reply: got %v, want remote rate_limited from %s", err, domB)
	}

	// Nobody serves A: B's request is unreachable, quickly.
	if _, err := b.tr.Request(context.Background(), domA, "lookup", nil); CodeOf(err) != CodeUnreachable {
		t.Fatalf("request to a homeserver not serving: %v, want %s", err, CodeUnreachable)
	}
}

// A homeserver's bus user may publish only subjects naming itself as
// origin: A publishing as C (or as B) to B never reaches B.
func TestFED_2_BusRefusesPublishAsAnotherOrigin(t *testing.T) {
	n := newTestnet(t, domA, domB, domC)
	a, b := n.start(domA, ""), n.start(domB, "")
	seen := make(chan string, 16)
	sub, err := b.bus.Conn.Subscribe("hs.*."+Token(domB)+".req", func(m *nats.Msg) { seen <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	marker := Subject(domA, domB, SuffixRequest)
	waitFor(t, "interest in B's subjects at A", func() bool {
		if err := a.bus.Conn.Publish(marker, []byte("probe")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-seen:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
	for len(seen) > 0 {
		<-seen
	}
	forged := []string{Subject(domC, domB, SuffixRequest), Subject(domB, domB, SuffixRequest), Subject(domC, domB, SuffixDeliver)}
	for _, s := range forged {
		if err := a.bus.Conn.Publish(s, []byte("forged")); err != nil {
			t.Fatal(err)
		}
	}
	// Messages from one connection keep their order along one path, so
	// once the marker published after them arrives, they would have too.
	if err := a.bus.Conn.Publish(marker, []byte("marker")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-seen:
		if s != marker {
			t.Fatalf("B received %s, published by A as another origin", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("marker never arrived")
	}
}

// An envelope signed by A but claiming another origin is refused, even on
// a subject A may publish.
func TestFED_2_ForgedOriginRefusedByOpen(t *testing.T) {
	n := newTestnet(t, domA, domB, domC)
	a, b := n.start(domA, ""), n.start(domB, "")
	calls := make(chan string, 16)
	serve(t, func(ctx context.Context) error {
		return b.tr.Serve(ctx, func(ctx context.Context, origin, kind string, p []byte) ([]byte, error) {
			calls <- origin
			return nil, nil
		})
	})
	if _, err := request(t, a, domB, "lookup", nil); err != nil {
		t.Fatal(err)
	}
	<-calls
	for _, claimed := range []string{domC, domB} {
		env := Envelope{Origin: claimed, Destination: domB, Kind: "lookup", ID: "forged-" + claimed, Timestamp: time.Now().UnixMilli()}
		raw, err := Seal(&env, a.keys.SignFederation)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.bus.Conn.Publish(Subject(domA, domB, SuffixRequest), raw); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "B refusing both forgeries", func() bool { return b.drops.get(CodeOriginMismatch) == 2 })
	select {
	case o := <-calls:
		t.Fatalf("handler called for a forged envelope from %s", o)
	default:
	}

	// A, receiving on its own server an envelope it signed claiming B as
	// origin on "hs.B.A.req" (a subject only its own server carries), also
	// refuses it: the signature is not B's.
	serve(t, func(ctx context.Context) error { return a.tr.Serve(ctx, echo) })
	env := Envelope{Origin: domB, Destination: domA, Kind: "lookup", ID: "self-forged", Timestamp: time.Now().UnixMilli()}
	raw, _ := Seal(&env, a.keys.SignFederation)
	waitFor(t, "A refusing its own forgery", func() bool {
		_ = a.bus.Conn.Publish(Subject(domB, domA, SuffixRequest), raw)
		time.Sleep(20 * time.Millisecond)
		return a.drops.get(CodeBadSignature) > 0
	})
}

// The federation policy decides who may federate, and changes at runtime.
func TestFED_1_PolicyAllowsAndBlocks(t *testing.T) {
	n := newTestnet(t, domA, domB, domC)
	a, b := n.start(domA, ""), n.start(domB, "")
	serve(t, func(ctx context.Context) error { return b.tr.Serve(ctx, echo) })
	if _, err := request(t, a, domB, "lookup", nil); err != nil {
		t.Fatalf("open policy: %v", err)
	}
	for _, p := range []Policy{{Block: []string{domA}}, {Mode: PolicyAllowlist, Allow: []string{domC}}} {
		if err := b.tr.SetPolicy(p); err != nil {
			t.Fatal(err)
		}
		_, err := a.tr.Request(context.Background(), domB, "lookup", nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeBlocked || e.Remote != domB {
			t.Fatalf("policy %+v: got %v, want blocked from %s", p, err, domB)
		}
	}
	if err := b.tr.SetPolicy(Policy{Mode: PolicyAllowlist, Allow: []string{domA}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.tr.Request(context.Background(), domB, "lookup", nil); err != nil {
		t.Fatalf("allowlisted: %v", err)
	}
	if b.drops.get(CodeBlocked) != 2 {
		t.Fatalf("blocked drops = %d, want 2", b.drops.get(CodeBlocked))
	}
}
