package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/testnet"
)

// FederationOptions configure the federation benchmark.
type FederationOptions struct {
	Groups   int // groups owned by the first homeserver, each with one member on the second (default 16)
	Messages int // messages of the full-load run (default 2,000); the half-load run sends half as many
	Size     int // plaintext bytes (default 200)
	// Dir holds the testnet's data ("" for the system temp dir).
	Dir string
	// CPUProfile, if set, is a file for a CPU profile of the full-load run.
	CPUProfile string
}

// FederationResult is the federation benchmark's outcome. Latencies run
// from the moment the owning homeserver accepted a message (its send
// returned) to the moment it is in the remote recipient's queue.
type FederationResult struct {
	Options FederationOptions `json:"options"`
	// Full: one concurrent sender per group, as fast as they go;
	// PerSec counts messages in remote queues per second.
	Full Rate `json:"full"`
	// HalfOffered is the paced send rate of the half-load run: half of
	// Full.PerSec.
	HalfOffered float64 `json:"half_offered_per_sec"`
	Half        Rate    `json:"half"`
	// Method says how arrival was observed.
	Method string `json:"method"`
}

// federationMethod describes how FederationResult measures arrival.
const federationMethod = "remote queue projection (projections.QueueView) of each recipient, read after every commit of the remote log"

// Federation starts a testnet of two homeservers (hub plus leaf NATS
// servers, limits lifted), makes o.Groups groups owned by a user of the
// first with one member on the second, seals every message before timing,
// and measures cross-homeserver delivery: first at full load, then paced
// at half the rate the full run reached.
func Federation(ctx context.Context, o FederationOptions, progress func(string)) (*FederationResult, error) {
	if o.Groups <= 0 {
		o.Groups = 16
	}
	if o.Messages <= 0 {
		o.Messages = 2000
	}
	if o.Size <= 0 {
		o.Size = 200
	}
	say := func(s string) {
		if progress != nil {
			progress("federation: " + s)
		}
	}
	dir, err := os.MkdirTemp(o.Dir, "bench-federation-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	net, err := testnet.Start(testnet.Config{Servers: 2, Dir: dir, DirectoryLimits: &api.DirectoryLimits{}, GroupLimits: &api.GroupLimits{}})
	if err != nil {
		return nil, err
	}
	defer net.Close()
	hs1, hs2 := net.Servers[0], net.Servers[1]
	conn1, err := hs1.Conn(ctx)
	if err != nil {
		return nil, err
	}
	conn2, err := hs2.Conn(ctx)
	if err != nil {
		return nil, err
	}
	dir1 := hs1.Directory(conn1)
	tag := time.Now().UnixNano() % 100000
	groups := make([]*client.Group, o.Groups)
	remote := make([]string, o.Groups)
	for i := range groups {
		owner, err := conn1.Register(ctx, fmt.Sprintf("fa%d-%d", tag, i))
		if err != nil {
			return nil, err
		}
		member, err := conn2.Register(ctx, fmt.Sprintf("fb%d-%d", tag, i))
		if err != nil {
			return nil, err
		}
		kps, err := member.MakeKeyPackages(1, true)
		if err != nil {
			return nil, err
		}
		if err := member.PublishKeyPackages(ctx, kps); err != nil {
			return nil, err
		}
		if err := owner.GetTokens(ctx, 1); err != nil {
			return nil, err
		}
		if groups[i], err = owner.CreateGroup(ctx); err != nil {
			return nil, err
		}
		// The owner's homeserver claims the KeyPackage over federation.
		if err := groups[i].Add(ctx, dir1, member.UserID); err != nil {
			return nil, fmt.Errorf("add %s: %w", member.UserID, err)
		}
		remote[i] = member.ClientID
	}
	w := newQueueWatch(hs2.Node.Log, remote)
	// The Welcomes are the first thing in each remote queue: wait for them
	// so the timed runs start with empty pipes.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = w.skip(wctx, 1)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("welcomes to %s: %w", hs2.Domain, err)
	}
	say(fmt.Sprintf("%d groups across %s and %s ready", o.Groups, hs1.Domain, hs2.Domain))

	seal := func(n int) ([][]*client.Sealed, error) {
		per := (n + o.Groups - 1) / o.Groups
		out := make([][]*client.Sealed, o.Groups)
		pt := make([]byte, o.Size)
		for i, g := range groups {
			for j := 0; j < per; j++ {
				m, err := g.Seal(pt)
				if err != nil {
					return nil, err
				}
				out[i] = append(out[i], m)
			}
		}
		return out, nil
	}
	full, err := seal(o.Messages)
	if err != nil {
		return nil, err
	}
	half, err := seal(o.Messages / 2)
	if err != nil {
		return nil, err
	}
	res := &FederationResult{Options: o, Method: federationMethod}
	stop, err := startProfile(o.CPUProfile)
	if err != nil {
		return nil, err
	}
	res.Full, err = fedRun(ctx, hs1.URL, groups, full, w, 0)
	stop()
	if err != nil {
		return nil, fmt.Errorf("full load: %w", err)
	}
	say(fmt.Sprintf("full load: %.0f msgs/s; now paced at %.0f msgs/s", res.Full.PerSec, res.Full.PerSec/2))
	res.HalfOffered = res.Full.PerSec / 2
	if res.Half, err = fedRun(ctx, hs1.URL, groups, half, w, res.HalfOffered); err != nil {
		return nil, fmt.Errorf("half load: %w", err)
	}
	return res, nil
}

// fedRun sends sealed[i] into groups[i] on the homeserver at base, one
// sender per group with the lean load generator (as the delivery figure
// it is compared with), and waits until every message is in its remote
// queue. With pace > 0 the senders together offer pace messages/s
// (message j of group i is due at (j·groups+i)/pace); a sender that falls
// behind sends at once.
func fedRun(ctx context.Context, base string, groups []*client.Group, sealed [][]*client.Sealed, w *queueWatch, pace float64) (Rate, error) {
	total := 0
	for _, s := range sealed {
		total += len(s)
	}
	senders, err := newMessageSenders(base, groups, sealed)
	defer closeSenders(senders)
	if err != nil {
		return Rate{}, err
	}
	accepted := make([]time.Time, total)
	id := map[string]int{}
	k := 0
	for _, s := range sealed {
		for _, m := range s {
			id[string(m.Message)] = k
			k++
		}
	}
	seen := make([]time.Time, total)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	watchErr := make(chan error, 1)
	go func() { watchErr <- w.collect(wctx, id, seen) }()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	first := 0
	for i := range groups {
		wg.Add(1)
		go func(i, first int) {
			defer wg.Done()
			for j := range sealed[i] {
				if pace > 0 {
					due := start.Add(time.Duration(float64(j*len(groups)+i) / pace * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				}
				if err := senders[i].send(j); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				accepted[first+j] = time.Now()
			}
		}(i, first)
		first += len(sealed[i])
	}
	wg.Wait()
	err = <-watchErr
	if firstErr != nil {
		return Rate{}, firstErr
	}
	if err != nil {
		return Rate{}, err
	}
	last := start
	lat := make([]time.Duration, total)
	for k := range seen {
		if seen[k].After(last) {
			last = seen[k]
		}
		// The queue can show a message a moment before its sender has
		// read the reply.
		lat[k] = max(0, seen[k].Sub(accepted[k]))
	}
	return rate(total, last.Sub(start), lat), nil
}

// queueWatch follows the queues of some clients of a homeserver through
// its queue projection, woken by every commit of its log.
type queueWatch struct {
	log     *eventlog.Log
	view    projections.QueueView
	clients []string
	next    []uint64 // per client: the first queue position not yet read
}

func newQueueWatch(l *eventlog.Log, clients []string) *queueWatch {
	return &queueWatch{log: l, view: projections.QueueView{R: eventlog.NewReader(l.DB())}, clients: clients, next: make([]uint64, len(clients))}
}

// poll calls fn for every queue entry that appeared since the last poll.
func (w *queueWatch) poll(fn func(client int, seq uint64) error) error {
	for c, id := range w.clients {
		for {
			seqs, err := w.view.From(id, w.next[c], 4096)
			if err != nil {
				return err
			}
			for _, s := range seqs {
				if err := fn(c, s); err != nil {
					return err
				}
				w.next[c] = s + 1
			}
			if len(seqs) < 4096 {
				break
			}
		}
	}
	return nil
}

// until polls after each commit of the log until done returns true.
func (w *queueWatch) until(ctx context.Context, fn func(client int, seq uint64) error, done func() bool) error {
	for {
		size := w.log.Size()
		if err := w.poll(fn); err != nil {
			return err
		}
		if done() {
			return nil
		}
		if err := w.log.Wait(ctx, size+1); err != nil {
			return err
		}
	}
}

// skip waits until every client's queue holds n more entries and moves
// past them.
func (w *queueWatch) skip(ctx context.Context, n int) error {
	got := make([]int, len(w.clients))
	missing := len(w.clients)
	return w.until(ctx, func(c int, _ uint64) error {
		got[c]++
		if got[c] == n {
			missing--
		}
		return nil
	}, func() bool { return missing == 0 })
}

// collect records in seen, by the index id gives each message, when each
// delivered message appeared in a watched queue, until all have.
func (w *queueWatch) collect(ctx context.Context, id map[string]int, seen []time.Time) error {
	left := len(seen)
	return w.until(ctx, func(_ int, seq uint64) error {
		// A queue entry is visible as soon as its batch is in Pebble,
		// a moment before the log counts its event.
		if err := w.log.Wait(ctx, seq); err != nil {
			return err
		}
		ev, err := w.log.Event(seq)
		if err != nil {
			return err
		}
		if ev.Type != events.TypeDeliveryReceived {
			return nil
		}
		// Only the message itself: the watch shares the cores it
		// measures, so it skips the envelope, most of the event.
		var d struct {
			Message struct {
				Message []byte `json:"message"`
			} `json:"message"`
		}
		if err := json.Unmarshal(ev.Payload, &d); err != nil {
			return fmt.Errorf("bench: event %d: %w", seq, err)
		}
		k, ok := id[string(d.Message.Message)]
		if !ok {
			return errors.New("bench: an unexpected message arrived")
		}
		if seen[k].IsZero() {
			seen[k] = time.Now()
			left--
		}
		return nil
	}, func() bool { return left == 0 })
}
