// Package bench measures the homeserver against the machine's own limits:
// every figure comes with a baseline measured in the same run on the same
// cores (Ed25519 verifies/s, raw Pebble appends/s, NATS round trips/s), so
// results are ratios that mean something on a shared, noisy machine. It
// drives real homeservers through the Go client library, with every MLS
// message built before timing starts; the timed sends of the delivery and
// federation figures go through a lean HTTP load generator (loadgen.go).
package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/node"
)

// Rate is a throughput with latency percentiles (zero when not measured).
type Rate struct {
	Count    int           `json:"count"`
	Duration time.Duration `json:"duration_ns"`
	PerSec   float64       `json:"per_sec"`
	P50      time.Duration `json:"p50_ns,omitempty"`
	P99      time.Duration `json:"p99_ns,omitempty"`
}

func rate(n int, d time.Duration, lat []time.Duration) Rate {
	r := Rate{Count: n, Duration: d, PerSec: float64(n) / d.Seconds()}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.P50 = lat[len(lat)/2]
		r.P99 = lat[len(lat)*99/100]
	}
	return r
}

// Ed25519Verify measures signature verifications per second with one
// goroutine per core, for duration d: the cost floor of every signed
// message the homeserver checks.
func Ed25519Verify(d time.Duration) Rate {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 256)
	sig := ed25519.Sign(priv, msg)
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < runtime.GOMAXPROCS(0); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				for i := 0; i < 64; i++ {
					if !ed25519.Verify(pub, msg, sig) {
						panic("verify")
					}
				}
				n.Add(64)
			}
		}()
	}
	wg.Wait()
	return rate(int(n.Load()), time.Since(start), nil)
}

// Homeserver is a homeserver started for a benchmark, with a directory
// client on it.
type Homeserver struct {
	Node *node.Node
	Conn *client.Conn
	Dir  *client.Directory
	dir  string
}

// StartHomeserver starts a homeserver on loopback with its data in a new
// directory under parent ("" for the system temp dir), with rate limits
// off (benchmarks measure capacity, not policy).
func StartHomeserver(ctx context.Context, parent, domain string, opts ...func(*node.Config)) (*Homeserver, error) {
	dir, err := os.MkdirTemp(parent, "homeserver-bench-")
	if err != nil {
		return nil, err
	}
	cfg := node.Config{
		Domain: domain, DataDir: dir, Listen: "127.0.0.1:0",
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		DirectoryLimits: &api.DirectoryLimits{}, GroupLimits: &api.GroupLimits{},
		Tokens: node.TokenPolicy{Allowance: 1 << 30},
	}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.Open(cfg)
	if err != nil {
		return nil, err
	}
	if err := n.Start(); err != nil {
		n.Shutdown(ctx)
		return nil, err
	}
	conn, err := client.Dial(ctx, n.URL(), domain)
	if err != nil {
		n.Shutdown(ctx)
		return nil, err
	}
	return &Homeserver{Node: n, Conn: conn, Dir: &client.Directory{Conn: conn}, dir: dir}, nil
}

// Close stops the homeserver and removes its data.
func (h *Homeserver) Close() error {
	err := h.Node.Shutdown(context.Background())
	os.RemoveAll(h.dir)
	return err
}

// NewUser registers a user with one client that published KeyPackages.
func (h *Homeserver) NewUser(ctx context.Context, name string, ordinary int) (*client.Client, error) {
	c, err := h.Conn.Register(ctx, name)
	if err != nil {
		return nil, err
	}
	kps, err := c.MakeKeyPackages(ordinary, true)
	if err != nil {
		return nil, err
	}
	return c, c.PublishKeyPackages(ctx, kps)
}

// pair makes a 2-member group: a creates, adds b, b joins.
func pair(ctx context.Context, h *Homeserver, a, b *client.Client) (*client.Group, error) {
	if a.TokenCount() == 0 {
		if err := a.GetTokens(ctx, 1); err != nil {
			return nil, err
		}
	}
	g, err := a.CreateGroup(ctx)
	if err != nil {
		return nil, err
	}
	if err := g.Add(ctx, h.Dir, b.UserID); err != nil {
		return nil, err
	}
	if _, err := b.Fetch(ctx, 0); err != nil {
		return nil, err
	}
	if b.Group(g.ID) == nil {
		return nil, fmt.Errorf("bench: %s did not join", b.UserID)
	}
	return g, nil
}

// startProfile starts a CPU profile into path ("" does nothing) and
// returns the function that stops it.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// cpuTime returns the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
