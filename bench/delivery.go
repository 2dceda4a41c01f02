package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlshome/homeserver/client"
)

// DeliveryOptions configure the delivery benchmark.
type DeliveryOptions struct {
	Groups   int // 2-member groups, one sender each (default 64)
	Messages int // messages per round (default 20,000)
	Size     int // plaintext bytes (default 200)
	// Rounds repeats the timed part (default 1), each round right after
	// its own measurement of the Ed25519 verify rate, and the result is
	// the round with the median ratio: on a shared machine one short run
	// is at the mercy of the other tenants, and a baseline measured next
	// to its round drifts with it.
	Rounds int
	// VerifyTime is how long each round's verify rate is measured
	// (default 1 s).
	VerifyTime time.Duration
	// Library sends through the Go client library (net/http, retries)
	// instead of the lean load generator, to see what a full client costs
	// when it shares the homeserver's cores.
	Library bool
	// CPUProfile, if set, is a file for a CPU profile of the first round's
	// timed part.
	CPUProfile string
}

// DeliveryRound is one timed round and the verify rate measured right
// before it.
type DeliveryRound struct {
	Verify Rate    `json:"ed25519_verify"`
	Rate   Rate    `json:"rate"`
	Ratio  float64 `json:"ratio"` // Rate.PerSec / Verify.PerSec
	// CPUPerMessage is the process CPU time (server and the in-process
	// load generator together) per message: steadier than the rate on a
	// shared machine.
	CPUPerMessage time.Duration `json:"cpu_per_message_ns"`
}

// DeliveryResult is the delivery benchmark's outcome.
type DeliveryResult struct {
	Options DeliveryOptions `json:"options"`
	// Rate, Verify and Ratio are those of the median round (by ratio; the
	// upper middle one of an even number).
	Rate   Rate            `json:"rate"`
	Verify Rate            `json:"ed25519_verify"`
	Ratio  float64         `json:"ratio"`
	Rounds []DeliveryRound `json:"rounds"`
	// CPUPerMessage is the process CPU time per message over all rounds.
	CPUPerMessage time.Duration `json:"cpu_per_message_ns"`
	// PerBatch and PerFsync are the messages the log committed per batch
	// and per WAL fsync (group commit), over all rounds.
	PerBatch float64 `json:"messages_per_batch"`
	PerFsync float64 `json:"messages_per_fsync"`
	// FsyncMean is the mean time of the WAL fsyncs during the rounds.
	FsyncMean time.Duration `json:"wal_fsync_mean_ns"`
}

// Delivery sends application messages into 2-member groups over HTTP from
// one concurrent sender per group (a keep-alive connection each), every
// message sealed (encrypted and request-signed) and encoded before timing,
// and reports messages/s with p50/p99 of the request latency (send →
// accepted and durable), round after round, each next to its own Ed25519
// verify rate.
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
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if o.VerifyTime <= 0 {
		o.VerifyTime = time.Second
	}
	per := (o.Messages + o.Groups - 1) / o.Groups
	groups := make([]*client.Group, o.Groups)
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
		if progress != nil && (i+1)%16 == 0 {
			progress(fmt.Sprintf("delivery: %d/%d groups ready", i+1, o.Groups))
		}
	}
	if progress != nil {
		progress(fmt.Sprintf("delivery: sealing %d messages", per*o.Rounds*o.Groups))
	}
	sealed, err := sealAll(groups, per*o.Rounds, o.Size)
	if err != nil {
		return nil, err
	}
	var senders []*messageSender
	if !o.Library {
		senders, err = newMessageSenders(h.Node.URL(), groups, sealed)
		defer closeSenders(senders)
		if err != nil {
			return nil, err
		}
	}
	res := &DeliveryResult{Options: o}
	var cpu, fsyncTime time.Duration
	var sent int
	var batches, fsyncs uint64
	for r := 0; r < o.Rounds; r++ {
		if progress != nil && o.Rounds > 1 {
			progress(fmt.Sprintf("delivery: round %d/%d", r+1, o.Rounds))
		}
		round := DeliveryRound{Verify: Ed25519Verify(o.VerifyTime)}
		batches0, syncs0, syncTime0 := h.Node.Log.Batches(), h.Node.Log.WALSyncs(), h.Node.Log.WALSyncTime()
		profile := ""
		if r == 0 {
			profile = o.CPUProfile
		}
		got, used, err := deliverRound(ctx, groups, sealed, senders, r*per, (r+1)*per, o.Library, profile)
		if err != nil {
			return nil, err
		}
		round.Rate = got
		round.Ratio = got.PerSec / round.Verify.PerSec
		round.CPUPerMessage = used / time.Duration(max(got.Count, 1))
		res.Rounds = append(res.Rounds, round)
		cpu += used
		sent += got.Count
		batches += h.Node.Log.Batches() - batches0
		fsyncs += h.Node.Log.WALSyncs() - syncs0
		fsyncTime += h.Node.Log.WALSyncTime() - syncTime0
	}
	median := medianRound(res.Rounds)
	res.Rate, res.Verify, res.Ratio = median.Rate, median.Verify, median.Ratio
	res.CPUPerMessage = cpu / time.Duration(max(sent, 1))
	if batches > 0 {
		res.PerBatch = float64(sent) / float64(batches)
	}
	if fsyncs > 0 {
		res.PerFsync = float64(sent) / float64(fsyncs)
		res.FsyncMean = fsyncTime / time.Duration(fsyncs)
	}
	return res, nil
}

// medianRound returns the round with the median ratio, the upper middle
// one of an even number.
func medianRound(rounds []DeliveryRound) DeliveryRound {
	byRatio := slices.Clone(rounds)
	slices.SortStableFunc(byRatio, func(a, b DeliveryRound) int { return cmp.Compare(a.Ratio, b.Ratio) })
	return byRatio[len(byRatio)/2]
}

// sealAll seals n messages of size bytes for each group, the groups in
// parallel (one core each).
func sealAll(groups []*client.Group, n, size int) ([][]*client.Sealed, error) {
	sealed := make([][]*client.Sealed, len(groups))
	errs := make([]error, len(groups))
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pt := make([]byte, size)
			for i := int(next.Add(1)) - 1; i < len(groups); i = int(next.Add(1)) - 1 {
				for range n {
					m, err := groups[i].Seal(pt)
					if err != nil {
						errs[i] = err
						break
					}
					sealed[i] = append(sealed[i], m)
				}
			}
		}()
	}
	wg.Wait()
	return sealed, errors.Join(errs...)
}

// deliverRound sends messages [from, to) of every group, one goroutine
// per group, and returns the rate and the process CPU time it took.
func deliverRound(ctx context.Context, groups []*client.Group, sealed [][]*client.Sealed, senders []*messageSender, from, to int, library bool, profile string) (Rate, time.Duration, error) {
	lat := make([][]time.Duration, len(groups))
	var sent atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	stop, err := startProfile(profile)
	if err != nil {
		return Rate{}, 0, err
	}
	cpu0 := cpuTime()
	start := time.Now()
	for i := range groups {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := from; j < to && j < len(sealed[i]); j++ {
				t := time.Now()
				var err error
				if library {
					err = groups[i].SendSealed(ctx, sealed[i][j])
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
	cpu := cpuTime() - cpu0
	stop()
	if firstErr != nil {
		return Rate{}, 0, firstErr
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return rate(int(sent.Load()), took, all), cpu, nil
}
