package mlsx

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

// testNow is the fixed "event time" of the tests.
var testNow = time.Unix(1_800_000_000, 0)

// testLifetime must contain both testNow and the real clock, which mls-go
// checks when members process Adds.
var testLifetime = Lifetime{NotBefore: time.Unix(1_600_000_000, 0), NotAfter: time.Unix(4_000_000_000, 0)}

var testPolicy = Policy{Now: testNow}

func newIdentity(t testing.TB, name string) *Identity {
	t.Helper()
	id, err := NewIdentity([]byte(name))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newKeyPackage(t testing.TB, id *Identity, queue string) []byte {
	t.Helper()
	kp, err := id.NewKeyPackage(KeyPackageOptions{Lifetime: testLifetime, SealedQueueConfig: []byte(queue)})
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// world is a group of real mls-go members and the Delivery Service's
// observer, with the DS ordering: a commit is applied by the observer first,
// then delivered to every member.
type world struct {
	t       testing.TB
	obs     *Observer
	members map[uint32]*Member
	n       int
}

func newWorld(t testing.TB, groupID string) *world {
	t.Helper()
	creator := newIdentity(t, "member-0")
	m, err := creator.CreateGroup([]byte(groupID), testLifetime)
	if err != nil {
		t.Fatal(err)
	}
	gi, tree, err := m.GroupInfo()
	if err != nil {
		t.Fatal(err)
	}
	obs, err := NewObserverFromGroupInfo(gi, tree, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.CheckInitialGroup(testNow); err != nil {
		t.Fatal(err)
	}
	return &world{t: t, obs: obs, members: map[uint32]*Member{m.LeafIndex(): m}, n: 1}
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want error %s, got %v", code, err)
	}
	if e.Code != code {
		t.Fatalf("want error %s, got %v", code, err)
	}
	t.Logf("rejected as expected: %v", err)
}

// submitCommit runs a commit produced by committer through the observer and,
// if accepted, delivers it (and the Welcome) to everyone.
func (w *world) submitCommit(committer *Member, res *CommitResult, joiners ...*Identity) (*Change, error) {
	w.t.Helper()
	ch, err := w.obs.ProcessPublicMessage(res.Commit, testPolicy)
	if err != nil {
		if derr := committer.DiscardPendingCommit(); derr != nil {
			w.t.Fatal(derr)
		}
		return nil, err
	}
	committer.ConfirmCommit()
	for l, m := range w.members {
		if m == committer {
			continue
		}
		if containsU32(ch.RemovedLeaves, l) {
			continue
		}
		if _, err := m.Process(res.Commit); err != nil {
			w.t.Fatalf("member %d processing commit: %v", l, err)
		}
	}
	for _, l := range ch.RemovedLeaves {
		delete(w.members, l)
	}
	if len(joiners) > 0 {
		wi, err := ParseWelcome(res.Welcome)
		if err != nil {
			w.t.Fatal(err)
		}
		if len(wi.NewMembers) != len(ch.AddedLeaves) {
			w.t.Fatalf("welcome for %d members, commit added %d", len(wi.NewMembers), len(ch.AddedLeaves))
		}
		for _, id := range joiners {
			m, err := id.Join(res.Welcome)
			if err != nil {
				w.t.Fatal(err)
			}
			w.members[m.LeafIndex()] = m
		}
	}
	w.checkAgree()
	return ch, nil
}

func (w *world) checkAgree() {
	w.t.Helper()
	th := w.obs.TreeHash()
	for l, m := range w.members {
		if m.Epoch() != w.obs.Epoch() {
			w.t.Fatalf("member %d at epoch %d, observer at %d", l, m.Epoch(), w.obs.Epoch())
		}
		if !bytes.Equal(m.TreeHash(), th) {
			w.t.Fatalf("member %d tree hash differs from observer's at epoch %d", l, w.obs.Epoch())
		}
	}
	if got := len(w.obs.Members()); got != len(w.members) {
		w.t.Fatalf("observer has %d members, world %d", got, len(w.members))
	}
}

// add creates k new identities and has committer add them.
func (w *world) add(committer *Member, k int) (*Change, []*Identity) {
	w.t.Helper()
	var ids []*Identity
	var kps [][]byte
	for i := 0; i < k; i++ {
		id := newIdentity(w.t, fmt.Sprintf("member-%d", w.n))
		w.n++
		ids = append(ids, id)
		kps = append(kps, newKeyPackage(w.t, id, fmt.Sprintf("queue-%d", w.n)))
	}
	res, err := committer.Add(kps...)
	if err != nil {
		w.t.Fatal(err)
	}
	ch, err := w.submitCommit(committer, res, ids...)
	if err != nil {
		w.t.Fatal(err)
	}
	return ch, ids
}

func (w *world) member(l uint32) *Member {
	m := w.members[l]
	if m == nil {
		w.t.Fatalf("no member at leaf %d", l)
	}
	return m
}
