package audit

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/mlshome/homeserver/eventlog"
)

// InclusionProof proves that one event is in a signed tree.
type InclusionProof struct {
	Origin      string `json:"origin"`
	VerifierKey string `json:"verifier_key"`
	// Checkpoint is the signed checkpoint note of the tree.
	Checkpoint string   `json:"checkpoint"`
	TreeSize   uint64   `json:"tree_size"`
	Seq        uint64   `json:"seq"`
	Event      string   `json:"event"` // stored bytes, base64
	Proof      []string `json:"proof"` // base64 hashes
}

// Prove returns the inclusion proof of event seq in the tree of the given
// size (0: the latest stored checkpoint's), with its signed checkpoint (see
// CheckpointFor). The proof is checked before it is returned.
func Prove(l *eventlog.Log, seq, size uint64, verifierKey string) (*InclusionProof, error) {
	signed, c, err := CheckpointFor(l, size, verifierKey)
	if err != nil {
		return nil, err
	}
	if seq == 0 || seq > c.Size {
		return nil, fmt.Errorf("event %d: %w of size %d", seq, ErrBeyondCheckpoint, c.Size)
	}
	raw, err := l.RawEvent(seq)
	if err != nil {
		return nil, fmt.Errorf("event %d: %w", seq, err)
	}
	proof, err := l.ProveInclusion(seq, c.Size)
	if err != nil {
		return nil, err
	}
	p := &InclusionProof{
		Origin: c.Origin, VerifierKey: verifierKey, Checkpoint: string(signed), TreeSize: c.Size,
		Seq: seq, Event: b64(raw), Proof: hashStrings(proof),
	}
	if err := p.Verify(verifierKey); err != nil {
		return nil, fmt.Errorf("event %d is not in the signed tree (run homeserver audit): %w", seq, err)
	}
	return p, nil
}

// Verify checks p with only the verifier key: the checkpoint's signature,
// that the event decodes and claims p.Seq, and the proof against the
// signed root.
func (p *InclusionProof) Verify(verifierKey string) error {
	c, err := eventlog.OpenCheckpoint([]byte(p.Checkpoint), verifierKey)
	if err != nil {
		return err
	}
	if c.Size != p.TreeSize || c.Origin != p.Origin {
		return fmt.Errorf("proof claims %q size %d, checkpoint is %q size %d", p.Origin, p.TreeSize, c.Origin, c.Size)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(p.Event)
	if err != nil {
		return fmt.Errorf("event: %w", err)
	}
	ev, err := eventlog.DecodeEvent(raw)
	if err != nil {
		return err
	}
	if ev.Seq != p.Seq {
		return fmt.Errorf("event claims sequence number %d, proof is for %d", ev.Seq, p.Seq)
	}
	proof, err := parseHashes(p.Proof)
	if err != nil {
		return err
	}
	return eventlog.VerifyInclusion(proof, c.Size, c.Root, p.Seq, raw)
}

// ConsistencyProof proves that the tree of size Old is a prefix of the tree
// of size New. The roots are those of the store's hashes: an auditor
// compares them with checkpoints it holds, and Checkpoint, when present, is
// a signed checkpoint of size New.
type ConsistencyProof struct {
	Origin     string   `json:"origin"`
	Old        uint64   `json:"old"`
	New        uint64   `json:"new"`
	OldRoot    string   `json:"old_root"`
	NewRoot    string   `json:"new_root"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint,omitempty"`
}

// Consistency returns the consistency proof between tree sizes oldSize and
// newSize (1 <= oldSize <= newSize <= log size), checked before it is
// returned. It includes a signed checkpoint of newSize if the store has one
// or the log was opened with its signer.
func Consistency(l *eventlog.Log, oldSize, newSize uint64, verifierKey string) (*ConsistencyProof, error) {
	if oldSize == 0 || oldSize > newSize || newSize > l.Size() {
		return nil, fmt.Errorf("consistency %d..%d: want 1 <= old <= new <= %d", oldSize, newSize, l.Size())
	}
	oldRoot, err := l.TreeHead(oldSize)
	if err != nil {
		return nil, err
	}
	newRoot, err := l.TreeHead(newSize)
	if err != nil {
		return nil, err
	}
	proof, err := l.ProveConsistency(oldSize, newSize)
	if err != nil {
		return nil, err
	}
	if err := eventlog.VerifyConsistency(proof, newSize, newRoot, oldSize, oldRoot); err != nil {
		return nil, fmt.Errorf("the stored tree is inconsistent (run homeserver audit): %w", err)
	}
	origin, _ := VerifierName(verifierKey)
	p := &ConsistencyProof{Origin: origin, Old: oldSize, New: newSize, OldRoot: b64(oldRoot[:]), NewRoot: b64(newRoot[:]), Proof: hashStrings(proof)}
	signed, c, err := CheckpointFor(l, newSize, verifierKey)
	switch {
	case err == nil:
		if c.Root != newRoot {
			return nil, fmt.Errorf("signed root of size %d differs from the stored tree", newSize)
		}
		p.Checkpoint = string(signed)
	case errors.Is(err, ErrNoSigner):
	default:
		return nil, err
	}
	return p, nil
}

// Verify checks the proof between the roots it states.
func (p *ConsistencyProof) Verify() error {
	oldRoot, err := Hash(p.OldRoot)
	if err != nil {
		return err
	}
	newRoot, err := Hash(p.NewRoot)
	if err != nil {
		return err
	}
	proof, err := parseHashes(p.Proof)
	if err != nil {
		return err
	}
	return eventlog.VerifyConsistency(proof, p.New, newRoot, p.Old, oldRoot)
}
