package testnet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/federation"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/mlsx"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/ratelimit"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// groupAcross makes a group owned by net.Servers[0]'s user with members on
// the other homeservers, everyone joined.
func groupAcross(t *testing.T, net *Net, owner *client.Client, members ...*client.Client) *client.Group {
	t.Helper()
	ctx := context.Background()
	if err := owner.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	g, err := owner.CreateGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	seen := map[string]bool{}
	for _, m := range members {
		if !seen[m.UserID] {
			users = append(users, m.UserID)
			seen[m.UserID] = true
		}
	}
	if err := g.Add(ctx, net.Servers[0].Directory(owner.Conn), users...); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if in := receive(t, m, 1); !in[0].Joined {
			t.Fatalf("%s did not join", m.UserID)
		}
	}
	return g
}

func postPolicy(t *testing.T, s *Server, p federation.Policy) {
	t.Helper()
	b, _ := json.Marshal(p)
	req, _ := http.NewRequest(http.MethodPut, s.URL+"/v1/admin/federation/policy", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("set policy: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

// FED-1: a homeserver its policy allows delivers to it; an allowlist that
// names the origin keeps deliveries flowing.
func TestFED_1_AllowedOriginDelivers(t *testing.T) {
	net := startNet(t, 2)
	ctx := context.Background()
	a := user(t, net.Servers[0], "ann", 1)[0]
	b := user(t, net.Servers[1], "ben", 1)[0]
	postPolicy(t, net.Servers[1], federation.Policy{Mode: "allowlist", Allow: []string{net.Servers[0].Domain}})
	g := groupAcross(t, net, a, b)
	if err := g.Send(ctx, []byte("allowed")); err != nil {
		t.Fatal(err)
	}
	if in := receive(t, b, 1); string(in[0].Plaintext) != "allowed" {
		t.Fatalf("got %+v", in)
	}
}

// FED-2: nobody fans out for another homeserver: an envelope claiming
// another origin, one signed with the wrong key, a replayed request, and a
// publish on another homeserver's subject are all refused, append nothing,
// and are counted.
func TestFED_2_ForgedReplayedAndSpoofedRefused(t *testing.T) {
	net := startNet(t, 3)
	ctx := context.Background()
	hs1, hs2, hs3 := net.Servers[0], net.Servers[1], net.Servers[2]
	user(t, hs2, "bea", 1)
	// Warm the pins: hs2 learns hs1's and hs3's keys through lookups.
	for _, s := range []*Server{hs1, hs3} {
		c := user(t, s, "w", 1)[0]
		if _, err := s.Directory(c.Conn).Lookup(ctx, "bea@"+hs2.Domain); err != nil {
			t.Fatal(err)
		}
	}
	size := hs2.Node.Log.Size()
	nc := hs3.Node.Bus.Conn // hs3 turns malicious
	payload, _ := json.Marshal(events.FederatedMessage{GroupID: []byte(hs1.Domain + "/g"), Recipients: [][]byte{[]byte("x")}})
	dropped := func() float64 {
		n := 0.0
		for _, code := range []string{"origin_mismatch", "bad_signature", "unknown_origin", "replayed"} {
			n += testutil.ToFloat64(hs2.Node.Metrics.FederationDropped.WithLabelValues(code))
		}
		return n
	}
	send := func(subject string, e federation.Envelope, sign func([]byte) []byte) {
		raw, err := federation.Seal(&e, sign)
		if err != nil {
			t.Fatal(err)
		}
		nc.Publish(subject, raw)
		nc.Flush()
	}
	now := time.Now().UnixMilli()
	// 1. Signed by hs3 but claiming to come from hs1.
	send(federation.Subject(federation.Token(hs3.Domain), federation.Token(hs2.Domain), "deliver"),
		federation.Envelope{Origin: hs1.Domain, Destination: hs2.Domain, Kind: "deliver", ID: federation.DeliveryID(hs1.Domain, 1), Timestamp: now, Payload: payload},
		hs3.Node.Keys.SignFederation)
	// 2. hs3's own origin, signed with a key that is not hs3's.
	_, stray, _ := ed25519.GenerateKey(rand.Reader)
	send(federation.Subject(federation.Token(hs3.Domain), federation.Token(hs2.Domain), "deliver"),
		federation.Envelope{Origin: hs3.Domain, Destination: hs2.Domain, Kind: "deliver", ID: federation.DeliveryID(hs3.Domain, 1), Timestamp: now, Payload: payload},
		func(m []byte) []byte { return ed25519.Sign(stray, m) })
	// 3. A publish on hs1's subject: the hub's permissions drop it.
	send(federation.Subject(federation.Token(hs1.Domain), federation.Token(hs2.Domain), "deliver"),
		federation.Envelope{Origin: hs1.Domain, Destination: hs2.Domain, Kind: "deliver", ID: federation.DeliveryID(hs1.Domain, 1), Timestamp: now, Payload: payload},
		hs3.Node.Keys.SignFederation)
	waitFor(t, "two drops counted", func() bool { return dropped() >= 2 })
	// 4. A request replayed verbatim.
	lookup, _ := json.Marshal([]string{"bea@" + hs2.Domain})
	e := federation.Envelope{Origin: hs3.Domain, Destination: hs2.Domain, Kind: "lookup", ID: "replay-1", Timestamp: time.Now().UnixMilli(), Payload: lookup}
	raw, _ := federation.Seal(&e, hs3.Node.Keys.SignFederation)
	subj := federation.Subject(federation.Token(hs3.Domain), federation.Token(hs2.Domain), "req")
	nc.Publish(subj, raw)
	nc.Publish(subj, raw)
	nc.Flush()
	waitFor(t, "the replay counted", func() bool {
		return testutil.ToFloat64(hs2.Node.Metrics.FederationDropped.WithLabelValues("replayed")) >= 1
	})
	time.Sleep(200 * time.Millisecond)
	if hs2.Node.Log.Size() != size {
		t.Fatalf("refused envelopes appended %d events", hs2.Node.Log.Size()-size)
	}
	// Garbage, truncated and oversized envelopes are dropped and counted.
	good, _ := federation.Seal(&federation.Envelope{Origin: hs3.Domain, Destination: hs2.Domain, Kind: "lookup", ID: "x-2", Timestamp: time.Now().UnixMilli(), Payload: lookup}, hs3.Node.Keys.SignFederation)
	before := testutil.ToFloat64(hs2.Node.Metrics.FederationDropped.WithLabelValues("malformed")) + testutil.ToFloat64(hs2.Node.Metrics.FederationDropped.WithLabelValues("too_large"))
	for _, bad := range [][]byte{[]byte("garbage"), good[:len(good)/2], append(good, make([]byte, 5<<20)...)} {
		nc.Publish(subj, bad)
	}
	nc.Flush()
	waitFor(t, "bad input counted", func() bool {
		return testutil.ToFloat64(hs2.Node.Metrics.FederationDropped.WithLabelValues("malformed"))+
			testutil.ToFloat64(hs2.Node.Metrics.FederationDropped.WithLabelValues("too_large")) >= before+2
	})
	if hs2.Node.Log.Size() != size {
		t.Fatal("bad input appended events")
	}
	if n := testutil.ToFloat64(hs2.Node.Metrics.FederationDropped.WithLabelValues("origin_mismatch")) +
		testutil.ToFloat64(hs2.Node.Metrics.FederationDropped.WithLabelValues("bad_signature")); n < 2 {
		t.Fatalf("forged envelopes counted %v times", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FED-3: the receiver records which homeserver sent each delivery and can
// prove it from the stored, signed envelope.
func TestFED_3_DeliveryRecordsVerifiableOrigin(t *testing.T) {
	net := startNet(t, 2)
	ctx := context.Background()
	a := user(t, net.Servers[0], "ada", 1)[0]
	b := user(t, net.Servers[1], "bo", 1)[0]
	g := groupAcross(t, net, a, b)
	if err := g.Send(ctx, []byte("signed")); err != nil {
		t.Fatal(err)
	}
	receive(t, b, 1)
	found := 0
	pub := net.Servers[0].Node.Keys.FederationPublicKey()
	err := net.Servers[1].Node.Log.Scan(0, 0, func(ev *eventlog.Event) error {
		if ev.Type != events.TypeDeliveryReceived {
			return nil
		}
		var e events.DeliveryReceived
		json.Unmarshal(ev.Payload, &e)
		if e.Origin != net.Servers[0].Domain {
			return fmt.Errorf("origin %q", e.Origin)
		}
		env, err := federation.Decode(e.Envelope)
		if err != nil {
			return err
		}
		if err := env.Verify(pub); err != nil {
			return fmt.Errorf("stored envelope does not verify with the origin's key: %w", err)
		}
		tampered := append([]byte(nil), e.Envelope...)
		tampered[len(tampered)-70] ^= 1
		if te, err := federation.Decode(tampered); err == nil && te.Verify(pub) == nil {
			return fmt.Errorf("a tampered envelope verifies")
		}
		found++
		return nil
	})
	if err != nil || found < 2 {
		t.Fatalf("%d verifiable deliveries: %v", found, err)
	}
}

// FED-4 and MD-7: a homeserver that is down while 1,000 messages are sent
// to its users gets all of them, once each, when it is back; the sender is
// never blocked. The same holds when its JetStream store is lost.
func TestFED_4_MD_7_BacklogAfterDowntime(t *testing.T) {
	messages := 1000
	if testing.Short() {
		messages = 200
	}
	net := startNet(t, 2)
	ctx := context.Background()
	a := user(t, net.Servers[0], "al", 1)[0]
	b := user(t, net.Servers[1], "bi", 1)[0]
	g := groupAcross(t, net, a, b)
	hs2 := net.Servers[1]
	check := func(n int, tag string) {
		t.Helper()
		in := receive(t, b, n)
		if len(in) != n {
			t.Fatalf("%s: %d messages, want %d", tag, len(in), n)
		}
		for i, m := range in {
			if want := fmt.Sprintf("%s %d", tag, i); string(m.Plaintext) != want {
				t.Fatalf("message %d: %q, want %q", i, m.Plaintext, want)
			}
		}
	}
	if err := hs2.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < messages; i++ {
		if err := g.Send(ctx, []byte(fmt.Sprintf("down %d", i))); err != nil {
			t.Fatalf("send %d while the recipient's homeserver is down: %v", i, err)
		}
	}
	if err := hs2.Restart(); err != nil {
		t.Fatal(err)
	}
	check(messages, "down")
	// Lose hs2's JetStream state: the outbox has what it needs.
	if err := hs2.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(hs2.Data, "nats")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := g.Send(ctx, []byte(fmt.Sprintf("lost %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := hs2.Restart(); err != nil {
		t.Fatal(err)
	}
	check(100, "lost")
	// Nothing more arrives: exactly once.
	if in, _ := b.Fetch(ctx, time.Second); len(in) != 0 {
		t.Fatalf("%d duplicate deliveries", len(in))
	}
}

// FED-5: a blocked homeserver cannot deliver, and a delivery for a queue
// the destination did not issue is refused.
func TestFED_5_BlockedDomainAndForeignQueueRefused(t *testing.T) {
	net := startNet(t, 2)
	ctx := context.Background()
	hs1, hs2 := net.Servers[0], net.Servers[1]
	a := user(t, hs1, "abe", 1)[0]
	b := user(t, hs2, "bud", 1)[0]
	g := groupAcross(t, net, a, b)
	// A member whose KeyPackage names hs2 but a queue hs2 never issued.
	impostor := user(t, hs1, "imp", 1)[0]
	id, _ := impostor.MLS()
	forged, _ := identity.SealQueueConfig(identity.QueueConfig{Domain: hs2.Domain, QueueID: bytes.Repeat([]byte{7}, 32)}, b.Conn.Keys.QueueKey, rand.Reader)
	now := time.Now()
	kp, err := id.NewKeyPackage(mlsx.KeyPackageOptions{Lifetime: mlsx.Lifetime{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, SealedQueueConfig: forged})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.AddKeyPackages(ctx, kp); err != nil {
		t.Fatal(err)
	}
	receive(t, b, 1) // the commit reaches bud; the Welcome for the forged queue does not
	refused := func() int {
		n := 0
		hs2.Node.Log.Scan(0, 0, func(ev *eventlog.Event) error {
			if ev.Type == events.TypeDeliveryRefused {
				var e events.DeliveryRefused
				json.Unmarshal(ev.Payload, &e)
				if e.Code == "bad_queue_config" {
					n++
				}
			}
			return nil
		})
		return n
	}
	waitFor(t, "the forged queue's Welcome refused", func() bool { return refused() == 1 })

	// Block hs1 on hs2: its deliveries wait, refused, until unblocked.
	postPolicy(t, hs2, federation.Policy{Mode: "open", Block: []string{hs1.Domain}})
	size := hs2.Node.Log.Size()
	if err := g.Send(ctx, []byte("while blocked")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the blocked delivery counted", func() bool {
		return testutil.ToFloat64(hs2.Node.Metrics.FederationDropped.WithLabelValues("blocked")) >= 1
	})
	if in, _ := b.Fetch(ctx, 500*time.Millisecond); len(in) != 0 || hs2.Node.Log.Size() != size+0 {
		t.Fatalf("a blocked origin delivered: %d messages, log grew by %d", len(in), hs2.Node.Log.Size()-size)
	}
	// Lookups from the blocked homeserver are refused too.
	res, err := hs1.Directory(a.Conn).Lookup(ctx, b.UserID)
	if err != nil || res[0].Err == nil {
		t.Fatalf("lookup from a blocked homeserver answered: %v", err)
	}
	if !strings.Contains(res[0].Err.Error(), "blocked") {
		t.Fatalf("lookup refusal: %v", res[0].Err)
	}
}

// FED-5: a queue that blocked a group gets nothing more from it; the
// refusal is recorded and other queues still get their deliveries.
func TestFED_5_QueueBlocksGroup(t *testing.T) {
	net := startNet(t, 2)
	ctx := context.Background()
	hs2 := net.Servers[1]
	a := user(t, net.Servers[0], "ari", 1)[0]
	bs := user(t, hs2, "bel", 2)
	g := groupAcross(t, net, a, bs...)
	if err := bs[0].BlockGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := g.Send(ctx, []byte("after the block")); err != nil {
		t.Fatal(err)
	}
	if in := receive(t, bs[1], 1); string(in[0].Plaintext) != "after the block" {
		t.Fatalf("the other client got %+v", in)
	}
	if in, _ := bs[0].Fetch(ctx, 500*time.Millisecond); len(in) != 0 {
		t.Fatalf("the blocking client still got %d messages", len(in))
	}
}

// FED-6 (and MD-8 for relayed senders): a relaying homeserver is limited
// per origin; over the limit its clients get 429 rate_limited.
func TestFED_6_PerOriginLimits(t *testing.T) {
	net := startNet(t, 2, func(i int, c *node.Config) {
		c.GroupLimits = &api.GroupLimits{PerOrigin: ratelimit.Limit{PerSecond: 1, Burst: 3}}
	})
	ctx := context.Background()
	a := user(t, net.Servers[0], "aki", 1)[0]
	b := user(t, net.Servers[1], "bao", 1)[0]
	g := groupAcross(t, net, a, b)
	bg := b.Group(g.ID)
	limited := 0
	for i := 0; i < 10; i++ {
		if err := bg.Send(ctx, []byte("x")); client.CodeOf(err) == "rate_limited" {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited == 0 {
		t.Fatal("10 relayed messages from one origin were never limited")
	}
	// Local senders are not affected by another origin's limit.
	if err := g.Send(ctx, []byte("local")); err != nil {
		t.Fatal(err)
	}
}

// FED-6: inbound deliveries are limited per origin and per target queue:
// over the limit they wait in the stream and are retried, so the limit
// bites and nothing is lost.
func TestFED_6_InboundDeliveryLimits(t *testing.T) {
	net := startNet(t, 2, func(i int, c *node.Config) {
		c.Federation.PerQueue = ratelimit.Limit{PerSecond: 20, Burst: 5}
	})
	ctx := context.Background()
	a := user(t, net.Servers[0], "amy", 1)[0]
	b := user(t, net.Servers[1], "bea", 1)[0]
	g := groupAcross(t, net, a, b)
	for i := 0; i < 30; i++ {
		if err := g.Send(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	in := receive(t, b, 30)
	for i, m := range in {
		if string(m.Plaintext) != fmt.Sprint(i) {
			t.Fatalf("message %d: %q", i, m.Plaintext)
		}
	}
	if testutil.ToFloat64(net.Servers[1].Node.Metrics.FederationLimited.WithLabelValues(net.Servers[0].Domain)) == 0 {
		t.Fatal("30 deliveries to one queue were never limited")
	}
}
