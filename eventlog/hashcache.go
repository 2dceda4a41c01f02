package eventlog

import (
	"slices"

	"golang.org/x/mod/sumdb/tlog"
)

// hashCache keeps the writer's Merkle frontier in memory: the stored
// hashes of the perfect subtrees that new records are hashed against. With
// it, appending a record and computing the tree head read no stored hashes;
// misses (after a restart) fall back to the store.
type hashCache struct {
	m map[int64]tlog.Hash
}

func newHashCache() *hashCache { return &hashCache{m: make(map[int64]tlog.Hash)} }

// reader returns a HashReader that serves from the cache, then from r.
func (c *hashCache) reader(r Reader) tlog.HashReader {
	fallback := hashReader(r)
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		var missIdx []int64
		var missPos []int
		for i, idx := range indexes {
			if h, ok := c.m[idx]; ok {
				out[i] = h
				continue
			}
			missIdx = append(missIdx, idx)
			missPos = append(missPos, i)
		}
		if len(missIdx) > 0 {
			hs, err := fallback.ReadHashes(missIdx)
			if err != nil {
				return nil, err
			}
			for j, h := range hs {
				out[missPos[j]] = h
				c.m[missIdx[j]] = h
			}
		}
		return out, nil
	})
}

// put records hashes stored for record n.
func (c *hashCache) put(n int64, hashes []tlog.Hash) {
	base := tlog.StoredHashIndex(0, n)
	for i, h := range hashes {
		c.m[base+int64(i)] = h
	}
}

// prune keeps only the frontier of a tree of the given size: the roots of
// its perfect subtrees, which are all that later records and tree heads
// need.
func (c *hashCache) prune(size int64) {
	var buf [63]int64 // one root per bit of size
	keep := buf[:0]
	var start int64
	for level := 62; level >= 0; level-- {
		if size&(1<<level) != 0 {
			keep = append(keep, tlog.StoredHashIndex(level, start>>level))
			start += 1 << level
		}
	}
	for idx := range c.m {
		if !slices.Contains(keep, idx) {
			delete(c.m, idx)
		}
	}
}

// reset forgets everything (after an abandoned batch).
func (c *hashCache) reset() { clear(c.m) }
