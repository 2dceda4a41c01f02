package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/mlsx"
	"github.com/mlshome/homeserver/projections"
)

func TestPublishReplacesAll(t *testing.T) {
	h := start(t, "pub.test", noLimits)
	c := h.user(t, "hana", 1, 5)[0]
	ctx := context.Background()
	if n, _ := c.CountKeyPackages(ctx); n.Count != 6 || n.LastResort != 1 {
		t.Fatalf("after first publish: %+v", n)
	}
	kps, err := c.MakeKeyPackages(2, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PublishKeyPackages(ctx, kps); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.CountKeyPackages(ctx); n.Count != 3 || n.LastResort != 1 {
		t.Fatalf("after second publish: %+v, want only the new 3", n)
	}
	stored, _ := projections.KeyPackageView{R: eventlog.NewReader(h.node.Log.DB())}.List(c.UserID, c.ClientID)
	for _, s := range stored {
		found := false
		for _, kp := range kps {
			found = found || bytes.Equal(kp, s.Data)
		}
		if !found {
			t.Fatal("a KeyPackage of the replaced set survived")
		}
	}
}

// Concurrent claims never hand out the same ordinary KeyPackage twice.
func TestConcurrentClaimsNeverShareAKeyPackage(t *testing.T) {
	h := start(t, "race.test", noLimits)
	h.user(t, "ivan", 3, 30)
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < 40; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3; i++ {
				vb, err := h.dir.Claim(context.Background(), "ivan@race.test")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, c := range vb.Clients {
					got[string(c.KeyPackage)]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// 120 claims over 3 clients with 30 ordinary + 1 last resort each:
	// 90 ordinary KeyPackages once each, then the last-resort ones.
	ordinary, lastResort := 0, 0
	for _, n := range got {
		if n == 1 {
			ordinary++
		} else {
			lastResort++
		}
	}
	if ordinary != 90 || lastResort != 3 {
		t.Fatalf("%d KeyPackages handed out once, %d more than once; want 90 and 3 (the last-resort ones)", ordinary, lastResort)
	}
}

func TestBadKeyPackageInputAppendsNothing(t *testing.T) {
	h := start(t, "badkp.test", noLimits)
	ctx := context.Background()
	c := h.user(t, "jo", 1, 1)[0]
	other := h.user(t, "kim", 1, 1)[0]
	id, err := c.MLS()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	valid := mlsx.Lifetime{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
	sealed, _ := c.SealedQueueConfig()
	lastResort := func() []byte {
		s, _ := c.SealedQueueConfig()
		kp, err := id.NewKeyPackage(mlsx.KeyPackageOptions{Lifetime: valid, SealedQueueConfig: s, LastResort: true})
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	mk := func(lt mlsx.Lifetime, sealed []byte, lr bool) []byte {
		kp, err := id.NewKeyPackage(mlsx.KeyPackageOptions{Lifetime: lt, SealedQueueConfig: sealed, LastResort: lr})
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	foreignSuite := lastResort()
	foreignSuite[3] = 0x07 // cipher_suite follows the 2-byte version
	othersQueue, _ := other.SealedQueueConfig()
	wrongHomeserver, _ := identity.SealQueueConfig(identity.QueueConfig{Domain: "badkp.test", QueueID: bytes.Repeat([]byte{1}, 32)}, h.conn.Keys.QueueKey, rand.Reader)
	noLastResort, _ := c.MakeKeyPackages(2, false)
	size := h.node.Log.Size()
	cases := []struct {
		name string
		kps  [][]byte
		code string
	}{
		{"garbage", [][]byte{[]byte("not a key package"), lastResort()}, "invalid_key_package"},
		{"expired", [][]byte{mk(mlsx.Lifetime{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}, sealed, false), lastResort()}, "invalid_key_package"},
		{"foreign cipher suite", [][]byte{foreignSuite}, "invalid_key_package"},
		{"no last resort", noLastResort, "no_last_resort"},
		{"no queue config", [][]byte{mk(valid, nil, false), lastResort()}, "no_queue_config"},
		{"another client's queue", [][]byte{mk(valid, othersQueue, true)}, "bad_queue_config"},
		{"queue id not issued here", [][]byte{mk(valid, wrongHomeserver, true)}, "bad_queue_config"},
		{"empty set", [][]byte{}, "invalid_key_package"},
	}
	for _, tc := range cases {
		err := c.PublishKeyPackages(ctx, tc.kps)
		if client.CodeOf(err) != tc.code {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.code)
		}
	}
	// Unsigned and replayed requests.
	resp, err := http.DefaultClient.Do(mustReq(t, http.MethodPut, h.node.URL()+"/v1/keypackages", `{"key_packages":[]}`))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned publish: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if _, err := h.dir.Claim(ctx, "nobody@badkp.test"); client.CodeOf(err) != "unknown_user" {
		t.Fatalf("claim of unknown user: %v", err)
	}
	if _, err := h.dir.Claim(ctx, "not a user id"); client.CodeOf(err) != "invalid_user_id" {
		t.Fatalf("claim of malformed user id: %v", err)
	}
	if got := h.node.Log.Size(); got != size {
		t.Fatalf("bad input appended %d events", got-size)
	}
}

func mustReq(t *testing.T, method, url, body string) *http.Request {
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Replay rebuilds the KeyPackage inventory identically (LOG-2).
func TestKeyPackageInventoryRebuildsIdentically(t *testing.T) {
	h := start(t, "kprep.test", noLimits)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		h.user(t, fmt.Sprintf("u%d", i), 2, 4)
	}
	for i := 0; i < 30; i++ {
		if _, err := h.dir.Claim(ctx, fmt.Sprintf("u%d@kprep.test", i%5)); err != nil {
			t.Fatal(err)
		}
	}
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
		t.Fatalf("rebuilt inventory differs at %q (%v)", d.Key, err)
	}
	n := 0
	eventlog.NewReader(fresh).Scan(projections.Prefix("kp"), eventlog.PrefixEnd(projections.Prefix("kp")), func(_, _ []byte) error { n++; return nil })
	// 6 claims per user: 4 take each client's ordinary KeyPackages, the
	// rest get the last-resort one, which stays.
	if n != 5*2 {
		t.Fatalf("rebuilt inventory holds %d KeyPackages, want 10 last-resort ones", n)
	}
}
