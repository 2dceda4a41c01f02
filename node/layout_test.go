package node_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/projections"
)

// A store whose projections were written with another layout (or before
// layouts were recorded) has them rebuilt from its log when the homeserver
// opens it, so that they equal a replay again (LOG-2); a store of the
// current layout is left as it is.
func TestProjectionLayoutUpgradeRebuilds(t *testing.T) {
	dir := t.TempDir()
	cfg := node.Config{Domain: "layout.test", DataDir: dir, Listen: "127.0.0.1:0"}
	open := func() *node.Node {
		t.Helper()
		n, err := node.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	layout := func(n *node.Node) uint64 {
		t.Helper()
		v, err := projections.StoredLayout(eventlog.NewReader(n.Log.DB()))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	bogus := append(projections.Prefix("dir"), "user/left-by-an-old-layout"...)
	// edit changes the stopped homeserver's store directly.
	edit := func(fn func(db *pebble.DB) error) {
		t.Helper()
		db, err := pebble.Open(node.StoreDir(dir), &pebble.Options{Logger: eventlog.DefaultPebbleOptions().Logger})
		if err != nil {
			t.Fatal(err)
		}
		if err := fn(db); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}

	n := open()
	if got := layout(n); got != projections.Layout {
		t.Fatalf("a new store records layout %d, want %d", got, projections.Layout)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, r := register(t, n, fmt.Sprintf("u%d", i)); r.status != 201 {
			t.Fatalf("register: %d %s", r.status, r.body)
		}
	}
	n.Shutdown(context.Background())

	// An old layout: no layout recorded, a key the current one does not
	// write, and a user's record missing.
	edit(func(db *pebble.DB) error {
		if err := db.Delete(projections.LayoutKey, pebble.Sync); err != nil {
			return err
		}
		if err := db.Set(bogus, []byte("{}"), pebble.Sync); err != nil {
			return err
		}
		p := append(projections.Prefix("dir"), "user/"...)
		return db.DeleteRange(p, eventlog.PrefixEnd(p), pebble.Sync)
	})
	n = open()
	if got := layout(n); got != projections.Layout {
		t.Fatalf("after the upgrade: layout %d, want %d", got, projections.Layout)
	}
	if _, err := eventlog.NewReader(n.Log.DB()).Get(bogus); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("the old layout's key survived the upgrade: %v", err)
	}
	snap := n.Log.DB().NewSnapshot()
	fresh, err := pebble.Open(filepath.Join(t.TempDir(), "rebuilt"), &pebble.Options{Logger: eventlog.DefaultPebbleOptions().Logger})
	if err != nil {
		t.Fatal(err)
	}
	size, err := eventlog.StoredSize(eventlog.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Set.Rebuild(eventlog.NewReader(snap), fresh, size, nil); err != nil {
		t.Fatal(err)
	}
	d, err := projections.Compare(snap, fresh)
	snap.Close()
	fresh.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !d.Equals {
		t.Fatalf("upgraded projections differ from a replay at %q: live %q, replay %q", d.Key, d.A, d.B)
	}
	n.Shutdown(context.Background())

	// The current layout: nothing is rebuilt, so the planted key stays.
	edit(func(db *pebble.DB) error { return db.Set(bogus, []byte("{}"), pebble.Sync) })
	n = open()
	defer n.Shutdown(context.Background())
	if _, err := eventlog.NewReader(n.Log.DB()).Get(bogus); err != nil {
		t.Fatalf("a store of the current layout was rebuilt: %v", err)
	}
}
