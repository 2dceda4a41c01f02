package eventlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// kvHandler is a minimal Handler: a put command becomes one event (or two,
// for a pair), rejected when the value is empty; Apply stores the value
// under p/kv/.
type kvHandler struct{}

type put struct{ K, V string }
type pair struct{ A, B put }

func (kvHandler) Decide(r Reader, now int64, cmd any) (Decision, error) {
	var puts []put
	switch c := cmd.(type) {
	case put:
		puts = []put{c}
	case pair:
		puts = []put{c.A, c.B}
	default:
		return Decision{}, fmt.Errorf("unknown command %T", cmd)
	}
	var d Decision
	for _, p := range puts {
		if p.V == "" {
			return Decision{}, errors.New("empty value")
		}
		if _, err := r.Get([]byte("p/kv/" + p.K)); err == nil {
			return Decision{}, errors.New("exists")
		}
		d.Events = append(d.Events, Draft{Type: "Put", Payload: []byte(p.K + "=" + p.V)})
	}
	d.Reply = []byte("ok " + puts[0].K)
	return d, nil
}

func (kvHandler) Apply(rw ReadWriter, ev *Event) error {
	k, v, _ := bytes.Cut(ev.Payload, []byte("="))
	return rw.Set(append([]byte("p/kv/"), k...), v)
}

type testLog struct {
	*Log
	dir  string
	vkey string
}

func newSigner(t testing.TB, name string) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func openTestLog(t testing.TB, dir string) *testLog {
	t.Helper()
	s, vkey := newSigner(t, "test.example")
	l, err := Open(dir, Options{Origin: "test.example", Signer: s, Handler: kvHandler{}, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{Log: l, dir: dir, vkey: vkey}
}

func TestAppendDenseAndRejectWritesNothing(t *testing.T) {
	l := openTestLog(t, t.TempDir())
	defer l.Close()
	ctx := context.Background()
	out, err := l.Append(ctx, Command{Body: put{"a", "1"}})
	if err != nil || out.FirstSeq != 1 || out.Count != 1 || string(out.Reply) != "ok a" {
		t.Fatalf("first append: %+v %v", out, err)
	}
	before, _ := l.LatestCheckpoint()
	_, err = l.Append(ctx, Command{Body: put{"b", ""}})
	var rej *Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("want rejection, got %v", err)
	}
	if l.Size() != 1 {
		t.Fatalf("size %d after rejection", l.Size())
	}
	if _, err := NewReader(l.DB()).Get([]byte("p/kv/b")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rejected command changed a projection: %v", err)
	}
	after, _ := l.LatestCheckpoint()
	if !bytes.Equal(before, after) {
		t.Fatal("rejected command changed the checkpoint")
	}
	out, err = l.Append(ctx, Command{Body: pair{put{"c", "3"}, put{"d", "4"}}})
	if err != nil || out.FirstSeq != 2 || out.Count != 2 {
		t.Fatalf("pair: %+v %v", out, err)
	}
	var seqs []uint64
	if err := l.Scan(0, 0, func(e *Event) error { seqs = append(seqs, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("seqs %v", seqs)
	}
}

func TestSameBatchSeesEarlierCommands(t *testing.T) {
	l := openTestLog(t, t.TempDir())
	defer l.Close()
	// Many concurrent puts of the same key: exactly one may win, whatever
	// the batching, because Decide sees earlier commands of its batch.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := l.Append(context.Background(), Command{Body: put{"same", fmt.Sprint(i)}}); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if wins != 1 || l.Size() != 1 {
		t.Fatalf("wins %d size %d", wins, l.Size())
	}
}

func TestIdempotencyKeyPersists(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, dir)
	ctx := context.Background()
	first, err := l.Append(ctx, Command{Key: []byte("origin/7"), Body: put{"x", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openTestLog(t, dir)
	defer l.Close()
	// A different body with the same key is not decided again.
	again, err := l.Append(ctx, Command{Key: []byte("origin/7"), Body: put{"y", "2"}})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.FirstSeq != first.FirstSeq || !bytes.Equal(again.Reply, first.Reply) {
		t.Fatalf("duplicate outcome %+v, first %+v", again, first)
	}
	if l.Size() != 1 {
		t.Fatalf("size %d", l.Size())
	}
	ev, err := l.Event(1)
	if err != nil || string(ev.Key) != "origin/7" {
		t.Fatalf("event key %q %v", ev.Key, err)
	}
}

func TestTailDeliversNewEvents(t *testing.T) {
	l := openTestLog(t, t.TempDir())
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan uint64, 10)
	go l.Tail(ctx, 1, func(e *Event) error { got <- e.Seq; return nil })
	for i := 0; i < 3; i++ {
		if _, err := l.Append(ctx, Command{Body: put{fmt.Sprint(i), "v"}}); err != nil {
			t.Fatal(err)
		}
	}
	for want := uint64(1); want <= 3; want++ {
		if s := <-got; s != want {
			t.Fatalf("tail got %d want %d", s, want)
		}
	}
	cancel()
}

func TestCloseFinishesInFlightAndRefusesNew(t *testing.T) {
	l := openTestLog(t, t.TempDir())
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := l.Append(context.Background(), Command{Body: put{fmt.Sprint(i), "v"}})
			if err == nil {
				mu.Lock()
				acked++
				mu.Unlock()
			} else if !errors.Is(err, ErrClosed) {
				t.Errorf("append: %v", err)
			}
		}(i)
	}
	dir := l.dir
	l.Close()
	wg.Wait()
	if _, err := l.Append(context.Background(), Command{Body: put{"late", "v"}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	l2 := openTestLog(t, dir)
	defer l2.Close()
	if int(l2.Size()) != acked {
		t.Fatalf("acknowledged %d, log has %d", acked, l2.Size())
	}
}

// LOG-3: every event's inclusion proof verifies against the signed
// checkpoint; consistency between two checkpoints verifies; a flipped byte
// of one stored event is detected and named.
func TestLOG_3_MerkleProofsAndTamperDetection(t *testing.T) {
	l := openTestLog(t, t.TempDir())
	ctx := context.Background()
	var mid []byte
	for i := 0; i < 300; i++ {
		if _, err := l.Append(ctx, Command{Body: put{fmt.Sprint(i), fmt.Sprint("value-", i)}}); err != nil {
			t.Fatal(err)
		}
		if i == 120 {
			mid, _ = l.LatestCheckpoint()
		}
	}
	latest, err := l.LatestCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCheckpoint(latest, l.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 300 {
		t.Fatalf("checkpoint size %d", c.Size)
	}
	for seq := uint64(1); seq <= c.Size; seq++ {
		p, err := l.ProveInclusion(seq, c.Size)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := l.RawEvent(seq)
		if err := VerifyInclusion(p, c.Size, c.Root, seq, raw); err != nil {
			t.Fatalf("inclusion %d: %v", seq, err)
		}
		raw[len(raw)-1] ^= 1
		if VerifyInclusion(p, c.Size, c.Root, seq, raw) == nil {
			t.Fatalf("inclusion of altered event %d verified", seq)
		}
	}
	old, err := OpenCheckpoint(mid, l.vkey)
	if err != nil || old.Size != 121 {
		t.Fatalf("mid checkpoint %+v %v", old, err)
	}
	tp, err := l.ProveConsistency(old.Size, c.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(tp, c.Size, c.Root, old.Size, old.Root); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	if VerifyConsistency(tp, c.Size, c.Root, old.Size, c.Root) == nil {
		t.Fatal("consistency with a wrong old root verified")
	}
	// A checkpoint signed by someone else does not open.
	_, otherKey := newSigner(t, "test.example")
	if _, err := OpenCheckpoint(latest, otherKey); err == nil {
		t.Fatal("checkpoint opened with another key")
	}

	v, err := l.Verify(latest, l.vkey, nil)
	if err != nil || !v.OK() || v.Events != 300 {
		t.Fatalf("verify clean log: %+v %v", v, err)
	}
	// Flip one byte of event 77 behind the log's back.
	raw, _ := l.RawEvent(77)
	raw[len(raw)-2] ^= 0x40
	if err := l.DB().Set(eventKey(77), raw, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	v, err = l.Verify(latest, l.vkey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.OK() || v.RootMatches || fmt.Sprint(v.BadEvents) != "[77]" {
		t.Fatalf("tampered log verification: %+v", v)
	}
	l.Close()
}

func TestCheckpointIntervalAndFinalCheckpoint(t *testing.T) {
	dir := t.TempDir()
	s, vkey := newSigner(t, "test.example")
	l, err := Open(dir, Options{Origin: "test.example", Signer: s, Handler: kvHandler{}, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := l.Append(context.Background(), Command{Body: put{fmt.Sprint(i), "v"}}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := l.LatestCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	if cp, _ := OpenCheckpoint(c, vkey); cp.Size != 1 {
		t.Fatalf("with a 1h interval only the first batch is checkpointed, got size %d", cp.Size)
	}
	l.Close()
	l, err = Open(dir, Options{Origin: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, _ = l.LatestCheckpoint()
	cp, err := OpenCheckpoint(c, vkey)
	if err != nil || cp.Size != 20 {
		t.Fatalf("after close the checkpoint covers %d events (%v), want 20", cp.Size, err)
	}
}

func TestFrontierMatchesStoredTreeHash(t *testing.T) {
	l := openTestLog(t, t.TempDir())
	defer l.Close()
	var f Frontier
	for i := 0; i < 70; i++ {
		if _, err := l.Append(context.Background(), Command{Body: put{fmt.Sprint(i), "v"}}); err != nil {
			t.Fatal(err)
		}
		raw, _ := l.RawEvent(uint64(i + 1))
		f.Add(tlog.RecordHash(raw))
		th, err := l.TreeHead(uint64(i + 1))
		if err != nil {
			t.Fatal(err)
		}
		if th != f.Root() {
			t.Fatalf("size %d: frontier root differs from tlog tree hash", i+1)
		}
	}
}

func TestDecodeEventRoundTrip(t *testing.T) {
	e := &Event{Seq: 42, Time: -5, Type: "T", Key: []byte("k"), Payload: []byte("payload")}
	got, err := DecodeEvent(e.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != e.Seq || got.Time != e.Time || got.Type != e.Type || string(got.Key) != "k" || string(got.Payload) != "payload" {
		t.Fatalf("round trip: %+v", got)
	}
	for _, bad := range [][]byte{nil, {2}, append(e.Encode(), 0), e.Encode()[:5]} {
		if _, err := DecodeEvent(bad); !errors.Is(err, ErrMalformedEvent) {
			t.Fatalf("decode %x: %v", bad, err)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add((&Event{Seq: 1, Time: 2, Type: "UserRegistered", Payload: []byte(`{"a":1}`)}).Encode())
	f.Add([]byte{1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			return
		}
		if !bytes.Equal(e.Encode(), b) {
			t.Fatalf("accepted non-canonical encoding %x", b)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add("example.org\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCheckpoint(s)
		if err != nil {
			return
		}
		if c.Text() != s {
			t.Fatalf("accepted non-canonical checkpoint %q", s)
		}
	})
}
