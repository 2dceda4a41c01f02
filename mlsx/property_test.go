package mlsx

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPropertyObserverFollowsHonestMembers drives real mls-go members through
// seeded random sequences of adds, removes, self-updates, update and
// add/remove proposals committed by others, competing commits and
// application messages. The observer must accept every honest handshake,
// agree with every member's tree hash after each epoch, reject the losing
// commit of a race with stale_epoch, and accept every application message.
func TestPropertyObserverFollowsHonestMembers(t *testing.T) {
	seeds, steps := 10, 60
	if testing.Short() {
		seeds, steps = 2, 20
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runRandomGroup(t, uint64(seed), steps)
		})
	}
}

func runRandomGroup(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x6d6c7378))
	w := newWorld(t, fmt.Sprintf("example.org/prop-%d", seed))
	w.add(w.member(0), 2)

	leaves := func() []uint32 {
		ls := make([]uint32, 0, len(w.members))
		for l := range w.members {
			ls = append(ls, l)
		}
		slices.Sort(ls)
		return ls
	}
	pick := func(except ...uint32) (uint32, bool) {
		var cand []uint32
		for _, l := range leaves() {
			if !slices.Contains(except, l) {
				cand = append(cand, l)
			}
		}
		if len(cand) == 0 {
			return 0, false
		}
		return cand[rng.IntN(len(cand))], true
	}
	// broadcast delivers an accepted proposal to every member but the
	// sender.
	broadcast := func(from uint32, msg []byte) {
		for l, m := range w.members {
			if l == from {
				continue
			}
			if _, err := m.Process(msg); err != nil {
				t.Fatalf("member %d processing proposal: %v", l, err)
			}
		}
	}
	propose := func(from uint32, msg []byte) {
		ch, err := w.obs.ProcessPublicMessage(msg, testPolicy)
		if err != nil {
			t.Fatalf("observer rejected proposal of leaf %d: %v", from, err)
		}
		if ch.Kind != ChangeProposal || ch.Sender != from {
			t.Fatalf("proposal change %+v", ch)
		}
		broadcast(from, msg)
	}

	for step := 0; step < steps; step++ {
		op := rng.IntN(8)
		t.Logf("step %d op %d members %v", step, op, leaves())
		switch {
		case op == 0 && len(w.members) < 10: // add 1-3 members
			c, _ := pick()
			w.add(w.member(c), 1+rng.IntN(3))
		case op == 1 && len(w.members) > 2: // remove
			c, _ := pick()
			victim, _ := pick(c)
			res, err := w.member(c).Remove(victim)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.submitCommit(w.member(c), res); err != nil {
				t.Fatalf("step %d: remove rejected: %v", step, err)
			}
		case op == 2: // self-update
			c, _ := pick()
			res, err := w.member(c).SelfUpdate()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.submitCommit(w.member(c), res); err != nil {
				t.Fatalf("step %d: self-update rejected: %v", step, err)
			}
		case op == 3 && len(w.members) > 1: // update proposal committed by another
			u, _ := pick()
			msg, err := w.member(u).ProposeUpdate()
			if err != nil {
				t.Fatal(err)
			}
			propose(u, msg)
			c, _ := pick(u)
			res, err := w.member(c).CommitPending()
			if err != nil {
				t.Fatal(err)
			}
			ch, err := w.submitCommit(w.member(c), res)
			if err != nil {
				t.Fatalf("step %d: commit of update rejected: %v", step, err)
			}
			if !slices.Contains(ch.UpdatedLeaves, u) {
				t.Fatalf("update of %d not applied: %+v", u, ch)
			}
		case op == 4 && len(w.members) > 2: // remove proposal (maybe self) committed by another
			p, _ := pick()
			victim := p
			if rng.IntN(2) == 0 {
				victim, _ = pick(p)
			}
			msg, err := w.member(p).ProposeRemove(victim)
			if err != nil {
				t.Fatal(err)
			}
			propose(p, msg)
			c, _ := pick(victim)
			res, err := w.member(c).CommitPending()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.submitCommit(w.member(c), res); err != nil {
				t.Fatalf("step %d: commit of remove proposal rejected: %v", step, err)
			}
		case op == 5 && len(w.members) > 1 && len(w.members) < 10: // add proposal + racing commits
			p, _ := pick()
			id := newIdentity(t, fmt.Sprintf("member-%d", w.n))
			w.n++
			msg, err := w.member(p).ProposeAdd(newKeyPackage(t, id, "queue"))
			if err != nil {
				t.Fatal(err)
			}
			propose(p, msg)
			a, _ := pick()
			b, _ := pick(a)
			t.Logf("race p=%d a=%d b=%d", p, a, b)
			resA, err := w.member(a).CommitPending()
			if err != nil {
				t.Fatal(err)
			}
			resB, err := w.member(b).CommitPending()
			if err != nil {
				t.Fatal(err)
			}
			// The DS orders a before b: b's commit is for an epoch that
			// has passed.
			if _, err := w.submitCommit(w.member(a), resA, id); err != nil {
				t.Fatalf("step %d: first commit rejected: %v", step, err)
			}
			_, err = w.obs.ProcessPublicMessage(resB.Commit, testPolicy)
			wantCode(t, err, CodeStaleEpoch)
			w.checkAgree()
		default: // application messages
			s, _ := pick()
			msg, sig, err := w.member(s).Send([]byte(fmt.Sprintf("step %d", step)))
			if err != nil {
				t.Fatal(err)
			}
			info, err := w.obs.CheckApplication(msg, s, sig, 0)
			if err != nil {
				t.Fatalf("step %d: application message rejected: %v", step, err)
			}
			if info.Sender != s || info.Epoch != w.obs.Epoch() {
				t.Fatalf("app info %+v", info)
			}
			for l, m := range w.members {
				if l == s {
					continue
				}
				rcv, err := m.Process(msg)
				if err != nil {
					t.Fatalf("member %d decrypting: %v", l, err)
				}
				if rcv.Sender != s || string(rcv.Plaintext) != fmt.Sprintf("step %d", step) {
					t.Fatalf("received %+v", rcv)
				}
			}
		}
		// The observer state survives a serialization round trip at
		// every step, byte for byte.
		b1, _ := w.obs.MarshalBinary()
		o2, err := UnmarshalObserver(b1)
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := o2.MarshalBinary()
		if string(b1) != string(b2) {
			t.Fatalf("step %d: state round trip differs", step)
		}
		w.obs = o2
	}
}
