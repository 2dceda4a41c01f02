package federation

import (
	"bytes"
	"context"
	"testing"
	"time"
)

var t0 = time.UnixMilli(1_790_000_000_000)

// fixture is two homeservers' keys and an Opener for the receiving one.
type fixture struct {
	a, b   string
	signA  func([]byte) []byte
	opener *Opener
	policy Policy
}

func newFixture(t *testing.T) *fixture {
	ka, kb := mustKeySet(t, domA), mustKeySet(t, domB)
	f := &fixture{a: domA, b: domB, signA: ka.SignFederation, policy: OpenPolicy()}
	f.opener = &Opener{
		Self:   domB,
		Keys:   StaticKeys{domA: ka.FederationPublicKey(), domB: kb.FederationPublicKey()},
		Policy: func() Policy { return f.policy },
		Window: time.Minute,
		Replay: NewReplayCache(time.Minute, 100),
	}
	return f
}

func (f *fixture) seal(t *testing.T, e Envelope) []byte {
	t.Helper()
	raw, err := Seal(&e, f.signA)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func newReq(origin, dest string) Envelope {
	return Envelope{Origin: origin, Destination: dest, Kind: "lookup", ID: "r1", Timestamp: t0.UnixMilli(), Payload: []byte("alice")}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	f := newFixture(t)
	raw := f.seal(t, newReq(domA, domB))
	env, err := f.opener.Open(context.Background(), Subject(domA, domB, SuffixRequest), raw, t0.Add(30*time.Second))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if env.Origin != domA || env.Destination != domB || env.Kind != "lookup" || env.ID != "r1" || string(env.Payload) != "alice" {
		t.Fatalf("opened %+v", env)
	}
	again, err := env.Marshal()
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("re-encoding differs (%v)", err)
	}
	// An empty payload survives too.
	e := newReq(domA, domB)
	e.ID, e.Payload = "r2", nil
	if _, err := f.opener.Open(context.Background(), Subject(domA, domB, SuffixRequest), f.seal(t, e), t0); err != nil {
		t.Fatalf("empty payload: %v", err)
	}
}

func TestFED_2_OpenRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	reqSubj := Subject(domA, domB, SuffixRequest)
	good := func(id string) Envelope { e := newReq(domA, domB); e.ID = id; return e }

	tampered := f.seal(t, good("t1"))
	tampered[len(tampered)-65] ^= 1 // last payload byte, just before the signature

	oversized := good("big")
	oversized.Payload = make([]byte, MaxEnvelopeSize)
	oversizedRaw := append(f.seal(t, good("big0"))[:0:0], make([]byte, MaxEnvelopeSize+1)...)

	replayed := f.seal(t, good("rp"))
	if _, err := f.opener.Open(ctx, reqSubj, replayed, t0); err != nil {
		t.Fatalf("first use: %v", err)
	}

	wrongKind := good("wk")
	wrongKind.Kind = KindReply
	deliverOnReq := good("x")
	deliverOnReq.Kind, deliverOnReq.ID = KindDeliver, domA+"/1"
	unknown := newReq(domC, domB)
	expired := good("old")
	expired.Timestamp = t0.Add(-2 * time.Minute).UnixMilli()
	future := good("future")
	future.Timestamp = t0.Add(2 * time.Minute).UnixMilli()
	claimsB := newReq(domB, domB) // signed by A, claiming B, on B's own subject
	signedOK := f.seal(t, good("ok"))

	cases := []struct {
		name    string
		subject string
		raw     []byte
		policy  Policy
		code    string
	}{
		{"tampered byte", reqSubj, tampered, OpenPolicy(), CodeBadSignature},
		{"wrong destination", Subject(domA, domC, SuffixRequest), f.seal(t, newReq(domA, domC)), OpenPolicy(), CodeWrongDestination},
		{"unknown origin", Subject(domC, domB, SuffixRequest), f.seal(t, unknown), OpenPolicy(), CodeUnknownOrigin},
		{"blocked origin", reqSubj, signedOK, Policy{Block: []string{domA}}, CodeBlocked},
		{"not on allowlist", reqSubj, signedOK, Policy{Mode: PolicyAllowlist, Allow: []string{domC}}, CodeBlocked},
		{"expired", reqSubj, f.seal(t, expired), OpenPolicy(), CodeExpired},
		{"from the future", reqSubj, f.seal(t, future), OpenPolicy(), CodeExpired},
		{"replayed", reqSubj, replayed, OpenPolicy(), CodeReplayed},
		{"oversized", reqSubj, oversizedRaw, OpenPolicy(), CodeTooLarge},
		{"truncated", reqSubj, signedOK[:len(signedOK)-1], OpenPolicy(), CodeMalformed},
		{"trailing byte", reqSubj, append(bytes.Clone(signedOK), 0), OpenPolicy(), CodeMalformed},
		{"garbage", reqSubj, []byte("GET / HTTP/1.1\r\n\r\n"), OpenPolicy(), CodeMalformed},
		{"empty", reqSubj, nil, OpenPolicy(), CodeMalformed},
		{"subject names another origin", Subject(domC, domB, SuffixRequest), signedOK, OpenPolicy(), CodeOriginMismatch},
		{"claims B on B's subject, signed by A", Subject(domB, domB, SuffixRequest), f.seal(t, claimsB), OpenPolicy(), CodeBadSignature},
		{"claims B on A's subject", reqSubj, f.seal(t, claimsB), OpenPolicy(), CodeOriginMismatch},
		{"reply kind on request subject", reqSubj, f.seal(t, wrongKind), OpenPolicy(), CodeWrongKind},
		{"delivery on request subject", reqSubj, f.seal(t, deliverOnReq), OpenPolicy(), CodeWrongKind},
		{"request on delivery subject", Subject(domA, domB, SuffixDeliver), signedOK, OpenPolicy(), CodeWrongKind},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.policy = c.policy
			_, err := f.opener.Open(ctx, c.subject, c.raw, t0)
			if CodeOf(err) != c.code {
				t.Fatalf("got %v, want code %s", err, c.code)
			}
		})
	}
	if _, err := Seal(&oversized, f.signA); CodeOf(err) != CodeTooLarge {
		t.Fatalf("sealing an oversized envelope: %v, want %s", err, CodeTooLarge)
	}
}

// A delivery may wait in a stream for hours: its timestamp is not checked,
// and the same delivery opens twice (the receiver's counter dedups).
func TestFED_4_DeliveryExemptFromWindow(t *testing.T) {
	f := newFixture(t)
	e := newReq(domA, domB)
	e.Kind, e.ID = KindDeliver, DeliveryID(domA, 7)
	raw := f.seal(t, e)
	for range 2 {
		env, err := f.opener.Open(context.Background(), Subject(domA, domB, SuffixDeliver), raw, t0.Add(6*time.Hour))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if n, _ := env.DeliveryCounter(); n != 7 {
			t.Fatalf("counter %d, want 7", n)
		}
	}
	for _, id := range []string{domA + "/0", domA + "/07", domC + "/7", domA + "/", domA + "/-1", "7"} {
		e.ID = id
		if _, err := Seal(&e, f.signA); CodeOf(err) != CodeMalformed {
			t.Errorf("delivery id %q: %v, want %s", id, err, CodeMalformed)
		}
	}
}

func FuzzDecode(f *testing.F) {
	ks := mustKeySet(f, domA)
	e := newReq(domA, domB)
	raw, err := Seal(&e, ks.SignFederation)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	e.Kind, e.ID = KindDeliver, DeliveryID(domA, 12)
	raw2, _ := Seal(&e, ks.SignFederation)
	f.Add(raw2)
	f.Add([]byte{})
	f.Add([]byte("\x1bmlshome federation envelope\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Decode(data)
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("uncoded error %v", err)
			}
			return
		}
		// Strict: a decoded envelope has exactly one encoding.
		again, err := env.Marshal()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs")
		}
		_ = env.Verify(ks.FederationPublicKey())
	})
}

func TestErrorPayloadAndCursorReply(t *testing.T) {
	p := ErrorPayload{Code: "rate_limited", Msg: "slow down"}
	got, err := ParseErrorPayload(p.Marshal())
	if err != nil || got != p {
		t.Fatalf("error payload round trip: %+v, %v", got, err)
	}
	if _, err := ParseErrorPayload(append(p.Marshal(), 0)); CodeOf(err) != CodeMalformed {
		t.Fatalf("trailing byte: %v", err)
	}
	c := CursorReply{Processed: 5, Resume: 9}
	if got, err := ParseCursorReply(c.Marshal()); err != nil || got != c {
		t.Fatalf("cursor round trip: %+v, %v", got, err)
	}
	if _, err := ParseCursorReply(CursorReply{Processed: 9, Resume: 5}.Marshal()); CodeOf(err) != CodeMalformed {
		t.Fatalf("resume below processed: %v", err)
	}
}
