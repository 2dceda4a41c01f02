package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/federation"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/ratelimit"
	"github.com/mlshome/homeserver/validation"
)

// FederationConfig configures federation.
type FederationConfig struct {
	// Scheme of remote well-known URLs: "https" (default) or "http" (the
	// loopback testnet only).
	Scheme string
	// Keys are remote federation keys given by configuration (domain →
	// Ed25519 key); others are fetched and pinned.
	Keys map[string][]byte
	// Policy is the policy until a FederationPolicyChanged event sets one.
	Policy federation.Policy
	// AdminToken enables the admin API (policy changes).
	AdminToken string
	// PerOrigin limits inbound deliveries per origin homeserver (FED-6);
	// over it a delivery waits in the stream and is retried.
	PerOrigin ratelimit.Limit
	// PerQueue limits inbound deliveries per target queue (FED-6).
	PerQueue ratelimit.Limit
	// RetryMax caps the publisher's backoff while a destination is
	// unreachable (default 1m).
	RetryMax time.Duration
}

// fed is the federation side of a node.
type fed struct {
	n      *Node
	keys   *federation.KeyStore
	tr     *federation.Transport
	recv   *federation.Receiver
	pub    *federation.Publisher
	notify chan struct{}
	// policySeq is the event that set the policy in force (0: the
	// configured one); only watch changes it after start.
	policySeq uint64
	cancel    context.CancelFunc
	ctx       context.Context
	wg        sync.WaitGroup
	perOrigin *ratelimit.Limiter
	perQueue  *ratelimit.Limiter
	// perQueueOn: resolving recipients for the per-queue limit costs an
	// HPKE open each, so it is done only when the limit is set.
	perQueueOn bool
}

// federation kinds of relayed requests besides group requests.
const (
	kindLookup = "lookup"
	kindClaim  = "claim"
	kindKeys   = "keys"
)

func (n *Node) startFederation(cfg FederationConfig) error {
	configured := map[string]ed25519.PublicKey{}
	for d, k := range cfg.Keys {
		configured[d] = ed25519.PublicKey(k)
	}
	pinDir := filepath.Join(n.cfg.DataDir, "federation")
	if err := os.MkdirAll(pinDir, 0o700); err != nil {
		return err
	}
	ks, err := federation.NewKeyStore(federation.KeyStoreConfig{Configured: configured, Scheme: cfg.Scheme, PinDir: pinDir, Logger: n.cfg.Logger})
	if err != nil {
		return fmt.Errorf("federation keys: %w", err)
	}
	policy := cfg.Policy
	fv := projections.FederationView{R: n.Log.Reader()}
	policySeq, err := fv.PolicySeq()
	if err != nil {
		return fmt.Errorf("stored federation policy: %w", err)
	}
	if b, err := fv.Policy(); err == nil {
		if policy, err = federation.ParsePolicy(b); err != nil {
			return fmt.Errorf("stored federation policy: %w", err)
		}
	}
	f := &fed{n: n, keys: ks, notify: make(chan struct{}, 1), policySeq: policySeq, perOrigin: ratelimit.New(cfg.PerOrigin, 0), perQueue: ratelimit.New(cfg.PerQueue, 0), perQueueOn: cfg.PerQueue.Enabled()}
	f.tr, err = federation.NewTransport(federation.TransportConfig{
		Conn: n.Bus.Conn, Self: n.cfg.Domain, Sign: n.Keys.SignFederation, Keys: ks, Policy: policy,
		Logger: n.cfg.Logger, ErrorCode: peerError,
		Metrics: federation.Metrics{
			Dropped: func(code string) { n.Metrics.FederationDropped.WithLabelValues(code).Inc() },
		},
	})
	if err != nil {
		return err
	}
	if f.recv, err = federation.NewReceiver(federation.ReceiverConfig{Transport: f.tr, Inbox: inbox{f}, RetryMin: cfg.RetryMax / 10, RetryMax: cfg.RetryMax}); err != nil {
		return err
	}
	if f.pub, err = federation.NewPublisher(federation.PublisherConfig{Transport: f.tr, Outbox: outbox{f}, RetryMin: cfg.RetryMax / 10, RetryMax: cfg.RetryMax, Poll: cfg.RetryMax / 4}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.ctx = ctx
	if _, err := f.recv.Setup(ctx); err != nil {
		cancel()
		return fmt.Errorf("federation receiver: %w", err)
	}
	n.fed = f
	return nil
}

// start runs the request server, the receiver, the publisher and the
// log watcher, once the API they serve through exists.
func (f *fed) start() {
	n, ctx := f.n, f.ctx
	for _, run := range []func(context.Context) error{
		func(ctx context.Context) error { return f.tr.Serve(ctx, f.handle) },
		f.recv.Run,
		f.pub.Run,
		f.watch,
	} {
		f.wg.Add(1)
		go func(run func(context.Context) error) {
			defer f.wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				n.cfg.Logger.Error("federation", "err", err)
			}
		}(run)
	}
}

func (f *fed) stop() {
	f.cancel()
	f.wg.Wait()
	f.tr.Close()
	f.keys.Close()
}

// watch follows the log's commits. It wakes the publisher once an event
// that wrote outbox entries is durable, and applies a federation policy
// change once its event is durable. After each commit it reads two
// projection keys, the last event that wrote outbox entries and the one
// that set the policy, rather than every event: most events (messages in
// groups without remote members) concern neither.
//
// A key may name an event of a batch applied but not yet fsynced (Pebble
// shows those): the outbox wake-up is sent anyway and again at the next
// commit, so none is missed; the policy waits for the event's fsync.
func (f *fed) watch(ctx context.Context) error {
	l := f.n.Log
	var woken uint64 // outbox entries up to this event were announced
	for {
		size := l.Size()
		last, err := (projections.OutboxView{R: l.Reader()}).LastWrite()
		if err != nil {
			return err
		}
		if last > woken {
			select {
			case f.notify <- struct{}{}:
			default:
			}
			woken = min(last, size)
		}
		if err := f.applyPolicy(size); err != nil {
			return err
		}
		if err := l.Wait(ctx, size+1); err != nil {
			return err
		}
	}
}

// applyPolicy applies the stored federation policy if an event after the
// one in force set it and that event is within the durable size.
func (f *fed) applyPolicy(size uint64) error {
	v := projections.FederationView{R: f.n.Log.Reader()}
	seq, err := v.PolicySeq()
	if err != nil || seq <= f.policySeq || seq > size {
		return err
	}
	b, err := v.Policy()
	if err != nil {
		return err
	}
	// The policy and its sequence number are set by the same batch, and
	// sequence numbers only grow: if it is still seq, b is its policy.
	if again, err := v.PolicySeq(); err != nil || again != seq {
		return err
	}
	p, err := federation.ParsePolicy(b)
	if err != nil {
		return fmt.Errorf("federation policy of event %d: %w", seq, err)
	}
	f.tr.SetPolicy(p)
	f.policySeq = seq
	f.n.cfg.Logger.Info("federation policy changed", "mode", p.Mode, "allow", p.Allow, "block", p.Block)
	return nil
}

// handle answers requests relayed by other homeservers, through the same
// code as local clients' requests.
func (f *fed) handle(ctx context.Context, origin, kind string, payload []byte) ([]byte, error) {
	a := f.n.API
	switch kind {
	case kindLookup:
		var users []string
		if err := json.Unmarshal(payload, &users); err != nil {
			return nil, validation.Reject(validation.CodeMalformed, "%v", err)
		}
		res, retry := a.Lookup(ctx, api.RelayedRequester(origin), users)
		if retry > 0 {
			return nil, validation.Reject(validation.CodeRateLimited, "retry after %s", retry)
		}
		return json.Marshal(res)
	case kindClaim:
		b, retry, err := a.Claim(ctx, api.RelayedRequester(origin), string(payload))
		if retry > 0 {
			return nil, validation.Reject(validation.CodeRateLimited, "retry after %s", retry)
		}
		return b, err
	case kindKeys:
		return f.n.Keys.PublicKeys().Marshal(), nil
	case api.RelayHandshake, api.RelayMessage:
		var req relayedGroup
		if err := json.Unmarshal(payload, &req); err != nil {
			return nil, validation.Reject(validation.CodeMalformed, "%v", err)
		}
		body := []byte(req.Body)
		if len(req.Raw) > 0 {
			if len(body) > 0 {
				return nil, validation.Reject(validation.CodeMalformed, "relayed group request with both a JSON and a raw body")
			}
			body = req.Raw
		}
		return a.GroupRequest(ctx, origin, kind, req.GroupID, body)
	}
	return nil, validation.Reject(validation.CodeUnknownCommand, "unknown request kind %q", kind)
}

// relayedGroup is a client's group request relayed to the owning
// homeserver: a JSON body as it is, any other (the binary form of an
// application message) as base64 in Raw.
type relayedGroup struct {
	GroupID []byte          `json:"group_id"`
	Body    json.RawMessage `json:"body,omitempty"`
	Raw     []byte          `json:"raw,omitempty"`
}

// peerError maps our rejections to federation error replies.
func peerError(err error) (string, string, bool) {
	if e, ok := validation.AsError(err); ok {
		return e.Code, e.Msg, true
	}
	if c := identity.CodeOf(err); c != "" {
		return c, err.Error(), true
	}
	return "", "", false
}

// localError turns a peer's error reply into our rejection, keeping its
// code, so a relayed request fails for the client exactly as a local one.
func localError(err error) error {
	var fe *federation.Error
	if errors.As(err, &fe) {
		if fe.Remote != "" {
			return validation.Reject(fe.Code, "%s", fe.Msg)
		}
		return &validation.Error{Code: fe.Code, Status: 502, Msg: fe.Msg}
	}
	return err
}

// RelayGroup implements api.GroupRelay.
func (f *fed) RelayGroup(ctx context.Context, domain, kind string, gid, body []byte) ([]byte, error) {
	rg := relayedGroup{GroupID: gid, Raw: body}
	if json.Valid(body) {
		rg = relayedGroup{GroupID: gid, Body: body}
	}
	p, err := json.Marshal(rg)
	if err != nil {
		return nil, err
	}
	b, err := f.tr.Request(ctx, domain, kind, p)
	return b, localError(err)
}

// Lookup implements api.Relay.
func (f *fed) Lookup(ctx context.Context, domain string, users []string) ([]api.LookupResult, error) {
	p, _ := json.Marshal(users)
	b, err := f.tr.Request(ctx, domain, kindLookup, p)
	if err != nil {
		return nil, localError(err)
	}
	var res []api.LookupResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("lookup reply of %s: %w", domain, err)
	}
	return res, nil
}

// Claim implements api.Relay.
func (f *fed) Claim(ctx context.Context, domain, userID string) ([]byte, error) {
	b, err := f.tr.Request(ctx, domain, kindClaim, []byte(userID))
	return b, localError(err)
}

// remoteKeys returns another homeserver's public keys, asked over the bus
// and checked against its pinned federation key.
func (f *fed) remoteKeys(ctx context.Context, domain string) ([]byte, error) {
	b, err := f.tr.Request(ctx, domain, kindKeys, nil)
	if err != nil {
		return nil, localError(err)
	}
	pk, err := identity.ParsePublicKeys(b, domain)
	if err != nil {
		return nil, err
	}
	pinned, err := f.keys.FederationKey(ctx, domain)
	if err != nil {
		return nil, localError(err)
	}
	if !pinned.Equal(ed25519.PublicKey(pk.FederationKey)) {
		return nil, validation.Reject("key_changed", "%s answered with a federation key other than the pinned one", domain)
	}
	return b, nil
}

// inbox is the receiving side: deliveries become events.
type inbox struct{ f *fed }

func (in inbox) Deliver(ctx context.Context, d federation.Delivery) error {
	return in.DeliverAsync(ctx, d)()
}

// DeliverAsync implements federation.AsyncInbox: deliveries are submitted
// to the writer in stream order and share fsyncs.
func (in inbox) DeliverAsync(ctx context.Context, d federation.Delivery) func() error {
	var m events.FederatedMessage
	if err := json.Unmarshal(d.Envelope.Payload, &m); err != nil {
		// A signed delivery we cannot read: record the refusal so the
		// origin's order moves on.
		m = events.FederatedMessage{}
	}
	// FED-6: over a limit the delivery waits (the stream holds the rest,
	// in order); the limit slows an origin down, it never drops or reorders.
	if err := in.throttle(ctx, in.f.perOrigin, d.Origin, d.Origin); err != nil {
		return func() error { return err }
	}
	// Opening the recipients' sealed queue configs (HPKE) happens here,
	// off the writer: its results are cached, so the writer's FED-5 check
	// finds them ready.
	resolve := in.f.n.keyring.resolver()
	for _, sealed := range m.Recipients {
		t, err := resolve(sealed)
		if in.f.perQueueOn && err == nil && t.ClientID != "" {
			if err := in.throttle(ctx, in.f.perQueue, t.ClientID, d.Origin); err != nil {
				return func() error { return err }
			}
		}
	}
	wait := in.f.n.Log.AppendAsync(ctx, eventlog.Command{
		Key:  []byte("fed/" + d.ID()),
		Body: validation.DeliverFederated{Origin: d.Origin, Counter: d.Counter, Envelope: d.Raw, Message: m},
	})
	return func() error {
		_, err := wait()
		var rej *eventlog.Rejection
		if errors.As(err, &rej) {
			if e, ok := validation.AsError(rej.Err); ok && e.Code == validation.CodeOutOfOrder {
				return fmt.Errorf("%w: %v", federation.ErrOutOfOrder, e)
			}
			return rej.Err
		}
		return err
	}
}

// throttle waits until l has a token for key.
func (in inbox) throttle(ctx context.Context, l *ratelimit.Limiter, key, origin string) error {
	for {
		ok, retry := l.Allow(key, in.f.n.cfg.Clock())
		if ok {
			return nil
		}
		in.f.n.Metrics.FederationLimited.WithLabelValues(origin).Inc()
		t := time.NewTimer(min(retry, 5*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (in inbox) Cursor(origin string) (uint64, error) {
	return projections.FederationView{R: in.f.n.Log.Reader()}.Cursor(origin)
}

// outbox is the sending side over the outbox projection.
type outbox struct{ f *fed }

func (o outbox) view() projections.OutboxView {
	return projections.OutboxView{R: o.f.n.Log.Reader()}
}

func (o outbox) Destinations() ([]string, error) { return o.view().Destinations() }

func (o outbox) Pending(dest string, after uint64, max int) ([]federation.OutboxEntry, error) {
	ns, ps, err := o.view().Pending(dest, after, max, o.f.n.Log.Size())
	if err != nil {
		return nil, err
	}
	out := make([]federation.OutboxEntry, len(ns))
	for i := range ns {
		out[i] = federation.OutboxEntry{Counter: ns[i], Payload: ps[i]}
	}
	return out, nil
}

func (o outbox) Trim(ctx context.Context, dest string, upTo uint64) error {
	_, err := o.f.n.Log.Append(ctx, eventlog.Command{Body: validation.TrimOutbox{Destination: dest, UpTo: upTo}})
	return err
}

func (o outbox) Notify() <-chan struct{} { return o.f.notify }
