package projections

import (
	"testing"

	"github.com/mlshome/homeserver/events"
)

// Each visits a client's KeyPackages in ref order and stops when told;
// List returns them all.
func TestKeyPackageEachStops(t *testing.T) {
	rw := memStore(t)
	var kps []events.PublishedKeyPackage
	for _, ref := range []string{"d", "a", "c", "b"} {
		kps = append(kps, events.PublishedKeyPackage{Ref: []byte(ref), NotAfter: 10, Data: []byte(ref)})
	}
	applyTo(t, rw, KeyPackages{}, 1, events.TypeKeyPackagesPublished, events.KeyPackagesPublished{UserID: "u", ClientID: "c", KeyPackages: kps})
	v := KeyPackageView{R: rw}
	var seen string
	if err := v.Each("u", "c", func(r KeyPackageRecord) bool {
		seen += string(r.Ref)
		return len(seen) < 2
	}); err != nil {
		t.Fatal(err)
	}
	if seen != "ab" {
		t.Fatalf("Each visited %q, want \"ab\" (ref order, stopping after the second)", seen)
	}
	all, err := v.List("u", "c")
	if err != nil {
		t.Fatal(err)
	}
	seen = ""
	for _, r := range all {
		seen += string(r.Ref)
	}
	if seen != "abcd" {
		t.Fatalf("List gave %q, want \"abcd\"", seen)
	}
}
