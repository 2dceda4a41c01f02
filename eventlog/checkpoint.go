package eventlog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a tree head: the log's origin, its size and its root hash.
// A signed checkpoint is a note (golang.org/x/mod/sumdb/note) whose text is
// the checkpoint in the C2SP tlog-checkpoint layout:
//
//	<origin>\n<size>\n<base64 root>\n
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   tlog.Hash
}

// Text returns the checkpoint body that is signed.
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ErrBadCheckpoint is returned for a checkpoint that does not parse or whose
// signature does not verify.
var ErrBadCheckpoint = errors.New("eventlog: bad checkpoint")

// ParseCheckpoint parses a checkpoint body (not its signatures).
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[3] != "" || lines[0] == "" {
		return Checkpoint{}, fmt.Errorf("%w: want 3 lines", ErrBadCheckpoint)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: size %q", ErrBadCheckpoint, lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("%w: root %q", ErrBadCheckpoint, lines[2])
	}
	c := Checkpoint{Origin: lines[0], Size: size}
	copy(c.Root[:], root)
	return c, nil
}

// SignCheckpoint returns c as a note signed by s.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Text()}, s)
}

// OpenCheckpoint verifies a signed checkpoint with the verifier key (a
// note verifier key string, "name+hash+key") and returns it. The key's name
// must equal the checkpoint's origin.
func OpenCheckpoint(signed []byte, verifierKey string) (Checkpoint, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: verifier key: %v", ErrBadCheckpoint, err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: origin %q signed by key %q", ErrBadCheckpoint, c.Origin, v.Name())
	}
	return c, nil
}

// writeCheckpoint signs the tree head of size and stores it in the batch.
func (w *writer) writeCheckpoint(rw ReadWriter, size uint64) error {
	if w.l.opts.Signer == nil {
		return nil
	}
	root, err := tlog.TreeHash(int64(size), w.hashes.reader(rw))
	if err != nil {
		return fmt.Errorf("tree hash %d: %w", size, err)
	}
	signed, err := SignCheckpoint(Checkpoint{Origin: w.l.opts.Origin, Size: size, Root: root}, w.l.opts.Signer)
	if err != nil {
		return fmt.Errorf("sign checkpoint: %w", err)
	}
	return rw.Set(keyCheckpoint, signed)
}

// finalCheckpoint stores a checkpoint for the current size if the stored
// one is older: on open (after a crash the last batches may be unsigned)
// and on close. A failure is only logged: the events are durable, and a
// later batch or SignedCheckpoint covers them.
func (w *writer) finalCheckpoint() {
	if w.l.opts.Signer == nil || w.m.size == 0 {
		return
	}
	if stored, err := get(w.l.db, keyCheckpoint); err == nil {
		if c, err := ParseCheckpoint(CheckpointBody(stored)); err == nil && c.Size == w.m.size {
			w.checkpointed = c.Size
			return
		}
	}
	b := w.l.db.NewIndexedBatch()
	defer b.Close()
	err := w.writeCheckpoint(batchRW{b: b}, w.m.size)
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	if err != nil {
		slog.Error("store checkpoint", "size", w.m.size, "err", err)
		return
	}
	w.checkpointed, w.lastSigned = w.m.size, time.Now()
}

// LatestCheckpoint returns the signed checkpoint stored with the last
// committed batch, or ErrNotFound for an empty log.
func (l *Log) LatestCheckpoint() ([]byte, error) {
	return get(l.db, keyCheckpoint)
}

// SignedCheckpoint signs the tree head of the given size now. Any committed
// size can be signed, since the hashes of every prefix are stored.
func (l *Log) SignedCheckpoint(size uint64) ([]byte, error) {
	if l.opts.Signer == nil {
		return nil, errors.New("eventlog: no signer")
	}
	root, err := l.TreeHead(size)
	if err != nil {
		return nil, err
	}
	return SignCheckpoint(Checkpoint{Origin: l.opts.Origin, Size: size, Root: root}, l.opts.Signer)
}

// CheckpointBody returns the text of a signed checkpoint without verifying
// it, for display.
func CheckpointBody(signed []byte) string {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return string(signed)
	}
	return string(signed[:i+1])
}
