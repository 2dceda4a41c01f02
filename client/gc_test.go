package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/validation"
)

func mustCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if client.CodeOf(err) != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

// GC-1: only clients registered here can create groups here: tokens need a
// registered client's signature, and creation needs a token of this
// homeserver's issuer.
func TestGC_1_OnlyLocalClientsCreateGroups(t *testing.T) {
	h := start(t, "gc1.test", noLimits)
	other := start(t, "elsewhere.test", noLimits)
	ctx := context.Background()
	local := h.user(t, "amy", 1, 1)[0]
	foreign := other.user(t, "zed", 1, 1)[0]
	size := h.node.Log.Size()

	// An unregistered caller cannot get tokens.
	resp, err := http.Post(h.node.URL()+"/v1/tokens", "application/json", strings.NewReader(`{"request":""}`))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned token request: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	// A client of another homeserver has tokens from there: useless here.
	if err := foreign.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	g, req, err := foreign.PrepareGroup([]byte("gc1.test/" + "foreign"))
	if err != nil {
		t.Fatal(err)
	}
	mustCode(t, "foreign token", local.Conn.SubmitRaw(ctx, "/v1/groups", req), "invalid_token")
	_ = g
	// No token, or a made-up one.
	if err := local.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_, req, err = local.PrepareGroup(local.NewGroupID())
	if err != nil {
		t.Fatal(err)
	}
	forged := *req
	forged.Token = bytes.Repeat([]byte{1}, len(req.Token))
	mustCode(t, "forged token", local.Conn.SubmitRaw(ctx, "/v1/groups", &forged), "invalid_token")
	forged.Token = nil
	mustCode(t, "no token", local.Conn.SubmitRaw(ctx, "/v1/groups", &forged), "invalid_token")
	if h.node.Log.Size() != size+1 { // +1: the local client's TokensIssued
		t.Fatalf("refused creations appended %d events", h.node.Log.Size()-size-1)
	}
	// The registered local client with its token succeeds.
	if err := local.Conn.SubmitRaw(ctx, "/v1/groups", req); err != nil {
		t.Fatalf("local creation: %v", err)
	}
}

// GC-2: the creator proves it is the only member: a two-leaf state or a
// signature by anything but the leaf key is refused.
func TestGC_2_OneLeafAndCreatorSignature(t *testing.T) {
	h := start(t, "gc2.test", noLimits)
	ctx := context.Background()
	c := h.user(t, "bea", 1, 1)[0]
	d := h.user(t, "dan", 1, 2)[0]
	if err := c.GetTokens(ctx, 3); err != nil {
		t.Fatal(err)
	}
	size := h.node.Log.Size()
	// Two leaves: add dan locally before asking the server.
	g, req, err := c.PrepareGroup(c.NewGroupID())
	if err != nil {
		t.Fatal(err)
	}
	kps, _ := d.MakeKeyPackages(1, false)
	if _, err := g.Member().Add(kps[0]); err != nil {
		t.Fatal(err)
	}
	g.Member().ConfirmCommit()
	gi, tree, err := g.Member().GroupInfo()
	if err != nil {
		t.Fatal(err)
	}
	two := *req
	two.GroupInfo, two.RatchetTree = gi, tree
	two.Signature, _ = g.Member().SignWithLeafKey(validation.CreateGroupLabel, validation.CreateGroupTBS(two.GroupID, gi, tree, two.QueueConfig, two.Token))
	err = c.Conn.SubmitRaw(ctx, "/v1/groups", &two)
	if err == nil || client.CodeOf(err) == "" {
		t.Fatalf("two-leaf group accepted: %v", err)
	}
	// Wrong signature: by dan's leaf key, and a flipped byte.
	_, req2, err := c.PrepareGroup(c.NewGroupID())
	if err != nil {
		t.Fatal(err)
	}
	dg, _, err := d.PrepareGroupNoToken(d.NewGroupID())
	if err != nil {
		t.Fatal(err)
	}
	bad := *req2
	bad.Signature, _ = dg.Member().SignWithLeafKey(validation.CreateGroupLabel, validation.CreateGroupTBS(bad.GroupID, bad.GroupInfo, bad.RatchetTree, bad.QueueConfig, bad.Token))
	mustCode(t, "signature by another key", c.Conn.SubmitRaw(ctx, "/v1/groups", &bad), "bad_signature")
	bad.Signature = append([]byte(nil), req2.Signature...)
	bad.Signature[5] ^= 1
	mustCode(t, "tampered signature", c.Conn.SubmitRaw(ctx, "/v1/groups", &bad), "bad_signature")
	if h.node.Log.Size() != size {
		t.Fatalf("refused creations appended %d events", h.node.Log.Size()-size)
	}
	if err := c.Conn.SubmitRaw(ctx, "/v1/groups", req2); err != nil {
		t.Fatalf("the honest request: %v", err)
	}
}

// GC-3: the initial state is validated: group id owned here and unused,
// a GroupInfo that parses and matches the group id.
func TestGC_3_InitialStateValidated(t *testing.T) {
	h := start(t, "gc3.test", noLimits)
	ctx := context.Background()
	c := h.user(t, "cy", 1, 1)[0]
	if err := c.GetTokens(ctx, 5); err != nil {
		t.Fatal(err)
	}
	size := h.node.Log.Size()
	_, req, err := c.PrepareGroup([]byte("other.test/abc"))
	if err != nil {
		t.Fatal(err)
	}
	mustCode(t, "group id of another homeserver", c.Conn.SubmitRaw(ctx, "/v1/groups", req), "invalid_group")
	g, req, err := c.PrepareGroup(c.NewGroupID())
	if err != nil {
		t.Fatal(err)
	}
	garbled := *req
	garbled.GroupInfo = append([]byte(nil), req.GroupInfo...)
	garbled.GroupInfo[len(garbled.GroupInfo)/2] ^= 0xff
	if err := c.Conn.SubmitRaw(ctx, "/v1/groups", &garbled); client.CodeOf(err) == "" {
		t.Fatalf("garbled GroupInfo: %v", err)
	}
	if h.node.Log.Size() != size {
		t.Fatal("refused creations appended events")
	}
	if err := c.SubmitGroup(ctx, g, req); err != nil {
		t.Fatal(err)
	}
	// The same group id again, with a fresh token and a fresh state.
	_, again, err := c.PrepareGroup(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	mustCode(t, "group id in use", c.Conn.SubmitRaw(ctx, "/v1/groups", again), "group_exists")
}

// GC-4 and MD-6: the homeserver does not learn who created a group or who
// sends: after a workload, no user id or client id is in any group event or
// group projection key or value; and the two groups one user created share
// nothing in their tokens but the issuer key id, which every user's tokens
// of that period carry.
func TestGC_4_MD_6_NoUserIdentityInGroupData(t *testing.T) {
	h := start(t, "gc4.test", noLimits)
	ctx := context.Background()
	eve := h.user(t, "eve", 2, 3)
	fay := h.user(t, "fay", 1, 3)[0]
	if err := eve[0].GetTokens(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := fay.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var gs []*client.Group
	for i := 0; i < 2; i++ {
		g, err := eve[0].CreateGroup(ctx)
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	fg, err := fay.CreateGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := gs[0].Add(ctx, h.dir, "fay@gc4.test"); err != nil {
		t.Fatal(err)
	}
	if err := fg.Add(ctx, h.dir, "eve@gc4.test"); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, fay)
	fetchAll(t, eve[1])
	if err := gs[0].Send(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := fay.Group(gs[0].ID).Send(ctx, []byte("y")); err != nil {
		t.Fatal(err)
	}
	// Full ids only: a short name can turn up by chance in base64 text.
	secrets := []string{eve[0].UserID, fay.UserID, eve[0].ClientID, eve[1].ClientID, fay.ClientID}
	groupTypes := map[string]bool{events.TypeGroupCreated: true, events.TypeCommitAccepted: true,
		events.TypeProposalAccepted: true, events.TypeApplicationMessageAccepted: true}
	var created []events.GroupCreated
	err = h.node.Log.Scan(0, 0, func(e *eventlog.Event) error {
		if !groupTypes[e.Type] {
			return nil
		}
		for _, s := range secrets {
			if bytes.Contains(e.Payload, []byte(s)) {
				t.Errorf("%s event %d contains %q", e.Type, e.Seq, s)
			}
		}
		if e.Type == events.TypeGroupCreated {
			var gc events.GroupCreated
			json.Unmarshal(e.Payload, &gc)
			created = append(created, gc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range storeContents(t, h.node.Log.DB()) {
		if !strings.HasPrefix(k, "p/grp/") {
			continue
		}
		for _, s := range secrets {
			if strings.Contains(k, s) || strings.Contains(v, s) {
				t.Errorf("group projection %q contains %q", k, s)
			}
		}
	}
	if len(created) != 3 {
		t.Fatalf("%d groups created", len(created))
	}
	// eve's two groups vs fay's: the token key id is the same for all three,
	// nonces and outputs are unrelated.
	for i := range created {
		for j := i + 1; j < len(created); j++ {
			a, b := created[i], created[j]
			if !bytes.Equal(a.TokenKeyID, b.TokenKeyID) {
				t.Fatal("tokens of one period carry different key ids: the key id could tell users apart")
			}
			if bytes.Equal(a.TokenNonce, b.TokenNonce) || bytes.Equal(a.Token[len(a.Token)-64:], b.Token[len(b.Token)-64:]) {
				t.Fatal("two tokens share a nonce or output")
			}
		}
	}
	// The issuance events carry counts only.
	h.node.Log.Scan(0, 0, func(e *eventlog.Event) error {
		if e.Type == events.TypeTokensIssued {
			for _, gc := range created {
				if bytes.Contains(e.Payload, gc.TokenNonce) {
					t.Error("an issuance event contains a spent nonce")
				}
			}
		}
		return nil
	})
}

// GC-5: a user can always create groups within its allowance.
func TestGC_5_CreateWithinAllowance(t *testing.T) {
	h := start(t, "gc5.test", noLimits, func(c *node.Config) { c.Tokens.Allowance = 5 })
	ctx := context.Background()
	c := h.user(t, "gus", 1, 1)[0]
	if err := c.GetTokens(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.CreateGroup(ctx); err != nil {
			t.Fatalf("group %d within the allowance: %v", i, err)
		}
	}
}

// GC-6: at most N tokens per user per window, and a spent token is refused.
func TestGC_6_AllowanceAndDoubleSpend(t *testing.T) {
	h := start(t, "gc6.test", noLimits, func(c *node.Config) {
		c.Tokens.Allowance = 3
		c.RequestWindow = 3 * node.DefaultTokenPolicy.Window // the test moves the server's clock a window on
	})
	ctx := context.Background()
	cs := h.user(t, "hal", 2, 1)
	if err := cs[0].GetTokens(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// The allowance is per user: hal's second client shares it.
	mustCode(t, "over the allowance", cs[1].GetTokens(ctx, 2), "allowance_exceeded")
	if err := cs[1].GetTokens(ctx, 1); err != nil {
		t.Fatalf("the last token of the allowance: %v", err)
	}
	mustCode(t, "allowance used up", cs[0].GetTokens(ctx, 1), "allowance_exceeded")
	// A new window renews it.
	h.clock.Advance(node.DefaultTokenPolicy.Window)
	if err := cs[0].GetTokens(ctx, 1); err != nil {
		t.Fatalf("next window: %v", err)
	}
	h.clock.Advance(-node.DefaultTokenPolicy.Window)
	// Double spend.
	_, req1, err := cs[0].PrepareGroup(cs[0].NewGroupID())
	if err != nil {
		t.Fatal(err)
	}
	if err := cs[0].Conn.SubmitRaw(ctx, "/v1/groups", req1); err != nil {
		t.Fatal(err)
	}
	g2, req2, err := cs[0].PrepareGroup(cs[0].NewGroupID())
	if err != nil {
		t.Fatal(err)
	}
	req2.Token = req1.Token
	req2.Signature, _ = g2.Member().SignWithLeafKey(validation.CreateGroupLabel, validation.CreateGroupTBS(req2.GroupID, req2.GroupInfo, req2.RatchetTree, req2.QueueConfig, req2.Token))
	size := h.node.Log.Size()
	mustCode(t, "spent token", cs[0].Conn.SubmitRaw(ctx, "/v1/groups", req2), "token_spent")
	if h.node.Log.Size() != size {
		t.Fatal("double spend appended an event")
	}
}
