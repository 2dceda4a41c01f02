package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
	"golang.org/x/mod/sumdb/note"
)

// ErrLocked is returned by OpenLog for a store another process has open:
// Pebble locks its directory even for readers.
var ErrLocked = errors.New("store is locked by another process (a running homeserver?)")

// OpenLog opens the event log in storeDir read-only: no writer runs and
// Pebble creates no files (it only takes the lock on the existing LOCK
// file). origin and signer are needed only to sign checkpoints for sizes
// the store has no signed checkpoint of (see CheckpointFor); pass "" and
// nil otherwise.
func OpenLog(storeDir, origin string, signer note.Signer) (*eventlog.Log, error) {
	if fi, err := os.Stat(storeDir); err != nil {
		return nil, fmt.Errorf("store %s: %w", storeDir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("store %s: not a directory", storeDir)
	}
	l, err := eventlog.Open(storeDir, eventlog.Options{
		Origin: origin,
		Signer: signer,
		Pebble: &pebble.Options{ReadOnly: true, Logger: quietLogger{}},
	})
	if err != nil {
		if isLockError(err) {
			return nil, fmt.Errorf("%s: %w: stop the homeserver, or audit a copy of its data directory", storeDir, ErrLocked)
		}
		return nil, err
	}
	return l, nil
}

// isLockError recognises Pebble's failure to take the directory lock: the
// fcntl error of another process's lock, or Pebble's own message when this
// process holds it.
func isLockError(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}

// quietLogger drops Pebble's informational lines; a fatal error becomes a
// panic instead of an exit, so a tool reports it like any other failure.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// exists reports whether path exists, distinguishing "no" from "cannot tell".
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}
