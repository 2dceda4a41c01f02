package mlsx_test

import (
	"fmt"
	"time"

	"github.com/mlshome/homeserver/mlsx"
)

// The Delivery Service follows a group: creation from the creator's
// GroupInfo, a commit adding a member, an application message.
func Example() {
	now := time.Unix(1_800_000_000, 0) // the event's time
	lifetime := mlsx.Lifetime{NotBefore: time.Unix(1_600_000_000, 0), NotAfter: time.Unix(4_000_000_000, 0)}
	policy := mlsx.Policy{Now: now}

	alice, _ := mlsx.NewIdentity([]byte("pseudonym-a"))
	group, _ := alice.CreateGroup([]byte("example.org/0123"), lifetime)
	groupInfo, tree, _ := group.GroupInfo()

	obs, err := mlsx.NewObserverFromGroupInfo(groupInfo, tree, policy)
	if err != nil {
		panic(err)
	}
	if err := obs.CheckInitialGroup(now); err != nil {
		panic(err)
	}

	bob, _ := mlsx.NewIdentity([]byte("pseudonym-b"))
	kp, _ := bob.NewKeyPackage(mlsx.KeyPackageOptions{Lifetime: lifetime, SealedQueueConfig: []byte("sealed")})
	info, _ := mlsx.ValidateKeyPackage(kp, now, policy)
	fmt.Println("key package for", string(info.CredentialIdentity))

	res, _ := group.Add(kp)
	change, err := obs.ProcessPublicMessage(res.Commit, policy)
	if err != nil {
		group.DiscardPendingCommit()
		panic(err)
	}
	group.ConfirmCommit()
	fmt.Println("epoch", change.Epoch, "added leaf", change.AddedLeaves[0].Leaf, "queue", string(change.AddedLeaves[0].SealedQueueConfig))

	bobInGroup, _ := bob.Join(res.Welcome)
	msg, reqSig, _ := bobInGroup.Send([]byte("hi"))
	app, err := obs.CheckApplication(msg, bobInGroup.LeafIndex(), reqSig, 0)
	fmt.Println("application from leaf", app.Sender, err)

	rcv, _ := group.Process(msg)
	fmt.Println(string(rcv.Plaintext))
	// Output:
	// key package for pseudonym-b
	// epoch 1 added leaf 1 queue sealed
	// application from leaf 1 <nil>
	// hi
}
