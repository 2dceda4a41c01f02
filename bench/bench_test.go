package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkDelivery reports application messages/s into 2-member groups
// over HTTP, p50/p99, and the ratio to the same run's parallel Ed25519
// verify rate (target ≥ 0.4).
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
	v := Ed25519Verify(time.Second)
	b.ReportMetric(r.Rate.PerSec, "msgs/s")
	b.ReportMetric(float64(r.Rate.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(r.Rate.P99.Microseconds()), "p99-µs")
	b.ReportMetric(v.PerSec, "verifies/s")
	b.ReportMetric(r.Rate.PerSec/v.PerSec, "ratio-to-verify")
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
