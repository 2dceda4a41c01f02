package eventlog

import (
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrNotFound is returned by Reader.Get for a missing key.
var ErrNotFound = errors.New("eventlog: not found")

// Reader reads keys. Handlers and projections see the store only through it.
type Reader interface {
	// Get returns a copy of the value of key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Scan calls fn for each key in [lower, upper) in order. k and v are
	// valid only during the call. A non-nil error from fn stops the scan and
	// is returned.
	Scan(lower, upper []byte, fn func(k, v []byte) error) error
}

// ReadWriter is a Reader that can also write. Writes are visible to later
// reads through the same ReadWriter.
type ReadWriter interface {
	Reader
	Set(key, value []byte) error
	Delete(key []byte) error
	// DeleteRange deletes every key in [start, end).
	DeleteRange(start, end []byte) error
}

// pebbleReader adapts anything Pebble can read from (a DB, an indexed
// batch, a snapshot).
type pebbleReader struct {
	r interface {
		Get(key []byte) ([]byte, io.Closer, error)
		NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
	}
}

// NewReader returns a Reader over a Pebble DB, snapshot or indexed batch.
func NewReader(r interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}) Reader {
	return pebbleReader{r: r}
}

func (p pebbleReader) Get(key []byte) ([]byte, error) {
	return get(p.r, key)
}

func (p pebbleReader) Scan(lower, upper []byte, fn func(k, v []byte) error) error {
	return scan(p.r, lower, upper, fn)
}

func get(r interface {
	Get(key []byte) ([]byte, io.Closer, error)
}, key []byte) ([]byte, error) {
	v, c, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	out := append([]byte(nil), v...)
	return out, c.Close()
}

func scan(r interface {
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}, lower, upper []byte, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("iter: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}

// batchRW is the ReadWriter of an indexed batch.
type batchRW struct {
	b *pebble.Batch
}

// NewBatchReadWriter returns a ReadWriter over an indexed Pebble batch. It
// is used by rebuilds and audits, which replay events outside the writer,
// from one goroutine. It remembers the values it read, since a replay
// reads the same few keys (a group's state, its members) again and again
// and a read through an indexed batch costs two iterators; writes go
// through to the batch and update what it remembers.
func NewBatchReadWriter(b *pebble.Batch) ReadWriter {
	return &memoRW{batchRW: batchRW{b: b}, seen: map[string][]byte{}}
}

// NewMemReadWriter returns a ReadWriter (as NewBatchReadWriter's) over an
// indexed batch of a new Pebble kept in memory, and the function that
// closes both. Tests use it to run projections and checks on real Pebble
// without a directory.
func NewMemReadWriter() (ReadWriter, func(), error) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: pebbleLogger{}})
	if err != nil {
		return nil, nil, err
	}
	b := db.NewIndexedBatch()
	return NewBatchReadWriter(b), func() { b.Close(); db.Close() }, nil
}

// memoMaxEntries bounds what a memoRW remembers; past it, it forgets all.
const memoMaxEntries = 1 << 16

// memoRW is a batchRW that remembers the values of the keys it read (nil
// for a missing key) and keeps them current on writes. Values it returns
// are copies, as Reader requires.
type memoRW struct {
	batchRW
	seen map[string][]byte
}

func (m *memoRW) Get(key []byte) ([]byte, error) {
	if v, ok := m.seen[string(key)]; ok {
		if v == nil {
			return nil, ErrNotFound
		}
		return append([]byte(nil), v...), nil
	}
	v, err := m.batchRW.Get(key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if len(m.seen) >= memoMaxEntries {
		clear(m.seen)
	}
	if err != nil {
		m.seen[string(key)] = nil
		return nil, err
	}
	m.seen[string(key)] = append(make([]byte, 0, len(v)), v...) // not nil, even if empty
	return v, nil
}

func (m *memoRW) Set(key, value []byte) error {
	if err := m.batchRW.Set(key, value); err != nil {
		return err
	}
	if _, ok := m.seen[string(key)]; ok {
		m.seen[string(key)] = append(make([]byte, 0, len(value)), value...)
	}
	return nil
}

func (m *memoRW) Delete(key []byte) error {
	if err := m.batchRW.Delete(key); err != nil {
		return err
	}
	if _, ok := m.seen[string(key)]; ok {
		m.seen[string(key)] = nil
	}
	return nil
}

func (m *memoRW) DeleteRange(start, end []byte) error {
	if err := m.batchRW.DeleteRange(start, end); err != nil {
		return err
	}
	clear(m.seen) // rare (acks, trims): forget all
	return nil
}

func (w batchRW) Get(key []byte) ([]byte, error) { return get(w.b, key) }
func (w batchRW) Scan(lower, upper []byte, fn func(k, v []byte) error) error {
	return scan(w.b, lower, upper, fn)
}
func (w batchRW) Set(key, value []byte) error         { return w.b.Set(key, value, nil) }
func (w batchRW) Delete(key []byte) error             { return w.b.Delete(key, nil) }
func (w batchRW) DeleteRange(start, end []byte) error { return w.b.DeleteRange(start, end, nil) }
