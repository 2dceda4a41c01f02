package mlsx

import (
	"bytes"
	"testing"
	"time"

	"github.com/thomas-vilte/mls-go/ciphersuite"
)

// Negative tests: every rejection carries its stable code and leaves the
// observer unchanged.

// sign returns SignWithLabel by id's key.
func sign(t testing.TB, id *Identity, label string, content []byte) []byte {
	t.Helper()
	sig, err := ciphersuite.SignWithLabel(id.sigKey, label, content)
	if err != nil {
		t.Fatal(err)
	}
	return sig.AsSlice()
}

// forgePublic builds an MLSMessage PublicMessage around FramedContent bytes,
// signed by id against the observer's current GroupContext. Tags are
// zero-filled: the observer cannot check them anyway.
func forgePublic(t testing.TB, o *Observer, id *Identity, content []byte, commit bool) []byte {
	t.Helper()
	var tbs writer
	tbs.u16(1)
	tbs.u16(wireFormatPublicMessage)
	tbs.raw(content)
	tbs.raw(o.GroupContext())
	var w writer
	w.u16(1)
	w.u16(wireFormatPublicMessage)
	w.raw(content)
	w.vec(sign(t, id, "FramedContentTBS", tbs.b))
	if commit {
		w.vec(make([]byte, 32))
	}
	w.vec(make([]byte, 32))
	return w.b
}

// framedContent encodes a member FramedContent header followed by body.
func framedContentBytes(groupID []byte, epoch uint64, leaf uint32, ct uint8, body []byte) []byte {
	var w writer
	w.vec(groupID)
	w.u64(epoch)
	w.u8(senderMember)
	w.u32(leaf)
	w.vec(nil)
	w.u8(ct)
	w.raw(body)
	return w.b
}

func removeProposal(leaf uint32) []byte {
	var w writer
	w.u16(proposalRemove)
	w.u32(leaf)
	return w.b
}

// resignContent parses a PublicMessage, lets mutate change its FramedContent
// and re-signs it with id's key.
func resignContent(t testing.TB, o *Observer, id *Identity, msg []byte, mutate func([]byte) []byte) []byte {
	t.Helper()
	r := newReader(bytes.Clone(msg))
	if _, err := parseMLSMessageHeader(r); err != nil {
		t.Fatal(err)
	}
	pm, err := parsePublicMessage(r)
	if err != nil {
		t.Fatal(err)
	}
	content := mutate(bytes.Clone(pm.content.raw))
	return forgePublic(t, o, id, content, pm.content.contentType == contentCommit)
}

// unchanged asserts that the observer state did not move.
func unchanged(t testing.TB, o *Observer, before []byte) {
	t.Helper()
	after, _ := o.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatal("observer state changed by a rejected message")
	}
}

func threeMembers(t *testing.T) *world {
	w := newWorld(t, "example.org/neg")
	w.add(w.member(0), 2)
	return w
}

func TestRejectNonMember(t *testing.T) {
	w := threeMembers(t)
	before, _ := w.obs.MarshalBinary()
	mallory := newIdentity(t, "mallory")
	// A leaf index that does not exist.
	msg := forgePublic(t, w.obs, mallory, framedContentBytes(w.obs.GroupID(), w.obs.Epoch(), 7, contentProposal, removeProposal(0)), false)
	_, err := w.obs.ProcessPublicMessage(msg, testPolicy)
	wantCode(t, err, CodeNotAMember)
	// Mallory's own group with the same group id: her leaf 0 is not ours.
	fork, err := mallory.CreateGroup(w.obs.GroupID(), testLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fork.SelfUpdate(); err != nil {
		t.Fatal(err)
	}
	fork.ConfirmCommit()
	res, err := fork.SelfUpdate() // now at the observer's epoch
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.obs.ProcessPublicMessage(res.Commit, testPolicy)
	wantCode(t, err, CodeBadSignature)
	// Application message from outside.
	app, sig, err := fork.Send([]byte("spam"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.obs.CheckApplication(app, 9, sig, 10)
	wantCode(t, err, CodeNotAMember)
	// External senders are not members.
	var fc writer
	fc.vec(w.obs.GroupID())
	fc.u64(w.obs.Epoch())
	fc.u8(senderExternal)
	fc.u32(0)
	fc.vec(nil)
	fc.u8(contentProposal)
	fc.raw(removeProposal(1))
	var ext writer
	ext.u16(1)
	ext.u16(wireFormatPublicMessage)
	ext.raw(fc.b)
	ext.vec(make([]byte, 64))
	_, err = w.obs.ProcessPublicMessage(ext.b, testPolicy)
	wantCode(t, err, CodeNotAMember)
	unchanged(t, w.obs, before)
}

func TestRejectMemberSigningAsAnotherLeaf(t *testing.T) {
	w := threeMembers(t)
	before, _ := w.obs.MarshalBinary()
	bob, carol := w.member(1), w.member(2)
	// Bob signs a proposal claiming to be leaf 2.
	msg := forgePublic(t, w.obs, bob.Identity(), framedContentBytes(w.obs.GroupID(), w.obs.Epoch(), 2, contentProposal, removeProposal(0)), false)
	_, err := w.obs.ProcessPublicMessage(msg, testPolicy)
	wantCode(t, err, CodeBadSignature)
	// Bob rewrites the sender of his own valid commit to leaf 2.
	res, err := bob.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(res.Commit[4:])
	pm, err := parsePublicMessage(r)
	if err != nil {
		t.Fatal(err)
	}
	off := len(pm.content.groupID) + 1 + 8 + 1 // varint(len) | group_id | epoch | sender_type
	forged := bytes.Clone(res.Commit)
	forged[4+off+3] = 2
	_, err = w.obs.ProcessPublicMessage(forged, testPolicy)
	wantCode(t, err, CodeBadSignature)
	bob.DiscardPendingCommit()
	// Application messages: bob's message presented as carol's, with
	// bob's own request signature, and with carol's valid signature of her
	// own message (a valid signature of another leaf).
	bobMsg, bobSig, err := bob.Send([]byte("I am carol"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.obs.CheckApplication(bobMsg, 2, bobSig, 0)
	wantCode(t, err, CodeBadSignature)
	_, carolSig, err := carol.Send([]byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.obs.CheckApplication(bobMsg, 2, carolSig, 0)
	wantCode(t, err, CodeBadSignature)
	// Bob signs the request for leaf 2 himself: the signature binds the
	// leaf index and is checked with leaf 2's key.
	tbs := AppRequestTBS(w.obs.GroupID(), w.obs.Epoch(), 2, AppRequestDigest(bobMsg))
	forgedSig, _ := bob.SignWithLeafKey(AppRequestLabel, tbs)
	_, err = w.obs.CheckApplication(bobMsg, 2, forgedSig, 0)
	wantCode(t, err, CodeBadSignature)
	unchanged(t, w.obs, before)
}

func TestRejectOldAndSecondCommit(t *testing.T) {
	w := threeMembers(t)
	alice, bob := w.member(0), w.member(1)
	resA, err := alice.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	resB, err := bob.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.submitCommit(alice, resA); err != nil {
		t.Fatal(err)
	}
	before, _ := w.obs.MarshalBinary()
	// Bob's commit was for the epoch alice's commit closed.
	_, err = w.obs.ProcessPublicMessage(resB.Commit, testPolicy)
	wantCode(t, err, CodeStaleEpoch)
	// Replaying alice's accepted commit is for an old epoch too.
	_, err = w.obs.ProcessPublicMessage(resA.Commit, testPolicy)
	wantCode(t, err, CodeStaleEpoch)
	unchanged(t, w.obs, before)
	// Bob, having processed alice's commit, can commit in the new epoch.
	res, err := bob.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.submitCommit(bob, res); err != nil {
		t.Fatal(err)
	}
}

func TestRejectRemovedMember(t *testing.T) {
	w := threeMembers(t)
	alice, bob := w.member(0), w.member(1)
	oldEpoch := w.obs.Epoch()
	lateMsg, lateSig, err := bob.Send([]byte("before removal"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := alice.Remove(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.submitCommit(alice, res); err != nil {
		t.Fatal(err)
	}
	before, _ := w.obs.MarshalBinary()
	// A message bob sent in the epoch before his removal arrives after it:
	// within the window, but bob is no longer a member.
	_, err = w.obs.CheckApplication(lateMsg, 1, lateSig, 5)
	wantCode(t, err, CodeNotAMember)
	// Bob (who kept his old state) tries to commit or propose.
	resB, err := bob.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.obs.ProcessPublicMessage(resB.Commit, testPolicy)
	wantCode(t, err, CodeStaleEpoch)
	forged := forgePublic(t, w.obs, bob.Identity(), framedContentBytes(w.obs.GroupID(), w.obs.Epoch(), 1, contentProposal, removeProposal(0)), false)
	_, err = w.obs.ProcessPublicMessage(forged, testPolicy)
	wantCode(t, err, CodeNotAMember)
	unchanged(t, w.obs, before)
	// A new member takes leaf 1: bob's signatures do not pass as hers.
	ch, _ := w.add(alice, 1)
	if ch.AddedLeaves[0].Leaf != 1 {
		t.Fatalf("new member at leaf %d", ch.AddedLeaves[0].Leaf)
	}
	tbs := AppRequestTBS(w.obs.GroupID(), oldEpoch, 1, AppRequestDigest(lateMsg))
	sig2, _ := bob.SignWithLeafKey(AppRequestLabel, tbs)
	_, err = w.obs.CheckApplication(lateMsg, 1, sig2, 5)
	wantCode(t, err, CodeBadSignature)
}

func TestApplicationEpochWindow(t *testing.T) {
	w := threeMembers(t)
	bob := w.member(1)
	msg, sig, err := bob.Send([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	res, _ := w.member(0).SelfUpdate()
	if _, err := w.submitCommit(w.member(0), res); err != nil {
		t.Fatal(err)
	}
	_, err = w.obs.CheckApplication(msg, 1, sig, 0)
	wantCode(t, err, CodeStaleEpoch)
	if _, err := w.obs.CheckApplication(msg, 1, sig, 1); err != nil {
		t.Fatal(err)
	}
	// Handshakes are never accepted as PrivateMessage, application data
	// never as PublicMessage.
	var pm writer
	pm.u16(1)
	pm.u16(wireFormatPrivateMessage)
	pm.vec(w.obs.GroupID())
	pm.u64(w.obs.Epoch())
	pm.u8(contentCommit)
	pm.vec(nil)
	pm.vec([]byte{1})
	pm.vec([]byte{2})
	_, err = w.obs.CheckApplication(pm.b, 1, sig, 0)
	wantCode(t, err, CodeUnsupported)
	_, err = w.obs.ProcessPublicMessage(pm.b, testPolicy)
	wantCode(t, err, CodeUnsupported)
	var body writer
	body.vec([]byte("hello"))
	app := forgePublic(t, w.obs, bob.Identity(), framedContentBytes(w.obs.GroupID(), w.obs.Epoch(), 1, contentApplication, body.b), false)
	_, err = w.obs.ProcessPublicMessage(app, testPolicy)
	wantCode(t, err, CodeUnsupported)
	// Another group.
	other := newWorld(t, "example.org/other")
	_, err = other.obs.CheckApplication(msg, 1, sig, 5)
	wantCode(t, err, CodeWrongGroup)
	res2, _ := w.member(0).SelfUpdate()
	_, err = other.obs.ProcessPublicMessage(res2.Commit, testPolicy)
	wantCode(t, err, CodeWrongGroup)
}

func TestRejectBadKeyPackageInAdd(t *testing.T) {
	w := threeMembers(t)
	alice := w.member(0)
	before, _ := w.obs.MarshalBinary()

	// Expired at the event time (mls-go itself checks the real clock, so
	// the event time is put after the lifetime instead).
	late := testPolicy
	late.Now = time.Unix(5_000_000_000, 0)
	res, err := alice.Add(newKeyPackage(t, newIdentity(t, "dave"), "q"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.obs.ProcessPublicMessage(res.Commit, late)
	wantCode(t, err, CodeInvalidKeyPackage)
	alice.DiscardPendingCommit()

	// Badly signed: the KeyPackage signature is flipped and the commit
	// re-signed by alice, so only the KeyPackage is wrong.
	kp := newKeyPackage(t, newIdentity(t, "erin"), "q")
	res, err = alice.Add(kp)
	if err != nil {
		t.Fatal(err)
	}
	alice.DiscardPendingCommit()
	sigAt := len(kp) - 1
	bad := resignContent(t, w.obs, alice.Identity(), res.Commit, func(c []byte) []byte {
		i := bytes.Index(c, kp)
		if i < 0 {
			t.Fatal("key package not found in commit")
		}
		c[i+sigAt] ^= 1
		return c
	})
	_, err = w.obs.ProcessPublicMessage(bad, testPolicy)
	wantCode(t, err, CodeInvalidKeyPackage)

	unchanged(t, w.obs, before)

	// The same client twice in one commit.
	frank := newIdentity(t, "frank")
	w2 := threeMembers(t)
	kp1, kp2 := newKeyPackage(t, frank, "q1"), newKeyPackage(t, frank, "q2")
	if _, err := ValidateKeyPackage(kp2, testNow, testPolicy); err != nil {
		t.Fatal(err)
	}
	// mls-go refuses to build it, so the second Add is spliced in.
	res, err = w2.member(0).Add(kp1)
	if err != nil {
		t.Fatal(err)
	}
	w2.member(0).DiscardPendingCommit()
	dup := resignContent(t, w2.obs, w2.member(0).Identity(), res.Commit, func(c []byte) []byte {
		return spliceSecondAdd(t, c, kp1, kp2)
	})
	_, err = w2.obs.ProcessPublicMessage(dup, testPolicy)
	wantCode(t, err, CodeInvalidProposal)
}

// spliceSecondAdd rewrites a commit's proposal vector holding one by-value
// Add of kp1 into one holding Adds of kp1 and kp2. The path no longer
// matches, but the duplicate is detected first.
func spliceSecondAdd(t testing.TB, content, kp1, kp2 []byte) []byte {
	t.Helper()
	var one writer
	one.u8(1)
	one.u16(proposalAdd)
	one.raw(kp1)
	i := bytes.Index(content, one.b)
	if i < 0 {
		t.Fatal("add not found")
	}
	// The proposals vector length prefix sits right before the entry.
	var oldVec writer
	oldVec.vec(one.b)
	start := i - (len(oldVec.b) - len(one.b))
	var two writer
	two.u8(1)
	two.u16(proposalAdd)
	two.raw(kp2)
	var newVec writer
	newVec.vec(append(bytes.Clone(one.b), two.b...))
	out := append(bytes.Clone(content[:start]), newVec.b...)
	return append(out, content[i+len(one.b):]...)
}

func TestRejectTamperedUpdatePath(t *testing.T) {
	w := threeMembers(t)
	alice := w.member(0)
	before, _ := w.obs.MarshalBinary()
	res, err := alice.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	alice.DiscardPendingCommit()
	r := newReader(bytes.Clone(res.Commit[4:]))
	pm, err := parsePublicMessage(r)
	if err != nil {
		t.Fatal(err)
	}
	path := pm.content.commit.path
	flip := func(needle []byte) func([]byte) []byte {
		return func(c []byte) []byte {
			i := bytes.Index(c, needle)
			if i < 0 {
				t.Fatal("needle not found")
			}
			c[i+len(needle)-1] ^= 1
			return c
		}
	}
	// A path node key: the leaf's parent hash no longer matches.
	_, err = w.obs.ProcessPublicMessage(resignContent(t, w.obs, alice.Identity(), res.Commit, flip(path.nodes[0].encKey)), testPolicy)
	wantCode(t, err, CodeInvalidPath)
	// The leaf's parent hash itself: the leaf signature breaks.
	_, err = w.obs.ProcessPublicMessage(resignContent(t, w.obs, alice.Identity(), res.Commit, flip(path.leaf.parentHash)), testPolicy)
	wantCode(t, err, CodeInvalidPath)
	// The leaf's encryption key.
	_, err = w.obs.ProcessPublicMessage(resignContent(t, w.obs, alice.Identity(), res.Commit, flip(path.leaf.encKey)), testPolicy)
	wantCode(t, err, CodeInvalidPath)
	// The unchanged message still signs fine and is accepted afterwards.
	unchanged(t, w.obs, before)

	// A remove commit without a path.
	var body writer
	body.vecFunc(func(w *writer) {
		w.u8(1)
		w.raw(removeProposal(1))
	})
	body.u8(0)
	nopath := forgePublic(t, w.obs, alice.Identity(), framedContentBytes(w.obs.GroupID(), w.obs.Epoch(), 0, contentCommit, body.b), true)
	_, err = w.obs.ProcessPublicMessage(nopath, testPolicy)
	wantCode(t, err, CodeInvalidCommit)
	// A commit removing its committer, and one referencing an unknown
	// proposal.
	var self writer
	self.vecFunc(func(w *writer) {
		w.u8(1)
		w.raw(removeProposal(0))
	})
	self.u8(0)
	_, err = w.obs.ProcessPublicMessage(forgePublic(t, w.obs, alice.Identity(), framedContentBytes(w.obs.GroupID(), w.obs.Epoch(), 0, contentCommit, self.b), true), testPolicy)
	wantCode(t, err, CodeInvalidCommit)
	var byRef writer
	byRef.vecFunc(func(w *writer) {
		w.u8(2)
		w.vec(make([]byte, 32))
	})
	byRef.u8(0)
	_, err = w.obs.ProcessPublicMessage(forgePublic(t, w.obs, alice.Identity(), framedContentBytes(w.obs.GroupID(), w.obs.Epoch(), 0, contentCommit, byRef.b), true), testPolicy)
	wantCode(t, err, CodeInvalidCommit)
	// Removing a blank leaf.
	_, err = w.obs.ProcessPublicMessage(forgePublic(t, w.obs, alice.Identity(), framedContentBytes(w.obs.GroupID(), w.obs.Epoch(), 0, contentProposal, removeProposal(3)), false), testPolicy)
	wantCode(t, err, CodeInvalidProposal)
	unchanged(t, w.obs, before)
}

func TestRejectGarbage(t *testing.T) {
	w := threeMembers(t)
	before, _ := w.obs.MarshalBinary()
	inputs := [][]byte{nil, {0}, {0, 1}, {0, 1, 0, 1}, {0, 1, 0, 2}, bytes.Repeat([]byte{0xff}, 100), append([]byte{0, 1, 0, 1}, bytes.Repeat([]byte{0x7f}, 64)...)}
	for _, in := range inputs {
		if _, err := w.obs.ProcessPublicMessage(in, testPolicy); err == nil {
			t.Fatalf("accepted %x", in)
		}
		if _, err := w.obs.CheckApplication(in, 0, nil, 0); err == nil {
			t.Fatalf("accepted %x", in)
		}
		if _, err := ValidateKeyPackage(in, testNow, testPolicy); err == nil {
			t.Fatalf("accepted %x", in)
		}
		if _, err := NewObserverFromGroupInfo(in, nil, testPolicy); err == nil {
			t.Fatalf("accepted %x", in)
		}
		_, err := UnmarshalObserver(in)
		wantCode(t, err, CodeInvalidState)
	}
	_, err := w.obs.ProcessPublicMessage(bytes.Repeat([]byte{0xff}, 10), testPolicy)
	wantCode(t, err, CodeUnsupported) // protocol version 0xffff
	_, err = w.obs.ProcessPublicMessage(append([]byte{0, 1, 0, 1}, 0xc0), testPolicy)
	wantCode(t, err, CodeMalformed)
	// A valid message with a trailing byte.
	res, _ := w.member(0).SelfUpdate()
	_, err = w.obs.ProcessPublicMessage(append(bytes.Clone(res.Commit), 0), testPolicy)
	wantCode(t, err, CodeMalformed)
	unchanged(t, w.obs, before)
}

func TestValidateKeyPackage(t *testing.T) {
	id := newIdentity(t, "kp-owner")
	kp, err := id.NewKeyPackage(KeyPackageOptions{Lifetime: testLifetime, SealedQueueConfig: []byte("sealed"), LastResort: true})
	if err != nil {
		t.Fatal(err)
	}
	info, err := ValidateKeyPackage(kp, testNow, Policy{GroupCipherSuite: SuiteX25519AES128})
	if err != nil {
		t.Fatal(err)
	}
	if !info.LastResort || string(info.SealedQueueConfig) != "sealed" || string(info.CredentialIdentity) != "kp-owner" ||
		info.CipherSuite != 1 || !bytes.Equal(info.SignatureKey, id.SignatureKey()) || !bytes.Equal(info.Raw, kp) ||
		info.NotBefore != uint64(testLifetime.NotBefore.Unix()) {
		t.Fatalf("info %+v", info)
	}
	if want := ciphersuite.MakeKeyPackageRef(kp, ciphersuite.MLS128DHKEMX25519.HashFunction()).AsSlice(); !bytes.Equal(info.Ref, want) {
		t.Fatal("wrong KeyPackageRef")
	}
	plain := newKeyPackage(t, id, "")
	info, err = ValidateKeyPackage(plain, testNow, Policy{})
	if err != nil || info.LastResort || info.SealedQueueConfig == nil {
		t.Fatalf("%+v %v", info, err)
	}
	cases := []struct {
		name string
		raw  []byte
		now  time.Time
		p    Policy
		code string
	}{
		{"not yet valid", kp, time.Unix(1_500_000_000, 0), Policy{}, CodeInvalidKeyPackage},
		{"expired", kp, time.Unix(4_000_000_001, 0), Policy{}, CodeInvalidKeyPackage},
		{"other group suite", kp, testNow, Policy{GroupCipherSuite: SuiteP256AES128}, CodeInvalidKeyPackage},
		{"suite not allowed", kp, testNow, Policy{CipherSuites: []uint16{SuiteP256AES128}}, CodeInvalidKeyPackage},
		{"credential type not allowed", kp, testNow, Policy{CredentialTypes: []uint16{CredentialTypeX509}}, CodeInvalidKeyPackage},
		{"bad signature", flipLast(kp), testNow, Policy{}, CodeInvalidKeyPackage},
		{"trailing byte", append(bytes.Clone(kp), 0), testNow, Policy{}, CodeMalformed},
		{"truncated", kp[:len(kp)-1], testNow, Policy{}, CodeMalformed},
	}
	for _, c := range cases {
		_, err := ValidateKeyPackage(c.raw, c.now, c.p)
		if err == nil {
			t.Fatalf("%s: accepted", c.name)
		}
		var e *Error
		if !asError(err, &e) || e.Code != c.code {
			t.Fatalf("%s: got %v, want %s", c.name, err, c.code)
		}
	}
}

func flipLast(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)-1] ^= 1
	return c
}

func asError(err error, e **Error) bool {
	x, ok := err.(*Error)
	*e = x
	return ok
}

func TestGroupCreationChecks(t *testing.T) {
	id := newIdentity(t, "creator")
	m, err := id.CreateGroup([]byte("example.org/create"), testLifetime)
	if err != nil {
		t.Fatal(err)
	}
	gi, tree, err := m.GroupInfo()
	if err != nil {
		t.Fatal(err)
	}
	// The tree may come from the extension or separately.
	o1, err := NewObserverFromGroupInfo(gi, nil, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	o2, err := NewObserverFromGroupInfo(gi, tree, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := o1.MarshalBinary()
	b2, _ := o2.MarshalBinary()
	if !bytes.Equal(b1, b2) {
		t.Fatal("same group, different state")
	}
	if err := o1.CheckInitialGroup(testNow); err != nil {
		t.Fatal(err)
	}
	wantCode(t, o1.CheckInitialGroup(time.Unix(4_100_000_000, 0)), CodeInvalidLeafNode)
	// Tampered GroupInfo signature.
	_, err = NewObserverFromGroupInfo(flipLast(gi), nil, testPolicy)
	wantCode(t, err, CodeBadSignature)
	// A separate tree that differs from the extension.
	_, err = NewObserverFromGroupInfo(gi, flipLast(tree), testPolicy)
	wantCode(t, err, CodeInvalidGroupInfo)
	// Suite not accepted by policy.
	_, err = NewObserverFromGroupInfo(gi, nil, Policy{CipherSuites: []uint16{SuiteP256AES128}})
	wantCode(t, err, CodeUnsupported)
	// After members join, the state is no longer an initial group.
	w := threeMembers(t)
	gi2, _, err := w.member(1).GroupInfo()
	if err != nil {
		t.Fatal(err)
	}
	o3, err := NewObserverFromGroupInfo(gi2, nil, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, o3.CheckInitialGroup(testNow), CodeInvalidGroupInfo)
	// The observer built from a later GroupInfo agrees with the one that
	// followed the commits.
	if !bytes.Equal(o3.TreeHash(), w.obs.TreeHash()) || o3.Epoch() != w.obs.Epoch() ||
		!bytes.Equal(o3.GroupContext(), w.obs.GroupContext()) || !bytes.Equal(o3.InterimTranscriptHash(), w.obs.InterimTranscriptHash()) {
		t.Fatal("observer from GroupInfo disagrees with the live observer")
	}
}

func TestStateRoundTripDeterministic(t *testing.T) {
	w := threeMembers(t)
	bob := w.member(1)
	prop, err := bob.ProposeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.obs.ProcessPublicMessage(prop, testPolicy); err != nil {
		t.Fatal(err)
	}
	b1, err := w.obs.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if b1[0] != stateVersion {
		t.Fatal("missing version byte")
	}
	o2, err := UnmarshalObserver(b1)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := o2.MarshalBinary()
	if !bytes.Equal(b1, b2) {
		t.Fatal("round trip changed the state")
	}
	// Replaying the same commit on the original and on the restored
	// observer gives the same change and the same bytes.
	for l, m := range w.members {
		if l != 1 {
			m.Process(prop)
		}
	}
	res, err := w.member(0).CommitPending()
	if err != nil {
		t.Fatal(err)
	}
	c1, err := w.obs.ProcessPublicMessage(res.Commit, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := o2.ProcessPublicMessage(res.Commit, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c1.TreeHash, c2.TreeHash) || c1.Epoch != c2.Epoch {
		t.Fatal("replay diverged")
	}
	s1, _ := w.obs.MarshalBinary()
	s2, _ := o2.MarshalBinary()
	if !bytes.Equal(s1, s2) {
		t.Fatal("replayed state differs")
	}
	// Unknown versions and every truncation are refused.
	bad := bytes.Clone(s1)
	bad[0] = 99
	_, err = UnmarshalObserver(bad)
	wantCode(t, err, CodeInvalidState)
	for i := 0; i < len(s1); i += 7 {
		if _, err := UnmarshalObserver(s1[:i]); err == nil {
			t.Fatalf("truncation at %d accepted", i)
		}
	}
}
