package federation

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// memOutbox is a test double of the homeserver's outbox projection.
type memOutbox struct {
	mu      sync.Mutex
	entries map[string][]OutboxEntry
	trimmed map[string]uint64
	notify  chan struct{}
}

func newMemOutbox() *memOutbox {
	return &memOutbox{entries: make(map[string][]OutboxEntry), trimmed: make(map[string]uint64), notify: make(chan struct{}, 1)}
}

// add commits n new entries for dest.
func (o *memOutbox) add(dest string, n int) {
	o.mu.Lock()
	next := o.trimmed[dest] + uint64(len(o.entries[dest])) + 1
	for i := range n {
		c := next + uint64(i)
		o.entries[dest] = append(o.entries[dest], OutboxEntry{Counter: c, Payload: fmt.Appendf(nil, "msg-%d", c)})
	}
	o.mu.Unlock()
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *memOutbox) Destinations() ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var d []string
	for k := range o.entries {
		d = append(d, k)
	}
	slices.Sort(d)
	return d, nil
}

func (o *memOutbox) Pending(dest string, after uint64, max int) ([]OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []OutboxEntry
	for _, e := range o.entries[dest] {
		if e.Counter > after && len(out) < max {
			out = append(out, e)
		}
	}
	return out, nil
}

func (o *memOutbox) Trim(_ context.Context, dest string, upTo uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if upTo <= o.trimmed[dest] {
		return nil
	}
	es := o.entries[dest]
	for len(es) > 0 && es[0].Counter <= upTo {
		es = es[1:]
	}
	o.entries[dest], o.trimmed[dest] = es, upTo
	return nil
}

func (o *memOutbox) Notify() <-chan struct{} { return o.notify }

func (o *memOutbox) trimmedTo(dest string) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.trimmed[dest]
}

// memInbox is a test double of the homeserver's log: it commits
// deliveries idempotently by id and keeps the per-origin cursor.
type memInbox struct {
	t         *testing.T
	keys      StaticKeys
	mu        sync.Mutex
	cursor    map[string]uint64
	committed []string // delivery ids, in commit order
	repeats   int      // deliveries already committed, acknowledged again
}

func (in *memInbox) Deliver(_ context.Context, d Delivery) error {
	// What the log stores can be re-verified later (FED-3).
	env, err := Decode(d.Raw)
	if err != nil || env.Verify(in.keys[d.Origin]) != nil || string(env.Payload) != fmt.Sprintf("msg-%d", d.Counter) {
		in.t.Errorf("delivery %s: stored envelope does not verify or has the wrong payload", d.ID())
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.cursor[d.Origin]
	switch {
	case d.Counter <= c:
		in.repeats++
		return nil
	case d.Counter > c+1:
		return fmt.Errorf("delivery %d after %d: %w", d.Counter, c, ErrOutOfOrder)
	}
	in.cursor[d.Origin] = d.Counter
	in.committed = append(in.committed, d.ID())
	return nil
}

func (in *memInbox) Cursor(origin string) (uint64, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cursor[origin], nil
}

func (in *memInbox) count() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.committed)
}

// streamMsgs returns how many deliveries wait in h's stream.
func streamMsgs(t *testing.T, h *home) uint64 {
	js, err := jetstream.New(h.bus.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, StreamName(h.domain))
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

func fastPublisher(t *testing.T, tr *Transport, out Outbox) *Publisher {
	p, err := NewPublisher(PublisherConfig{Transport: tr, Outbox: out, Poll: 50 * time.Millisecond, IdlePoll: 200 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, CursorTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newReceiver(t *testing.T, tr *Transport, in Inbox) *Receiver {
	r, err := NewReceiver(ReceiverConfig{Transport: tr, Inbox: in, OutOfOrderDelay: 50 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// FED-4 / MD-7: deliveries published while the receiving homeserver is not
// processing wait in its stream and arrive once, in order; when its stream
// is lost, the sender's outbox (trimmed only behind the receiver's cursor)
// publishes them again, and still each arrives once.
func TestFED_4_MD_7_DurableDeliveryExactlyOnceInOrder(t *testing.T) {
	n := newTestnet(t, domA, domB)
	storeB := t.TempDir()
	a, b := n.start(domA, ""), n.start(domB, storeB)
	inbox := &memInbox{t: t, keys: n.known, cursor: make(map[string]uint64)}
	outbox := newMemOutbox()
	ctx := context.Background()

	// B's stream exists, but B does not process (nor answer cursor
	// queries) yet.
	if _, err := newReceiver(t, b.tr, inbox).Setup(ctx); err != nil {
		t.Fatal(err)
	}
	outbox.add(domB, 200)
	pub := fastPublisher(t, a.tr, outbox)
	serve(t, pub.Run)
	waitFor(t, "200 deliveries in B's stream", func() bool { return streamMsgs(t, b) == 200 })
	if inbox.count() != 0 {
		t.Fatal("delivered before B processes")
	}

	stopB := serve(t, newReceiver(t, b.tr, inbox).Run)
	waitFor(t, "200 deliveries committed", func() bool { return inbox.count() == 200 })
	waitFor(t, "A's outbox trimmed behind B's cursor", func() bool { return outbox.trimmedTo(domB) == 200 })
	assertCommitted(t, inbox, 200)

	// B stops processing; 100 more wait in its stream; then B loses its
	// JetStream store.
	stopB()
	outbox.add(domB, 100)
	waitFor(t, "100 deliveries in B's stream", func() bool { return streamMsgs(t, b) == 100 })
	if err := b.bus.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(storeB); err != nil {
		t.Fatal(err)
	}
	b2 := n.start(domB, storeB)
	serve(t, newReceiver(t, b2.tr, inbox).Run)
	waitFor(t, "300 deliveries committed", func() bool { return inbox.count() == 300 })
	waitFor(t, "A's outbox trimmed to 300", func() bool { return outbox.trimmedTo(domB) == 300 })
	assertCommitted(t, inbox, 300)
	if d := a.drops; d.get(CodeBadSignature)+b2.drops.get(CodeBadSignature) != 0 {
		t.Fatal("signature failures")
	}
}

func assertCommitted(t *testing.T, in *memInbox, n int) {
	t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.committed) != n {
		t.Fatalf("%d committed, want %d", len(in.committed), n)
	}
	for i, id := range in.committed {
		if want := DeliveryID(domA, uint64(i+1)); id != want {
			t.Fatalf("commit %d is %s, want %s (order or exactly-once broken)", i, id, want)
		}
	}
}
