package audit

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/validation"
	"golang.org/x/mod/sumdb/tlog"
)

// Options configure Run.
type Options struct {
	// VerifierKey is the note verifier key of the log's checkpoint signer
	// ("<domain>+<hash>+<key>"). Required.
	VerifierKey string
	// Validator re-runs the checks; Projections rebuilds the state they
	// read. Both must be the homeserver's own (node.NewValidator,
	// node.Projections) or equivalent. Required.
	Validator   *validation.Validator
	Projections *projections.Set
	// Partial names, for the report, the checks Validator can do only in
	// part (see NewValidator).
	Partial []string
	// TempDir is where the scratch store of the replay is created and
	// removed again (default os.TempDir()). Never inside the audited store.
	TempDir string
	// Progress, if not nil, is called now and then with the work done and
	// the total: every event is read twice, once by the Merkle check and
	// once by the replay, so total is twice the log size.
	Progress func(done, total uint64)
	// MaxFindings bounds the rejected events listed (default 10000); the
	// count is always exact.
	MaxFindings int
}

// Report is the outcome of an audit.
type Report struct {
	Origin      string `json:"origin"`
	VerifierKey string `json:"verifier_key"`
	// LogSize is the number of events the store says it holds.
	LogSize    uint64           `json:"log_size"`
	Merkle     MerkleResult     `json:"merkle"`
	Validation ValidationResult `json:"validation"`
	// OK is true only if every check held; see Report.Problems.
	OK bool `json:"ok"`
}

// MerkleResult is the tamper-evidence part of a Report (LOG-3).
type MerkleResult struct {
	// CheckpointError is set if there is no signed checkpoint or it does
	// not verify with the verifier key; the other fields are then empty.
	CheckpointError string `json:"checkpoint_error,omitempty"`
	// Checkpoint is the text of the signed checkpoint checked against.
	Checkpoint     string `json:"checkpoint,omitempty"`
	CheckpointSize uint64 `json:"checkpoint_size"`
	CheckpointRoot string `json:"checkpoint_root,omitempty"`
	// Root is the tree hash recomputed from the event bytes over all
	// events; RootMatches compares the prefix of checkpoint size with the
	// signed root.
	Root        string `json:"root,omitempty"`
	RootMatches bool   `json:"root_matches"`
	// StoredTreeMatches reports whether the stored hashes (which serve
	// inclusion and consistency proofs) give the same root over the whole
	// log as the event bytes.
	StoredTreeMatches bool `json:"stored_tree_matches"`
	// Events is the number of events found in the store.
	Events uint64 `json:"events"`
	// Unsigned is the number of events after the checkpoint: covered by
	// their stored leaf hashes but by no signature yet.
	Unsigned uint64 `json:"unsigned_events"`
	// BadEvents are events whose bytes do not match their stored leaf
	// hash, do not decode, or claim another sequence number.
	BadEvents []uint64 `json:"bad_events"`
	// Missing are sequence numbers with no stored event.
	Missing []uint64 `json:"missing"`
}

// OK reports whether the Merkle checks all held.
func (m *MerkleResult) OK() bool {
	return m.CheckpointError == "" && m.RootMatches && m.StoredTreeMatches &&
		len(m.BadEvents) == 0 && len(m.Missing) == 0
}

// ValidationResult is the replay part of a Report (LOG-4).
type ValidationResult struct {
	// Replayed is the number of events re-validated.
	Replayed uint64 `json:"replayed"`
	// RejectedCount is the number of events that would not be accepted
	// today; Rejected lists them (up to Options.MaxFindings).
	RejectedCount uint64    `json:"rejected_count"`
	Rejected      []Finding `json:"rejected"`
	// Partial names the checks that could be done only in part for lack
	// of the homeserver's private keys (see NewValidator).
	Partial []string `json:"partial_checks,omitempty"`
	// ProjectionsMatch reports whether the rebuilt projections equal the
	// ones stored with the log (LOG-2); ProjectionsDiff names the first key
	// where they differ.
	ProjectionsMatch bool   `json:"projections_match"`
	ProjectionsDiff  string `json:"projections_diff,omitempty"`
	// Digest is projections.Digest of the rebuilt state, in hex.
	Digest string `json:"digest"`
}

// Finding is one event that would not be accepted today.
type Finding struct {
	Seq  uint64 `json:"seq"`
	Type string `json:"type,omitempty"`
	// Code is the validation package's stable rejection code, or
	// CodeApplyFailed.
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// CodeApplyFailed marks an event that passed validation but that the
// projections could not apply: the live writer would have refused its batch.
const CodeApplyFailed = "apply_failed"

// Problems lists, in words, what did not hold; empty if the audit passed.
func (r *Report) Problems() []string {
	var out []string
	m := &r.Merkle
	if m.CheckpointError != "" {
		out = append(out, "checkpoint: "+m.CheckpointError)
	} else {
		if !m.RootMatches {
			out = append(out, fmt.Sprintf("the root recomputed from the events differs from the signed root at size %d", m.CheckpointSize))
		}
		if !m.StoredTreeMatches {
			out = append(out, "the stored Merkle hashes do not give the root recomputed from the events")
		}
	}
	if n := len(m.BadEvents); n > 0 {
		out = append(out, fmt.Sprintf("%d events do not match their leaf hash: %s", n, seqList(m.BadEvents)))
	}
	if n := len(m.Missing); n > 0 {
		out = append(out, fmt.Sprintf("%d events are missing: %s", n, seqList(m.Missing)))
	}
	v := &r.Validation
	if v.RejectedCount > 0 {
		seqs := make([]uint64, 0, len(v.Rejected))
		for _, f := range v.Rejected {
			seqs = append(seqs, f.Seq)
		}
		out = append(out, fmt.Sprintf("%d events would not be accepted today: %s", v.RejectedCount, seqList(seqs)))
	}
	if !v.ProjectionsMatch {
		out = append(out, "the rebuilt projections differ from the stored ones at key "+v.ProjectionsDiff)
	}
	return out
}

func seqList(s []uint64) string {
	const show = 20
	out := ""
	for i, x := range s {
		if i == show {
			return out + fmt.Sprintf(" … (%d more)", len(s)-show)
		}
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprint(x)
	}
	return out
}

// Run audits the log l: the Merkle checks and the re-validation replay run
// concurrently, each reading every event once. It returns an error only if
// the audit itself could not be done (unreadable store, scratch store
// failure); everything found wrong with the log is in the Report.
func Run(ctx context.Context, l *eventlog.Log, opts Options) (*Report, error) {
	if opts.VerifierKey == "" || opts.Validator == nil || opts.Projections == nil {
		return nil, errors.New("audit: VerifierKey, Validator and Projections are required")
	}
	if opts.MaxFindings <= 0 {
		opts.MaxFindings = 10000
	}
	size := l.Size()
	r := &Report{VerifierKey: opts.VerifierKey, LogSize: size}
	r.Origin, _ = VerifierName(opts.VerifierKey)

	var prog progressSum
	prog.total, prog.fn = 2*size, opts.Progress

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var merkleErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		merkleErr = checkMerkle(l, opts.VerifierKey, &r.Merkle, prog.part(0))
	}()
	var missing []uint64
	replayErr := replay(ctx, l, opts, &r.Validation, &missing, prog.part(1))
	if replayErr != nil {
		cancel()
	}
	wg.Wait()
	if err := errors.Join(merkleErr, replayErr); err != nil {
		return nil, err
	}
	if r.Merkle.CheckpointError != "" {
		// Without a checkpoint the Merkle pass did not run; the replay
		// still knows which events are missing.
		r.Merkle.Missing = missing
	}
	prog.finish()
	r.OK = len(r.Problems()) == 0
	return r, nil
}

// checkMerkle fills m from eventlog's Verify against the latest checkpoint.
func checkMerkle(l *eventlog.Log, key string, m *MerkleResult, progress func(done, total uint64)) error {
	size := l.Size()
	signed, err := l.LatestCheckpoint()
	if errors.Is(err, eventlog.ErrNotFound) {
		if size == 0 {
			m.RootMatches, m.StoredTreeMatches = true, true
			return nil
		}
		m.CheckpointError = fmt.Sprintf("the store holds %d events but no signed checkpoint", size)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	v, err := l.Verify(signed, key, progress)
	if errors.Is(err, eventlog.ErrBadCheckpoint) {
		m.CheckpointError = err.Error()
		return nil
	}
	if err != nil {
		// Verify refuses a checkpoint larger than the log: the log lost
		// signed events, which is a finding, not a failure of the audit.
		if c, perr := eventlog.OpenCheckpoint(signed, key); perr == nil && c.Size > size {
			m.CheckpointError = fmt.Sprintf("the signed checkpoint covers %d events but the store holds only %d", c.Size, size)
			return nil
		}
		return fmt.Errorf("verify: %w", err)
	}
	m.Checkpoint = eventlog.CheckpointBody(signed)
	m.CheckpointSize = v.Checkpoint.Size
	m.CheckpointRoot = b64(v.Checkpoint.Root[:])
	m.Root = b64(v.Root[:])
	m.RootMatches = v.RootMatches
	m.Events = v.Events
	m.Unsigned = size - v.Checkpoint.Size
	m.BadEvents = nonNil(v.BadEvents)
	m.Missing = nonNil(v.Missing)
	if th, err := l.TreeHead(size); err == nil {
		m.StoredTreeMatches = th == v.Root
	}
	return nil
}

func nonNil(s []uint64) []uint64 {
	if s == nil {
		return []uint64{}
	}
	return s
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// readItem is one event as the reader goroutine found it.
type readItem struct {
	seq     uint64
	ev      *eventlog.Event // nil if missing or undecodable
	missing bool
	err     error // why the stored bytes are not an event
}

// replayCommitBytes bounds the scratch batch; reads go through the indexed
// batch, so committing is only about memory.
const replayCommitBytes = 16 << 20

// replay rebuilds the projections into a scratch store, re-validating each
// event against the state just before it.
func replay(ctx context.Context, l *eventlog.Log, opts Options, res *ValidationResult, missing *[]uint64, progress func(done, total uint64)) error {
	res.Partial = opts.Partial
	res.Rejected = []Finding{}
	dir, err := os.MkdirTemp(opts.TempDir, "homeserver-audit-")
	if err != nil {
		return fmt.Errorf("scratch store: %w", err)
	}
	defer os.RemoveAll(dir)
	scratch, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}, DisableWAL: true})
	if err != nil {
		return fmt.Errorf("scratch store: %w", err)
	}
	defer scratch.Close()

	size := l.Size()
	ctx, cancel := context.WithCancel(ctx)
	items := readEvents(ctx, l, size)
	defer func() {
		// Stop the reader and wait for it, so it is done with l when the
		// caller closes it.
		cancel()
		for range items {
		}
	}()
	b := scratch.NewIndexedBatch()
	defer func() { b.Close() }()
	rw := eventlog.NewBatchReadWriter(b)
	var findings []Finding // sorted and cut to MaxFindings at the end
	var fmu sync.Mutex
	reject := func(f Finding) {
		fmu.Lock()
		res.RejectedCount++
		findings = append(findings, f)
		fmu.Unlock()
	}
	// The checks that read no state (signature verifications) run on a
	// worker per core while the replay goes on.
	work := make(chan func(), 256)
	var wg sync.WaitGroup
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				f()
			}
		}()
	}
	workersDone := false
	stopWorkers := func() {
		if !workersDone {
			workersDone = true
			close(work)
			wg.Wait()
		}
	}
	defer stopWorkers()
	var done uint64
	for chunk := range items {
		for _, it := range chunk {
			done++
			if it.missing {
				*missing = append(*missing, it.seq)
				continue
			}
			if it.err != nil {
				if errors.Is(it.err, errRead) {
					return it.err
				}
				reject(Finding{Seq: it.seq, Code: validation.CodeMalformed, Reason: it.err.Error()})
				continue
			}
			ev := it.ev
			res.Replayed++
			deferred, err := opts.Validator.RevalidateDeferred(rw, ev)
			if deferred != nil {
				seq, typ := ev.Seq, ev.Type
				work <- func() {
					if err := deferred(); err != nil {
						f := Finding{Seq: seq, Type: typ, Code: validation.CodeInternal, Reason: err.Error()}
						if e, ok := validation.AsError(err); ok {
							f.Code, f.Reason = e.Code, e.Msg
						}
						reject(f)
					}
				}
			}
			if err != nil {
				e, ok := validation.AsError(err)
				if !ok {
					return fmt.Errorf("revalidate event %d: %w", ev.Seq, err)
				}
				reject(Finding{Seq: ev.Seq, Type: ev.Type, Code: e.Code, Reason: e.Msg})
				if e.Code == validation.CodeMalformed {
					continue // nothing to apply
				}
				// Applied as stored: later events are judged against the
				// state the homeserver really served.
			}
			if err := opts.Projections.Apply(rw, ev); err != nil {
				reject(Finding{Seq: ev.Seq, Type: ev.Type, Code: CodeApplyFailed, Reason: err.Error()})
				continue
			}
			if b.Len() >= replayCommitBytes {
				if err := b.Commit(pebble.NoSync); err != nil {
					return fmt.Errorf("scratch commit: %w", err)
				}
				b.Close()
				b = scratch.NewIndexedBatch()
				rw = eventlog.NewBatchReadWriter(b)
			}
		}
		if progress != nil {
			progress(done, size)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	stopWorkers()
	slices.SortFunc(findings, func(a, b Finding) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(findings) > opts.MaxFindings {
		findings = findings[:opts.MaxFindings]
	}
	res.Rejected = append(res.Rejected, findings...)
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("scratch commit: %w", err)
	}
	digest, _, err := projections.Digest(eventlog.NewReader(scratch))
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	res.Digest = fmt.Sprintf("%x", digest)
	d, err := projections.Compare(l.DB(), scratch)
	if err != nil {
		return fmt.Errorf("compare projections: %w", err)
	}
	res.ProjectionsMatch = d.Equals
	if !d.Equals {
		res.ProjectionsDiff = fmt.Sprintf("%q", d.Key)
	}
	return nil
}

// errRead marks a failure to read the store, as opposed to stored bytes
// that are not a valid event.
var errRead = errors.New("read event")

// readEvents reads and decodes events 1..size in a goroutine, ahead of the
// replay, in chunks to keep channel overhead small. Decoding is the
// stateless part of the audit; validation needs the state and stays in
// order.
func readEvents(ctx context.Context, l *eventlog.Log, size uint64) <-chan []readItem {
	const chunk = 256
	out := make(chan []readItem, 8)
	go func() {
		defer close(out)
		buf := make([]readItem, 0, chunk)
		for seq := uint64(1); seq <= size; seq++ {
			buf = append(buf, readOne(l, seq))
			if len(buf) == chunk || seq == size {
				select {
				case out <- buf:
				case <-ctx.Done():
					return
				}
				buf = make([]readItem, 0, chunk)
			}
		}
	}()
	return out
}

func readOne(l *eventlog.Log, seq uint64) readItem {
	raw, err := l.RawEvent(seq)
	if errors.Is(err, eventlog.ErrNotFound) {
		return readItem{seq: seq, missing: true}
	}
	if err != nil {
		return readItem{seq: seq, err: fmt.Errorf("%w %d: %v", errRead, seq, err)}
	}
	ev, err := eventlog.DecodeEvent(raw)
	if err != nil {
		return readItem{seq: seq, err: err}
	}
	if ev.Seq != seq {
		return readItem{seq: seq, err: fmt.Errorf("%w: stored at %d, claims sequence number %d", eventlog.ErrMalformedEvent, seq, ev.Seq)}
	}
	return readItem{seq: seq, ev: ev}
}

// progressSum adds up the progress of concurrent parts for one callback.
type progressSum struct {
	mu    sync.Mutex
	fn    func(done, total uint64)
	total uint64
	parts [2]uint64
}

func (p *progressSum) part(i int) func(done, total uint64) {
	return func(done, _ uint64) {
		if p.fn == nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.parts[i] = done
		p.fn(p.parts[0]+p.parts[1], p.total)
	}
}

func (p *progressSum) finish() {
	if p.fn != nil {
		p.fn(p.total, p.total)
	}
}

// Hash decodes a base64 Merkle hash as found in reports and exports.
func Hash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, fmt.Errorf("hash %q: want %d bytes of base64", s, tlog.HashSize)
	}
	copy(h[:], b)
	return h, nil
}
