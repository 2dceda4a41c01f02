package projections

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
)

// rebuildBatchBytes bounds the size of one replay batch.
const rebuildBatchBytes = 16 << 20

// Rebuild deletes every projection key in dst and replays the events
// 1..to read from src through the projections into dst. src and dst may be
// the same store (in-place rebuild, with no writer running) or different
// ones (rebuild into a fresh location while the source stays live; src
// should then be a snapshot). progress, if not nil, is called now and then.
// Batches are committed without fsync and the last one with it: a crash
// mid-rebuild leaves projections that must be rebuilt again.
func (s *Set) Rebuild(src eventlog.Reader, dst *pebble.DB, to uint64, progress func(done, total uint64)) error {
	if err := dst.DeleteRange(Root, eventlog.PrefixEnd(Root), pebble.NoSync); err != nil {
		return fmt.Errorf("drop projections: %w", err)
	}
	b := dst.NewIndexedBatch()
	rw := eventlog.NewBatchReadWriter(b)
	var done uint64
	err := eventlog.ScanEvents(src, 1, to, func(ev *eventlog.Event) error {
		if err := s.Apply(rw, ev); err != nil {
			return err
		}
		done++
		if b.Len() >= rebuildBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return fmt.Errorf("rebuild batch: %w", err)
			}
			b.Close()
			b = dst.NewIndexedBatch()
			rw = eventlog.NewBatchReadWriter(b)
		}
		if progress != nil && done%16384 == 0 {
			progress(done, to)
		}
		return nil
	})
	if err != nil {
		b.Close()
		return err
	}
	if done != to {
		b.Close()
		return fmt.Errorf("rebuild: replayed %d events, want %d (missing events)", done, to)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		b.Close()
		return fmt.Errorf("rebuild batch: %w", err)
	}
	if progress != nil {
		progress(done, to)
	}
	return b.Close()
}

// Layout is the version of the projections' keys and values. Bump it
// whenever a projection writes other keys or values for the same events:
// the projections of a store written with another layout are rebuilt from
// its log when a homeserver opens it (Upgrade), so that they equal what a
// replay gives (LOG-2). History: 1, the first recorded layout (acknowledged
// and deleted positions of queues and outboxes, the outbox's last write,
// the federation policy's event).
const Layout = 1

// LayoutKey records the Layout a store's projections were written with. It
// is outside Root, so rebuilds, comparisons and digests leave it alone.
var LayoutKey = []byte("p-layout")

// StoredLayout returns the layout recorded in r; 0 if none is, for a store
// written before layouts were recorded.
func StoredLayout(r eventlog.Reader) (uint64, error) { return getU64(r, LayoutKey) }

// Upgrade rebuilds the projections of db in place from its log if they
// were written with another layout than this code's, then records the
// layout. Nothing else may use db meanwhile. It returns the layout found
// and the number of events replayed (0 if the layout was current or the
// log is empty).
func (s *Set) Upgrade(db *pebble.DB, progress func(done, total uint64)) (from, replayed uint64, err error) {
	r := eventlog.NewReader(db)
	from, err = StoredLayout(r)
	if err != nil || from == Layout {
		return from, 0, err
	}
	size, err := eventlog.StoredSize(r)
	if err != nil {
		return from, 0, err
	}
	if size > 0 {
		if err := s.Rebuild(r, db, size, progress); err != nil {
			return from, 0, fmt.Errorf("rebuild projections of layout %d as layout %d: %w", from, Layout, err)
		}
	}
	if err := db.Set(LayoutKey, binary.BigEndian.AppendUint64(nil, Layout), pebble.Sync); err != nil {
		return from, 0, fmt.Errorf("record projection layout: %w", err)
	}
	return from, size, nil
}

// Difference is the first key at which two projection stores differ.
type Difference struct {
	Key    []byte
	A, B   []byte // values; nil where the key is missing
	InA    bool
	InB    bool
	Equals bool // no difference found
}

// Compare walks every projection key of a and b in order and returns the
// first difference, or a Difference with Equals set. a and b are Pebble
// readers (a DB, a snapshot); memory use does not grow with the stores.
func Compare(a, b pebble.Reader) (Difference, error) {
	opts := &pebble.IterOptions{LowerBound: Root, UpperBound: eventlog.PrefixEnd(Root)}
	ia, err := a.NewIter(opts)
	if err != nil {
		return Difference{}, err
	}
	defer ia.Close()
	ib, err := b.NewIter(opts)
	if err != nil {
		return Difference{}, err
	}
	defer ib.Close()
	okA, okB := ia.First(), ib.First()
	for okA || okB {
		var va, vb []byte
		if okA {
			if va, err = ia.ValueAndErr(); err != nil {
				return Difference{}, err
			}
		}
		if okB {
			if vb, err = ib.ValueAndErr(); err != nil {
				return Difference{}, err
			}
		}
		c := 0
		switch {
		case !okB:
			c = -1
		case !okA:
			c = 1
		default:
			c = bytes.Compare(ia.Key(), ib.Key())
		}
		switch {
		case c < 0:
			return Difference{Key: clone(ia.Key()), A: clone(va), InA: true}, nil
		case c > 0:
			return Difference{Key: clone(ib.Key()), B: clone(vb), InB: true}, nil
		case !bytes.Equal(va, vb):
			return Difference{Key: clone(ia.Key()), A: clone(va), B: clone(vb), InA: true, InB: true}, nil
		}
		okA, okB = ia.Next(), ib.Next()
	}
	if err := ia.Error(); err != nil {
		return Difference{}, err
	}
	if err := ib.Error(); err != nil {
		return Difference{}, err
	}
	return Difference{Equals: true}, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// Digest returns a SHA-256 over every projection key and value of r, in
// order, with length prefixes: two stores with the same digest hold the same
// projections.
func Digest(r eventlog.Reader) ([32]byte, uint64, error) {
	h := sha256.New()
	var n uint64
	var lb [8]byte
	err := r.Scan(Root, eventlog.PrefixEnd(Root), func(k, v []byte) error {
		for _, x := range [][]byte{k, v} {
			l := uint64(len(x))
			for i := 0; i < 8; i++ {
				lb[i] = byte(l >> (56 - 8*i))
			}
			h.Write(lb[:])
			h.Write(x)
		}
		n++
		return nil
	})
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, n, err
}
