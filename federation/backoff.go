package federation

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is a jittered exponential backoff: attempt n (from 0) waits a
// random duration in [d/2, d] where d = min·2ⁿ capped at max. The jitter
// keeps homeservers that lost a peer at the same moment from retrying in
// lockstep.
type backoff struct {
	min, max time.Duration
}

func (b backoff) delay(attempt int) time.Duration {
	d := b.min
	for i := 0; i < attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleepCtx waits for d or until ctx is done, reporting whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
