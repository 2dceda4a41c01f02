package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/projections"
)

// replay rebuilds every projection from the log into a fresh store and
// compares it with the live projections (LOG-2). With --to it rebuilds the
// state as of that sequence number and prints its digest instead.
func replay(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory of a stopped homeserver, or a copy of one")
	to := fs.Uint64("to", 0, "rebuild the state as of this sequence number (0: the whole log)")
	out := fs.String("out", "", "directory for the rebuilt store (default: a temporary directory, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	src, err := pebble.Open(node.StoreDir(*data), &pebble.Options{ReadOnly: true, Logger: quietLogger{}})
	if err != nil {
		return fmt.Errorf("open %s: %w", node.StoreDir(*data), err)
	}
	defer src.Close()
	snap := src.NewSnapshot()
	defer snap.Close()
	srcR := eventlog.NewReader(snap)
	size, err := eventlog.StoredSize(srcR)
	if err != nil {
		return err
	}
	target := size
	if *to != 0 {
		if *to > size {
			return fmt.Errorf("--to %d is beyond the log size %d", *to, size)
		}
		target = *to
	}
	dir := *out
	if dir == "" {
		dir, err = os.MkdirTemp("", "homeserver-replay-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	dst, err := pebble.Open(filepath.Join(dir, "store"), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer dst.Close()

	fmt.Fprintf(stdout, "replaying %d of %d events from %s\n", target, size, *data)
	start := time.Now()
	bar := newProgress(stderr, "replay")
	set, _, _, err := node.ForAudit(*data)
	if err != nil {
		fmt.Fprintf(stderr, "warning: %v; local queues are not rebuilt without the private keys\n", err)
		set = node.PublicProjections("")
	}
	if err := set.Rebuild(srcR, dst, target, bar.update); err != nil {
		return err
	}
	bar.done()
	took := time.Since(start)
	digest, keys, err := projections.Digest(eventlog.NewReader(dst))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rebuilt %d events in %s (%.0f events/s): %d projection keys, digest %x\n",
		target, took.Round(time.Millisecond), float64(target)/took.Seconds(), keys, digest)
	if target != size {
		return nil
	}
	d, err := projections.Compare(snap, dst)
	if err != nil {
		return err
	}
	if !d.Equals {
		fmt.Fprintf(stdout, "DIFFERENT: first difference at key %q (live %t, rebuilt %t)\n", d.Key, d.InA, d.InB)
		if live, err := projections.StoredLayout(srcR); err == nil && live != projections.Layout {
			fmt.Fprintf(stdout, "note: the live projections were written in layout %d and this homeserver writes layout %d; `homeserver serve` rebuilds them when it opens the store\n", live, projections.Layout)
		}
		return fmt.Errorf("rebuilt projections differ from the live ones")
	}
	fmt.Fprintln(stdout, "IDENTICAL: rebuilt projections equal the live ones byte for byte")
	return nil
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
	os.Exit(70)
}
