package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/mlshome/homeserver/client"
)

// FanOutOptions configure the fan-out benchmark.
type FanOutOptions struct {
	Members  int // group size (default 1,000)
	Messages int // messages sent into it (default 100)
	// CPUProfile, if set, is a file for a CPU profile of the timed part.
	CPUProfile string
}

// FanOutResult is the fan-out benchmark's outcome: Deliveries counts
// recipient queue entries written (messages × (members−1)).
type FanOutResult struct {
	Options    FanOutOptions `json:"options"`
	Messages   Rate          `json:"messages"`
	Deliveries Rate          `json:"deliveries"`
}

// FanOut builds a group of o.Members members (one commit adds them all)
// and sends o.Messages application messages into it, sealed before
// timing, one after another: each is accepted only once it is durable and
// indexed in every local member's queue.
func FanOut(ctx context.Context, h *Homeserver, o FanOutOptions, progress func(string)) (*FanOutResult, error) {
	if o.Members <= 1 {
		o.Members = 1000
	}
	if o.Messages <= 0 {
		o.Messages = 100
	}
	g, err := bigGroup(ctx, h, fmt.Sprintf("fo%d", time.Now().UnixNano()%100000), o.Members, func(p string) {
		if progress != nil {
			progress("fan-out: " + p)
		}
	})
	if err != nil {
		return nil, err
	}
	sealed := make([]*client.Sealed, o.Messages)
	for i := range sealed {
		if sealed[i], err = g.Seal(make([]byte, 200)); err != nil {
			return nil, err
		}
	}
	stop, err := startProfile(o.CPUProfile)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for _, m := range sealed {
		if err := g.SendSealed(ctx, m); err != nil {
			stop()
			return nil, err
		}
	}
	took := time.Since(start)
	stop()
	return &FanOutResult{
		Options:    o,
		Messages:   rate(o.Messages, took, nil),
		Deliveries: rate(o.Messages*(o.Members-1), took, nil),
	}, nil
}
