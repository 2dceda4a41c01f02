package eventlog

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// blobHandler appends every command as one event and projects nothing, so
// the benchmark measures the log itself: group commit, Merkle hashes,
// checkpoint signing and the fsync.
type blobHandler struct{}

func (blobHandler) Decide(_ Reader, _ int64, cmd any) (Decision, error) {
	return Decision{Events: []Draft{{Type: "Blob", Payload: cmd.([]byte)}}}, nil
}
func (blobHandler) Apply(ReadWriter, *Event) error { return nil }

type batchStats struct{ batches, commands atomic.Int64 }

func (s *batchStats) ObserveBatch(commands, _ int, _ time.Duration) {
	s.batches.Add(1)
	s.commands.Add(int64(commands))
}

// BenchmarkAppend64 measures durable appends of 512-byte events from 64
// concurrent appenders, then, in the same run, raw Pebble writing the same
// events in synced batches of the observed mean batch size. It reports
// events/s for both and the ratio (target: writer ≥ 70% of raw).
func BenchmarkAppend64(b *testing.B) {
	const appenders, size = 64, 512
	payload := make([]byte, size)
	s, _ := newSigner(b, "bench.example")
	stats := &batchStats{}
	l, err := Open(b.TempDir(), Options{Origin: "bench.example", Signer: s, Handler: blobHandler{}, Metrics: stats})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	syncs0 := l.WALSyncs()
	n := b.N
	if n < appenders*4 {
		n = appenders * 4
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < appenders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := l.Append(context.Background(), Command{Body: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	logRate := float64(n) / time.Since(start).Seconds()
	b.StopTimer()
	// The group-commit batch is what one fsync covers: batches are
	// pipelined, so several Pebble batches can share a WAL fsync.
	mean := float64(stats.commands.Load()) / float64(stats.batches.Load())
	if syncs := l.WALSyncs() - syncs0; syncs > 0 {
		mean = float64(n) / float64(syncs)
	}

	// Raw Pebble runs after the writer, on the same disk; the mean batch
	// size is only known now. Two runs, averaged, damp a noisy neighbour.
	rawRate := (rawPebbleRate(b, n/2, int(mean+0.5), size) + rawPebbleRate(b, n/2, int(mean+0.5), size)) / 2
	b.ReportMetric(logRate, "events/s")
	b.ReportMetric(mean, "mean-batch")
	b.ReportMetric(rawRate, "raw-events/s")
	b.ReportMetric(logRate/rawRate, "ratio-to-raw")
}

// rawPebbleRate writes n events of the given size to a fresh Pebble in
// batches of batch events with pebble.Sync, one batch at a time, and
// returns events/s.
func rawPebbleRate(b *testing.B, n, batch, size int) float64 {
	if batch < 1 {
		batch = 1
	}
	db, err := pebble.Open(b.TempDir(), DefaultPebbleOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ev := &Event{Type: "Blob", Payload: make([]byte, size)}
	start := time.Now()
	for i := 0; i < n; {
		wb := db.NewBatch()
		for j := 0; j < batch && i < n; j++ {
			i++
			ev.Seq = uint64(i)
			wb.Set(eventKey(uint64(i)), ev.Encode(), nil)
		}
		if err := wb.Commit(pebble.Sync); err != nil {
			b.Fatal(err)
		}
		wb.Close()
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkRawPebbleSync is the plain baseline: one synced batch of one
// 512-byte event per op.
func BenchmarkRawPebbleSync(b *testing.B) {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: pebbleLogger{}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	v := make([]byte, 512)
	for i := 0; i < b.N; i++ {
		if err := db.Set(binary.BigEndian.AppendUint64(nil, uint64(i)), v, pebble.Sync); err != nil {
			b.Fatal(err)
		}
	}
}
