package eventlog

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// The Merkle tree is the RFC 6962 tree of golang.org/x/mod/sumdb/tlog over
// the encoded events: event seq is record seq-1, and the tree after seq s
// has size s. The stored hashes are written in the same batch as the event,
// so every committed tree size has its hashes.

// hashReader reads stored hashes by their tlog.StoredHashIndex. The hash
// of the subtree (level, m) was stored, at position level, with record
// ((m+1)<<level)-1: the record that completed it.
func hashReader(r Reader) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, idx := range indexes {
			level, m := tlog.SplitStoredHashIndex(idx)
			rec := (m+1)<<level - 1
			v, err := r.Get(hashKey(rec))
			if err != nil {
				return nil, fmt.Errorf("stored hash %d: %w", idx, err)
			}
			if len(v) < (level+1)*tlog.HashSize {
				return nil, fmt.Errorf("stored hashes of record %d: %d bytes, want level %d", rec, len(v), level)
			}
			copy(out[i][:], v[level*tlog.HashSize:])
		}
		return out, nil
	})
}

// TreeHead returns the Merkle tree hash of the log's first size events.
func (l *Log) TreeHead(size uint64) (tlog.Hash, error) {
	if size > l.Size() {
		return tlog.Hash{}, fmt.Errorf("tree size %d beyond log size %d", size, l.Size())
	}
	return tlog.TreeHash(int64(size), hashReader(NewReader(l.db)))
}

// ProveInclusion returns the proof that event seq is in the tree of the
// given size (seq <= size <= Size()).
func (l *Log) ProveInclusion(seq, size uint64) (tlog.RecordProof, error) {
	if seq == 0 || seq > size || size > l.Size() {
		return nil, fmt.Errorf("inclusion of %d in tree of size %d (log size %d): out of range", seq, size, l.Size())
	}
	return tlog.ProveRecord(int64(size), int64(seq-1), hashReader(NewReader(l.db)))
}

// ProveConsistency returns the proof that the tree of size oldSize is a
// prefix of the tree of size newSize (oldSize <= newSize <= Size()).
func (l *Log) ProveConsistency(oldSize, newSize uint64) (tlog.TreeProof, error) {
	if oldSize > newSize || newSize > l.Size() {
		return nil, fmt.Errorf("consistency %d..%d (log size %d): out of range", oldSize, newSize, l.Size())
	}
	return tlog.ProveTree(int64(newSize), int64(oldSize), hashReader(NewReader(l.db)))
}

// VerifyInclusion checks that raw, the stored bytes of event seq, is in the
// tree of the given size and root. It proves that the log with that root
// contains exactly these bytes at seq; it proves nothing about whether the
// event should have been accepted (that is the audit's replay).
func VerifyInclusion(proof tlog.RecordProof, size uint64, root tlog.Hash, seq uint64, raw []byte) error {
	if seq == 0 || seq > size {
		return fmt.Errorf("inclusion of %d in tree of size %d: out of range", seq, size)
	}
	return tlog.CheckRecord(proof, int64(size), root, int64(seq-1), tlog.RecordHash(raw))
}

// VerifyConsistency checks that the tree (oldSize, oldRoot) is a prefix of
// the tree (newSize, newRoot).
func VerifyConsistency(proof tlog.TreeProof, newSize uint64, newRoot tlog.Hash, oldSize uint64, oldRoot tlog.Hash) error {
	return tlog.CheckTree(proof, int64(newSize), newRoot, int64(oldSize), oldRoot)
}

// Frontier computes an RFC 6962 tree hash incrementally from record hashes,
// in O(log n) memory. Auditors use it to recompute the root from the events
// alone, without trusting the stored hashes.
type Frontier struct {
	size  uint64
	nodes []tlog.Hash // roots of the perfect subtrees, largest first
}

// Add appends one record hash.
func (f *Frontier) Add(h tlog.Hash) {
	f.nodes = append(f.nodes, h)
	f.size++
	// Merge as many times as the new size has trailing zero bits.
	for s := f.size; s&1 == 0; s >>= 1 {
		n := len(f.nodes)
		f.nodes = append(f.nodes[:n-2], tlog.NodeHash(f.nodes[n-2], f.nodes[n-1]))
	}
}

// Size returns the number of records added.
func (f *Frontier) Size() uint64 { return f.size }

// Root returns the tree hash of the records added so far.
func (f *Frontier) Root() tlog.Hash {
	if len(f.nodes) == 0 {
		return tlog.Hash{}
	}
	h := f.nodes[len(f.nodes)-1]
	for i := len(f.nodes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f.nodes[i], h)
	}
	return h
}
