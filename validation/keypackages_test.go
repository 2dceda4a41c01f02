package validation

import (
	"math/rand/v2"
	"testing"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/projections"
)

// publish stores kps as the KeyPackages of client c of user u, through the
// KeyPackages projection, in a fresh in-memory Pebble.
func publish(t testing.TB, u, c string, kps []events.PublishedKeyPackage) eventlog.ReadWriter {
	t.Helper()
	rw, closeStore, err := eventlog.NewMemReadWriter()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStore)
	d := events.Draft(events.TypeKeyPackagesPublished, events.KeyPackagesPublished{UserID: u, ClientID: c, KeyPackages: kps})
	if err := projections.NewSet(projections.KeyPackages{}).Apply(rw, &eventlog.Event{Seq: 1, Type: d.Type, Payload: d.Payload}); err != nil {
		t.Fatal(err)
	}
	return rw
}

// randomKeyPackages returns n KeyPackages with random refs, kinds and
// lifetimes around the time 1,000.
func randomKeyPackages(rng *rand.Rand, n int) []events.PublishedKeyPackage {
	kps := make([]events.PublishedKeyPackage, n)
	for i := range kps {
		ref := make([]byte, 8)
		for j := range ref {
			ref[j] = byte(rng.Uint32())
		}
		nb := uint64(rng.IntN(1500))
		kps[i] = events.PublishedKeyPackage{Ref: ref, LastResort: rng.IntN(4) == 0, NotBefore: nb, NotAfter: nb + uint64(rng.IntN(1000)), Data: ref}
	}
	return kps
}

// pickFromAll is the claim rule applied to the full list: the first
// ordinary KeyPackage in ref order within its lifetime, else the first
// last-resort one within its lifetime (kept).
func pickFromAll(kps []projections.KeyPackageRecord, secs uint64) (*projections.KeyPackageRecord, bool) {
	var lastResort *projections.KeyPackageRecord
	for i := range kps {
		k := &kps[i]
		if secs < k.NotBefore || secs > k.NotAfter {
			continue
		}
		if !k.LastResort {
			return k, true
		}
		if lastResort == nil {
			lastResort = k
		}
	}
	return lastResort, false
}

// A claim picks, reading only up to its match, what the rule picks from
// the full list: over random sets of ordinary and last-resort KeyPackages
// with lifetimes before, around and after the claim's time.
func TestClaimablePicksByTheRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	kinds := map[string]int{}
	for i := range 300 {
		rw := publish(t, "u", "c", randomKeyPackages(rng, rng.IntN(12)))
		all, err := projections.KeyPackageView{R: rw}.List("u", "c")
		if err != nil {
			t.Fatal(err)
		}
		secs := uint64(rng.IntN(2000))
		want, wantConsume := pickFromAll(all, secs)
		got, consume, err := claimable(rw, "u", "c", secs)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case want == nil && got == nil:
			kinds["none"]++
			continue
		case want == nil || got == nil:
			t.Fatalf("case %d at %d: claimable %v, rule %v", i, secs, got, want)
		}
		if string(got.Ref) != string(want.Ref) || consume != wantConsume {
			t.Fatalf("case %d at %d: claimable %x (consume %v), rule %x (consume %v)", i, secs, got.Ref, consume, want.Ref, wantConsume)
		}
		if consume {
			kinds["ordinary"]++
		} else {
			kinds["last resort"]++
		}
	}
	for _, k := range []string{"none", "ordinary", "last resort"} {
		if kinds[k] == 0 {
			t.Errorf("no case picked %s: %v", k, kinds)
		}
	}
}

// A KeyPackage is claimable from its not_before to its not_after second,
// both included.
func TestClaimableLifetimeBounds(t *testing.T) {
	rw := publish(t, "u", "c", []events.PublishedKeyPackage{{Ref: []byte("k"), NotBefore: 100, NotAfter: 200, Data: []byte("k")}})
	for secs, want := range map[uint64]bool{99: false, 100: true, 150: true, 200: true, 201: false} {
		kp, consume, err := claimable(rw, "u", "c", secs)
		if err != nil {
			t.Fatal(err)
		}
		if (kp != nil) != want || (kp != nil && !consume) {
			t.Errorf("at %d: claimable %v (consume %v), want %v", secs, kp, consume, want)
		}
	}
}

// BenchmarkClaimable picks from a client's 256 KeyPackages (the most a
// client may publish), all valid: reading up to the first match against
// decoding all of them first.
func BenchmarkClaimable(b *testing.B) {
	kps := randomKeyPackages(rand.New(rand.NewPCG(9, 10)), 256)
	for i := range kps {
		kps[i].LastResort, kps[i].NotBefore, kps[i].NotAfter = i == 0, 0, 2000
		kps[i].Data = make([]byte, 300)
	}
	rw := publish(b, "u", "c", kps)
	b.Run("first-match", func(b *testing.B) {
		for b.Loop() {
			if kp, _, err := claimable(rw, "u", "c", 1000); err != nil || kp == nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-all", func(b *testing.B) {
		for b.Loop() {
			all, err := projections.KeyPackageView{R: rw}.List("u", "c")
			if kp, _ := pickFromAll(all, 1000); err != nil || kp == nil {
				b.Fatal(err)
			}
		}
	})
}
