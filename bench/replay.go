package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/audit"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/node"
)

// ReplayOptions configure the replay benchmark.
type ReplayOptions struct {
	// TempDir holds the fresh stores ("" for the system temp dir).
	TempDir string
	// RebuildProfile and AuditProfile, if set, are files for CPU profiles
	// of the two timed parts.
	RebuildProfile, AuditProfile string
}

// ReplayResult is the replay benchmark's outcome; both rates count the
// events of the replayed log.
type ReplayResult struct {
	Events uint64 `json:"events"`
	// Rebuild replays every event through the projections into a fresh
	// Pebble, with no validation (projections.Set.Rebuild).
	Rebuild Rate `json:"rebuild"`
	// Audit re-validates every event against rebuilt projections and
	// checks the Merkle tree (audit.Run).
	Audit Rate `json:"audit"`
	// AuditOK is the audit's verdict; Rejected counts events it would not
	// accept today.
	AuditOK  bool   `json:"audit_ok"`
	Rejected uint64 `json:"rejected"`
}

// Replay stops h, keeping its data until Replay returns (h must not be
// used or closed afterwards), and replays its log the two ways an
// operator or auditor does: a projection rebuild without re-validation,
// and a full audit that re-runs every check.
func Replay(ctx context.Context, h *Homeserver, o ReplayOptions, progress func(string)) (*ReplayResult, error) {
	defer os.RemoveAll(h.dir)
	if err := h.Node.Shutdown(ctx); err != nil {
		return nil, fmt.Errorf("stop homeserver: %w", err)
	}
	data := h.dir
	set, _, keys, err := node.ForAudit(data)
	if err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp(o.TempDir, "bench-replay-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)

	src, err := pebble.Open(node.StoreDir(data), &pebble.Options{ReadOnly: true, Logger: eventlog.DefaultPebbleOptions().Logger})
	if err != nil {
		return nil, err
	}
	srcR := eventlog.NewReader(src)
	size, err := eventlog.StoredSize(srcR)
	if err != nil {
		src.Close()
		return nil, err
	}
	dst, err := pebble.Open(filepath.Join(scratch, "rebuild"), eventlog.DefaultPebbleOptions())
	if err != nil {
		src.Close()
		return nil, err
	}
	res := &ReplayResult{Events: size}
	stop, err := startProfile(o.RebuildProfile)
	if err != nil {
		src.Close()
		dst.Close()
		return nil, err
	}
	start := time.Now()
	err = set.Rebuild(srcR, dst, size, nil)
	took := time.Since(start)
	stop()
	dst.Close()
	src.Close()
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	res.Rebuild = rate(int(size), took, nil)
	if progress != nil {
		progress(fmt.Sprintf("replay: rebuilt %d events at %.0f/s; auditing", size, res.Rebuild.PerSec))
	}

	l, err := audit.OpenLog(node.StoreDir(data), "", nil)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	// A fresh validator and projections, as `homeserver audit` has.
	set, validator, _, err := node.ForAudit(data)
	if err != nil {
		return nil, err
	}
	if stop, err = startProfile(o.AuditProfile); err != nil {
		return nil, err
	}
	start = time.Now()
	rep, err := audit.Run(ctx, l, audit.Options{
		VerifierKey: keys.LogVerifierKey(),
		Validator:   validator,
		Projections: set,
		TempDir:     scratch,
	})
	took = time.Since(start)
	stop()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	res.Audit = rate(int(rep.Validation.Replayed), took, nil)
	res.AuditOK, res.Rejected = rep.OK, rep.Validation.RejectedCount
	return res, nil
}
