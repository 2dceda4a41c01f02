// Package ratelimit holds in-memory token buckets keyed by a string
// (requester, target user, group, origin homeserver). State is in memory
// only: a restart resets every bucket, and several homeserver processes do
// not share limits.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a rate with a burst. The zero Limit allows everything.
type Limit struct {
	PerSecond float64
	Burst     int
}

// Enabled reports whether the limit restricts anything.
func (l Limit) Enabled() bool { return l.PerSecond > 0 && l.Burst > 0 }

// Limiter is a set of token buckets, one per key, with at most Max keys
// (the least recently used are forgotten beyond that).
type Limiter struct {
	limit Limit
	max   int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// New returns a limiter applying limit to each key, remembering at most
// max keys (default 100,000).
func New(limit Limit, max int) *Limiter {
	if max <= 0 {
		max = 100_000
	}
	return &Limiter{limit: limit, max: max, buckets: map[string]*bucket{}}
}

// Allow takes one token for key at time now. If none is left it returns
// false and how long until one is.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil || !l.limit.Enabled() {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.limit.PerSecond), l.limit.Burst)}
		l.buckets[key] = b
	}
	b.used = now
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// evict drops buckets idle long enough to be full again, or the oldest
// tenth if none is.
func (l *Limiter) evict(now time.Time) {
	full := time.Duration(float64(l.limit.Burst) / l.limit.PerSecond * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.used) > full {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max*9/10 {
			break
		}
		delete(l.buckets, k)
	}
}
