package projections

import (
	"encoding/json"
	"sync"
)

// decodeMemo remembers the decoded form of records that every group
// request reads (a group's meta, a leaf) by their exact stored bytes. A
// decoded record is a pure function of those bytes, so the memo is never
// stale: a changed record has other bytes and is decoded afresh. Callers
// get the shared value and must not change it.
type decodeMemo[T any] struct {
	mu  sync.Mutex
	m   map[string]*T
	max int
}

func newDecodeMemo[T any](max int) *decodeMemo[T] {
	return &decodeMemo[T]{m: make(map[string]*T), max: max}
}

func (d *decodeMemo[T]) decode(raw []byte) (*T, error) {
	d.mu.Lock()
	v, ok := d.m[string(raw)]
	d.mu.Unlock()
	if ok {
		return v, nil
	}
	v = new(T)
	if err := json.Unmarshal(raw, v); err != nil {
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
	metaMemo = newDecodeMemo[GroupMeta](1 << 14)
	leafMemo = newDecodeMemo[LeafRecord](1 << 14)
)
