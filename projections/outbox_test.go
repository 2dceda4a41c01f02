package projections

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
)

// The outbox records the last event that wrote entries, and Pending hands
// out only entries of events up to the durable size, in counter order.
func TestOutboxPendingOnlyDurable(t *testing.T) {
	rw := memStore(t)
	o := Outbox{Domain: "a.example"}
	v := OutboxView{R: rw}
	remote := []RemoteMember{{Leaf: 1, Domain: "b.example", QueueConfig: []byte("q1")}, {Leaf: 2, Domain: "c.example", QueueConfig: []byte("q2")}}
	if last, err := v.LastWrite(); err != nil || last != 0 {
		t.Fatalf("empty outbox: last write %d %v", last, err)
	}
	for _, seq := range []uint64{5, 6, 9} {
		if err := o.fanOut(rw, remote, events.FederatedMessage{OriginSeq: seq, Sender: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// The sender's own leaf gets nothing: only c.example has entries for
	// a message from leaf 1, and a message from a leaf with no remote
	// recipient writes nothing, not even LastWrite.
	if err := o.fanOut(rw, remote[:1], events.FederatedMessage{OriginSeq: 10, Sender: 1}); err != nil {
		t.Fatal(err)
	}
	if last, err := v.LastWrite(); err != nil || last != 9 {
		t.Fatalf("last write %d %v, want 9", last, err)
	}
	for _, c := range []struct {
		durable uint64
		want    []uint64
	}{{4, nil}, {5, []uint64{1}}, {8, []uint64{1, 2}}, {9, []uint64{1, 2, 3}}, {100, []uint64{1, 2, 3}}} {
		ns, ps, err := v.Pending("c.example", 0, 10, c.durable)
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != len(c.want) || len(ps) != len(ns) {
			t.Fatalf("durable %d: counters %v, want %v", c.durable, ns, c.want)
		}
		for i := range ns {
			if ns[i] != c.want[i] {
				t.Fatalf("durable %d: counters %v, want %v", c.durable, ns, c.want)
			}
		}
	}
	if ns, _, _ := v.Pending("b.example", 0, 10, 100); len(ns) != 0 {
		t.Fatalf("the sender's own domain got entries %v", ns)
	}
}

// Destinations lists every destination that has a counter, once each and
// in order, however often the counters were rewritten, including
// destinations whose names extend another's.
func TestOutboxDestinationsOnceEach(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v := OutboxView{R: eventlog.NewReader(db)}
	if d, err := v.Destinations(); err != nil || len(d) != 0 {
		t.Fatalf("empty outbox: destinations %q, %v", d, err)
	}
	o := Outbox{Domain: "a.example"}
	remote := []RemoteMember{{Leaf: 1, Domain: "b.example"}, {Leaf: 2, Domain: "b.example.org"}, {Leaf: 3, Domain: "c.example"}}
	for seq := uint64(1); seq <= 300; seq++ {
		b := db.NewIndexedBatch()
		if err := o.fanOut(eventlog.NewBatchReadWriter(b), remote[:1+seq%3], events.FederatedMessage{OriginSeq: seq, Sender: 9}); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	d, err := v.Destinations()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"b.example", "b.example.org", "c.example"}
	if len(d) != len(want) {
		t.Fatalf("destinations %q, want %q", d, want)
	}
	for i := range want {
		if d[i] != want[i] {
			t.Fatalf("destinations %q, want %q", d, want)
		}
	}
}
