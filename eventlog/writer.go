package eventlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/tlog"
)

// Handler turns commands into events and events into projection mutations.
// It is the caller-supplied core of the writer: Decide runs the stateful
// checks, Apply derives state. Both must be deterministic functions of their
// inputs (no clock, no randomness, no map-order leaks): Apply is also what
// replay runs.
type Handler interface {
	// Decide checks one command against the current state r, which includes
	// the effects of earlier commands of the same batch, at time now (unix
	// nanoseconds, from the batch). It returns the events to append and the
	// reply for the caller, or an error to reject the command. It must not
	// write.
	Decide(r Reader, now int64, cmd any) (Decision, error)
	// Apply writes the projection mutations of one event. An error aborts
	// the whole batch: it means a bug or corruption, never a bad command.
	Apply(rw ReadWriter, ev *Event) error
}

// Decision is what a Handler decided for an accepted command.
type Decision struct {
	Events []Draft
	// Reply is returned to the caller, and to any later caller presenting
	// the same idempotency key.
	Reply []byte
}

// Command is one input for the writer.
type Command struct {
	// Key, if set, makes the append idempotent: a later command with the
	// same key is not decided again; it gets the first one's Outcome with
	// Duplicate set. Keys are persisted with the events' batch.
	Key []byte
	// Body is passed to Handler.Decide unchanged.
	Body any
}

// Outcome is the writer's answer to an accepted command.
type Outcome struct {
	FirstSeq  uint64 // 0 if the command appended no events
	Count     uint64 // number of events appended
	Reply     []byte
	Duplicate bool // the key was seen before; nothing was appended now
}

// Metrics receives the writer's batch statistics.
type Metrics interface {
	// ObserveBatch is called after each durable commit.
	ObserveBatch(commands, events int, commit time.Duration)
}

// ErrClosed is returned for commands submitted to a closed log.
var ErrClosed = errors.New("eventlog: closed")

// Rejection wraps a Handler's error for a rejected command, so callers can
// tell it apart from a failure of the log itself.
type Rejection struct{ Err error }

func (r *Rejection) Error() string { return r.Err.Error() }
func (r *Rejection) Unwrap() error { return r.Err }

type request struct {
	cmd   Command
	reply chan result
}

type result struct {
	out Outcome
	err error
}

type writer struct {
	l      *Log
	m      meta
	hashes *hashCache
	// checkpointed is the size of the last stored checkpoint, lastSigned
	// when it was signed.
	checkpointed uint64
	lastSigned   time.Time
	in           chan request
	quit         chan struct{}
	done         chan struct{}

	// Applied batches wait here for the WAL fsync that makes them durable.
	pending chan *applied
	synced  chan struct{}
	// syncLoop counts the batches it answered and wakes the writer.
	answered atomic.Uint64
	syncDone chan struct{}
	brokenM  sync.Mutex
	broken   error // set after a failed fsync: nothing more is accepted
}

// applied is a batch applied to Pebble (visible) whose callers wait for
// its WAL fsync.
type applied struct {
	b       *pebble.Batch
	reqs    []request
	results []result
	size    uint64
	events  int
	start   time.Time
}

func newWriter(l *Log, m meta) *writer {
	return &writer{
		l:        l,
		m:        m,
		hashes:   newHashCache(),
		in:       make(chan request, l.opts.MaxBatch),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		pending:  make(chan *applied, 64),
		synced:   make(chan struct{}),
		syncDone: make(chan struct{}, 1),
	}
}

func (w *writer) stop() {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
}

// Append submits cmd to the writer and waits until its batch is durable.
// A command rejected by the Handler returns a *Rejection wrapping the
// Handler's error. If ctx ends first, Append returns ctx.Err(); the command
// may still be committed.
func (l *Log) Append(ctx context.Context, cmd Command) (Outcome, error) {
	return l.AppendAsync(ctx, cmd)()
}

// AppendAsync submits cmd to the writer and returns at once with a
// function that waits for its outcome, as Append would. Commands submitted
// one after another from one goroutine are decided in that order, so a
// caller can keep many in flight (sharing fsyncs) and still rely on each
// one seeing the effects of the ones before it.
func (l *Log) AppendAsync(ctx context.Context, cmd Command) func() (Outcome, error) {
	w := l.w
	if w == nil {
		return failed(errors.New("eventlog: opened read-only"))
	}
	req := request{cmd: cmd, reply: make(chan result, 1)}
	select {
	case <-w.quit:
		return failed(ErrClosed)
	default:
	}
	select {
	case w.in <- req:
	case <-w.done:
		return failed(ErrClosed)
	case <-ctx.Done():
		return failed(ctx.Err())
	}
	return func() (Outcome, error) {
		select {
		case r := <-req.reply:
			return r.out, r.err
		case <-w.done:
			select {
			case r := <-req.reply:
				return r.out, r.err
			default:
				return Outcome{}, ErrClosed
			}
		case <-ctx.Done():
			return Outcome{}, ctx.Err()
		}
	}
}

func failed(err error) func() (Outcome, error) {
	return func() (Outcome, error) { return Outcome{}, err }
}

// run is the writer loop: group commit with few batches in flight.
// Commands are decided as they arrive into an open indexed batch (each
// sees the effects of the ones before it). The open batch is applied, with
// a WAL sync, as soon as fewer than the limit of earlier batches wait for
// their fsync: one while the homeserver is busy with requests on their way
// to the log (Log.Expect in the last few milliseconds), two otherwise.
// Meanwhile commands keep joining the open batch, so the batch size
// follows the load. If appends are announced when an fsync completes, the
// writer holds the next batch for MinSyncInterval so that they join it:
// fewer, larger fsyncs when the homeserver is busy, an immediate one when
// it is not. A batch's callers are answered only once its fsync is done:
// by the writer itself for the only batch in flight while busy (see
// finish), by syncLoop otherwise. Closing fails the open batch (nothing of
// it was applied) and answers the applied ones once synced. The WAL is
// sequential: a crash loses at most a suffix of unsynced batches, none of
// them acknowledged, and never a batch without the ones before it.
func (w *writer) run() {
	go w.syncLoop()
	defer func() {
		close(w.pending)
		<-w.synced
		w.finalCheckpoint()
		close(w.done)
	}()
	w.finalCheckpoint()
	var (
		open    *openBatch
		applied uint64           // batches handed to syncLoop
		hold    <-chan time.Time // pacing: the open batch waits for this
	)
	for {
		inflight := applied - w.answered.Load()
		// Busy serving requests: one batch in flight, so that batches
		// grow and fsyncs stay few. Otherwise a second batch may be
		// applied during an fsync, to be synced right after it: lower
		// latency for pipelines that wait on each other's appends.
		limit := uint64(2)
		if w.l.busy() {
			limit = 1
		}
		ready := open != nil && inflight < limit && hold == nil
		if ready || (open != nil && len(open.reqs) >= w.l.opts.MaxBatch) {
			a := w.apply(open)
			open = nil
			switch {
			case a == nil: // failed; its callers have their answer
			case limit == 1 && inflight == 0:
				// Busy, and the only batch in flight: wait for its
				// fsync here, then pace the next batch as after any.
				w.finish(a)
				hold = w.pace()
			default:
				w.pending <- a
				applied++
			}
			continue
		}
		var in chan request
		if open == nil || len(open.reqs) < w.l.opts.MaxBatch {
			in = w.in
		}
		select {
		case r := <-in:
			if open == nil {
				open = w.openBatch()
			}
			w.decide(open, r)
			// Take what else has arrived meanwhile before looking again.
		drain:
			for !open.failed && len(open.reqs) < w.l.opts.MaxBatch {
				select {
				case r := <-w.in:
					w.decide(open, r)
				default:
					break drain
				}
			}
			if open.failed {
				open = nil
			}
		case <-w.syncDone:
			if applied == w.answered.Load() {
				hold = w.pace()
			}
		case <-hold:
			hold = nil
		case <-w.quit:
			if open != nil {
				w.failBatch(open, ErrClosed)
			}
			w.failPending(ErrClosed)
			return
		}
	}
}

func (w *writer) failPending(err error) {
	for {
		select {
		case r := <-w.in:
			r.reply <- result{err: err}
		default:
			return
		}
	}
}

func (w *writer) isBroken() error {
	w.brokenM.Lock()
	defer w.brokenM.Unlock()
	return w.broken
}

// pace returns the hold for the next batch after an fsync with nothing
// else in flight: MinSyncInterval if appends are on their way, so that
// they join it, else none.
func (w *writer) pace() <-chan time.Time {
	if d := w.l.opts.MinSyncInterval; d > 0 && w.l.upcoming.Load() > 0 {
		return time.After(d)
	}
	return nil
}

// syncLoop waits, batch after batch, for the WAL fsync, then answers the
// batch's callers and tells the writer.
func (w *writer) syncLoop() {
	defer close(w.synced)
	for a := range w.pending {
		w.finish(a)
		w.answered.Add(1)
		select {
		case w.syncDone <- struct{}{}:
		default: // the writer has a wake-up pending already
		}
	}
}

// finish waits for the WAL fsync that makes a durable, then answers a's
// callers.
//
// While the homeserver is busy, the writer calls it itself for the only
// batch in flight rather than hand the batch to syncLoop. Applying a batch
// wakes Pebble's WAL flusher; waking syncLoop right after it put syncLoop
// first in the scheduler's queue and the flusher behind every runnable
// request, so the fsync started only after them: 0.75 ms after the apply
// on average in the delivery benchmark, with the fsync itself taking 0.2
// ms. The writer parking here right after the apply lets the flusher run
// next, and the fsync start at once.
func (w *writer) finish(a *applied) {
	err := a.b.SyncWait()
	took := time.Since(a.start)
	a.b.Close()
	if err != nil {
		// After a failed fsync the WAL's state is unknown: refuse
		// everything from now on; a restart recovers the durable prefix.
		err = fmt.Errorf("fsync log: %w", err)
		w.brokenM.Lock()
		if w.broken == nil {
			w.broken = err
		}
		w.brokenM.Unlock()
	}
	if err == nil {
		err = w.isBroken()
	}
	if err == nil {
		w.l.batches.Add(1)
		w.l.committed(a.size)
		if w.l.opts.Metrics != nil {
			w.l.opts.Metrics.ObserveBatch(len(a.reqs), a.events, took)
		}
	}
	for i, r := range a.reqs {
		if err != nil {
			r.reply <- result{err: err}
		} else {
			r.reply <- a.results[i]
		}
	}
}

// openBatch is the batch commands are being decided into.
type openBatch struct {
	b       *pebble.Batch
	rw      *writerRW
	reqs    []request
	results []result
	m       meta // the log's meta with this batch's events
	now     int64
	events  int
	failed  bool
}

func (w *writer) openBatch() *openBatch {
	b := w.l.db.NewIndexedBatch()
	now := w.l.opts.Clock().UnixNano()
	if now < w.m.lastTime {
		now = w.m.lastTime
	}
	m := w.m
	m.lastTime = now
	return &openBatch{b: b, rw: &writerRW{batchRW: batchRW{b: b}, c: w.l.cache}, m: m, now: now}
}

// failBatch answers every command of an abandoned batch with err.
func (w *writer) failBatch(o *openBatch, err error) {
	w.hashes.reset()
	for _, r := range o.reqs {
		r.reply <- result{err: err}
	}
	o.b.Close()
	o.failed = true
}

// decide decides one command into the open batch. A failure of the log or
// a projection abandons the whole batch, since it could be half-applied.
func (w *writer) decide(o *openBatch, r request) {
	o.reqs = append(o.reqs, r)
	if err := w.isBroken(); err != nil {
		w.failBatch(o, err)
		return
	}
	out, err := w.decideOne(o.rw, o.now, &o.m, r.cmd)
	if err != nil {
		var rej *Rejection
		if !errors.As(err, &rej) {
			w.failBatch(o, err)
			return
		}
		o.results = append(o.results, result{err: err})
		return
	}
	o.events += int(out.Count)
	o.results = append(o.results, result{out: out})
}

// apply applies the open batch (visible at once) and returns it, to be
// finished once durable; nil if it failed (its callers are answered).
func (w *writer) apply(o *openBatch) *applied {
	rw, b, m := o.rw, o.b, o.m
	signed := false
	if m.size != w.checkpointed && time.Since(w.lastSigned) >= w.l.opts.CheckpointInterval {
		if err := w.writeCheckpoint(rw, m.size); err != nil {
			w.failBatch(o, err)
			return nil
		}
		signed = true
	}
	if err := b.Set(keyMeta, m.encode(), nil); err != nil {
		w.failBatch(o, err)
		return nil
	}
	start := time.Now()
	if w.l.cache != nil {
		w.l.cache.beginWrite(rw.keys(), rw.ranges)
	}
	err := w.l.db.ApplyNoSyncWait(b, pebble.Sync)
	if w.l.cache != nil {
		writes := rw.writes
		if rw.ranges {
			writes = nil
		}
		w.l.cache.endWrite(writes, err == nil)
	}
	if err != nil {
		w.failBatch(o, fmt.Errorf("commit batch: %w", err))
		return nil
	}
	w.hashes.prune(int64(m.size))
	w.m = m
	if signed {
		w.checkpointed, w.lastSigned = m.size, time.Now()
	}
	return &applied{b: b, reqs: o.reqs, results: o.results, size: m.size, events: o.events, start: start}
}

// decideOne handles one command inside the batch. It returns a *Rejection
// for a command the Handler refused (nothing written), or another error if
// the batch must be abandoned.
func (w *writer) decideOne(rw ReadWriter, now int64, m *meta, cmd Command) (Outcome, error) {
	if len(cmd.Key) > 0 {
		if len(cmd.Key) > MaxKeyLen {
			return Outcome{}, &Rejection{Err: fmt.Errorf("idempotency key longer than %d bytes", MaxKeyLen)}
		}
		v, err := rw.Get(idemKey(cmd.Key))
		if err == nil {
			out, err := decodeIdem(v)
			if err != nil {
				return Outcome{}, err
			}
			out.Duplicate = true
			return out, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return Outcome{}, err
		}
	}
	d, err := w.l.opts.Handler.Decide(rw, now, cmd.Body)
	if err != nil {
		return Outcome{}, &Rejection{Err: err}
	}
	out := Outcome{Reply: d.Reply, Count: uint64(len(d.Events))}
	for i, dr := range d.Events {
		if len(dr.Type) == 0 || len(dr.Type) > MaxTypeLen || len(dr.Payload) > MaxPayloadLen {
			return Outcome{}, fmt.Errorf("handler produced an invalid event %q (%d bytes)", dr.Type, len(dr.Payload))
		}
		m.size++
		ev := &Event{Seq: m.size, Time: now, Type: dr.Type, Payload: dr.Payload}
		if i == 0 {
			ev.Key = cmd.Key
			out.FirstSeq = ev.Seq
		}
		if err := w.appendEvent(rw, ev); err != nil {
			return Outcome{}, err
		}
		if err := w.l.opts.Handler.Apply(rw, ev); err != nil {
			return Outcome{}, fmt.Errorf("apply event %d (%s): %w", ev.Seq, ev.Type, err)
		}
	}
	if len(cmd.Key) > 0 {
		if err := rw.Set(idemKey(cmd.Key), encodeIdem(out)); err != nil {
			return Outcome{}, err
		}
	}
	return out, nil
}

// appendEvent writes the event and its Merkle hashes.
func (w *writer) appendEvent(rw ReadWriter, ev *Event) error {
	raw := ev.Encode()
	if err := rw.Set(eventKey(ev.Seq), raw); err != nil {
		return err
	}
	n := int64(ev.Seq - 1)
	hashes, err := tlog.StoredHashes(n, raw, w.hashes.reader(rw))
	if err != nil {
		return fmt.Errorf("merkle hashes for %d: %w", ev.Seq, err)
	}
	packed := make([]byte, 0, len(hashes)*tlog.HashSize)
	for _, h := range hashes {
		packed = append(packed, h[:]...)
	}
	if err := rw.Set(hashKey(n), packed); err != nil {
		return err
	}
	w.hashes.put(n, hashes)
	return nil
}

func encodeIdem(o Outcome) []byte {
	b := binary.BigEndian.AppendUint64(nil, o.FirstSeq)
	b = binary.BigEndian.AppendUint64(b, o.Count)
	return append(b, o.Reply...)
}

func decodeIdem(v []byte) (Outcome, error) {
	if len(v) < 16 {
		return Outcome{}, fmt.Errorf("idempotency entry: %d bytes", len(v))
	}
	return Outcome{
		FirstSeq: binary.BigEndian.Uint64(v),
		Count:    binary.BigEndian.Uint64(v[8:]),
		Reply:    append([]byte(nil), v[16:]...),
	}, nil
}
