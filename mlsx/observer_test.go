package mlsx

import (
	"bytes"
	"testing"
)

func TestGroupLifecycle(t *testing.T) {
	w := newWorld(t, "example.org/lifecycle")
	alice := w.member(0)

	ch, _ := w.add(alice, 2)
	if ch.Kind != ChangeCommit || ch.Epoch != 1 || len(ch.AddedLeaves) != 2 {
		t.Fatalf("unexpected change %+v", ch)
	}
	for _, a := range ch.AddedLeaves {
		if len(a.KeyPackageRef) != 32 || !bytes.HasPrefix(a.SealedQueueConfig, []byte("queue-")) {
			t.Fatalf("added leaf %+v", a)
		}
	}

	// Application message from bob.
	bob := w.member(1)
	msg, sig, err := bob.Send([]byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := w.obs.CheckApplication(msg, 1, sig, 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Sender != 1 || info.Epoch != 1 {
		t.Fatalf("app info %+v", info)
	}
	for l, m := range w.members {
		if l == 1 {
			continue
		}
		rcv, err := m.Process(msg)
		if err != nil {
			t.Fatal(err)
		}
		if string(rcv.Plaintext) != "hello" || rcv.Sender != 1 {
			t.Fatalf("received %+v", rcv)
		}
	}

	// Self update by carol, remove of bob by alice.
	carol := w.member(2)
	res, err := carol.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.submitCommit(carol, res); err != nil {
		t.Fatal(err)
	}
	res, err = alice.Remove(1)
	if err != nil {
		t.Fatal(err)
	}
	ch, err = w.submitCommit(alice, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.RemovedLeaves) != 1 || ch.RemovedLeaves[0] != 1 || ch.Epoch != 3 {
		t.Fatalf("remove change %+v", ch)
	}

	// Proposals by reference: carol proposes an add, alice commits it.
	dave := newIdentity(t, "dave")
	prop, err := carol.ProposeAdd(newKeyPackage(t, dave, "queue-dave"))
	if err != nil {
		t.Fatal(err)
	}
	pch, err := w.obs.ProcessPublicMessage(prop, testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if pch.Kind != ChangeProposal || len(pch.ProposalRef) != 32 {
		t.Fatalf("proposal change %+v", pch)
	}
	if _, err := alice.Process(prop); err != nil {
		t.Fatal(err)
	}
	res, err = alice.CommitPending()
	if err != nil {
		t.Fatal(err)
	}
	ch, err = w.submitCommit(alice, res, dave)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.AddedLeaves) != 1 || ch.AddedLeaves[0].Leaf != 1 {
		t.Fatalf("add by reference: %+v", ch)
	}
	if len(w.obs.PendingProposals()) != 0 {
		t.Fatal("proposal store not cleared")
	}
}

func TestUpdateProposalCommittedByOther(t *testing.T) {
	w := newWorld(t, "example.org/update")
	alice := w.member(0)
	w.add(alice, 2)
	bob := w.member(1)
	prop, err := bob.ProposeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.obs.ProcessPublicMessage(prop, testPolicy); err != nil {
		t.Fatal(err)
	}
	for l, m := range w.members {
		if l != 1 {
			if _, err := m.Process(prop); err != nil {
				t.Fatal(err)
			}
		}
	}
	res, err := alice.CommitPending()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := w.submitCommit(alice, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.UpdatedLeaves) != 2 || ch.UpdatedLeaves[0] != 1 {
		t.Fatalf("updated leaves %v", ch.UpdatedLeaves)
	}
}

func TestCreatorRequestSignature(t *testing.T) {
	w := newWorld(t, "example.org/creation")
	req := []byte("create example.org/creation with token xyz")
	sig, err := w.member(0).SignWithLeafKey("homeserver create group", req)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.obs.VerifyLeafSignature(0, "homeserver create group", req, sig); err != nil {
		t.Fatal(err)
	}
	wantCode(t, w.obs.VerifyLeafSignature(0, "other label", req, sig), CodeBadSignature)
	wantCode(t, w.obs.VerifyLeafSignature(1, "homeserver create group", req, sig), CodeNotAMember)
}

func TestDiscardedCommitLeavesNoTrace(t *testing.T) {
	w := newWorld(t, "example.org/discard")
	alice := w.member(0)
	w.add(alice, 2)
	if _, err := alice.Remove(1); err != nil {
		t.Fatal(err)
	}
	if !alice.HasPendingCommit() {
		t.Fatal("no pending commit")
	}
	if _, err := alice.SelfUpdate(); err == nil {
		t.Fatal("second commit while one is pending")
	}
	alice.DiscardPendingCommit()
	res, err := alice.SelfUpdate()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := w.submitCommit(alice, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.RemovedLeaves) != 0 || len(w.members) != 3 {
		t.Fatalf("discarded remove resurfaced: %+v", ch)
	}
}
