package audit

import (
	"errors"
	"fmt"

	"github.com/mlshome/homeserver/eventlog"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrBeyondCheckpoint is returned when a range reaches past the signed
// checkpoint it is to be proven against.
var ErrBeyondCheckpoint = errors.New("beyond the signed checkpoint")

// ErrNoSigner is returned by CheckpointFor when the size asked for has no
// stored checkpoint and the log was opened without the log's signing key.
var ErrNoSigner = errors.New("signing a checkpoint for this size needs the log's private key")

// CheckpointFor returns a signed checkpoint for the tree of the given size
// (0: the latest stored checkpoint's size) and its parsed form, verified
// with verifierKey. The latest stored checkpoint is used when it has that
// size. Otherwise a new one is signed with the log's signer (OpenLog with
// a signer), but only after checking that the tree of that size, recomputed
// from the event bytes, extends (or is a prefix of) the stored signed tree:
// a tool must never sign a root it has not recomputed.
func CheckpointFor(l *eventlog.Log, size uint64, verifierKey string) ([]byte, eventlog.Checkpoint, error) {
	stored, err := l.LatestCheckpoint()
	if errors.Is(err, eventlog.ErrNotFound) {
		return nil, eventlog.Checkpoint{}, errors.New("the store has no signed checkpoint")
	}
	if err != nil {
		return nil, eventlog.Checkpoint{}, err
	}
	c, err := eventlog.OpenCheckpoint(stored, verifierKey)
	if err != nil {
		return nil, eventlog.Checkpoint{}, fmt.Errorf("stored checkpoint: %w", err)
	}
	if c.Size > l.Size() {
		return nil, eventlog.Checkpoint{}, fmt.Errorf("the stored checkpoint covers %d events but the store holds %d", c.Size, l.Size())
	}
	if th, err := l.TreeHead(c.Size); err != nil || th != c.Root {
		return nil, eventlog.Checkpoint{}, fmt.Errorf("the stored Merkle hashes do not match the signed checkpoint of size %d (run homeserver audit)", c.Size)
	}
	if size == 0 || size == c.Size {
		return stored, c, nil
	}
	if size > l.Size() {
		return nil, eventlog.Checkpoint{}, fmt.Errorf("tree size %d is beyond the log size %d", size, l.Size())
	}
	root, err := recomputeRoot(l, size)
	if err != nil {
		return nil, eventlog.Checkpoint{}, err
	}
	if th, err := l.TreeHead(size); err != nil || th != root {
		return nil, eventlog.Checkpoint{}, fmt.Errorf("the stored Merkle hashes for size %d differ from the events (run homeserver audit)", size)
	}
	oldSize, newSize := min(size, c.Size), max(size, c.Size)
	oldRoot, newRoot := root, c.Root
	if size > c.Size {
		oldRoot, newRoot = c.Root, root
	}
	proof, err := l.ProveConsistency(oldSize, newSize)
	if err != nil {
		return nil, eventlog.Checkpoint{}, err
	}
	if err := eventlog.VerifyConsistency(proof, newSize, newRoot, oldSize, oldRoot); err != nil {
		return nil, eventlog.Checkpoint{}, fmt.Errorf("the tree of size %d is not consistent with the signed checkpoint of size %d: %w", size, c.Size, err)
	}
	signed, err := l.SignedCheckpoint(size)
	if err != nil {
		return nil, eventlog.Checkpoint{}, fmt.Errorf("%w (latest signed checkpoint: size %d): %v", ErrNoSigner, c.Size, err)
	}
	nc, err := eventlog.OpenCheckpoint(signed, verifierKey)
	if err != nil {
		return nil, eventlog.Checkpoint{}, fmt.Errorf("the log key does not match the verifier key: %w", err)
	}
	return signed, nc, nil
}

// recomputeRoot returns the tree hash of events 1..size computed from the
// stored event bytes alone.
func recomputeRoot(l *eventlog.Log, size uint64) (tlog.Hash, error) {
	var f eventlog.Frontier
	for seq := uint64(1); seq <= size; seq++ {
		raw, err := l.RawEvent(seq)
		if err != nil {
			return tlog.Hash{}, fmt.Errorf("event %d: %w", seq, err)
		}
		f.Add(tlog.RecordHash(raw))
	}
	return f.Root(), nil
}

func hashStrings(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = b64(h[:])
	}
	return out
}

func parseHashes(ss []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		h, err := Hash(s)
		if err != nil {
			return nil, fmt.Errorf("proof hash %d: %w", i, err)
		}
		out[i] = h
	}
	return out, nil
}
