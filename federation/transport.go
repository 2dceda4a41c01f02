package federation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlshome/homeserver/identity"
	"github.com/nats-io/nats.go"
)

// Metrics receives counters from the federation layer. Every field is
// optional; the homeserver binds them to its Prometheus counters.
type Metrics struct {
	// Dropped counts an inbound envelope refused, by error code.
	Dropped func(code string)
	// Delivered counts a delivery from origin committed by the inbox.
	Delivered func(origin string)
	// Published counts a delivery to dest stored by dest's stream.
	Published func(dest string)
	// PublishFailed counts a failed attempt to reach dest (cursor query or
	// publish); the publisher backs off and retries.
	PublishFailed func(dest string)
}

func (m *Metrics) dropped(code string) {
	if m.Dropped != nil {
		m.Dropped(code)
	}
}

// Handler answers a request from origin. A returned *Error (or an error
// that TransportConfig.ErrorCode maps) becomes a coded error reply; any
// other error becomes [CodeInternal] without its text.
type Handler func(ctx context.Context, origin, kind string, payload []byte) ([]byte, error)

// TransportConfig configures a [Transport]. Zero values take the defaults
// given in brackets.
type TransportConfig struct {
	// Conn is the bus connection ([Bus.Conn]).
	Conn *nats.Conn
	// Self is this homeserver's domain.
	Self string
	// Sign signs with this homeserver's federation key
	// ([identity.KeySet.SignFederation]).
	Sign func([]byte) []byte
	// Keys supplies remote federation keys, usually a [*KeyStore].
	Keys Keys
	// Policy is the initial federation policy [open].
	Policy Policy
	// Window is the accepted clock difference of requests and replies
	// [DefaultWindow].
	Window time.Duration
	// ReplayCacheSize bounds the replay cache [DefaultReplayCacheSize].
	ReplayCacheSize int
	// RequestTimeout bounds a Request whose context has no deadline [10s].
	RequestTimeout time.Duration
	// HandlerTimeout bounds one handler call [30s]. Handlers in flight
	// when Serve's context ends still run to completion within it.
	HandlerTimeout time.Duration
	// MaxConcurrent bounds concurrent handler calls per Serve [64].
	MaxConcurrent int
	// ErrorCode maps a handler error to the code and message of the error
	// reply; ok false means "not a peer-visible error" ([CodeInternal]).
	// Nil: only *Error is mapped.
	ErrorCode func(err error) (code, msg string, ok bool)
	Logger    *slog.Logger
	Metrics   Metrics
	// Now replaces time.Now.
	Now func() time.Time
}

// Transport sends and answers signed federation envelopes over NATS for one
// homeserver: request/reply ([Transport.Request], [Transport.Serve]) and the
// cursor service and publishing used by [Receiver] and [Publisher]. It is
// safe for concurrent use.
type Transport struct {
	cfg    TransportConfig
	opener *Opener
	policy atomic.Pointer[Policy]
	logs   dropLog
	mux    *replyMux
}

// NewTransport checks cfg and returns a transport.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if cfg.Conn == nil || cfg.Sign == nil || cfg.Keys == nil {
		return nil, errors.New("federation transport: Conn, Sign and Keys are required")
	}
	if err := identity.ValidateDomain(cfg.Self); err != nil {
		return nil, fmt.Errorf("federation transport: %w", err)
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.HandlerTimeout <= 0 {
		cfg.HandlerTimeout = 30 * time.Second
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Transport{cfg: cfg, mux: &replyMux{nc: cfg.Conn, self: cfg.Self, waiting: make(map[string]chan *nats.Msg)}}
	if err := t.SetPolicy(cfg.Policy); err != nil {
		return nil, err
	}
	t.opener = &Opener{
		Self:   cfg.Self,
		Keys:   cfg.Keys,
		Policy: t.Policy,
		Window: cfg.Window,
		Replay: NewReplayCache(cfg.Window, cfg.ReplayCacheSize),
	}
	return t, nil
}

// Self returns this homeserver's domain.
func (t *Transport) Self() string { return t.cfg.Self }

// Conn returns the bus connection.
func (t *Transport) Conn() *nats.Conn { return t.cfg.Conn }

// Close stops receiving replies. Serve, Receiver and Publisher stop with
// their contexts.
func (t *Transport) Close() error { return t.mux.close() }

// SetPolicy normalizes p and puts it in force atomically: envelopes opened
// after SetPolicy returns are judged by p.
func (t *Transport) SetPolicy(p Policy) error {
	n, err := p.Normalize()
	if err != nil {
		return err
	}
	t.policy.Store(&n)
	return nil
}

// Policy returns the policy in force.
func (t *Transport) Policy() Policy { return *t.policy.Load() }

// Request sends a signed request of the given kind to dest on
// "hs.<self>.<dest>.req" and returns the payload of dest's signed reply. A
// [KindError] reply is returned as an *Error with Remote = dest and the
// remote's code; nobody answering is [CodeUnreachable], no answer in time
// [CodeTimeout], an invalid reply one of the [Opener] codes.
func (t *Transport) Request(ctx context.Context, dest, kind string, payload []byte) ([]byte, error) {
	if err := kindFits(SuffixRequest, kind); err != nil {
		return nil, err
	}
	env, err := t.request(ctx, dest, SuffixRequest, kind, payload)
	if err != nil {
		return nil, err
	}
	return env.Payload, nil
}

// request seals a request, sends it on "hs.<self>.<dest>.<suffix>" and
// opens the reply.
func (t *Transport) request(ctx context.Context, dest, suffix, kind string, payload []byte) (Envelope, error) {
	if dest == t.cfg.Self {
		return Envelope{}, Errorf(CodeWrongDestination, "a homeserver does not federate with itself")
	}
	if !t.Policy().Allowed(dest) {
		return Envelope{}, Errorf(CodeBlocked, "%s is not allowed by the federation policy", dest)
	}
	id, err := newRequestID()
	if err != nil {
		return Envelope{}, err
	}
	req := Envelope{Origin: t.cfg.Self, Destination: dest, Kind: kind, ID: id, Timestamp: t.cfg.Now().UnixMilli(), Payload: payload}
	raw, err := Seal(&req, t.cfg.Sign)
	if err != nil {
		return Envelope{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.cfg.RequestTimeout)
		defer cancel()
	}
	msg, err := t.mux.roundTrip(ctx, dest, &nats.Msg{Subject: Subject(t.cfg.Self, dest, suffix), Data: raw})
	if err != nil {
		return Envelope{}, busError(dest, err)
	}
	rep, err := t.opener.openReply(ctx, &req, msg.Data, t.cfg.Now())
	if err != nil {
		t.drop(CodeOf(err), "reply from "+dest, err)
		return Envelope{}, err
	}
	if rep.Kind == KindError {
		p, err := ParseErrorPayload(rep.Payload)
		if err != nil {
			return Envelope{}, err
		}
		return Envelope{}, &Error{Code: p.Code, Msg: p.Msg, Remote: dest}
	}
	return rep, nil
}

// busError classifies a NATS request failure.
func busError(dest string, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return &Error{Code: CodeUnreachable, Msg: dest + " does not answer on the bus", Err: err}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return &Error{Code: CodeTimeout, Msg: dest + " did not answer in time", Err: err}
	case errors.Is(err, context.Canceled):
		return err
	}
	return &Error{Code: CodeUnreachable, Msg: "request to " + dest, Err: err}
}

func newRequestID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("request id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Serve answers requests to this homeserver ("hs.*.<self>.req") with
// handler until ctx ends, then waits for handlers in flight. Several
// processes of one homeserver may Serve at once: they share the requests (a
// NATS queue group). Refused envelopes are dropped, counted
// (Metrics.Dropped) and logged; when the envelope is well-formed and names
// the subject's origin (which bus permissions vouch for), the origin also
// gets a signed error reply so that it fails fast with the code.
func (t *Transport) Serve(ctx context.Context, handler Handler) error {
	return t.serve(ctx, SuffixRequest, func(ctx context.Context, env *Envelope) ([]byte, error) {
		return handler(ctx, env.Origin, env.Kind, env.Payload)
	})
}

// serve answers requests on "hs.*.<self>.<suffix>" until ctx ends.
func (t *Transport) serve(ctx context.Context, suffix string, h func(context.Context, *Envelope) ([]byte, error)) error {
	subject := "hs.*." + Token(t.cfg.Self) + "." + suffix
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex // guards closed and wg.Add against wg.Wait
		closed bool
	)
	sem := make(chan struct{}, t.cfg.MaxConcurrent)
	hctx := context.WithoutCancel(ctx)
	sub, err := t.cfg.Conn.QueueSubscribe(subject, "hs."+Token(t.cfg.Self)+"."+suffix, func(m *nats.Msg) {
		// Blocking here when MaxConcurrent handlers run pushes back on
		// the subscription instead of piling up goroutines.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			<-sem
			return
		}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer func() { <-sem; wg.Done() }()
			t.answer(hctx, m, h)
		}()
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	<-ctx.Done()
	err = sub.Unsubscribe()
	mu.Lock()
	closed = true
	mu.Unlock()
	wg.Wait()
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("unsubscribe %s: %w", subject, err)
	}
	return nil
}

// answer opens one request, runs h and replies. It never panics on peer
// input: every failure is a drop or an error reply.
func (t *Transport) answer(ctx context.Context, m *nats.Msg, h func(context.Context, *Envelope) ([]byte, error)) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.HandlerTimeout)
	defer cancel()
	env, err := t.opener.Open(ctx, m.Subject, m.Data, t.cfg.Now())
	if err != nil {
		t.drop(CodeOf(err), m.Subject, err)
		if origin, _, _, ok := parseSubject(m.Subject); ok && env.Origin == origin && env.Destination == t.cfg.Self && env.ID != "" {
			t.replyError(m, &env, CodeOf(err), err.Error())
		}
		return
	}
	payload, herr := h(ctx, &env)
	if herr != nil {
		code, msg := t.errorCode(herr)
		if code == CodeInternal {
			t.cfg.Logger.Error("federation handler failed", "origin", env.Origin, "kind", env.Kind, "err", herr)
		}
		t.replyError(m, &env, code, msg)
		return
	}
	rep := Envelope{Origin: t.cfg.Self, Destination: env.Origin, Kind: KindReply, ID: env.ID, Timestamp: t.cfg.Now().UnixMilli(), Payload: payload}
	raw, err := Seal(&rep, t.cfg.Sign)
	if err != nil {
		t.replyError(m, &env, CodeOf(err), err.Error())
		return
	}
	t.respond(m, raw)
}

func (t *Transport) errorCode(err error) (code, msg string) {
	var e *Error
	if errors.As(err, &e) && e.Remote == "" {
		return e.Code, e.Msg
	}
	if t.cfg.ErrorCode != nil {
		if code, msg, ok := t.cfg.ErrorCode(err); ok {
			return code, msg
		}
	}
	return CodeInternal, "internal error"
}

// replyError sends a signed error reply to req's origin, if req expects a
// reply.
func (t *Transport) replyError(m *nats.Msg, req *Envelope, code, msg string) {
	if m.Reply == "" || code == "" {
		return
	}
	rep := Envelope{Origin: t.cfg.Self, Destination: req.Origin, Kind: KindError, ID: req.ID, Timestamp: t.cfg.Now().UnixMilli(),
		Payload: ErrorPayload{Code: code, Msg: msg}.Marshal()}
	raw, err := Seal(&rep, t.cfg.Sign)
	if err != nil {
		t.cfg.Logger.Error("seal error reply", "err", err)
		return
	}
	t.respond(m, raw)
}

func (t *Transport) respond(m *nats.Msg, raw []byte) {
	origin, _, _, ok := parseSubject(m.Subject)
	if !ok || !replyAllowed(m.Reply, t.cfg.Self, origin) {
		t.cfg.Logger.Debug("federation reply not sent: bad reply subject", "subject", m.Subject, "reply", m.Reply)
		return
	}
	if err := m.Respond(raw); err != nil {
		t.cfg.Logger.Warn("federation reply not sent", "subject", m.Subject, "err", err)
	}
}

// drop counts and logs a refused envelope.
func (t *Transport) drop(code, where string, err error) {
	if code == "" {
		code = CodeInternal
	}
	t.cfg.Metrics.dropped(code)
	if n, ok := t.logs.allow(code, t.cfg.Now()); ok {
		t.cfg.Logger.Warn("federation envelope refused", "code", code, "subject", where, "err", err, "suppressed", n)
	}
}

// dropLog rate-limits drop log lines to one per code per second, so a peer
// sending garbage cannot flood the log; the metric counts every drop.
type dropLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	supp map[string]int
}

func (d *dropLog) allow(code string, now time.Time) (suppressed int, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		d.last, d.supp = make(map[string]time.Time), make(map[string]int)
	}
	if now.Sub(d.last[code]) < time.Second {
		d.supp[code]++
		return 0, false
	}
	d.last[code] = now
	n := d.supp[code]
	d.supp[code] = 0
	return n, true
}
