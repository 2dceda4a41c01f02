// Package projections derives the state the homeserver answers from. Each
// projection registers the event types it handles and writes only under its
// own key prefix "p/<name>/". The writer calls Set.Apply for every event it
// appends, in the same batch; Rebuild calls the same code on the stored
// events, so a rebuilt projection is byte for byte the live one (LOG-2).
//
// Apply must be deterministic: no clock, no randomness, no map iteration
// order in what it writes. Time comes from the event.
package projections

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/mlshome/homeserver/eventlog"
)

// Root is the prefix of every projection key.
var Root = []byte("p/")

// Projection derives state from some event types.
type Projection interface {
	// Name is the projection's key namespace: it owns "p/<Name>/".
	Name() string
	// Handles lists the event types Apply is called for.
	Handles() []string
	// Apply writes the mutations of one event through rw, which refuses
	// writes outside the projection's prefix.
	Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error
}

// CachePrefixes are the key prefixes that every group request reads and
// few events write: group epochs, leaf keys and states, and the local and
// remote recipients of each group; and the two keys the federation watcher
// reads after every commit (OutboxView.LastWrite,
// FederationView.PolicySeq), mostly absent, which Pebble answers only after
// looking through every level. The event log keeps them in its read cache
// (eventlog.Options.CachePrefixes).
func CachePrefixes() [][]byte {
	return [][]byte{Prefix(grpName), append(Prefix(qName), "g/"...), append(Prefix(outName), "g/"...), outLastKey(), fedPolicySeqKey()}
}

// hexKey returns "p/" + name + mid + hex(id) + end in one allocation, with
// room for spare more bytes (a suffix the caller appends).
func hexKey(name, mid string, id []byte, end string, spare int) []byte {
	b := make([]byte, 0, len(Root)+len(name)+len(mid)+2*len(id)+len(end)+spare)
	b = append(b, Root...)
	b = append(b, name...)
	b = append(b, mid...)
	b = hex.AppendEncode(b, id)
	return append(b, end...)
}

// Prefix returns the key prefix of the named projection.
func Prefix(name string) []byte { return []byte("p/" + name + "/") }

// Set is the registry of projections the homeserver runs.
type Set struct {
	all    []Projection
	byType map[string][]Projection
}

// NewSet registers projections. Names must be unique.
func NewSet(ps ...Projection) *Set {
	s := &Set{byType: map[string][]Projection{}}
	seen := map[string]bool{}
	for _, p := range ps {
		if seen[p.Name()] {
			panic("projections: duplicate name " + p.Name())
		}
		seen[p.Name()] = true
		s.all = append(s.all, p)
		for _, t := range p.Handles() {
			s.byType[t] = append(s.byType[t], p)
		}
	}
	return s
}

// Projections returns the registered projections in registration order.
func (s *Set) Projections() []Projection { return s.all }

// Apply runs every projection that handles ev's type, in registration
// order. Event types no projection handles are kept in the log only.
func (s *Set) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error {
	for _, p := range s.byType[ev.Type] {
		if err := p.Apply(scoped{rw: rw, prefix: Prefix(p.Name())}, ev); err != nil {
			return fmt.Errorf("projection %s: %w", p.Name(), err)
		}
	}
	return nil
}

// scoped lets a projection read anything but write only its own keys.
type scoped struct {
	rw     eventlog.ReadWriter
	prefix []byte
}

func (s scoped) check(key []byte) error {
	if !bytes.HasPrefix(key, s.prefix) {
		return fmt.Errorf("write to %q outside %q", key, s.prefix)
	}
	return nil
}

func (s scoped) Get(key []byte) ([]byte, error) { return s.rw.Get(key) }
func (s scoped) Scan(lower, upper []byte, fn func(k, v []byte) error) error {
	return s.rw.Scan(lower, upper, fn)
}
func (s scoped) Set(key, value []byte) error {
	if err := s.check(key); err != nil {
		return err
	}
	return s.rw.Set(key, value)
}
func (s scoped) Delete(key []byte) error {
	if err := s.check(key); err != nil {
		return err
	}
	return s.rw.Delete(key)
}
func (s scoped) DeleteRange(start, end []byte) error {
	if err := s.check(start); err != nil {
		return err
	}
	if len(end) == 0 || bytes.Compare(end, eventlog.PrefixEnd(s.prefix)) > 0 {
		return fmt.Errorf("delete range end %q outside %q", end, s.prefix)
	}
	return s.rw.DeleteRange(start, end)
}

// errStopScan ends a Reader.Scan early: the views that stop at a match or
// a limit return it from their callback and treat it as no error.
var errStopScan = errors.New("projections: scan stopped")

// getU64 reads a number stored by setU64; 0 if key is missing.
func getU64(r eventlog.Reader, key []byte) (uint64, error) {
	b, err := r.Get(key)
	if errors.Is(err, eventlog.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}

// setU64 stores v at key as 8 big-endian bytes.
func setU64(rw eventlog.ReadWriter, key []byte, v uint64) error {
	return rw.Set(key, binary.BigEndian.AppendUint64(nil, v))
}

// deleteThrough deletes the keys of the numbers after the one recorded at
// pos up to upTo (key(n) for each), and records upTo at pos. Deleting
// from the last position rather than from the start of the range matters:
// a scan from the start steps over the tombstone of every key deleted
// before, as long as Pebble keeps them (until a flush and compaction), so
// a client acknowledging message after message would make each
// acknowledgement slower than the last. The caller bounds upTo by the
// greatest number that can exist yet: the position must never pass a key
// that is written later.
func deleteThrough(rw eventlog.ReadWriter, pos []byte, upTo uint64, key func(uint64) []byte) error {
	prev, err := getU64(rw, pos)
	if err != nil || upTo <= prev {
		return err
	}
	if err := deleteKeys(rw, key(prev+1), key(upTo+1)); err != nil {
		return err
	}
	return setU64(rw, pos, upTo)
}

// deleteKeys deletes every key in [start, end) one by one. Projections use
// it instead of range deletions: a Pebble indexed batch re-fragments all
// its range deletions on every read, which makes long batches (replay)
// quadratic.
func deleteKeys(rw eventlog.ReadWriter, start, end []byte) error {
	var keys [][]byte
	if err := rw.Scan(start, end, func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := rw.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
