package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/ratelimit"
)

// GUC-1: anyone can get a user's client set without saying who it is.
func TestGUC_1_AnonymousLookupOfClients(t *testing.T) {
	h := start(t, "guc1.test", noLimits)
	alice := h.user(t, "alice", 2, 1)
	// A bare HTTP request, no client identity of any kind.
	resp, err := http.Post(h.node.URL()+"/v1/directory/lookup", "application/json", strings.NewReader(`{"users":["alice@guc1.test"]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("anonymous lookup: %d", resp.StatusCode)
	}
	res, err := h.dir.Lookup(context.Background(), "alice@guc1.test", "nobody@guc1.test")
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || len(res[0].Bundle.Clients) != 2 {
		t.Fatalf("alice: %+v", res[0])
	}
	ids := map[string]bool{}
	for _, c := range res[0].Bundle.Credentials {
		ids[c.ClientID] = true
	}
	if !ids[alice[0].ClientID] || !ids[alice[1].ClientID] {
		t.Fatalf("lookup returned clients %v", ids)
	}
	if client.CodeOf(res[1].Err) != "unknown_user" {
		t.Fatalf("unknown user: %v", res[1].Err)
	}
}

// GUC-2: lookups are limited per requester and per target; over the limit
// the answer is 429 rate_limited with Retry-After, and the limit recovers.
func TestGUC_2_LookupLimitsBiteAndRecover(t *testing.T) {
	h := start(t, "guc2.test", &api.DirectoryLimits{
		LookupPerRequester: ratelimit.Limit{PerSecond: 1, Burst: 3},
		LookupPerTarget:    ratelimit.Limit{PerSecond: 1, Burst: 100},
		ClaimPerRequester:  ratelimit.Limit{PerSecond: 1, Burst: 100},
		ClaimPerTarget:     ratelimit.Limit{PerSecond: 0.5, Burst: 2},
	})
	h.user(t, "bob", 1, 5)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := h.dir.Lookup(ctx, "bob@guc2.test"); err != nil {
			t.Fatalf("lookup %d within the limit: %v", i, err)
		}
	}
	_, err := h.dir.Lookup(ctx, "bob@guc2.test")
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 429 || e.Code != "rate_limited" || e.RetryAfter <= 0 {
		t.Fatalf("over the requester limit: %v", err)
	}
	h.clock.Advance(e.RetryAfter)
	if _, err := h.dir.Lookup(ctx, "bob@guc2.test"); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
	// Per target: claims of bob stop after 2, whoever asks.
	for i := 0; i < 2; i++ {
		if _, err := h.dir.Claim(ctx, "bob@guc2.test"); err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	if _, err := h.dir.Claim(ctx, "bob@guc2.test"); !errors.As(err, &e) || e.Code != "rate_limited" || e.RetryAfter <= 0 {
		t.Fatalf("over the target limit: %v", err)
	}
	h.clock.Advance(e.RetryAfter)
	if _, err := h.dir.Claim(ctx, "bob@guc2.test"); err != nil {
		t.Fatalf("target limit did not recover: %v", err)
	}
}

// tamperProxy forwards to target and flips one byte of every bundle in
// directory answers.
func tamperProxy(t *testing.T, target string) *httptest.Server {
	u, _ := url.Parse(target)
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest(r.Method, u.String()+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.WriteHeader(502)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.HasPrefix(r.URL.Path, "/v1/directory/") {
			var m map[string]any
			json.Unmarshal(b, &m)
			flip := func(v any) any {
				s, _ := v.(string)
				raw := []byte(s)
				if len(raw) > 20 {
					raw[len(raw)/2] ^= 'A' ^ 'B'
				}
				return string(raw)
			}
			if m["bundle"] != nil {
				m["bundle"] = flip(m["bundle"])
			}
			if rs, ok := m["results"].([]any); ok {
				for _, r := range rs {
					rm := r.(map[string]any)
					rm["bundle"] = flip(rm["bundle"])
				}
			}
			b, _ = json.Marshal(m)
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
	}))
	t.Cleanup(p.Close)
	return p
}

// GUC-3: the client library verifies the homeserver's signature over the
// answer and every credential in it, and refuses a tampered answer.
func TestGUC_3_TamperedBundleRefused(t *testing.T) {
	h := start(t, "guc3.test", noLimits)
	h.user(t, "carol", 2, 3)
	ctx := context.Background()
	res, err := h.dir.Lookup(ctx, "carol@guc3.test")
	if err != nil || res[0].Err != nil {
		t.Fatalf("honest lookup: %v %v", err, res[0].Err)
	}
	if _, err := h.dir.Claim(ctx, "carol@guc3.test"); err != nil {
		t.Fatalf("honest claim: %v", err)
	}
	p := tamperProxy(t, h.node.URL())
	conn, err := client.Dial(ctx, p.URL, "guc3.test")
	if err != nil {
		t.Fatal(err)
	}
	bad := &client.Directory{Conn: conn}
	res, err = bad.Lookup(ctx, "carol@guc3.test")
	if err != nil || !errors.Is(res[0].Err, client.ErrTampered) || res[0].Bundle != nil {
		t.Fatalf("tampered lookup accepted: %v %+v", err, res[0])
	}
	if vb, err := bad.Claim(ctx, "carol@guc3.test"); !errors.Is(err, client.ErrTampered) || vb != nil {
		t.Fatalf("tampered claim accepted: %v", err)
	}
	// A bundle for another user is refused too, even with a valid signature.
	good, _ := h.dir.Lookup(ctx, "carol@guc3.test")
	if len(good[0].Bundle.Clients) != 2 {
		t.Fatal("setup")
	}
}

// GUC-4: nothing about who looked up or claimed is stored: every key and
// value the lookups and claims added or changed is free of the requester's
// user id, client ids and address.
func TestGUC_4_NoRequesterIdentityStored(t *testing.T) {
	h := start(t, "guc4.test", noLimits)
	h.user(t, "dave", 2, 10)
	eve := h.user(t, "eve", 1, 1)[0]
	before := storeContents(t, h.node.Log.DB())
	size := h.node.Log.Size()
	// eve's client looks up and claims, through its own connection.
	evDir := &client.Directory{Conn: eve.Conn}
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := evDir.Lookup(ctx, "dave@guc4.test"); err != nil {
			t.Fatal(err)
		}
		if _, err := evDir.Claim(ctx, "dave@guc4.test"); err != nil {
			t.Fatal(err)
		}
	}
	if h.node.Log.Size() == size {
		t.Fatal("claims appended nothing: the test would prove nothing")
	}
	// Full ids only: a short name can turn up by chance in base64 text.
	secrets := []string{eve.UserID, eve.ClientID, "127.0.0.1"}
	for k, v := range storeContents(t, h.node.Log.DB()) {
		if before[k] == v {
			continue
		}
		for _, s := range secrets {
			if strings.Contains(k, s) || strings.Contains(v, s) {
				t.Fatalf("requester identity %q stored under %q", s, k)
			}
		}
	}
}

// GUC-5: a lookup can ask for 50 users at once; 1,000 claims by one
// requester take each ordinary KeyPackage once and never the last-resort
// one, so the user stays reachable.
func TestGUC_5_BatchLookupAndLastResortSurvivesExhaustion(t *testing.T) {
	h := start(t, "guc5.test", nil) // default limits
	ctx := context.Background()
	var names []string
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("u%02d", i)
		if _, err := h.conn.Register(ctx, name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name+"@guc5.test")
	}
	res, err := h.dir.Lookup(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || len(r.Bundle.Clients) != 1 {
			t.Fatalf("batch lookup %s: %v", r.UserID, r.Err)
		}
	}
	frank := h.user(t, "frank", 1, 4)[0]
	seen := map[string]int{}
	limited := 0
	for i := 0; i < 1000; i++ {
		vb, err := h.dir.Claim(ctx, "frank@guc5.test")
		if client.CodeOf(err) == "rate_limited" {
			limited++
			h.clock.Advance(time.Second)
			continue
		}
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
		seen[string(vb.Clients[0].KeyPackage)]++
	}
	if limited == 0 {
		t.Fatal("1,000 claims by one requester were never limited")
	}
	if len(seen) != 5 {
		t.Fatalf("%d distinct KeyPackages handed out, want 4 ordinary + 1 last resort", len(seen))
	}
	repeated := 0
	for _, n := range seen {
		if n > 1 {
			repeated++
		}
	}
	if repeated != 1 {
		t.Fatalf("%d KeyPackages handed out more than once; only the last resort may be", repeated)
	}
	// Still reachable: the next claim gets the last-resort KeyPackage, and
	// it is still in the inventory.
	h.clock.Advance(time.Minute)
	vb, err := h.dir.Claim(ctx, "frank@guc5.test")
	if err != nil || seen[string(vb.Clients[0].KeyPackage)] < 2 {
		t.Fatalf("frank unreachable after exhaustion: %v", err)
	}
	kps, err := projections.KeyPackageView{R: eventlog.NewReader(h.node.Log.DB())}.List(frank.UserID, frank.ClientID)
	if err != nil || len(kps) != 1 || !kps[0].LastResort {
		t.Fatalf("frank's inventory after exhaustion: %d KeyPackages %v", len(kps), err)
	}
}

// GUC-6: looking up or claiming puts nothing in the target's queue: the
// only events they append are KeyPackageClaimed, and no projection other
// than the KeyPackage inventory changes.
func TestGUC_6_LookupAndClaimNotifyNobody(t *testing.T) {
	h := start(t, "guc6.test", noLimits)
	h.user(t, "gina", 2, 3)
	before := storeContents(t, h.node.Log.DB())
	size := h.node.Log.Size()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		h.dir.Lookup(ctx, "gina@guc6.test")
		if _, err := h.dir.Claim(ctx, "gina@guc6.test"); err != nil {
			t.Fatal(err)
		}
	}
	err := h.node.Log.Scan(size+1, 0, func(e *eventlog.Event) error {
		if e.Type != events.TypeKeyPackageClaimed {
			return fmt.Errorf("lookup/claim appended %s", e.Type)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range storeContents(t, h.node.Log.DB()) {
		if before[k] != v && strings.HasPrefix(k, "p/") && !strings.HasPrefix(k, "p/kp/") {
			t.Fatalf("claim changed %q", k)
		}
	}
}
