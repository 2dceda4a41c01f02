package eventlog

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestLOG_1_PowerLossKeepsAcknowledged simulates power loss, which a
// SIGKILL cannot: the store lives on Pebble's crashable in-memory file
// system, and at random moments while 32 goroutines append, a crash clone
// keeps only what was fsynced plus a random part of what was not. Every
// command acknowledged before the crash must be in the clone, the log
// must be dense, the Merkle tree must verify, and the projection must hold
// exactly the events' effects (nothing half-applied). The WAL is
// zero-filled ahead (ZeroFillWAL, as in production), so recovery also
// meets zeroes past the last record, synced or not. It runs twice: with
// plain appends (batches handed to the sync loop, two in flight), and with
// appends announced as the API does (busy: the writer waits for the fsync
// of its only batch in flight itself).
func TestLOG_1_PowerLossKeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		// Crash clones copy the whole in-memory file system; under the race
		// detector (make race uses -short) that takes many minutes.
		t.Skip("power-loss simulation skipped with -short")
	}
	for _, announce := range []bool{false, true} {
		name := "plain"
		if announce {
			name = "announced"
		}
		t.Run(name, func(t *testing.T) { powerLoss(t, 8, announce) })
	}
}

func powerLoss(t *testing.T, crashes int, announce bool) {
	fs := vfs.NewCrashableMem()
	s, vkey := newSigner(t, "test.example")
	l, err := Open("db", Options{Origin: "test.example", Signer: s, Handler: kvHandler{}, Pebble: &pebble.Options{FS: ZeroFillWAL(slowSyncFS{fs})}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("g%d-%d", g, i)
				if announce {
					// As the API does: announce, check, then append.
					l.Expect()()
				}
				if _, err := l.Append(context.Background(), Command{Body: pair{put{k, "a"}, put{k + "b", "b"}}}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		}(g)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for c := 0; c < crashes; c++ {
		time.Sleep(time.Duration(5+rng.IntN(30)) * time.Millisecond)
		mu.Lock()
		before := append([]string(nil), acked...)
		mu.Unlock()
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		checkCrashClone(t, clone, vkey, before)
	}
	close(stop)
	wg.Wait()
	if len(acked) < crashes*10 {
		t.Fatalf("only %d appends acknowledged: the test did not load the log", len(acked))
	}
}

func checkCrashClone(t *testing.T, fs *vfs.MemFS, vkey string, acked []string) {
	t.Helper()
	l, err := Open("db", Options{Origin: "test.example", Pebble: &pebble.Options{FS: ZeroFillWAL(fs)}})
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer l.Close()
	r := NewReader(l.DB())
	for _, k := range acked {
		for _, key := range []string{k, k + "b"} {
			if _, err := r.Get([]byte("p/kv/" + key)); err != nil {
				t.Fatalf("acknowledged %s lost after crash: %v", key, err)
			}
		}
	}
	// Nothing half-applied: the projection holds exactly one key per event.
	events := uint64(0)
	if err := l.Scan(0, 0, func(e *Event) error {
		events++
		if e.Seq != events {
			return fmt.Errorf("event %d at position %d", e.Seq, events)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	keys := uint64(0)
	r.Scan([]byte("p/kv/"), []byte("p/kv0"), func(_, _ []byte) error { keys++; return nil })
	if keys != events || events != l.Size() {
		t.Fatalf("after crash: %d events, %d projected keys, size %d", events, keys, l.Size())
	}
	if events == 0 {
		return
	}
	ckpt, err := l.LatestCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	v, err := l.Verify(ckpt, vkey, nil)
	if err != nil || !v.OK() {
		t.Fatalf("after crash: %+v %v", v, err)
	}
	if th, _ := l.TreeHead(l.Size()); th != v.Root {
		t.Fatal("after crash: stored tree differs from the one recomputed from events")
	}
}

// slowSyncFS makes every fsync take a millisecond before it happens, as a
// disk does, so that a crash often falls between a batch's apply and its
// fsync: an acknowledgement sent before the fsync then shows as a loss.
type slowSyncFS struct{ vfs.FS }

func (f slowSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return slowSyncFile(f.FS.Create(name, c))
}

func (f slowSyncFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return slowSyncFile(f.FS.ReuseForWrite(oldname, newname, c))
}

func (f slowSyncFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return slowSyncFile(f.FS.OpenReadWrite(name, c, opts...))
}

func (f slowSyncFS) Unwrap() vfs.FS { return f.FS }

type slowFile struct{ vfs.File }

func slowSyncFile(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return slowFile{f}, nil
}

const slowSync = time.Millisecond

func (f slowFile) Sync() error     { time.Sleep(slowSync); return f.File.Sync() }
func (f slowFile) SyncData() error { time.Sleep(slowSync); return f.File.SyncData() }
func (f slowFile) SyncTo(n int64) (bool, error) {
	time.Sleep(slowSync)
	return f.File.SyncTo(n)
}
