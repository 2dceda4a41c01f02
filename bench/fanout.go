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
	tag := time.Now().UnixNano() % 100000
	owner, err := h.NewUser(ctx, fmt.Sprintf("fo%d-owner", tag), 1)
	if err != nil {
		return nil, err
	}
	if err := owner.GetTokens(ctx, 1); err != nil {
		return nil, err
	}
	g, err := owner.CreateGroup(ctx)
	if err != nil {
		return nil, err
	}
	var kps [][]byte
	for i := 1; i < o.Members; i++ {
		c, err := h.Conn.Register(ctx, fmt.Sprintf("fo%d-%d", tag, i))
		if err != nil {
			return nil, err
		}
		kp, err := c.MakeKeyPackages(0, true)
		if err != nil {
			return nil, err
		}
		if err := c.PublishKeyPackages(ctx, kp); err != nil {
			return nil, err
		}
		kps = append(kps, kp[0])
		if progress != nil && i%250 == 0 {
			progress(fmt.Sprintf("fan-out: %d/%d members registered", i, o.Members-1))
		}
	}
	if err := g.AddKeyPackages(ctx, kps...); err != nil {
		return nil, fmt.Errorf("add %d members: %w", len(kps), err)
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
