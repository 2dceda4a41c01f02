package federation

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/mlshome/homeserver/identity"
)

// Keys looks up the federation key of a remote homeserver. [KeyStore] is
// the implementation a homeserver uses; [StaticKeys] serves tests and fixed
// configurations.
type Keys interface {
	// FederationKey returns domain's Ed25519 federation key, or an *Error
	// with code [CodeUnknownOrigin] or [CodeKeyChanged].
	FederationKey(ctx context.Context, domain string) (ed25519.PublicKey, error)
}

// StaticKeys is a fixed map from domain to federation key.
type StaticKeys map[string]ed25519.PublicKey

// FederationKey implements [Keys].
func (k StaticKeys) FederationKey(_ context.Context, domain string) (ed25519.PublicKey, error) {
	if pub, ok := k[domain]; ok {
		return pub, nil
	}
	return nil, Errorf(CodeUnknownOrigin, "no federation key for %s", domain)
}

// DefaultWindow is the accepted clock difference for request and reply
// timestamps.
const DefaultWindow = 2 * time.Minute

// DefaultReplayCacheSize bounds the replay cache of an [Opener]: the number
// of requests accepted within two windows.
const DefaultReplayCacheSize = 1 << 18

// Opener decides whether an inbound envelope is accepted. Open checks, in
// order (cheap and local first, network last):
//
//  1. it decodes strictly and fits [MaxEnvelopeSize] (malformed,
//     unsupported_version, too_large);
//  2. its destination is Self (wrong_destination);
//  3. the origin and destination named by the NATS subject, which bus
//     permissions vouch for, are the envelope's (origin_mismatch), and the
//     kind fits the subject (wrong_kind);
//  4. the policy allows the origin (blocked), before any key fetch, so a
//     blocked origin costs nothing;
//  5. the origin's key is known or fetchable (unknown_origin, key_changed);
//  6. the signature verifies (bad_signature);
//  7. except for deliveries, the timestamp is within ±Window of now
//     (expired) and (origin, id) was not accepted before (replayed,
//     overloaded). A delivery may wait in a stream for hours; its replay
//     protection is the per-origin counter that the receiver's log keeps.
//
// An Opener is safe for concurrent use.
type Opener struct {
	// Self is this homeserver's domain.
	Self string
	// Keys supplies remote federation keys.
	Keys Keys
	// Policy returns the policy in force; nil means open.
	Policy func() Policy
	// Window is the accepted clock difference; zero means [DefaultWindow].
	Window time.Duration
	// Replay remembers accepted requests; nil disables replay detection.
	// Create it with [NewReplayCache] and the same window.
	Replay *identity.ReplayCache
}

// NewReplayCache returns a replay cache for an [Opener] with the given
// window, holding at most max entries (DefaultReplayCacheSize if max <= 0).
func NewReplayCache(window time.Duration, max int) *identity.ReplayCache {
	if window <= 0 {
		window = DefaultWindow
	}
	if max <= 0 {
		max = DefaultReplayCacheSize
	}
	return identity.NewReplayCache(window, max)
}

func (o *Opener) window() time.Duration {
	if o.Window <= 0 {
		return DefaultWindow
	}
	return o.Window
}

// Open decodes and checks raw, received on the NATS subject
// "hs.<origin>.<dest>.<suffix>", at time now. Every refusal is an *Error.
func (o *Opener) Open(ctx context.Context, subject string, raw []byte, now time.Time) (Envelope, error) {
	env, err := Decode(raw)
	if err != nil {
		return Envelope{}, err
	}
	if env.Destination != o.Self {
		return env, Errorf(CodeWrongDestination, "envelope for %s arrived at %s", env.Destination, o.Self)
	}
	origin, dest, suffix, ok := parseSubject(subject)
	if !ok {
		return env, Errorf(CodeMalformed, "subject %q is not hs.<origin>.<dest>.<suffix>", subject)
	}
	if origin != env.Origin || dest != env.Destination {
		return env, Errorf(CodeOriginMismatch, "envelope %s→%s arrived on subject %s", env.Origin, env.Destination, subject)
	}
	if err := kindFits(suffix, env.Kind); err != nil {
		return env, err
	}
	return env, o.check(ctx, &env, now)
}

// openReply checks a reply to the request req: it must come from
// req.Destination, be addressed to req.Origin, carry req's id and be a
// [KindReply] or [KindError] envelope.
func (o *Opener) openReply(ctx context.Context, req *Envelope, raw []byte, now time.Time) (Envelope, error) {
	env, err := Decode(raw)
	if err != nil {
		return Envelope{}, err
	}
	if env.Destination != req.Origin {
		return env, Errorf(CodeWrongDestination, "reply for %s arrived at %s", env.Destination, req.Origin)
	}
	if env.Origin != req.Destination {
		return env, Errorf(CodeOriginMismatch, "reply to a request for %s comes from %s", req.Destination, env.Origin)
	}
	if env.Kind != KindReply && env.Kind != KindError {
		return env, Errorf(CodeWrongKind, "kind %q is not a reply", env.Kind)
	}
	if env.ID != req.ID {
		return env, Errorf(CodeMalformed, "reply id %q does not match request id %q", env.ID, req.ID)
	}
	// The caller waits for exactly one reply to this id, so no replay cache
	// is needed; the window still bounds how stale a reply may be.
	return env, o.checkSigned(ctx, &env, now, false)
}

// kindFits says whether kind may travel on subjects with the suffix.
func kindFits(suffix, kind string) error {
	switch suffix {
	case SuffixRequest:
		switch kind {
		case KindDeliver, KindCursor, KindReply, KindError:
			return Errorf(CodeWrongKind, "kind %q is not a request", kind)
		}
		return nil
	case SuffixCursor, SuffixDeliver:
		if kind != suffix {
			return Errorf(CodeWrongKind, "kind %q on a %s subject", kind, suffix)
		}
		return nil
	}
	return Errorf(CodeMalformed, "unknown subject suffix %q", suffix)
}

// check runs steps 4 to 7 for an envelope already matched to its subject.
func (o *Opener) check(ctx context.Context, env *Envelope, now time.Time) error {
	return o.checkSigned(ctx, env, now, env.Kind != KindDeliver)
}

func (o *Opener) checkSigned(ctx context.Context, env *Envelope, now time.Time, replay bool) error {
	if o.Policy != nil && !o.Policy().Allowed(env.Origin) {
		return Errorf(CodeBlocked, "%s is not allowed by the federation policy", env.Origin)
	}
	pub, err := o.Keys.FederationKey(ctx, env.Origin)
	if err != nil {
		if CodeOf(err) == "" {
			return &Error{Code: CodeUnknownOrigin, Msg: fmt.Sprintf("federation key of %s", env.Origin), Err: err}
		}
		return err
	}
	if err := env.Verify(pub); err != nil {
		return err
	}
	if env.Kind == KindDeliver {
		return nil
	}
	d := now.UnixMilli() - env.Timestamp
	if w := o.window().Milliseconds(); d > w || d < -w {
		return Errorf(CodeExpired, "envelope time is %v from now, outside ±%v", time.Duration(d)*time.Millisecond, o.window())
	}
	if replay && o.Replay != nil {
		key := make([]byte, 0, len(env.Origin)+1+len(env.ID))
		key = append(append(append(key, env.Origin...), 0), env.ID...)
		if err := o.Replay.Use(key, env.Timestamp, now); err != nil {
			code := identity.CodeOf(err)
			if code == "" {
				code = CodeReplayed
			}
			return Errorf(code, "request %s from %s: %v", env.ID, env.Origin, err)
		}
	}
	return nil
}
