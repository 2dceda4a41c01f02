package federation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrOutOfOrder is returned by [Inbox.Deliver] for a delivery whose counter
// is beyond cursor+1: an earlier delivery from the same origin is missing.
// The receiver retries it after a delay, by which time the origin has
// republished the gap.
var ErrOutOfOrder = errors.New("federation: delivery out of order")

// Delivery is one delivery accepted from the bus: opened, signature
// verified, origin allowed.
type Delivery struct {
	// Origin is the sending homeserver (FED-3: record it on the event).
	Origin string
	// Counter is the dense per-(origin, destination) delivery number.
	Counter uint64
	// Envelope is the decoded envelope; Envelope.Payload is what the
	// origin's outbox entry held.
	Envelope Envelope
	// Raw is the signed envelope as received. Store it so the origin's
	// signature can be shown later (FED-3); [Decode] and
	// [Envelope.Verify] re-check it.
	Raw []byte
}

// ID returns [DeliveryID](d.Origin, d.Counter), the idempotency key.
func (d *Delivery) ID() string { return DeliveryID(d.Origin, d.Counter) }

// Inbox is implemented by the receiving homeserver over its log.
type Inbox interface {
	// Deliver appends d to the log, idempotently keyed by d.ID(), and
	// returns when the batch holding it is durable. It returns nil also
	// when d was committed before (d.Counter <= Cursor(d.Origin)), and
	// ErrOutOfOrder (possibly wrapped) when d.Counter > Cursor(d.Origin)+1.
	// Any other error is retried with backoff.
	Deliver(ctx context.Context, d Delivery) error
	// Cursor returns the highest c such that deliveries 1..c from origin
	// are all committed (0 if none).
	Cursor(origin string) (uint64, error)
}

// AsyncInbox is an Inbox that can keep several deliveries in flight:
// DeliverAsync submits d as Deliver would and returns at once with a
// function that waits for the outcome Deliver would have returned.
// Deliveries submitted one after another must be committed in that order
// (each seeing the ones before it). The receiver then commits a run of
// deliveries with shared fsyncs instead of one fsync each.
type AsyncInbox interface {
	Inbox
	DeliverAsync(ctx context.Context, d Delivery) func() error
}

// ReceiverConfig configures a [Receiver]. Zero values take the defaults
// given in brackets.
type ReceiverConfig struct {
	// Transport is this homeserver's transport.
	Transport *Transport
	// Inbox commits deliveries.
	Inbox Inbox
	// MaxBytes bounds the stream [1 GiB]. When it is full, publishers get
	// an error and retry later: nothing is discarded.
	MaxBytes int64
	// Replicas of the stream on an external cluster [1].
	Replicas int
	// Duplicates is the stream's Nats-Msg-Id duplicate window [2m].
	Duplicates time.Duration
	// AckWait is how long a delivery may take before JetStream redelivers
	// it [30s].
	AckWait time.Duration
	// OutOfOrderDelay is the redelivery delay of an out-of-order delivery
	// [2s].
	OutOfOrderDelay time.Duration
	// MaxOutOfOrder is how often a delivery may be out of order before it
	// is dropped (its origin publishes it again) [100].
	MaxOutOfOrder uint64
	// RetryMin and RetryMax bound the redelivery backoff after other
	// errors [1s, 1m].
	RetryMin, RetryMax time.Duration
}

// Receiver takes durable deliveries to this homeserver from its JetStream
// stream ([StreamName], subjects "hs.*.<self>.deliver", file storage,
// work-queue retention) through a durable pull consumer ([ConsumerName])
// with explicit acks, and commits them through the [Inbox] one at a time,
// in stream order. It acks a delivery only after the Inbox committed it;
// invalid envelopes are counted, logged and terminated. It also answers
// cursor queries ("hs.*.<self>.cursor") so that origins can trim their
// outboxes and republish what the stream lost.
type Receiver struct {
	cfg ReceiverConfig
	t   *Transport
	js  jetstream.JetStream
}

// NewReceiver returns a receiver; nothing touches the bus before Setup or
// Run.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if cfg.Transport == nil || cfg.Inbox == nil {
		return nil, errors.New("federation receiver: Transport and Inbox are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 30
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	def(&cfg.Duplicates, 2*time.Minute)
	def(&cfg.AckWait, 30*time.Second)
	def(&cfg.OutOfOrderDelay, 2*time.Second)
	def(&cfg.RetryMin, time.Second)
	def(&cfg.RetryMax, time.Minute)
	if cfg.MaxOutOfOrder == 0 {
		cfg.MaxOutOfOrder = 100
	}
	nc := cfg.Transport.Conn()
	if got, want := nc.Opts.InboxPrefix, InboxPrefix(cfg.Transport.Self()); got != want {
		cfg.Transport.cfg.Logger.Warn("federation receiver: connection inbox prefix differs; on a shared server with ClusterPermissions the JetStream API will not answer",
			"prefix", got, "want", want)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("federation receiver: %w", err)
	}
	return &Receiver{cfg: cfg, t: cfg.Transport, js: js}, nil
}

// Setup creates or updates the stream and the durable consumer. Run calls
// it; call it alone to have the stream capture deliveries before the
// homeserver is ready to process them.
func (r *Receiver) Setup(ctx context.Context) (jetstream.Consumer, error) {
	self := r.t.Self()
	name := StreamName(self)
	_, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "federation deliveries to " + self,
		Subjects:    []string{"hs.*." + Token(self) + "." + SuffixDeliver},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    r.cfg.MaxBytes,
		MaxMsgSize:  MaxEnvelopeSize,
		Duplicates:  r.cfg.Duplicates,
		Replicas:    r.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	cons, err := r.js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "commits deliveries to the log of " + self,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.cfg.AckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxDeliver:    -1,
		MaxAckPending: 1024,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s/%s: %w", name, ConsumerName, err)
	}
	return cons, nil
}

// Run sets up the stream, answers cursor queries and processes deliveries
// until ctx ends. A delivery being committed when ctx ends is finished.
func (r *Receiver) Run(ctx context.Context) error {
	cons, err := r.Setup(ctx)
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- r.t.serve(ctx, SuffixCursor, r.answerCursor) }()
	err = r.consume(ctx, cons)
	if serr := <-serveErr; err == nil {
		err = serr
	}
	return err
}

func (r *Receiver) consume(ctx context.Context, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return fmt.Errorf("consume %s: %w", StreamName(r.t.Self()), err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	// With an AsyncInbox, deliveries are submitted in stream order and
	// acknowledged, in the same order, by a second goroutine once their
	// batch is durable.
	var inflight chan inflightDelivery
	if _, ok := r.cfg.Inbox.(AsyncInbox); ok {
		inflight = make(chan inflightDelivery, 256)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for p := range inflight {
				err := p.wait()
				p.cancel()
				r.finish(p.msg, p.env, p.delivered, err)
			}
		}()
		defer func() {
			close(inflight)
			<-done
		}()
	}
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			r.t.cfg.Logger.Warn("federation receiver: next delivery", "err", err)
			continue
		}
		r.handle(ctx, msg, inflight)
	}
}

// inflightDelivery is a delivery submitted to an AsyncInbox.
type inflightDelivery struct {
	msg       jetstream.Msg
	env       *Envelope
	delivered uint64
	wait      func() error
	cancel    context.CancelFunc
}

// handle opens and commits one delivery and acks, naks or terminates it;
// with inflight set it submits the delivery and leaves the rest to the
// goroutine reading inflight.
func (r *Receiver) handle(ctx context.Context, msg jetstream.Msg, inflight chan<- inflightDelivery) {
	log := r.t.cfg.Logger
	env, err := r.t.opener.Open(ctx, msg.Subject(), msg.Data(), r.t.cfg.Now())
	if err != nil {
		// Terminate rather than retry: a valid delivery refused for a
		// passing reason (key not fetchable yet, policy since changed) is
		// published again by its origin once the cursor shows it missing.
		r.t.drop(CodeOf(err), msg.Subject(), err)
		if terr := msg.Term(); terr != nil {
			log.Warn("federation receiver: term", "err", terr)
		}
		return
	}
	counter, _ := env.DeliveryCounter() // checked by Open
	var delivered uint64
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	// The commit runs to completion even if ctx ends meanwhile.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.AckWait)
	d := Delivery{Origin: env.Origin, Counter: counter, Envelope: env, Raw: msg.Data()}
	if inflight != nil {
		wait := r.cfg.Inbox.(AsyncInbox).DeliverAsync(dctx, d)
		inflight <- inflightDelivery{msg: msg, env: &env, delivered: delivered, wait: wait, cancel: cancel}
		return
	}
	err = r.cfg.Inbox.Deliver(dctx, d)
	cancel()
	r.finish(msg, &env, delivered, err)
}

// finish acks, naks or terminates a delivery after its commit.
func (r *Receiver) finish(msg jetstream.Msg, env *Envelope, delivered uint64, err error) {
	log := r.t.cfg.Logger
	switch {
	case err == nil:
		if err := msg.Ack(); err != nil {
			log.Warn("federation receiver: ack", "err", err) // redelivered, then acked as a duplicate
		}
		if r.t.cfg.Metrics.Delivered != nil {
			r.t.cfg.Metrics.Delivered(env.Origin)
		}
	case errors.Is(err, ErrOutOfOrder):
		if delivered >= r.cfg.MaxOutOfOrder {
			log.Warn("federation receiver: dropping delivery stuck out of order", "id", env.ID)
			_ = msg.Term()
			return
		}
		_ = msg.NakWithDelay(r.cfg.OutOfOrderDelay)
	default:
		log.Warn("federation receiver: deliver failed; will retry", "id", env.ID, "attempt", delivered, "err", err)
		_ = msg.NakWithDelay(backoff{min: r.cfg.RetryMin, max: r.cfg.RetryMax}.delay(int(delivered) - 1))
	}
}

// answerCursor computes the [CursorReply] for the asking origin.
//
// The stream is read before the cursor: a delivery seen in the stream is
// either still there or committed by the time the cursor is read, so
// Resume never skips a delivery that is in neither.
func (r *Receiver) answerCursor(ctx context.Context, env *Envelope) ([]byte, error) {
	origin := env.Origin
	subject := Subject(origin, r.t.Self(), SuffixDeliver)
	stream, err := r.js.Stream(ctx, StreamName(r.t.Self()))
	if err != nil {
		return nil, fmt.Errorf("cursor: stream: %w", err)
	}
	var first, last uint64
	if m, err := stream.GetLastMsgForSubject(ctx, subject); err == nil {
		last = storedCounter(m, origin)
		if m, err := stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject)); err == nil {
			first = storedCounter(m, origin)
		}
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("cursor: last message: %w", err)
	}
	processed, err := r.cfg.Inbox.Cursor(origin)
	if err != nil {
		return nil, fmt.Errorf("cursor: %w", err)
	}
	rep := CursorReply{Processed: processed, Resume: processed}
	if first != 0 && first <= processed+1 && last > processed {
		rep.Resume = last
	}
	return rep.Marshal(), nil
}

// storedCounter returns the delivery counter of a stored message from
// origin, or 0 if its Nats-Msg-Id is not a delivery id of origin.
func storedCounter(m *jetstream.RawStreamMsg, origin string) uint64 {
	e := Envelope{Origin: origin, ID: m.Header.Get(jetstream.MsgIDHeader)}
	n, err := e.DeliveryCounter()
	if err != nil {
		return 0
	}
	return n
}
