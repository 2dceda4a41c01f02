package eventlog

import (
	"bytes"
	"errors"
	"sync"
)

// readCache keeps the committed values of often-read, rarely-written keys
// (a group's epoch and leaf keys, its recipient lists) in memory, for the
// writer and for the readers that Log.Reader returns. Only keys under the
// configured prefixes are cached, and only the writer changes the store, so
// it keeps the cache exact:
//
//   - before it applies a batch, it drops the batch's cached keys and marks
//     a write in progress (gen odd);
//   - after the apply, the batch is visible in Pebble; it stores the new
//     values of the keys it dropped and ends the write (gen even).
//
// A reader that misses reads Pebble and stores what it read only if no
// write began or ended meanwhile (gen unchanged and even). So no reader can
// see a key's old value from the cache once the batch that changed it is
// visible, and reads stay as monotonic as Pebble's own: having seen a new
// value of one key, a reader never sees an old value of another key of the
// same batch.
type readCache struct {
	prefixes [][]byte
	maxBytes int
	maxValue int

	mu    sync.Mutex
	gen   uint64
	m     map[string]cached
	bytes int
}

type cached struct {
	v     []byte
	found bool
}

func newReadCache(prefixes [][]byte, maxBytes int) *readCache {
	if len(prefixes) == 0 || maxBytes <= 0 {
		return nil
	}
	return &readCache{prefixes: prefixes, maxBytes: maxBytes, maxValue: max(maxBytes/256, 256), m: map[string]cached{}}
}

// cacheable reports whether key is under a cached prefix.
func (c *readCache) cacheable(key []byte) bool {
	if c == nil {
		return false
	}
	for _, p := range c.prefixes {
		if bytes.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// get returns the value of key from the cache, or reads it with read and
// keeps what it read unless a write began or ended meanwhile (storeIf).
func (c *readCache) get(key []byte, read func([]byte) ([]byte, error)) ([]byte, error) {
	if v, found, hit := c.lookup(key); hit {
		if !found {
			return nil, ErrNotFound
		}
		return v, nil
	}
	gen := c.generation()
	v, err := read(key)
	switch {
	case err == nil:
		c.storeIf(gen, key, v, true)
	case errors.Is(err, ErrNotFound):
		c.storeIf(gen, key, nil, false)
	}
	return v, err
}

// lookup returns a copy of the cached value of key.
func (c *readCache) lookup(key []byte) (v []byte, found, hit bool) {
	c.mu.Lock()
	e, ok := c.m[string(key)]
	c.mu.Unlock()
	if !ok {
		return nil, false, false
	}
	if !e.found {
		return nil, false, true
	}
	return append([]byte(nil), e.v...), true, true
}

// generation returns the current generation for a later storeIf.
func (c *readCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// storeIf stores what was read from Pebble, if no write began or ended
// since generation() returned gen.
func (c *readCache) storeIf(gen uint64, key, v []byte, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen && gen%2 == 0 {
		c.put(key, v, found)
	}
}

func (c *readCache) put(key, v []byte, found bool) {
	if len(v) > c.maxValue {
		return
	}
	k := string(key)
	if old, ok := c.m[k]; ok {
		c.bytes -= len(k) + len(old.v)
	}
	for k2, e := range c.m {
		if c.bytes+len(k)+len(v) <= c.maxBytes {
			break
		}
		// Map iteration starts at a random entry: random eviction.
		delete(c.m, k2)
		c.bytes -= len(k2) + len(e.v)
	}
	c.m[k] = cached{v: append([]byte(nil), v...), found: found}
	c.bytes += len(k) + len(v)
}

// beginWrite drops the cached entries of keys a batch is about to change
// (all of them if it deletes a range) and marks the write in progress.
func (c *readCache) beginWrite(keys []string, ranges bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if ranges {
		clear(c.m)
		c.bytes = 0
		return
	}
	for _, k := range keys {
		if e, ok := c.m[k]; ok {
			delete(c.m, k)
			c.bytes -= len(k) + len(e.v)
		}
	}
}

// endWrite ends the write begun by beginWrite, storing the batch's new
// values (visible in Pebble by now) when applied is true. writes is nil
// for a batch that deleted a range: its keys are read from Pebble again.
func (c *readCache) endWrite(writes map[string]cachedWrite, applied bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if !applied {
		return
	}
	for k, w := range writes {
		if !w.tooBig {
			c.put([]byte(k), w.v, !w.deleted)
		}
	}
}

// cachedWrite is a batch's last write to a cacheable key.
type cachedWrite struct {
	v       []byte
	deleted bool
	tooBig  bool // a value the cache would not keep: only dropped
}

// cachedReader is the Reader that Log.Reader returns: Gets of cacheable
// keys go through the cache, everything else straight to Pebble.
type cachedReader struct {
	pebbleReader
	c *readCache
}

func (r cachedReader) Get(key []byte) ([]byte, error) {
	if !r.c.cacheable(key) {
		return r.pebbleReader.Get(key)
	}
	return r.c.get(key, r.pebbleReader.Get)
}

// writerRW is the writer's ReadWriter over its indexed batch: it reads
// cacheable keys that the batch has not written from the cache, and
// records the batch's writes to cacheable keys for the cache.
type writerRW struct {
	batchRW
	c      *readCache
	writes map[string]cachedWrite
	ranges bool // the batch deletes a range
}

func (w *writerRW) Get(key []byte) ([]byte, error) {
	if w.ranges || !w.c.cacheable(key) {
		return w.batchRW.Get(key)
	}
	if _, ok := w.writes[string(key)]; ok {
		return w.batchRW.Get(key)
	}
	// Not written by this batch: the committed value, as a reader sees it.
	return w.c.get(key, w.batchRW.Get)
}

func (w *writerRW) Set(key, value []byte) error {
	if err := w.batchRW.Set(key, value); err != nil {
		return err
	}
	if w.c.cacheable(key) {
		if len(value) > w.c.maxValue {
			w.note(key, cachedWrite{tooBig: true})
		} else {
			w.note(key, cachedWrite{v: append([]byte(nil), value...)})
		}
	}
	return nil
}

func (w *writerRW) Delete(key []byte) error {
	if err := w.batchRW.Delete(key); err != nil {
		return err
	}
	if w.c.cacheable(key) {
		w.note(key, cachedWrite{deleted: true})
	}
	return nil
}

func (w *writerRW) DeleteRange(start, end []byte) error {
	if err := w.batchRW.DeleteRange(start, end); err != nil {
		return err
	}
	w.ranges = true
	return nil
}

func (w *writerRW) note(key []byte, cw cachedWrite) {
	if w.writes == nil {
		w.writes = map[string]cachedWrite{}
	}
	w.writes[string(key)] = cw
}

// keys returns the cacheable keys the batch writes.
func (w *writerRW) keys() []string {
	out := make([]string, 0, len(w.writes))
	for k := range w.writes {
		out = append(out, k)
	}
	return out
}
