package projections

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
)

// applyTo applies one event of type typ with payload v at sequence number
// seq to a projection, the way the writer does.
func applyTo(t *testing.T, rw eventlog.ReadWriter, p Projection, seq uint64, typ string, v any) {
	t.Helper()
	d := events.Draft(typ, v)
	if err := p.Apply(scoped{rw: rw, prefix: Prefix(p.Name())}, &eventlog.Event{Seq: seq, Type: d.Type, Payload: d.Payload}); err != nil {
		t.Fatal(err)
	}
}

func memStore(t *testing.T) eventlog.ReadWriter {
	t.Helper()
	rw, closeStore, err := eventlog.NewMemReadWriter()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStore)
	return rw
}

// An acknowledgement deletes the client's queue entries up to its UpTo,
// starting where the last one stopped; one beyond the log's end (or below
// an earlier one) must not keep later acknowledgements from deleting the
// entries written after it.
func TestQueueAcksDeleteWhatTheyCover(t *testing.T) {
	rw := memStore(t)
	q := Queues{}
	enqueue := func(seqs ...uint64) {
		for _, s := range seqs {
			if err := rw.Set(queueKey("c1", s), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	ack := func(seq, upTo uint64) {
		applyTo(t, rw, q, seq, events.TypeQueueAcked, events.QueueAcked{ClientID: "c1", UpTo: upTo})
	}
	want := func(step string, seqs ...uint64) {
		t.Helper()
		got, err := QueueView{R: rw}.From("c1", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, seqs) {
			t.Fatalf("%s: queue %v, want %v", step, got, seqs)
		}
	}
	enqueue(2, 3, 5)
	ack(6, 3)
	want("ack 3", 5)
	ack(7, 1000) // beyond the log's end
	want("ack 1000", []uint64{}...)
	enqueue(8, 9)
	ack(10, 8)
	want("ack 8 after ack 1000", 9)
	ack(11, 2) // below an earlier one
	want("ack 2", 9)
	enqueue(12)
	ack(13, 20)
	want("ack 20", []uint64{}...)
}

// An outbox trim deletes a destination's entries up to its UpTo, starting
// where the last one stopped; one beyond the destination's counter must
// not keep later trims from deleting the entries written after it.
func TestOutboxTrimsDeleteWhatTheyCover(t *testing.T) {
	rw := memStore(t)
	o := Outbox{Domain: "a.example"}
	remote := []RemoteMember{{Leaf: 1, Domain: "b.example", QueueConfig: []byte("q")}}
	add := func(n int) {
		for range n {
			if err := o.fanOut(rw, remote, events.FederatedMessage{OriginSeq: 1, Sender: 9}); err != nil {
				t.Fatal(err)
			}
		}
	}
	trim := func(upTo uint64) {
		applyTo(t, rw, o, 1, events.TypeOutboxTrimmed, events.OutboxTrimmed{Destination: "b.example", UpTo: upTo})
	}
	want := func(step string, counters ...uint64) {
		t.Helper()
		got, _, err := OutboxView{R: rw}.Pending("b.example", 0, 100, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(counters) || (len(got) > 0 && !slices.Equal(got, counters)) {
			t.Fatalf("%s: entries %v, want %v", step, got, counters)
		}
	}
	add(3)
	trim(2)
	want("trim 2", 3)
	trim(100) // beyond the counter
	want("trim 100")
	add(2)
	want("after trim 100", 4, 5)
	trim(150)
	want("trim 150")
	if n, err := (OutboxView{R: rw}).Trimmed("b.example"); err != nil || n != 150 {
		t.Fatalf("trimmed %d %v, want 150", n, err)
	}
}

// BenchmarkQueueEnqueueAck is one queue entry written, fetched from the
// start of the queue (as a client that keeps no position would) and
// acknowledged per op, each in its own committed batch on a real Pebble
// store. Its time per op must not grow with b.N (it did while each
// acknowledgement, and each such fetch, scanned from the start of the
// queue over the tombstones of all earlier ones).
func BenchmarkQueueEnqueueAck(b *testing.B) {
	db, err := pebble.Open(b.TempDir(), eventlog.DefaultPebbleOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	q := Queues{}
	d := events.Draft(events.TypeQueueAcked, events.QueueAcked{ClientID: "c1"})
	for i := 1; i <= b.N; i++ {
		seq := uint64(2 * i)
		batch := db.NewIndexedBatch()
		rw := eventlog.NewBatchReadWriter(batch)
		if err := rw.Set(queueKey("c1", seq), nil); err != nil {
			b.Fatal(err)
		}
		if got, err := (QueueView{R: rw}).From("c1", 0, 10); err != nil || len(got) != 1 || got[0] != seq {
			b.Fatalf("fetch: %v %v, want [%d]", got, err, seq)
		}
		d.Payload = fmt.Appendf(d.Payload[:0], `{"client_id":"c1","up_to":%d}`, seq)
		if err := q.Apply(scoped{rw: rw, prefix: Prefix(qName)}, &eventlog.Event{Seq: seq + 1, Type: d.Type, Payload: d.Payload}); err != nil {
			b.Fatal(err)
		}
		if err := batch.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
}
