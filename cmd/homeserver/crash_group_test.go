package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/projections"
)

// TestLOG_1_CrashDuringGroupTraffic kills `homeserver serve` with SIGKILL
// while members send application messages into a group, restarts it, and
// checks that every acknowledged message is in the log and in the
// recipient's queue, and that the projections (groups, queues) equal a
// rebuild: no acknowledged message lost, nothing half-applied.
func TestLOG_1_CrashDuringGroupTraffic(t *testing.T) {
	rounds := 4
	if testing.Short() {
		rounds = 1
	}
	data := t.TempDir()
	ctx := context.Background()
	cmd, base := startServe(t, data)
	conn, err := client.Dial(ctx, base, "crash.test")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := conn.Register(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := conn.Register(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	kps, _ := bob.MakeKeyPackages(2, true)
	if err := bob.PublishKeyPackages(ctx, kps); err != nil {
		t.Fatal(err)
	}
	if err := alice.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	g, err := alice.CreateGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Add(ctx, &client.Directory{Conn: conn}, bob.UserID); err != nil {
		t.Fatal(err)
	}
	var acked [][]byte
	rng := rand.New(rand.NewPCG(3, uint64(time.Now().UnixNano())))
	for round := 0; round < rounds; round++ {
		if round > 0 {
			cmd, base = startServe(t, data)
			// The client keeps its MLS state; only the homeserver restarted.
			if alice.Conn, err = client.Dial(ctx, base, "crash.test"); err != nil {
				t.Fatal(err)
			}
		}
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for s := 0; s < 8; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					m, err := g.Seal([]byte("payload"))
					if err != nil {
						t.Error(err)
						return
					}
					if err := g.SendSealed(ctx, m); err == nil {
						mu.Lock()
						acked = append(acked, m.Message)
						mu.Unlock()
					} else if client.CodeOf(err) == "rate_limited" {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}()
		}
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		close(stop)
		wg.Wait()
		checkStore(t, data, nil)
		checkMessages(t, data, bob.ClientID, acked)
	}
	if len(acked) < rounds*10 {
		t.Fatalf("only %d messages acknowledged in %d rounds", len(acked), rounds)
	}
	t.Logf("%d rounds, %d acknowledged messages, all durable and queued", rounds, len(acked))
}

// checkMessages checks that every acknowledged message is in the log and
// indexed in the recipient's queue.
func checkMessages(t *testing.T, data, recipient string, acked [][]byte) {
	t.Helper()
	l, err := eventlog.Open(node.StoreDir(data), eventlog.Options{Origin: "crash.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	queued := map[uint64]bool{}
	seqs, err := projections.QueueView{R: eventlog.NewReader(l.DB())}.From(recipient, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seqs {
		queued[s] = true
	}
	stored := map[string]uint64{}
	err = l.Scan(0, 0, func(ev *eventlog.Event) error {
		if ev.Type == events.TypeApplicationMessageAccepted {
			var e events.ApplicationMessageAccepted
			if err := json.Unmarshal(ev.Payload, &e); err != nil {
				return err
			}
			stored[string(e.Message)] = ev.Seq
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range acked {
		seq, ok := stored[string(m)]
		if !ok {
			t.Fatalf("acknowledged message %x… lost", m[:8])
		}
		if !queued[seq] {
			t.Fatalf("acknowledged message at %d not in the recipient's queue", seq)
		}
	}

}
