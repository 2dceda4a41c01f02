package federation

import (
	"encoding/json"

	"context"
	"errors"
	"fmt"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"sync"
	"time"
)

// OutboxEntry is one delivery waiting in the outbox for a destination.
type OutboxEntry struct {
	// Counter is the dense per-destination delivery number, from 1.
	Counter uint64
	// Payload is the delivery's content (the receiver's Envelope.Payload).
	Payload []byte
}

// Outbox is implemented by the sending homeserver over its outbox
// projection. Entries for a destination have dense counters 1, 2, 3, ...
// in the order the log committed them, and stay until trimmed.
type Outbox interface {
	// Destinations lists the domains that have, or had, entries.
	Destinations() ([]string, error)
	// Pending returns up to max entries for dest with counters above
	// after, in counter order (none when everything is trimmed), only of
	// durable events: an entry published and then lost in a crash would
	// leave its counter, and so its delivery id, to another delivery.
	Pending(dest string, after uint64, max int) ([]OutboxEntry, error)
	// Trim records (as an event) that dest has committed every delivery up
	// to upTo, so those entries can be deleted. It must be idempotent and
	// ignore an upTo at or below an earlier one.
	Trim(ctx context.Context, dest string, upTo uint64) error
	// Notify returns a channel that receives a value after new entries
	// are committed. The homeserver sends without blocking on a channel of
	// capacity 1, so wake-ups coalesce.
	Notify() <-chan struct{}
}

// PublisherConfig configures a [Publisher]. Zero values take the defaults
// given in brackets.
type PublisherConfig struct {
	// Transport is this homeserver's transport.
	Transport *Transport
	// Outbox holds the deliveries.
	Outbox Outbox
	// Batch is how many entries are read from the outbox at once [64].
	Batch int
	// PublishTimeout bounds one publish and its stream acknowledgement
	// [10s].
	PublishTimeout time.Duration
	// CursorTimeout bounds one cursor query [5s].
	CursorTimeout time.Duration
	// RetryMin and RetryMax bound the jittered backoff after a failure to
	// reach a destination [500ms, 1m].
	RetryMin, RetryMax time.Duration
	// Poll is how soon the cursor is asked again while published entries
	// are not yet confirmed [2s].
	Poll time.Duration
	// IdlePoll is how soon the cursor is asked again when everything is
	// confirmed and no wake-up came [1m].
	IdlePoll time.Duration
}

// Publisher sends the outbox to each destination's stream, one goroutine
// per destination, so an unreachable or slow destination never holds up
// another (MD-7). For each destination it repeats:
//
//  1. ask the destination's cursor; trim the outbox up to Processed;
//     continue after Resume (which goes back when the destination's stream
//     lost deliveries);
//  2. publish the following entries in order as signed [KindDeliver]
//     envelopes with Nats-Msg-Id = [DeliveryID](self, counter), waiting
//     for each stream acknowledgement;
//  3. wait for a wake-up or the next poll.
//
// Failures back off with jitter and resume from the destination's cursor.
// When the cursor cannot be asked (the destination's homeserver is down but
// its stream, on an external cluster, is up) publishing continues from
// where it stood. Entries leave the outbox only after the destination
// committed them, so losing the destination's stream loses nothing.
type Publisher struct {
	cfg PublisherConfig
	t   *Transport

	mu     sync.Mutex
	status map[string]DestinationStatus
}

// DestinationStatus is the publisher's view of one destination, for
// operators and tests.
type DestinationStatus struct {
	// Processed is the destination's last reported cursor.
	Processed uint64
	// Next is the counter to publish next.
	Next uint64
	// Failures counts consecutive failed rounds; LastError is the last.
	Failures  int
	LastError string
}

// NewPublisher returns a publisher; it starts with Run.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Transport == nil || cfg.Outbox == nil {
		return nil, errors.New("federation publisher: Transport and Outbox are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	def(&cfg.PublishTimeout, 10*time.Second)
	def(&cfg.CursorTimeout, 5*time.Second)
	def(&cfg.RetryMin, 500*time.Millisecond)
	def(&cfg.RetryMax, time.Minute)
	def(&cfg.Poll, 2*time.Second)
	def(&cfg.IdlePoll, time.Minute)
	return &Publisher{cfg: cfg, t: cfg.Transport, status: make(map[string]DestinationStatus)}, nil
}

// Status returns the state of every destination.
func (p *Publisher) Status() map[string]DestinationStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]DestinationStatus, len(p.status))
	for d, s := range p.status {
		out[d] = s
	}
	return out
}

// Run publishes until ctx ends, starting a goroutine for every destination
// the outbox lists (now and after each wake-up), and returns once they
// have stopped.
func (p *Publisher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wakes := make(map[string]chan struct{})
	refresh := func() {
		dests, err := p.cfg.Outbox.Destinations()
		if err != nil {
			p.t.cfg.Logger.Warn("federation publisher: list destinations", "err", err)
		}
		for _, d := range dests {
			if _, ok := wakes[d]; ok || d == p.t.Self() {
				continue
			}
			ch := make(chan struct{}, 1)
			wakes[d] = ch
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.runDestination(ctx, d, ch)
			}()
		}
		for _, ch := range wakes {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	refresh()
	tick := time.NewTicker(p.cfg.IdlePoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-p.cfg.Outbox.Notify():
			refresh()
		case <-tick.C:
			refresh()
		}
	}
}

// runDestination is the loop for one destination.
func (p *Publisher) runDestination(ctx context.Context, dest string, wake <-chan struct{}) {
	log := p.t.cfg.Logger.With("dest", dest)
	b := backoff{min: p.cfg.RetryMin, max: p.cfg.RetryMax}
	var next, trimmed, processed uint64 = 1, 0, 0
	failures := 0
	for ctx.Err() == nil {
		var roundErr error
		if !p.t.Policy().Allowed(dest) {
			roundErr = Errorf(CodeBlocked, "%s is not allowed by the federation policy", dest)
		} else {
			cctx, cancel := context.WithTimeout(ctx, p.cfg.CursorTimeout)
			cur, err := p.t.QueryCursor(cctx, dest)
			cancel()
			if err == nil {
				processed, next = cur.Processed, cur.Resume+1
				if processed > trimmed {
					if err := p.cfg.Outbox.Trim(ctx, dest, processed); err != nil {
						log.Warn("federation publisher: trim outbox", "up_to", processed, "err", err)
					} else {
						trimmed = processed
					}
				}
			} else {
				roundErr = err
			}
			if err := p.publishFrom(ctx, dest, &next); err != nil {
				roundErr = err
			}
		}
		if ctx.Err() != nil {
			return
		}
		if roundErr != nil {
			failures++
			if p.t.cfg.Metrics.PublishFailed != nil {
				p.t.cfg.Metrics.PublishFailed(dest)
			}
			log.Debug("federation publisher: destination not reached; backing off", "failures", failures, "err", roundErr)
		} else {
			failures = 0
		}
		p.setStatus(dest, processed, next, failures, roundErr)
		var wait time.Duration
		switch {
		case failures > 0:
			// A wake-up does not cut a backoff short: new entries for a
			// destination that is down would only fail again.
			sleepCtx(ctx, b.delay(failures-1))
			continue
		case next-1 > processed:
			wait = p.cfg.Poll // published, not yet confirmed
		default:
			wait = p.cfg.IdlePoll
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// publishFrom publishes the outbox entries from *next on, in order,
// advancing *next past each one the destination's stream acknowledged.
func (p *Publisher) publishFrom(ctx context.Context, dest string, next *uint64) error {
	stream := StreamName(dest)
	subject := Subject(p.t.Self(), dest, SuffixDeliver)
	for {
		entries, err := p.cfg.Outbox.Pending(dest, *next-1, p.cfg.Batch)
		if err != nil {
			return fmt.Errorf("outbox pending for %s: %w", dest, err)
		}
		if len(entries) == 0 {
			return nil
		}
		// Publish the whole batch in order, then collect the stream's
		// acknowledgements: one round trip per batch rather than per entry.
		type sent struct {
			counter uint64
			id      string
			wait    func(context.Context) error
		}
		var inflight []sent
		var sendErr error
		for _, e := range entries {
			if e.Counter < *next {
				continue // the outbox should not return these; skip defensively
			}
			// e.Counter > *next means the entries before it were trimmed:
			// the destination committed them.
			id := DeliveryID(p.t.Self(), e.Counter)
			env := Envelope{Origin: p.t.Self(), Destination: dest, Kind: KindDeliver, ID: id, Timestamp: p.t.cfg.Now().UnixMilli(), Payload: e.Payload}
			raw, err := Seal(&env, p.t.cfg.Sign)
			if err != nil {
				sendErr = fmt.Errorf("seal delivery %s: %w", id, err)
				break
			}
			wait, err := p.t.sendDelivery(dest, stream, subject, id, raw)
			if err != nil {
				sendErr = fmt.Errorf("publish %s: %w", id, err)
				break
			}
			inflight = append(inflight, sent{counter: e.Counter, id: id, wait: wait})
		}
		pctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
		var ackErr error
		for _, s := range inflight {
			err := s.wait(pctx)
			if ackErr != nil {
				continue // drain the rest; they are published again from *next
			}
			if err != nil {
				ackErr = fmt.Errorf("publish %s: %w", s.id, err)
				continue
			}
			*next = s.counter + 1
			if p.t.cfg.Metrics.Published != nil {
				p.t.cfg.Metrics.Published(dest)
			}
		}
		cancel()
		if ackErr != nil {
			return ackErr
		}
		if sendErr != nil {
			return sendErr
		}
	}
}

func (p *Publisher) setStatus(dest string, processed, next uint64, failures int, err error) {
	s := DestinationStatus{Processed: processed, Next: next, Failures: failures}
	if err != nil {
		s.LastError = err.Error()
	}
	p.mu.Lock()
	p.status[dest] = s
	p.mu.Unlock()
}

// pubAck is JetStream's answer to a publish.
type pubAck struct {
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// sendDelivery publishes a delivery to dest's stream and returns the
// function that waits for the stream's acknowledgement.
func (t *Transport) sendDelivery(dest, stream, subject, id string, raw []byte) (func(context.Context) error, error) {
	m := nats.NewMsg(subject)
	m.Data = raw
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set(jetstream.ExpectedStreamHeader, stream)
	wait, err := t.mux.send(dest, m)
	if err != nil {
		return nil, busError(dest, err)
	}
	return func(ctx context.Context) error {
		rep, err := wait(ctx)
		if err != nil {
			return busError(dest, err)
		}
		var ack pubAck
		if err := json.Unmarshal(rep.Data, &ack); err != nil {
			return Errorf(CodeMalformed, "acknowledgement from %s's stream: %v", dest, err)
		}
		if ack.Error != nil {
			return fmt.Errorf("stream %s refused %s: %s (%d)", stream, id, ack.Error.Description, ack.Error.ErrCode)
		}
		if ack.Stream != stream {
			return fmt.Errorf("delivery %s stored by stream %q, want %q", id, ack.Stream, stream)
		}
		return nil
	}, nil
}
