package bench

import (
	"context"
	"fmt"
	"time"
)

// CommitsOptions configure the commit benchmark.
type CommitsOptions struct {
	Members int // group size (default 100)
	Commits int // self-update commits sent (default 200)
	// CPUProfile, if set, is a file for a CPU profile of the timed part.
	CPUProfile string
}

// CommitsResult is the commit benchmark's outcome; Rate's latencies are
// per commit (send → accepted and durable).
type CommitsResult struct {
	Options CommitsOptions `json:"options"`
	Rate    Rate           `json:"rate"`
}

// Commits measures handshakes the Delivery Service observes: it builds a
// group of o.Members members (one commit adds all but the owner), then the
// owner builds o.Commits self-update commits before timing, each on the
// epoch the previous one creates (built and confirmed locally), and sends
// them in order over HTTP. Every commit costs the homeserver what a
// public observer of a group that size pays: the signature, the
// UpdatePath against the ratchet tree, tree and parent hashes, and the
// fan-out to every other member's queue.
func Commits(ctx context.Context, h *Homeserver, o CommitsOptions, progress func(string)) (*CommitsResult, error) {
	if o.Members <= 1 {
		o.Members = 100
	}
	if o.Commits <= 0 {
		o.Commits = 200
	}
	say := func(s string) {
		if progress != nil {
			progress("commits: " + s)
		}
	}
	g, err := bigGroup(ctx, h, fmt.Sprintf("cm%d", time.Now().UnixNano()%100000), o.Members, say)
	if err != nil {
		return nil, err
	}
	m := g.Member()
	commits := make([][]byte, o.Commits)
	for i := range commits {
		res, err := m.SelfUpdate()
		if err != nil {
			return nil, fmt.Errorf("self-update %d: %w", i, err)
		}
		// The next commit builds on the epoch this one creates; the
		// homeserver sees them in the same order.
		m.ConfirmCommit()
		commits[i] = res.Commit
		if (i+1)%50 == 0 {
			say(fmt.Sprintf("%d/%d commits built", i+1, o.Commits))
		}
	}
	stop, err := startProfile(o.CPUProfile)
	if err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, len(commits))
	start := time.Now()
	for i, c := range commits {
		t := time.Now()
		if err := g.SendHandshake(ctx, c, nil); err != nil {
			stop()
			return nil, fmt.Errorf("commit %d: %w", i, err)
		}
		lat = append(lat, time.Since(t))
	}
	took := time.Since(start)
	stop()
	return &CommitsResult{Options: o, Rate: rate(len(commits), took, lat)}, nil
}
