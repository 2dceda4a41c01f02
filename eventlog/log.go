package eventlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/mod/sumdb/note"
)

// Options configure a Log.
type Options struct {
	// Origin names the log in its checkpoints, normally the homeserver's
	// domain.
	Origin string
	// Signer signs checkpoints. Required for writing.
	Signer note.Signer
	// Handler decides commands and applies events to projections. Required
	// for writing.
	Handler Handler
	// Metrics receives batch statistics; may be nil.
	Metrics Metrics
	// MaxBatch bounds the number of commands committed together (default 1024).
	MaxBatch int
	// CheckpointInterval is the least time between two signed checkpoints
	// stored with a batch (default 1s; negative: every batch). A checkpoint
	// for any size can also be signed on demand (SignedCheckpoint), and the
	// writer stores one for the final size when it opens and closes.
	CheckpointInterval time.Duration
	// Clock returns the time for a batch (default time.Now). Tests may fix it.
	Clock func() time.Time
	// Pebble are extra Pebble options; may be nil.
	Pebble *pebble.Options
	// CachePrefixes are the key prefixes of values worth keeping in
	// memory: read on every command, written rarely (a group's epoch and
	// leaf keys, say). The writer and Reader serve them from a cache that
	// the writer keeps exact. None: no cache.
	CachePrefixes [][]byte
	// CacheBytes bounds the cache (default 32 MiB).
	CacheBytes int
	// MinSyncInterval is how long the writer holds the next batch after an
	// fsync if appends are on their way (see Expect) at that moment, so
	// that they join it; default DefaultMinSyncInterval, negative: never. Fewer,
	// larger batches and fsyncs cost less CPU (an fdatasync costs about
	// 100 µs of CPU on a typical VM disk). With nothing announced, a batch
	// is applied and synced as soon as the previous fsync is done.
	MinSyncInterval time.Duration
	// Prepare, if set, runs once Pebble is open and before the writer
	// starts, with nothing else using the store (a projection layout
	// upgrade, say). An error fails Open.
	Prepare func(db *pebble.DB) error
}

// DefaultMinSyncInterval is the default Options.MinSyncInterval.
const DefaultMinSyncInterval = time.Millisecond

// DefaultPebbleOptions are the Pebble options of a log: a 64 MiB memtable,
// so that flushes and compactions (which compete with the writer for the
// CPU) happen less often under a steady append load, and the operating
// system's file system with write-ahead log files zero-filled ahead of
// their end (ZeroFillWAL), so that a commit's fsync writes data only.
func DefaultPebbleOptions() *pebble.Options {
	return &pebble.Options{MemTableSize: 64 << 20, Logger: pebbleLogger{}, FS: ZeroFillWAL(vfs.Default)}
}

// Log is an open event log. Its methods are safe for concurrent use.
type Log struct {
	db   *pebble.DB
	opts Options

	mu      sync.Mutex
	size    uint64        // committed events
	changed chan struct{} // closed and replaced after each commit

	w     *writer
	cache *readCache // nil: none
	// upcoming counts the appends announced by Expect; lastExpect is
	// when the last one was announced, in nanoseconds since start.
	upcoming   atomic.Int64
	lastExpect atomic.Int64
	start      time.Time
	// batches counts the writer's committed batches.
	batches atomic.Uint64
}

// Expect announces an append that is being prepared (a request whose
// signature is being checked, say) and returns the function to call once
// it has been submitted or abandoned. If appends are announced when an
// fsync completes, the writer holds its next batch for MinSyncInterval so
// that they join it; a homeserver with nothing in preparation syncs each
// batch as soon as it can. Announcing costs two atomic adds.
func (l *Log) Expect() (done func()) {
	l.upcoming.Add(1)
	l.lastExpect.Store(int64(time.Since(l.start)))
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			l.upcoming.Add(-1)
		}
	}
}

// Open opens (creating if needed) the log in dir and starts its writer.
func Open(dir string, opts Options) (*Log, error) {
	po := opts.Pebble
	if po == nil {
		po = DefaultPebbleOptions()
	} else {
		po = po.Clone()
	}
	if po.Logger == nil && po.LoggerAndTracer == nil {
		po.Logger = pebbleLogger{}
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("open pebble %s: %w", dir, err)
	}
	return openDB(db, opts)
}

func openDB(db *pebble.DB, opts Options) (*Log, error) {
	if opts.Prepare != nil {
		if err := opts.Prepare(db); err != nil {
			db.Close()
			return nil, err
		}
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = time.Second
	}
	if opts.MinSyncInterval == 0 {
		opts.MinSyncInterval = DefaultMinSyncInterval
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = 32 << 20
	}
	l := &Log{db: db, opts: opts, changed: make(chan struct{}), start: time.Now()}
	if opts.Handler != nil {
		// Only a writer keeps the cache exact.
		l.cache = newReadCache(opts.CachePrefixes, opts.CacheBytes)
	}
	m, err := readMeta(NewReader(db))
	if err != nil {
		db.Close()
		return nil, err
	}
	l.size = m.size
	if opts.Handler != nil {
		l.w = newWriter(l, m)
		go l.w.run()
	}
	return l, nil
}

// DB returns the underlying Pebble database, for read-only use by
// projections' query code and by tools.
func (l *Log) DB() *pebble.DB { return l.db }

// busyWindow is how long after the last announced append (Expect) the
// log counts as busy serving requests.
const busyWindow = 10 * time.Millisecond

// busy reports whether an append was announced within busyWindow.
func (l *Log) busy() bool {
	last := l.lastExpect.Load()
	return last != 0 && time.Duration(int64(time.Since(l.start))-last) < busyWindow
}

// Reader returns a Reader of the committed state (and of batches applied
// but not yet synced, as Pebble shows them) that serves the cached
// prefixes from memory.
func (l *Log) Reader() Reader {
	if l.cache == nil {
		return NewReader(l.db)
	}
	return cachedReader{pebbleReader: pebbleReader{r: l.db}, c: l.cache}
}

// Close stops the writer after the batch in flight, then closes Pebble.
// Commands submitted after Close started fail with ErrClosed.
func (l *Log) Close() error {
	if l.w != nil {
		l.w.stop()
	}
	return l.db.Close()
}

// Size returns the number of committed events, which is also the sequence
// number of the last one.
func (l *Log) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

func (l *Log) committed(size uint64) {
	l.mu.Lock()
	l.size = size
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *Log) sizeAndChan() (uint64, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size, l.changed
}

// Event returns the committed event with sequence number seq.
func (l *Log) Event(seq uint64) (*Event, error) {
	raw, err := l.RawEvent(seq)
	if err != nil {
		return nil, err
	}
	return DecodeEvent(raw)
}

// RawEvent returns the stored bytes of event seq: the Merkle leaf data.
func (l *Log) RawEvent(seq uint64) ([]byte, error) {
	if seq == 0 || seq > l.Size() {
		return nil, fmt.Errorf("event %d: %w", seq, ErrNotFound)
	}
	return get(l.db, eventKey(seq))
}

// Scan calls fn for each committed event with from <= seq <= to, in order.
// to == 0 means up to the current size.
func (l *Log) Scan(from, to uint64, fn func(*Event) error) error {
	size := l.Size()
	if to == 0 || to > size {
		to = size
	}
	if from == 0 {
		from = 1
	}
	if from > to {
		return nil
	}
	return ScanEvents(NewReader(l.db), from, to, fn)
}

// Tail calls fn for every event from seq from on, waiting for new events
// when it reaches the end, until ctx is done or fn returns an error.
func (l *Log) Tail(ctx context.Context, from uint64, fn func(*Event) error) error {
	if from == 0 {
		from = 1
	}
	for {
		size, changed := l.sizeAndChan()
		if from <= size {
			if err := l.Scan(from, size, fn); err != nil {
				return err
			}
			from = size + 1
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Wait blocks until the log holds at least size events or ctx is done.
func (l *Log) Wait(ctx context.Context, size uint64) error {
	for {
		cur, changed := l.sizeAndChan()
		if cur >= size {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

type meta struct {
	size     uint64
	lastTime int64
}

func readMeta(r Reader) (meta, error) {
	v, err := r.Get(keyMeta)
	if errors.Is(err, ErrNotFound) {
		return meta{}, nil
	}
	if err != nil {
		return meta{}, err
	}
	if len(v) != 16 {
		return meta{}, fmt.Errorf("log meta: %d bytes, want 16", len(v))
	}
	return meta{size: binary.BigEndian.Uint64(v), lastTime: int64(binary.BigEndian.Uint64(v[8:]))}, nil
}

func (m meta) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, m.size)
	return binary.BigEndian.AppendUint64(b, uint64(m.lastTime))
}

// pebbleLogger drops Pebble's informational lines ("Found 0 WALs"), which
// are noise for an operator, and sends its errors to slog.
type pebbleLogger struct{}

func (pebbleLogger) Infof(string, ...any) {}
func (pebbleLogger) Errorf(format string, args ...any) {
	slog.Error("pebble", "msg", fmt.Sprintf(format, args...))
}
func (pebbleLogger) Fatalf(format string, args ...any) {
	slog.Error("pebble fatal", "msg", fmt.Sprintf(format, args...))
	os.Exit(70)
}

// StoredSize returns the committed log size recorded in r, which may be a
// snapshot or another copy of the store.
func StoredSize(r Reader) (uint64, error) {
	m, err := readMeta(r)
	return m.size, err
}

// ScanEvents calls fn for each event with from <= seq <= to stored in r,
// in order. Use it to read events from a snapshot or a copy of the store.
func ScanEvents(r Reader, from, to uint64, fn func(*Event) error) error {
	if from == 0 {
		from = 1
	}
	if from > to {
		return nil
	}
	return r.Scan(eventKey(from), eventKey(to+1), func(k, v []byte) error {
		e, err := DecodeEvent(v)
		if err != nil {
			return fmt.Errorf("event at %x: %w", k, err)
		}
		return fn(e)
	})
}

// Batches returns how many batches the writer has committed since the log
// was opened.
func (l *Log) Batches() uint64 { return l.batches.Load() }

// WALSyncs returns how many WAL fsyncs Pebble has done since the log was
// opened: commands per fsync is the real group-commit batch size.
func (l *Log) WALSyncs() uint64 {
	n, _ := l.walSyncStats()
	return n
}

// WALSyncTime returns the time Pebble's WAL fsyncs have taken since the
// log was opened, all together.
func (l *Log) WALSyncTime() time.Duration {
	_, d := l.walSyncStats()
	return d
}

func (l *Log) walSyncStats() (uint64, time.Duration) {
	h := l.db.Metrics().LogWriter.FsyncLatency
	if h == nil {
		return 0, 0
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return 0, 0
	}
	// Pebble observes the latencies in nanoseconds.
	return m.Histogram.GetSampleCount(), time.Duration(m.Histogram.GetSampleSum())
}
