package bench

import (
	"context"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
	"golang.org/x/mod/sumdb/note"
)

// blobs appends every command as one event and projects nothing: the
// event log benchmark measures the log itself (group commit, Merkle
// hashes, checkpoints, fsync).
type blobs struct{}

func (blobs) Decide(_ eventlog.Reader, _ int64, cmd any) (eventlog.Decision, error) {
	return eventlog.Decision{Events: []eventlog.Draft{{Type: "Blob", Payload: cmd.([]byte)}}}, nil
}
func (blobs) Apply(eventlog.ReadWriter, *eventlog.Event) error { return nil }

// EventLogResult is the event log benchmark's outcome.
type EventLogResult struct {
	Appenders int     `json:"appenders"`
	Size      int     `json:"event_bytes"`
	Rate      Rate    `json:"rate"`
	MeanBatch float64 `json:"mean_batch"` // commands per WAL fsync
}

// EventLog appends n events of size bytes from appenders concurrent
// goroutines to a fresh log in dir and reports durable appends/s and the
// group-commit size (events per WAL fsync).
func EventLog(ctx context.Context, dir string, appenders, n, size int) (*EventLogResult, error) {
	skey, _, err := note.GenerateKey(rand.Reader, "bench.example")
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	l, err := eventlog.Open(dir, eventlog.Options{Origin: "bench.example", Signer: signer, Handler: blobs{}})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	payload := make([]byte, size)
	syncs := l.WALSyncs()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for g := 0; g < appenders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := l.Append(ctx, eventlog.Command{Body: payload}); err != nil {
					firstErr.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return nil, err
	}
	r := &EventLogResult{Appenders: appenders, Size: size, Rate: rate(n, took, nil)}
	if s := l.WALSyncs() - syncs; s > 0 {
		r.MeanBatch = float64(n) / float64(s)
	}
	return r, nil
}

// RawPebble writes n events of size bytes (encoded as the log encodes
// them) to a fresh Pebble in dir, in synced batches of batch events, one
// batch at a time, with the log's Pebble options: the ceiling the event
// log is compared with.
func RawPebble(dir string, n, batch, size int) (Rate, error) {
	if batch < 1 {
		batch = 1
	}
	db, err := pebble.Open(dir, eventlog.DefaultPebbleOptions())
	if err != nil {
		return Rate{}, err
	}
	defer db.Close()
	ev := &eventlog.Event{Type: "Blob", Payload: make([]byte, size)}
	key := make([]byte, 15)
	copy(key, "log/ev/")
	start := time.Now()
	for i := 0; i < n; {
		wb := db.NewBatch()
		for j := 0; j < batch && i < n; j++ {
			i++
			ev.Seq = uint64(i)
			for k := 0; k < 8; k++ {
				key[7+k] = byte(uint64(i) >> (56 - 8*k))
			}
			wb.Set(key, ev.Encode(), nil)
		}
		if err := wb.Commit(pebble.Sync); err != nil {
			return Rate{}, err
		}
		wb.Close()
	}
	return rate(n, time.Since(start), nil), nil
}
