package bench

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlshome/homeserver/federation"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSResult holds the bus baselines.
type NATSResult struct {
	RequestReply     Rate `json:"request_reply"`
	JetStreamPublish Rate `json:"jetstream_publish"`
}

// NATS measures, on an embedded NATS server like the one a homeserver
// runs, core request/reply round trips/s (64 concurrent requesters) and
// acknowledged JetStream publishes/s (file storage, 64 in flight), each
// for duration d.
func NATS(ctx context.Context, parent string, d time.Duration) (*NATSResult, error) {
	dir, err := os.MkdirTemp(parent, "bench-nats-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bus, err := federation.OpenBus(federation.BusConfig{Name: "bench", StoreDir: dir})
	if err != nil {
		return nil, err
	}
	defer bus.Close()
	nc := bus.Conn
	sub, err := nc.Subscribe("bench.echo", func(m *nats.Msg) { m.Respond(m.Data) })
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	payload := make([]byte, 512)
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				if _, err := nc.Request("bench.echo", payload, 5*time.Second); err == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res := &NATSResult{RequestReply: rate(int(n.Load()), time.Since(start), nil)}

	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.js"}, Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	n.Store(0)
	start = time.Now()
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				if _, err := js.Publish(ctx, "bench.js", payload); err == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res.JetStreamPublish = rate(int(n.Load()), time.Since(start), nil)
	return res, nil
}
