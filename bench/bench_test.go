package bench

import (
	"context"
	"os"
	"testing"
)

// BenchmarkDelivery reports application messages/s into 2-member groups
// over HTTP, p50/p99, and the ratio to the parallel Ed25519 verify rate
// measured right before it (target ≥ 0.4).
func BenchmarkDelivery(b *testing.B) {
	ctx := context.Background()
	h, err := StartHomeserver(ctx, b.TempDir(), "bench.test")
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	n := b.N
	if n < 2000 {
		n = 2000
	}
	b.ResetTimer()
	r, err := Delivery(ctx, h, DeliveryOptions{Groups: 64, Messages: n, CPUProfile: os.Getenv("BENCH_CPUPROFILE")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(r.Rate.PerSec, "msgs/s")
	b.ReportMetric(float64(r.Rate.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(r.Rate.P99.Microseconds()), "p99-µs")
	b.ReportMetric(r.Verify.PerSec, "verifies/s")
	b.ReportMetric(r.Ratio, "ratio-to-verify")
	b.ReportMetric(float64(r.CPUPerMessage.Microseconds()), "cpu-µs/msg")
}

// BenchmarkFanOut reports recipient deliveries/s into a 1,000-member group
// (target ≥ 200,000).
func BenchmarkFanOut(b *testing.B) {
	ctx := context.Background()
	h, err := StartHomeserver(ctx, b.TempDir(), "fanout.test")
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	b.ResetTimer()
	r, err := FanOut(ctx, h, FanOutOptions{Members: 1000, Messages: max(b.N, 50)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.Deliveries.PerSec, "deliveries/s")
	b.ReportMetric(r.Messages.PerSec, "msgs/s")
}

// The delivery result is the round with the median ratio, whatever order
// the rounds ran in; of an even number, the upper middle one.
func TestMedianRound(t *testing.T) {
	r := func(ratio float64) DeliveryRound {
		return DeliveryRound{Ratio: ratio, Rate: Rate{PerSec: ratio * 1000}}
	}
	for _, c := range []struct {
		ratios []float64
		want   float64
	}{
		{[]float64{0.4}, 0.4},
		{[]float64{0.45, 0.38, 0.41}, 0.41},
		{[]float64{0.38, 0.41, 0.45}, 0.41},
		{[]float64{0.50, 0.30, 0.42, 0.40}, 0.42},
		{[]float64{0.33, 0.33, 0.47, 0.33, 0.47}, 0.33},
	} {
		var rounds []DeliveryRound
		for _, x := range c.ratios {
			rounds = append(rounds, r(x))
		}
		got := medianRound(rounds)
		if got.Ratio != c.want || got.Rate.PerSec != c.want*1000 {
			t.Errorf("medianRound(%v) = %+v, want the round of ratio %v", c.ratios, got, c.want)
		}
	}
}
