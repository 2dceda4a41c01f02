package eventlog

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Verification is the result of checking the stored events against their
// stored Merkle hashes and a signed checkpoint.
type Verification struct {
	// Checkpoint is the verified checkpoint the log was checked against.
	Checkpoint Checkpoint
	// Events is the number of events read.
	Events uint64
	// BadEvents lists the sequence numbers whose stored bytes do not match
	// the stored leaf hash, do not decode, or carry the wrong sequence.
	BadEvents []uint64
	// Missing lists sequence numbers absent from the store.
	Missing []uint64
	// RootMatches reports whether the root recomputed from the event bytes
	// alone equals the checkpoint's root at the checkpoint's size.
	RootMatches bool
	// Root is the root recomputed from the event bytes over all Events.
	Root tlog.Hash
}

// OK reports whether nothing was found wrong.
func (v *Verification) OK() bool {
	return v.RootMatches && len(v.BadEvents) == 0 && len(v.Missing) == 0
}

// Verify recomputes the Merkle tree from the stored event bytes, without
// trusting the stored hashes, and checks it against the signed checkpoint
// (verified with verifierKey). It also names every event whose bytes differ
// from its stored leaf hash, so a flipped byte is pinned to its sequence
// number even when the checkpoint is older than the change. progress, if
// not nil, is called now and then with the number of events read.
func (l *Log) Verify(signedCheckpoint []byte, verifierKey string, progress func(done, total uint64)) (*Verification, error) {
	c, err := OpenCheckpoint(signedCheckpoint, verifierKey)
	if err != nil {
		return nil, err
	}
	total := l.Size()
	if c.Size > total {
		return nil, fmt.Errorf("checkpoint size %d beyond log size %d", c.Size, total)
	}
	v := &Verification{Checkpoint: c}
	var f Frontier
	next := uint64(1)
	hr := hashReader(NewReader(l.db))
	check := func(seq uint64, h tlog.Hash) {
		f.Add(h)
		if f.Size() == c.Size {
			v.RootMatches = f.Root() == c.Root
		}
	}
	if c.Size == 0 {
		v.RootMatches = c.Root == tlog.Hash{}
	}
	err = scan(l.db, eventKey(1), eventKey(total+1), func(k, raw []byte) error {
		seq := binary.BigEndian.Uint64(k[len(prefixEvent):])
		for ; next < seq; next++ {
			v.Missing = append(v.Missing, next)
			check(next, tlog.Hash{})
		}
		next = seq + 1
		v.Events++
		h := tlog.RecordHash(raw)
		stored, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, int64(seq-1))})
		bad := err != nil || stored[0] != h
		if e, err := DecodeEvent(raw); err != nil || e.Seq != seq {
			bad = true
		}
		if bad {
			v.BadEvents = append(v.BadEvents, seq)
		}
		check(seq, h)
		if progress != nil && v.Events%65536 == 0 {
			progress(v.Events, total)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for ; next <= total; next++ {
		v.Missing = append(v.Missing, next)
	}
	v.Root = f.Root()
	if progress != nil {
		progress(v.Events, total)
	}
	return v, nil
}
