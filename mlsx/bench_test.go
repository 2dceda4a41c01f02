package mlsx

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
)

// Benchmarks for the Delivery Service's per-message cost in a 1000-member
// group. Setup (building the group with real mls-go clients) runs once and
// takes a few seconds.

const benchMembers = 1000

type benchGroup struct {
	obs    *Observer
	state  []byte
	remove []byte // commit by leaf 0 removing leaf benchMembers/2
	update []byte // commit by leaf 0 with a fresh path and no proposals
	app    []byte
	appSig []byte
	kp     []byte
}

var (
	benchOnce sync.Once
	bench     benchGroup
	benchErr  error
)

func setupBench(b *testing.B) *benchGroup {
	b.Helper()
	benchOnce.Do(func() { benchErr = buildBench() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return &bench
}

func buildBench() error {
	creator, err := NewIdentity([]byte("bench-0"))
	if err != nil {
		return err
	}
	m, err := creator.CreateGroup([]byte("example.org/bench"), testLifetime)
	if err != nil {
		return err
	}
	gi, tree, err := m.GroupInfo()
	if err != nil {
		return err
	}
	obs, err := NewObserverFromGroupInfo(gi, tree, testPolicy)
	if err != nil {
		return err
	}
	kps := make([][]byte, 0, benchMembers-1)
	for i := 1; i < benchMembers; i++ {
		id, err := NewIdentity([]byte(fmt.Sprintf("bench-%d", i)))
		if err != nil {
			return err
		}
		kp, err := id.NewKeyPackage(KeyPackageOptions{Lifetime: testLifetime, SealedQueueConfig: []byte("q")})
		if err != nil {
			return err
		}
		kps = append(kps, kp)
	}
	res, err := m.Add(kps...)
	if err != nil {
		return err
	}
	if _, err := obs.ProcessPublicMessage(res.Commit, testPolicy); err != nil {
		return fmt.Errorf("observer rejected the %d adds: %w", len(kps), err)
	}
	m.ConfirmCommit()
	if len(obs.Members()) != benchMembers {
		return fmt.Errorf("%d members", len(obs.Members()))
	}
	bench.obs = obs
	if bench.state, err = obs.MarshalBinary(); err != nil {
		return err
	}
	if res, err = m.Remove(benchMembers / 2); err != nil {
		return err
	}
	bench.remove = res.Commit
	m.DiscardPendingCommit()
	if res, err = m.SelfUpdate(); err != nil {
		return err
	}
	bench.update = res.Commit
	m.DiscardPendingCommit()
	if bench.app, bench.appSig, err = m.Send(make([]byte, 256)); err != nil {
		return err
	}
	id, err := NewIdentity([]byte("bench-kp"))
	if err != nil {
		return err
	}
	bench.kp, err = id.NewKeyPackage(KeyPackageOptions{Lifetime: testLifetime, SealedQueueConfig: make([]byte, 120), LastResort: true})
	return err
}

// benchCommit measures ProcessPublicMessage of commit on a fresh copy of
// the observer. warm keeps the cached tree hashes (an observer that stays in
// memory); cold starts from UnmarshalObserver (an observer loaded from
// storage for each command, which recomputes the tree hash).
func benchCommit(b *testing.B, commit []byte, warm bool) {
	g := setupBench(b)
	g.obs.TreeHash() // fill the cache
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var o *Observer
		if warm {
			o = g.obs.clone()
		} else {
			var err error
			if o, err = UnmarshalObserver(g.state); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if _, err := o.ProcessPublicMessage(commit, testPolicy); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkObserverRemoveCommit1000(b *testing.B) {
	b.Run("warm", func(b *testing.B) { benchCommit(b, setupBench(b).remove, true) })
	b.Run("cold", func(b *testing.B) { benchCommit(b, setupBench(b).remove, false) })
}

func BenchmarkObserverUpdateCommit1000(b *testing.B) {
	b.Run("warm", func(b *testing.B) { benchCommit(b, setupBench(b).update, true) })
	b.Run("cold", func(b *testing.B) { benchCommit(b, setupBench(b).update, false) })
}

func BenchmarkCheckApplication1000(b *testing.B) {
	g := setupBench(b)
	g.obs.TreeHash()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := g.obs.CheckApplication(g.app, 0, g.appSig, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateKeyPackage(b *testing.B) {
	g := setupBench(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ValidateKeyPackage(g.kp, testNow, testPolicy); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalObserver1000(b *testing.B) {
	g := setupBench(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(g.state)))
	for i := 0; i < b.N; i++ {
		if _, err := UnmarshalObserver(g.state); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Verify is the baseline: one raw Ed25519 verification, the
// floor of any check that verifies one signature.
func BenchmarkEd25519Verify(b *testing.B) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 128)
	sig := ed25519.Sign(priv, msg)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}
