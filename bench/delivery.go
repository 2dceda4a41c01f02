package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlshome/homeserver/client"
)

// DeliveryOptions configure the delivery benchmark.
type DeliveryOptions struct {
	Groups   int // 2-member groups, one sender each (default 64)
	Messages int // total messages (default 20,000)
	Size     int // plaintext bytes (default 200)
	// Library sends through the Go client library (net/http, retries)
	// instead of the lean load generator, to see what a full client costs
	// when it shares the homeserver's cores.
	Library bool
	// CPUProfile, if set, is a file for a CPU profile of the timed part.
	CPUProfile string
}

// DeliveryResult is the delivery benchmark's outcome.
type DeliveryResult struct {
	Options DeliveryOptions `json:"options"`
	Rate    Rate            `json:"rate"`
	// CPUPerMessage is the process CPU time (server and the in-process
	// load generator together) per message: steadier than the rate on a
	// shared machine.
	CPUPerMessage time.Duration `json:"cpu_per_message_ns"`
	// PerBatch and PerFsync are the messages the log committed per batch
	// and per WAL fsync (group commit).
	PerBatch float64 `json:"messages_per_batch"`
	PerFsync float64 `json:"messages_per_fsync"`
	// FsyncMean is the mean time of the WAL fsyncs during the run.
	FsyncMean time.Duration `json:"wal_fsync_mean_ns"`
}

// Delivery sends application messages into 2-member groups over HTTP from
// one concurrent sender per group (a keep-alive connection each), every
// message sealed (encrypted and request-signed) and encoded before timing,
// and reports messages/s with p50/p99 of
// the request latency (send → accepted and durable).
func Delivery(ctx context.Context, h *Homeserver, o DeliveryOptions, progress func(string)) (*DeliveryResult, error) {
	if o.Groups <= 0 {
		o.Groups = 64
	}
	if o.Messages <= 0 {
		o.Messages = 20000
	}
	if o.Size <= 0 {
		o.Size = 200
	}
	per := (o.Messages + o.Groups - 1) / o.Groups
	groups := make([]*client.Group, o.Groups)
	sealed := make([][]*client.Sealed, o.Groups)
	tag := time.Now().UnixNano()
	for i := range groups {
		a, err := h.NewUser(ctx, fmt.Sprintf("da%d-%d", tag%100000, i), 1)
		if err != nil {
			return nil, err
		}
		b, err := h.NewUser(ctx, fmt.Sprintf("db%d-%d", tag%100000, i), 1)
		if err != nil {
			return nil, err
		}
		if groups[i], err = pair(ctx, h, a, b); err != nil {
			return nil, err
		}
		pt := make([]byte, o.Size)
		for j := 0; j < per; j++ {
			m, err := groups[i].Seal(pt)
			if err != nil {
				return nil, err
			}
			sealed[i] = append(sealed[i], m)
		}
		if progress != nil && (i+1)%16 == 0 {
			progress(fmt.Sprintf("delivery: %d/%d groups ready", i+1, o.Groups))
		}
	}
	var senders []*messageSender
	if !o.Library {
		var err error
		senders, err = newMessageSenders(h.Node.URL(), groups, sealed)
		defer closeSenders(senders)
		if err != nil {
			return nil, err
		}
	}
	lat := make([][]time.Duration, o.Groups)
	var sent atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	stop, err := startProfile(o.CPUProfile)
	if err != nil {
		return nil, err
	}
	cpu0 := cpuTime()
	batches0, syncs0, syncTime0 := h.Node.Log.Batches(), h.Node.Log.WALSyncs(), h.Node.Log.WALSyncTime()
	start := time.Now()
	for i := range groups {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j, m := range sealed[i] {
				t := time.Now()
				var err error
				if o.Library {
					err = groups[i].SendSealed(ctx, m)
				} else {
					err = senders[i].send(j)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				lat[i] = append(lat[i], time.Since(t))
				sent.Add(1)
			}
		}(i)
	}
	wg.Wait()
	took := time.Since(start)
	stop()
	if firstErr != nil {
		return nil, firstErr
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	n := int(sent.Load())
	res := &DeliveryResult{Options: o, Rate: rate(n, took, all), CPUPerMessage: (cpuTime() - cpu0) / time.Duration(max(n, 1))}
	if b := h.Node.Log.Batches() - batches0; b > 0 {
		res.PerBatch = float64(n) / float64(b)
	}
	if s := h.Node.Log.WALSyncs() - syncs0; s > 0 {
		res.PerFsync = float64(n) / float64(s)
		res.FsyncMean = (h.Node.Log.WALSyncTime() - syncTime0) / time.Duration(s)
	}
	return res, nil
}
