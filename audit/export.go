package audit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/mlshome/homeserver/eventlog"
)

// ExportFormat names the export file format in its header.
const ExportFormat = "mlshome-log-export-v1"

// ExportHeader is the first line of an export: which signed tree the
// inclusion proofs of the following lines are against.
//
// An export is NDJSON: this header, then one ExportedEvent per line for
// every sequence number From..To in order.
type ExportHeader struct {
	Format string `json:"format"`
	Origin string `json:"origin"`
	// VerifierKey is the key the exporter verified Checkpoint with. A
	// verifier must use a key it trusts, not this one.
	VerifierKey string `json:"verifier_key"`
	// Checkpoint is the signed checkpoint note, text and signatures.
	Checkpoint string `json:"checkpoint"`
	TreeSize   uint64 `json:"tree_size"`
	From       uint64 `json:"from"`
	To         uint64 `json:"to"`
}

// ExportedEvent is one event of an export.
type ExportedEvent struct {
	Seq uint64 `json:"seq"`
	// Event is the stored bytes of the event (the Merkle leaf), base64.
	Event string `json:"event"`
	// Proof is the inclusion proof of the event in the tree of the
	// header's checkpoint, as base64 hashes.
	Proof []string `json:"proof"`
}

// ExportOptions select what Export writes.
type ExportOptions struct {
	// From and To bound the sequence numbers (inclusive). From 0 means 1;
	// To 0 means the checkpoint's size.
	From, To uint64
	// Size is the tree size to prove against (0: the latest stored
	// checkpoint's). See CheckpointFor.
	Size uint64
	// VerifierKey verifies the checkpoint before anything is exported.
	VerifierKey string
}

// Export writes events From..To of l to w with inclusion proofs against one
// signed checkpoint, and returns the header it wrote. Every proof is checked
// before it is written, so a damaged store fails the export instead of
// producing a file that does not verify.
func Export(w io.Writer, l *eventlog.Log, opts ExportOptions) (*ExportHeader, error) {
	signed, c, err := CheckpointFor(l, opts.Size, opts.VerifierKey)
	if err != nil {
		return nil, err
	}
	from, to := max(opts.From, 1), opts.To
	if to == 0 {
		to = c.Size
	}
	if to > c.Size {
		return nil, fmt.Errorf("--to %d: %w of size %d", to, ErrBeyondCheckpoint, c.Size)
	}
	if from > to {
		return nil, fmt.Errorf("empty range %d..%d", from, to)
	}
	h := &ExportHeader{
		Format: ExportFormat, Origin: c.Origin, VerifierKey: opts.VerifierKey,
		Checkpoint: string(signed), TreeSize: c.Size, From: from, To: to,
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := writeLine(bw, h); err != nil {
		return nil, err
	}
	for seq := from; seq <= to; seq++ {
		raw, err := l.RawEvent(seq)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", seq, err)
		}
		proof, err := l.ProveInclusion(seq, c.Size)
		if err != nil {
			return nil, fmt.Errorf("prove %d: %w", seq, err)
		}
		if err := eventlog.VerifyInclusion(proof, c.Size, c.Root, seq, raw); err != nil {
			return nil, fmt.Errorf("event %d is not in the signed tree (run homeserver audit): %w", seq, err)
		}
		if err := writeLine(bw, ExportedEvent{Seq: seq, Event: b64(raw), Proof: hashStrings(proof)}); err != nil {
			return nil, err
		}
	}
	return h, bw.Flush()
}

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// LineError names the first line of an export that does not verify
// (lines count from 1, the header).
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// maxExportLine bounds one line: an event of eventlog.MaxPayloadLen in
// base64, plus its proof.
const maxExportLine = 4*(eventlog.MaxPayloadLen+4*eventlog.MaxKeyLen)/3 + 64<<10

// VerifyExport checks an export offline with only the log's verifier key:
// the checkpoint's signature; that the lines hold exactly the sequence
// numbers From..To of the header, in order; that each event decodes and
// claims the sequence number of its line; and each inclusion proof against
// the checkpoint. It returns the verified header, or a *LineError naming
// the first line that fails.
//
// Success proves that the log the key signed holds exactly these bytes at
// these sequence numbers. It does not prove the events were valid (that is
// Run's replay) nor that the log holds nothing else.
func VerifyExport(r io.Reader, verifierKey string) (*ExportHeader, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	line := 0
	fail := func(format string, args ...any) error {
		return &LineError{Line: line, Err: fmt.Errorf(format, args...)}
	}
	next := func(v any) error {
		line++
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return fail("%v", err)
			}
			return io.EOF
		}
		if err := decodeStrict(sc.Bytes(), v); err != nil {
			return fail("%v", err)
		}
		return nil
	}
	var h ExportHeader
	if err := next(&h); err != nil {
		if err == io.EOF {
			return nil, fail("empty file: want a header")
		}
		return nil, err
	}
	if h.Format != ExportFormat {
		return nil, fail("format %q, want %q", h.Format, ExportFormat)
	}
	c, err := eventlog.OpenCheckpoint([]byte(h.Checkpoint), verifierKey)
	if err != nil {
		return nil, fail("checkpoint: %v", err)
	}
	if c.Origin != h.Origin || c.Size != h.TreeSize {
		return nil, fail("header says origin %q size %d, the signed checkpoint %q size %d", h.Origin, h.TreeSize, c.Origin, c.Size)
	}
	if h.From == 0 || h.From > h.To || h.To > c.Size {
		return nil, fail("range %d..%d is not within the tree of size %d", h.From, h.To, c.Size)
	}
	for seq := h.From; seq <= h.To; seq++ {
		var e ExportedEvent
		if err := next(&e); err != nil {
			if err == io.EOF {
				return nil, fail("file ends before event %d; the header promises %d..%d", seq, h.From, h.To)
			}
			return nil, err
		}
		if e.Seq != seq {
			return nil, fail("sequence number %d, want %d", e.Seq, seq)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(e.Event)
		if err != nil {
			return nil, fail("event %d: bad base64: %v", seq, err)
		}
		ev, err := eventlog.DecodeEvent(raw)
		if err != nil {
			return nil, fail("event %d: %v", seq, err)
		}
		if ev.Seq != seq {
			return nil, fail("event on the line of %d claims sequence number %d", seq, ev.Seq)
		}
		proof, err := parseHashes(e.Proof)
		if err != nil {
			return nil, fail("event %d: %v", seq, err)
		}
		if err := eventlog.VerifyInclusion(proof, c.Size, c.Root, seq, raw); err != nil {
			return nil, fail("event %d: inclusion proof does not verify: %v", seq, err)
		}
	}
	var extra json.RawMessage
	if err := next(&extra); err != io.EOF {
		if err == nil {
			return nil, fail("unexpected line after event %d", h.To)
		}
		return nil, err
	}
	return &h, nil
}

// decodeStrict decodes exactly one JSON value with only known fields.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	var rest json.RawMessage
	if err := d.Decode(&rest); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
