package mlsx

import (
	"sync"
	"testing"
)

// Fuzz targets for every decoder reachable from the network. They must
// never panic; errors are expected. Run one briefly with, e.g.:
//
//	go test ./mlsx/ -run '^$' -fuzz '^FuzzProcessPublicMessage$' -fuzztime 20s

// fuzzCorpus is a small real group and messages from it, built once.
type fuzzCorpus struct {
	state       []byte // observer state before the messages
	groupInfo   []byte
	tree        []byte
	keyPackage  []byte
	commit      []byte
	proposal    []byte
	app, appSig []byte
	appSender   uint32
}

var (
	corpusOnce sync.Once
	corpus     fuzzCorpus
)

func seedCorpus(tb testing.TB) *fuzzCorpus {
	corpusOnce.Do(func() {
		w := newWorld(tb, "example.org/fuzz")
		w.add(w.member(0), 2)
		c := &corpus
		c.state, _ = w.obs.MarshalBinary()
		var err error
		if c.groupInfo, c.tree, err = w.member(1).GroupInfo(); err != nil {
			tb.Fatal(err)
		}
		c.keyPackage = newKeyPackage(tb, newIdentity(tb, "fuzz-kp"), "queue")
		res, err := w.member(0).Add(c.keyPackage)
		if err != nil {
			tb.Fatal(err)
		}
		c.commit = res.Commit
		w.member(0).DiscardPendingCommit()
		if c.proposal, err = w.member(2).ProposeRemove(1); err != nil {
			tb.Fatal(err)
		}
		if c.app, c.appSig, err = w.member(1).Send([]byte("fuzz")); err != nil {
			tb.Fatal(err)
		}
		c.appSender = 1
	})
	return &corpus
}

func FuzzValidateKeyPackage(f *testing.F) {
	c := seedCorpus(f)
	f.Add(c.keyPackage)
	f.Add([]byte{0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ValidateKeyPackage(b, testNow, testPolicy)
	})
}

func FuzzProcessPublicMessage(f *testing.F) {
	c := seedCorpus(f)
	f.Add(c.commit)
	f.Add(c.proposal)
	f.Add(c.app)
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := UnmarshalObserver(c.state)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := o.MarshalBinary()
		if _, err := o.ProcessPublicMessage(b, testPolicy); err != nil {
			after, _ := o.MarshalBinary()
			if string(before) != string(after) {
				t.Fatal("rejected message changed the state")
			}
		}
	})
}

func FuzzCheckApplication(f *testing.F) {
	c := seedCorpus(f)
	f.Add(c.app, c.appSender, c.appSig, uint64(0))
	f.Add(c.commit, uint32(0), []byte{}, uint64(1))
	o, err := UnmarshalObserver(c.state)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte, sender uint32, sig []byte, window uint64) {
		o.CheckApplication(msg, sender, sig, window)
	})
}

func FuzzUnmarshalObserver(f *testing.F) {
	c := seedCorpus(f)
	f.Add(c.state)
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := UnmarshalObserver(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes and be usable.
		out, _ := o.MarshalBinary()
		if string(out) != string(b) {
			t.Fatalf("state does not round-trip")
		}
		o.TreeHash()
		o.ProcessPublicMessage(c.commit, testPolicy)
	})
}

func FuzzNewObserverFromGroupInfo(f *testing.F) {
	c := seedCorpus(f)
	f.Add(c.groupInfo, c.tree)
	f.Add(c.groupInfo, []byte(nil))
	f.Fuzz(func(t *testing.T, gi, tree []byte) {
		if len(tree) == 0 {
			tree = nil
		}
		o, err := NewObserverFromGroupInfo(gi, tree, testPolicy)
		if err == nil {
			o.CheckInitialGroup(testNow)
		}
	})
}

func FuzzParseWelcome(f *testing.F) {
	f.Add([]byte{0, 1, 0, 3, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseWelcome(b)
	})
}

// FuzzRatchetTree reaches the tree decoder and the tree math (hashes,
// resolutions, parent-hash and unmerged-leaves checks) directly, since the
// GroupInfo path rarely survives random mutation up to them.
func FuzzRatchetTree(f *testing.F) {
	c := seedCorpus(f)
	f.Add(c.tree)
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseRatchetTree(b)
		if err != nil {
			return
		}
		s, _ := suiteFor(SuiteX25519AES128)
		tr, err := treeFromEntries(s, entries)
		if err != nil || tr.leafCount() > 1<<12 {
			return
		}
		tr.treeHash()
		tr.verifyStructure()
		tr.verifyParentHashes()
		for l := uint32(0); l < tr.leafCount(); l++ {
			tr.filteredDirectPath(l)
		}
		o := &Observer{s: s, groupID: []byte("g"), tree: tr}
		o.validateTree(testPolicy)
		if tr.leaf(0) != nil {
			applyRemove(tr.clone(), 0)
		}
	})
}
