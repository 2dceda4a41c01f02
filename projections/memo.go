package projections

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
)

// decodeMemo remembers the decoded form of records read again and again
// (a group's meta and leaves by every group request, a received delivery's
// routing by two projections) by their exact stored bytes. A
// decoded record is a pure function of those bytes, so the memo is never
// stale: a changed record has other bytes and is decoded afresh. Callers
// get the shared value and must not change it.
type decodeMemo[T any] struct {
	mu     sync.Mutex
	m      map[string]*T
	max    int
	decode func([]byte, *T) error
}

// newDecodeMemo returns a memo of at most max records decoded by
// decode, or by encoding/json if decode is nil.
func newDecodeMemo[T any](max int, decode func([]byte, *T) error) *decodeMemo[T] {
	if decode == nil {
		decode = func(raw []byte, v *T) error { return json.Unmarshal(raw, v) }
	}
	return &decodeMemo[T]{m: make(map[string]*T), max: max, decode: decode}
}

func (d *decodeMemo[T]) get(raw []byte) (*T, error) {
	d.mu.Lock()
	v, ok := d.m[string(raw)]
	d.mu.Unlock()
	if ok {
		return v, nil
	}
	v = new(T)
	if err := d.decode(raw, v); err != nil {
		return nil, err
	}
	d.mu.Lock()
	if len(d.m) >= d.max {
		clear(d.m)
	}
	d.m[string(raw)] = v
	d.mu.Unlock()
	return v, nil
}

var (
	metaMemo = newDecodeMemo[GroupMeta](1<<14, nil)
	leafMemo = newDecodeMemo[LeafRecord](1<<14, nil)
	// routingMemo holds the last few deliveries' routing: the Queues and
	// Federation projections both read it from the same event.
	routingMemo = newDecodeMemo(16, events.UnmarshalDeliveryRouting)
)

// deliveryRouting decodes the routing part of a DeliveryReceived event
// through routingMemo; the caller must not change what it returns.
func deliveryRouting(ev *eventlog.Event) (*events.DeliveryRouting, error) {
	d, err := routingMemo.get(ev.Payload)
	if err != nil {
		return nil, fmt.Errorf("event %d (%s): %w", ev.Seq, ev.Type, err)
	}
	return d, nil
}
