package eventlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counterHandler keeps two counters under a cached prefix that every batch
// moves together: Decide reads "a" (so within a batch it must see the
// commands before it) and Apply writes the new value to both "a" and "b".
// Other commands delete a key, delete a range, or store a value too big
// for the cache.
type counterHandler struct{}

type (
	bump     struct{}
	delKey   struct{ k string }
	delRange struct{}
	setBig   struct{ n int }
)

func (counterHandler) Decide(r Reader, _ int64, cmd any) (Decision, error) {
	switch c := cmd.(type) {
	case bump:
		v, err := r.Get([]byte("c/a"))
		n := 0
		if err == nil {
			if n, err = strconv.Atoi(string(v)); err != nil {
				return Decision{}, err
			}
		} else if !errors.Is(err, ErrNotFound) {
			return Decision{}, err
		}
		return Decision{Events: []Draft{{Type: "Bump", Payload: []byte(strconv.Itoa(n + 1))}}}, nil
	case delKey:
		return Decision{Events: []Draft{{Type: "Del", Payload: []byte(c.k)}}}, nil
	case delRange:
		return Decision{Events: []Draft{{Type: "DelRange"}}}, nil
	case setBig:
		return Decision{Events: []Draft{{Type: "Big", Payload: []byte(strconv.Itoa(c.n))}}}, nil
	}
	return Decision{}, fmt.Errorf("unknown command %T", cmd)
}

func (counterHandler) Apply(rw ReadWriter, ev *Event) error {
	switch ev.Type {
	case "Bump":
		if err := rw.Set([]byte("c/a"), ev.Payload); err != nil {
			return err
		}
		return rw.Set([]byte("c/b"), ev.Payload)
	case "Del":
		return rw.Delete(append([]byte("c/"), ev.Payload...))
	case "DelRange":
		return rw.DeleteRange([]byte("c/r/"), []byte("c/r0"))
	case "Big":
		n, _ := strconv.Atoi(string(ev.Payload))
		return rw.Set([]byte("c/big"), bytes.Repeat([]byte{'x'}, n))
	}
	return nil
}

func openCounterLog(t *testing.T, cacheBytes int) *Log {
	t.Helper()
	s, _ := newSigner(t, "test.example")
	l, err := Open(t.TempDir(), Options{Origin: "test.example", Signer: s, Handler: counterHandler{},
		CachePrefixes: [][]byte{[]byte("c/")}, CacheBytes: cacheBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func getInt(t *testing.T, r Reader, key string) int {
	v, err := r.Get([]byte(key))
	if errors.Is(err, ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Error(err)
		return 0
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		t.Error(err)
	}
	return n
}

// The writer reads its own batch's writes and every earlier batch through
// the cache (no lost increment), and readers never see a cached value older
// than one they saw before: "b" read after "a" is never behind it.
func TestReadCacheExactAndMonotonic(t *testing.T) {
	l := openCounterLog(t, 1<<20)
	ctx := context.Background()
	const appenders, per = 8, 300
	var done atomic.Bool
	var wg, rg sync.WaitGroup
	for i := 0; i < 4; i++ {
		rg.Add(1)
		go func() {
			defer rg.Done()
			r := l.Reader()
			for !done.Load() {
				a := getInt(t, r, "c/a")
				b := getInt(t, r, "c/b")
				if b < a {
					t.Errorf("read a=%d, then b=%d: the cache served an older value", a, b)
					return
				}
			}
		}()
	}
	for i := 0; i < appenders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				if _, err := l.Append(ctx, Command{Body: bump{}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	done.Store(true)
	rg.Wait()
	if got := getInt(t, l.Reader(), "c/a"); got != appenders*per {
		t.Fatalf("counter %d after %d bumps", got, appenders*per)
	}
	if got := getInt(t, NewReader(l.DB()), "c/b"); got != appenders*per {
		t.Fatalf("stored counter %d after %d bumps", got, appenders*per)
	}
}

// Deletions, range deletions and values too big to cache all show through
// the cache at once.
func TestReadCacheDeletesAndBigValues(t *testing.T) {
	l := openCounterLog(t, 64<<10) // values up to 256 B are cached
	ctx := context.Background()
	r := l.Reader()
	for _, k := range []string{"c/a", "c/b"} { // cache the absence
		if _, err := r.Get([]byte(k)); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(ctx, Command{Body: bump{}}); err != nil {
		t.Fatal(err)
	}
	if getInt(t, r, "c/a") != 1 || getInt(t, r, "c/b") != 1 {
		t.Fatal("a cached absence outlived the write")
	}
	if _, err := l.Append(ctx, Command{Body: delKey{"a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get([]byte("c/a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key still read: %v", err)
	}
	// Keys under c/r/ are written by no command here: cache their absence,
	// then the value of c/b, and check a range deletion drops the cache.
	if getInt(t, r, "c/b") != 1 {
		t.Fatal("c/b")
	}
	if _, err := l.Append(ctx, Command{Body: delRange{}}); err != nil {
		t.Fatal(err)
	}
	if getInt(t, r, "c/b") != 1 {
		t.Fatal("c/b after an unrelated range deletion")
	}
	for _, n := range []int{100, 5000, 10, 6000} {
		if _, err := l.Append(ctx, Command{Body: setBig{n}}); err != nil {
			t.Fatal(err)
		}
		v, err := r.Get([]byte("c/big"))
		if err != nil || len(v) != n {
			t.Fatalf("value of %d bytes read as %d bytes (%v)", n, len(v), err)
		}
	}
	// The cache keeps a copy: changing what Get returned changes nothing.
	v, _ := r.Get([]byte("c/big"))
	v[0] = 'y'
	if v2, _ := r.Get([]byte("c/big")); v2[0] != 'x' {
		t.Fatal("a caller's change reached the cache")
	}
}

// Eviction keeps the cache within its bound.
func TestReadCacheBounded(t *testing.T) {
	c := newReadCache([][]byte{[]byte("k/")}, 4096)
	for i := 0; i < 1000; i++ {
		c.storeIf(c.generation(), []byte(fmt.Sprintf("k/%d", i)), bytes.Repeat([]byte{1}, 10), true)
		if c.bytes > c.maxBytes {
			t.Fatalf("%d bytes cached, bound %d", c.bytes, c.maxBytes)
		}
	}
	if len(c.m) == 0 {
		t.Fatal("nothing cached")
	}
}

// The writer holds a batch after an fsync only while appends are
// announced: with one announced and never submitted, each append waits
// about the interval; once it is withdrawn, appends go at once.
func TestSyncPacingOnlyForAnnouncedAppends(t *testing.T) {
	s, _ := newSigner(t, "test.example")
	const interval = 100 * time.Millisecond
	l, err := Open(t.TempDir(), Options{Origin: "test.example", Signer: s, Handler: kvHandler{}, MinSyncInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	appendN := func(prefix string, n int) time.Duration {
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := l.Append(ctx, Command{Body: put{fmt.Sprint(prefix, i), "v"}}); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(start)
	}
	appendN("warm", 1)
	done := l.Expect()
	done2 := l.Expect()
	done2()
	done2() // idempotent: one announcement is left
	if l.upcoming.Load() != 1 {
		t.Fatalf("%d announcements, want 1", l.upcoming.Load())
	}
	held := appendN("held", 4)
	done()
	if l.upcoming.Load() != 0 {
		t.Fatalf("%d announcements after done, want 0", l.upcoming.Load())
	}
	appendN("after", 1) // waits out a hold begun before done
	free := appendN("free", 3)
	// Held appends wait for the interval (at least 3 of the 4: the first
	// may follow an fsync older than the interval); the others do not:
	// three of them take three fsyncs, far less than one interval.
	if held < 3*interval {
		t.Fatalf("4 appends with an append announced took %v, want at least %v", held, 3*interval)
	}
	if free >= interval {
		t.Fatalf("3 appends with nothing announced took %v, as long as a hold (%v)", free, interval)
	}
	if l.Size() != 9 {
		t.Fatalf("size %d", l.Size())
	}
}

// A log counts as busy for busyWindow after the last announced append.
func TestBusyAfterAnnouncedAppends(t *testing.T) {
	l := openCounterLog(t, 1<<20)
	if l.busy() {
		t.Fatal("a log with nothing announced is busy")
	}
	l.Expect()()
	if !l.busy() {
		t.Fatal("not busy right after an announcement")
	}
	time.Sleep(busyWindow + 5*time.Millisecond)
	if l.busy() {
		t.Fatalf("still busy %v after the last announcement", busyWindow+5*time.Millisecond)
	}
}
