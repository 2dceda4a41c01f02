package ratelimit

import (
	"testing"
	"time"
)

func TestLimitBitesAndRecovers(t *testing.T) {
	l := New(Limit{PerSecond: 2, Burst: 3}, 0)
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("burst token %d refused", i)
		}
	}
	ok, retry := l.Allow("a", now)
	if ok || retry <= 0 || retry > time.Second {
		t.Fatalf("4th token: ok=%v retry=%v", ok, retry)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("another key is limited too")
	}
	if ok, _ := l.Allow("a", now.Add(retry)); !ok {
		t.Fatal("no recovery after Retry-After")
	}
}

func TestZeroLimitAllowsAll(t *testing.T) {
	var l *Limiter
	if ok, _ := l.Allow("x", time.Now()); !ok {
		t.Fatal("nil limiter refused")
	}
	if ok, _ := New(Limit{}, 0).Allow("x", time.Now()); !ok {
		t.Fatal("zero limit refused")
	}
}

func TestKeyCapEvicts(t *testing.T) {
	l := New(Limit{PerSecond: 1, Burst: 1}, 10)
	now := time.Unix(0, 0)
	for i := 0; i < 100; i++ {
		l.Allow(string(rune('a'+i)), now)
	}
	if len(l.buckets) > 10 {
		t.Fatalf("%d buckets kept, cap 10", len(l.buckets))
	}
}
