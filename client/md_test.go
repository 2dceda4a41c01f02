package client_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/ratelimit"
)

// groupOf makes a group of the first client of each named user (each with
// clients clients), created by the first, everyone joined.
func groupOf(t *testing.T, h *harness, clients int, names ...string) (*client.Group, [][]*client.Client) {
	t.Helper()
	ctx := context.Background()
	var users [][]*client.Client
	for _, n := range names {
		users = append(users, h.user(t, n, clients, 3))
	}
	owner := users[0][0]
	if err := owner.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	g, err := owner.CreateGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, n := range names {
		others = append(others, n+"@"+h.conn.Keys.Domain)
	}
	// The owner's own other clients and everyone else's.
	if err := g.Add(ctx, h.dir, others...); err != nil {
		// the owner's own claimed KeyPackage includes itself; retry without it
		t.Fatal(err)
	}
	for _, cs := range users {
		for _, c := range cs {
			if c == owner {
				continue
			}
			fetchAll(t, c)
			if c.Group(g.ID) == nil {
				t.Fatalf("%s did not join", c.UserID)
			}
		}
	}
	return g, users
}

// MD-1: only clients (members, through a client API) can send: raw bytes,
// a message of a client that never joined, and an unknown group are all
// refused, and nothing is appended.
func TestMD_1_OnlyClientsSend(t *testing.T) {
	h := start(t, "md1.test", noLimits)
	ctx := context.Background()
	g, users := groupOf(t, h, 1, "ann", "ben")
	outsider := h.user(t, "oz", 1, 1)[0]
	size := h.node.Log.Size()
	path := h.node.URL() + "/v1/groups/" + api.EncodeGroupID(g.ID)
	for _, body := range []string{`{"sender":0,"message":"AAAA","request_signature":"AAAA"}`, `{"message":"AAAA"}`, `garbage`, "\x01\x00\x00\x00\x00\x00\x40", "\x01\x00\x00\x00\x00\x00\x01s" + "not an MLS message"} {
		for _, what := range []string{"/messages", "/handshake"} {
			resp, err := http.Post(path+what, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Fatalf("%s %s accepted", what, body)
			}
		}
	}
	// An outsider with its own MLS state for a group of the same id.
	og, _, err := outsider.PrepareGroupNoToken(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := og.Send(ctx, []byte("spam")); client.CodeOf(err) == "" {
		t.Fatalf("outsider's message: %v", err)
	}
	if err := og.Update(ctx); client.CodeOf(err) == "" {
		t.Fatalf("outsider's commit: %v", err)
	}
	if h.node.Log.Size() != size {
		t.Fatal("refused messages appended events")
	}
	if err := users[1][0].Group(g.ID).Send(ctx, []byte("real")); err != nil {
		t.Fatal(err)
	}
}

// MD-2: only current members send; a removed member is rejected from the
// epoch of its removal on.
func TestMD_2_RemovedMemberRejected(t *testing.T) {
	h := start(t, "md2.test", noLimits)
	ctx := context.Background()
	g, users := groupOf(t, h, 1, "cat", "dog")
	dog := users[1][0]
	dg := dog.Group(g.ID)
	// A message dog prepared while still a member, sent after removal.
	early, err := dg.Seal([]byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Remove(ctx, dg.Member().LeafIndex()); err != nil {
		t.Fatal(err)
	}
	size := h.node.Log.Size()
	mustCode(t, "removed member, old epoch", dg.SendSealed(ctx, early), "not_a_member")
	mustCode(t, "removed member, new message", dg.Send(ctx, []byte("after")), "not_a_member")
	if err := dg.Update(ctx); client.CodeOf(err) == "" {
		t.Fatalf("removed member's commit: %v", err)
	}
	if h.node.Log.Size() != size {
		t.Fatal("refused messages appended events")
	}
}

// MD-3: no member sends on behalf of another: a valid signature by one
// leaf claimed for another leaf index is refused.
func TestMD_3_NoImpersonation(t *testing.T) {
	h := start(t, "md3.test", noLimits)
	ctx := context.Background()
	g, users := groupOf(t, h, 1, "eli", "flo", "gil")
	flo := users[1][0].Group(g.ID)
	m, err := flo.Seal([]byte("I am gil"))
	if err != nil {
		t.Fatal(err)
	}
	gilLeaf := users[2][0].Group(g.ID).Member().LeafIndex()
	forged := *m
	forged.Sender = gilLeaf
	size := h.node.Log.Size()
	mustCode(t, "flo's signature claimed for gil", flo.SendSealed(ctx, &forged), "bad_signature")
	if h.node.Log.Size() != size {
		t.Fatal("impersonation appended an event")
	}
	if err := flo.SendSealed(ctx, m); err != nil {
		t.Fatalf("flo as flo: %v", err)
	}
	in := fetchAll(t, users[2][0])
	if len(in) != 1 || in[0].Sender != flo.Member().LeafIndex() {
		t.Fatalf("gil saw %+v", in)
	}
}

// MD-4: what the homeserver can read is checked: stale epochs, one commit
// per epoch, Welcomes only for KeyPackages the commit added, garbage.
func TestMD_4_IntegrityChecks(t *testing.T) {
	h := start(t, "md4.test", noLimits)
	ctx := context.Background()
	g, users := groupOf(t, h, 1, "hal", "ivy", "jon")
	ivy, jon := users[1][0].Group(g.ID), users[2][0].Group(g.ID)
	size := h.node.Log.Size()

	// Concurrent commits for one epoch: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, grp := range []*client.Group{g, ivy, jon} {
		wg.Add(1)
		go func(i int, grp *client.Group) {
			defer wg.Done()
			errs[i] = grp.Update(ctx)
		}(i, grp)
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch client.CodeOf(err) {
		case "":
			if err != nil {
				t.Fatal(err)
			}
			wins++
		case "stale_epoch":
		default:
			t.Fatalf("concurrent commit: %v", err)
		}
	}
	if wins != 1 || h.node.Log.Size() != size+1 {
		t.Fatalf("%d of 3 concurrent commits won, log grew by %d", wins, h.node.Log.Size()-size)
	}
	for _, cs := range users {
		fetchAll(t, cs[0])
	}
	// A commit made for an old epoch.
	stale, err := ivy.Member().SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	ivy.Member().DiscardPendingCommit()
	if err := g.Update(ctx); err != nil {
		t.Fatal(err)
	}
	mustCode(t, "commit for an old epoch", ivy.SendHandshake(ctx, stale.Commit, nil), "stale_epoch")
	for _, cs := range users {
		fetchAll(t, cs[0])
	}
	// A Welcome for a KeyPackage the commit does not add.
	kim := h.user(t, "kim", 1, 2)[0]
	lee := h.user(t, "lee", 1, 2)[0]
	kimKP, _ := kim.MakeKeyPackages(1, false)
	leeKP, _ := lee.MakeKeyPackages(1, false)
	other, err := jon.Member().Add(leeKP[0])
	if err != nil {
		t.Fatal(err)
	}
	jon.Member().DiscardPendingCommit()
	res, err := jon.Member().Add(kimKP[0])
	if err != nil {
		t.Fatal(err)
	}
	size = h.node.Log.Size()
	mustCode(t, "Welcome for another KeyPackage", jon.SendHandshake(ctx, res.Commit, other.Welcome), "unexpected_welcome")
	jon.Member().DiscardPendingCommit()
	// Garbage and a truncated commit.
	if code := client.CodeOf(jon.SendHandshake(ctx, []byte("garbage"), nil)); code != "malformed" && code != "unsupported" {
		t.Fatalf("garbage: %s", code)
	}
	mustCode(t, "truncated", jon.SendHandshake(ctx, res.Commit[:len(res.Commit)/2], nil), "malformed")
	if h.node.Log.Size() != size {
		t.Fatal("refused handshakes appended events")
	}
}

// MD-5: recipients get the bytes as sent and identify the sender by the
// MLS signature, whichever form (binary or JSON) the request took.
func TestMD_5_DeliveredAsSent(t *testing.T) {
	h := start(t, "md5.test", noLimits)
	ctx := context.Background()
	g, users := groupOf(t, h, 2, "max", "ned")
	for i := 0; i < 5; i++ {
		m, err := g.Seal([]byte(fmt.Sprintf("message %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		send := g.SendSealed
		if i%2 == 1 {
			send = g.SendSealedJSON
		}
		if err := send(ctx, m); err != nil {
			t.Fatal(err)
		}
		for _, c := range append(users[1], users[0][1]) {
			in := fetchAll(t, c)
			if len(in) != 1 || !bytes.Equal(in[0].Raw, m.Message) || string(in[0].Plaintext) != fmt.Sprintf("message %d", i) || in[0].Sender != g.Member().LeafIndex() {
				t.Fatalf("%s got %+v", c.UserID, in)
			}
		}
	}
}

// MD-7: a recipient that never fetches does not block the sender or the
// others; it gets everything, in order, when it comes back.
func TestMD_7_OfflineRecipientNeverBlocks(t *testing.T) {
	h := start(t, "md7.test", noLimits)
	ctx := context.Background()
	g, users := groupOf(t, h, 1, "oli", "pam", "quinn")
	online := users[1][0]
	for i := 0; i < 200; i++ {
		if err := g.Send(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("send %d with an offline member: %v", i, err)
		}
		if i%50 == 0 {
			fetchAll(t, online)
		}
	}
	fetchAll(t, online)
	in := fetchAll(t, users[2][0])
	if len(in) != 200 {
		t.Fatalf("offline member got %d of 200", len(in))
	}
	for i, m := range in {
		if string(m.Plaintext) != fmt.Sprint(i) {
			t.Fatalf("message %d out of order: %q", i, m.Plaintext)
		}
	}
}

// MD-8: sending is limited per sender leaf per group and per group.
func TestMD_8_SendLimits(t *testing.T) {
	h := start(t, "md8.test", noLimits, func(c *node.Config) {
		c.GroupLimits = &api.GroupLimits{
			PerSenderPerGroup: ratelimit.Limit{PerSecond: 1, Burst: 5},
			PerGroup:          ratelimit.Limit{PerSecond: 1, Burst: 8},
		}
	})
	ctx := context.Background()
	g, users := groupOf(t, h, 1, "rae", "sam")
	for i := 0; i < 5; i++ {
		if err := g.Send(ctx, []byte("x")); err != nil {
			t.Fatalf("within the sender limit: %v", err)
		}
	}
	var e *client.Error
	err := g.Send(ctx, []byte("x"))
	if !asErr(err, &e) || e.Status != 429 || e.Code != "rate_limited" || e.RetryAfter <= 0 {
		t.Fatalf("over the per-sender limit: %v", err)
	}
	sam := users[1][0].Group(g.ID)
	for i := 0; i < 2; i++ { // the group has 8 - 5 - the handshakes left
		sam.Send(ctx, []byte("y"))
	}
	mustCode(t, "over the per-group limit", sam.Send(ctx, []byte("y")), "rate_limited")
	h.clock.Advance(e.RetryAfter * 10)
	if err := g.Send(ctx, []byte("x")); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
}

func asErr(err error, e **client.Error) bool {
	ce, ok := err.(*client.Error)
	if ok {
		*e = ce
	}
	return ok
}
