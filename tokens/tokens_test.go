package tokens

import (
	"bytes"
	"errors"
	"io"
	"math/bits"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

var t0 = time.UnixMilli(1_700_000_000_000)

func testRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func testKey(t testing.TB, seed byte) *Key {
	t.Helper()
	k, err := GenerateKey(testRand(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want *Error with code %q", err, code)
	}
	if e.Code != code {
		t.Fatalf("got code %q (%v), want %q", e.Code, err, code)
	}
}

// issue runs the whole protocol over the wire encodings and returns n
// tokens for the issuer's current key.
func issue(t testing.TB, is *Issuer, n int, seed byte) []Token {
	t.Helper()
	state, _, err := Blind(n, is.Current().PublicKey, testRand(seed))
	if err != nil {
		t.Fatal(err)
	}
	reqBytes, err := state.Request().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Server side.
	req, err := ParseIssueRequest(reqBytes)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := is.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	respBytes, err := resp.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Client side.
	resp, err = ParseIssueResponse(respBytes)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := FinalizeResponse(state, resp)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != n {
		t.Fatalf("got %d tokens, want %d", len(toks), n)
	}
	return toks
}

func TestIssueFinalizeRedeem(t *testing.T) {
	is := NewIssuer(testKey(t, 1), t0, time.Hour)
	toks := issue(t, is, 5, 10)
	for i, tok := range toks {
		enc, err := tok.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) != TokenSize {
			t.Fatalf("token encodes to %d bytes", len(enc))
		}
		parsed, err := ParseToken(enc)
		if err != nil {
			t.Fatal(err)
		}
		nonce, err := is.Redeem(parsed, t0.Add(time.Minute))
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if !bytes.Equal(nonce, tok.Nonce) {
			t.Fatalf("token %d: Redeem returned another nonce", i)
		}
	}
	// Redeem does not track spending: the same token redeems again and the
	// caller's spent set must catch it.
	if _, err := is.Redeem(toks[0], t0); err != nil {
		t.Fatal(err)
	}
}

func TestRedeemUnknownKey(t *testing.T) {
	is := NewIssuer(testKey(t, 1), t0, time.Hour)
	other := NewIssuer(testKey(t, 2), t0, time.Hour)
	tok := issue(t, other, 1, 10)[0]
	_, err := is.Redeem(tok, t0)
	wantCode(t, err, CodeUnknownKey)

	// A genuine token relabelled with this issuer's key id.
	tok.KeyID = is.Current().ID
	_, err = is.Redeem(tok, t0)
	wantCode(t, err, CodeInvalidToken)
}

func TestRedeemTamperedToken(t *testing.T) {
	is := NewIssuer(testKey(t, 1), t0, time.Hour)
	tok := issue(t, is, 1, 10)[0]
	enc, _ := tok.MarshalBinary()
	for i := range enc {
		bad := bytes.Clone(enc)
		bad[i] ^= 0x01
		parsed, err := ParseToken(bad)
		if err != nil {
			continue // header bytes
		}
		_, err = is.Redeem(parsed, t0)
		switch {
		case i < wireHeaderLen:
			wantCode(t, err, CodeUnknownKey)
		default:
			wantCode(t, err, CodeInvalidToken)
		}
	}
	// Another token's output on this token's nonce.
	tok2 := issue(t, is, 1, 11)[0]
	_, err := is.Redeem(Token{KeyID: tok.KeyID, Nonce: tok.Nonce, Output: tok2.Output}, t0)
	wantCode(t, err, CodeInvalidToken)
	_, err = is.Redeem(Token{KeyID: tok.KeyID, Nonce: tok.Nonce[:31], Output: tok.Output}, t0)
	wantCode(t, err, CodeMalformed)
}

func TestRotationGracePeriod(t *testing.T) {
	const grace = 24 * time.Hour
	k1, k2, k3 := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	is := NewIssuer(k1, t0, grace)
	old := issue(t, is, 2, 10)

	if is.RotationDue(t0.Add(7*24*time.Hour-time.Millisecond), 7*24*time.Hour) {
		t.Fatal("rotation due early")
	}
	t1 := t0.Add(7 * 24 * time.Hour)
	if !is.RotationDue(t1, 7*24*time.Hour) {
		t.Fatal("rotation not due after the period")
	}
	is.Rotate(k2, t1)

	// The old key no longer issues.
	st, blinded, err := Blind(1, k1.PublicKey(), testRand(20))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = is.Evaluate(st.KeyID(), blinded)
	wantCode(t, err, CodeUnknownKey)

	// Its tokens redeem during the grace period, inclusive, and not after.
	if _, err := is.Redeem(old[0], t1.Add(grace)); err != nil {
		t.Fatalf("previous key within grace: %v", err)
	}
	_, err = is.Redeem(old[1], t1.Add(grace+time.Millisecond))
	wantCode(t, err, CodeUnknownKey)
	if got := len(is.Keys(t1.Add(grace))); got != 2 {
		t.Fatalf("Keys within grace = %d, want 2", got)
	}
	if got := is.Keys(t1.Add(grace + time.Millisecond)); len(got) != 1 || got[0].ID != k2.ID() {
		t.Fatalf("Keys after grace = %+v", got)
	}

	// New tokens use the new key.
	fresh := issue(t, is, 1, 11)[0]
	if fresh.KeyID != k2.ID() {
		t.Fatal("token not issued under the new key")
	}
	if _, err := is.Redeem(fresh, t1.Add(30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}

	// A second rotation forgets k1 at once, even within k1's grace.
	is2 := NewIssuer(k1, t0, grace)
	is2.Rotate(k2, t1)
	is2.Rotate(k3, t1.Add(time.Hour))
	_, err = is2.Redeem(old[0], t1.Add(time.Hour))
	wantCode(t, err, CodeUnknownKey)
}

// TestBatchTokensUnrelated: tokens of one batch share nothing a server
// could use to group them at redemption.
func TestBatchTokensUnrelated(t *testing.T) {
	is := NewIssuer(testKey(t, 1), t0, time.Hour)
	toks := issue(t, is, 8, 10)
	for i := range toks {
		for j := i + 1; j < len(toks); j++ {
			a, b := toks[i], toks[j]
			if bytes.Equal(a.Nonce, b.Nonce) || bytes.Equal(a.Output, b.Output) {
				t.Fatalf("tokens %d and %d repeat a nonce or output", i, j)
			}
			// Independent uniform strings differ in about half their
			// bits; with these fixed seeds the check is deterministic.
			if d := hamming(a.Nonce, b.Nonce); d < 80 || d > 176 {
				t.Errorf("nonces %d,%d differ in %d of 256 bits", i, j, d)
			}
			if d := hamming(a.Output, b.Output); d < 192 || d > 320 {
				t.Errorf("outputs %d,%d differ in %d of 512 bits", i, j, d)
			}
		}
	}
}

func hamming(a, b []byte) int {
	n := 0
	for i := range a {
		n += bits.OnesCount8(a[i] ^ b[i])
	}
	return n
}

// TestEvaluateSeesOnlyBlindedElements: by construction the issue request
// has no field but the key id and the blinded elements, Evaluate takes
// nothing else, and what it sees does not reveal the nonces: the same
// nonces blinded twice give unrelated elements.
func TestEvaluateSeesOnlyBlindedElements(t *testing.T) {
	rt := reflect.TypeFor[IssueRequest]()
	var fields []string
	for f := range rt.Fields() {
		fields = append(fields, f.Name+" "+f.Type.String())
	}
	if want := []string{"KeyID tokens.KeyID", "Blinded [][]uint8"}; !reflect.DeepEqual(fields, want) {
		t.Fatalf("IssueRequest fields = %v, want exactly %v", fields, want)
	}
	m, _ := reflect.TypeFor[*Issuer]().MethodByName("Evaluate")
	if m.Type.NumIn() != 3 || m.Type.In(1) != reflect.TypeFor[KeyID]() || m.Type.In(2) != reflect.TypeFor[[][]byte]() {
		t.Fatalf("Evaluate takes %v, want (KeyID, [][]byte)", m.Type)
	}

	pub := testKey(t, 1).PublicKey()
	// Same nonces (same first reader bytes are nonces), different blinds.
	st1, b1, _ := Blind(1, pub, testRand(10))
	st2, b2, _ := Blind(1, pub, &fixedNonceReader{nonce: st1.nonces[0], rest: testRand(11)})
	if !bytes.Equal(st1.nonces[0], st2.nonces[0]) {
		t.Fatal("test setup: nonces differ")
	}
	if bytes.Equal(b1[0], b2[0]) {
		t.Fatal("the same nonce blinds to the same element: the issuer could recognise it")
	}
	req, _ := st1.Request().MarshalBinary()
	if bytes.Contains(req, st1.nonces[0][:8]) {
		t.Fatal("the issue request contains the nonce")
	}
}

// fixedNonceReader returns nonce first, then reads from rest.
type fixedNonceReader struct {
	nonce []byte
	rest  io.Reader
	done  bool
}

func (r *fixedNonceReader) Read(p []byte) (int, error) {
	if !r.done {
		r.done = true
		return copy(p, r.nonce), nil
	}
	return r.rest.Read(p)
}

func TestFinalizeRejectsBadEvaluation(t *testing.T) {
	is := NewIssuer(testKey(t, 1), t0, time.Hour)
	cheat := NewIssuer(testKey(t, 2), t0, time.Hour) // a key the client did not ask for
	state, blinded, err := Blind(3, is.Current().PublicKey, testRand(10))
	if err != nil {
		t.Fatal(err)
	}
	ev, proof, err := is.Evaluate(state.KeyID(), blinded)
	if err != nil {
		t.Fatal(err)
	}

	// Evaluated with another key (a tagging issuer), with its own valid proof.
	ev2, proof2, err := cheat.Evaluate(cheat.Current().ID, blinded)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Finalize(state, ev2, proof2)
	wantCode(t, err, CodeInvalidProof)
	// The other key's elements with the right proof.
	_, err = Finalize(state, ev2, proof)
	wantCode(t, err, CodeInvalidProof)
	// Elements swapped.
	_, err = Finalize(state, [][]byte{ev[1], ev[0], ev[2]}, proof)
	wantCode(t, err, CodeInvalidProof)
	// Proof changed.
	badProof := bytes.Clone(proof)
	badProof[0] ^= 1
	if _, err = Finalize(state, ev, badProof); CodeOf(err) != CodeInvalidProof && CodeOf(err) != CodeMalformed {
		t.Fatalf("tampered proof: %v", err)
	}
	// Too few elements.
	_, err = Finalize(state, ev[:2], proof)
	wantCode(t, err, CodeInvalidProof)
	// Response for another key id.
	_, err = FinalizeResponse(state, IssueResponse{KeyID: cheat.Current().ID, Evaluated: ev, Proof: proof})
	wantCode(t, err, CodeInvalidProof)
	// And the genuine one still works.
	if _, err := Finalize(state, ev, proof); err != nil {
		t.Fatal(err)
	}
}

func TestEvaluateRejectsBadBatch(t *testing.T) {
	is := NewIssuer(testKey(t, 1), t0, time.Hour)
	id := is.Current().ID
	_, _, err := is.Evaluate(id, nil)
	wantCode(t, err, CodeBadBatch)
	_, _, err = is.Evaluate(id, make([][]byte, MaxBatch+1))
	wantCode(t, err, CodeBadBatch)
	_, _, err = is.Evaluate(id, [][]byte{make([]byte, ElementSize)}) // identity
	wantCode(t, err, CodeMalformed)
	_, _, err = is.Evaluate(id, [][]byte{bytes.Repeat([]byte{0xff}, ElementSize)}) // not canonical
	wantCode(t, err, CodeMalformed)
	_, _, err = is.Evaluate(id, [][]byte{{1, 2, 3}})
	wantCode(t, err, CodeMalformed)
	_, _, err = Blind(0, is.Current().PublicKey, testRand(1))
	wantCode(t, err, CodeBadBatch)
	_, _, err = Blind(1, make([]byte, PublicKeySize), testRand(1))
	wantCode(t, err, CodeMalformed)
}

func TestKeyMarshalRoundTrip(t *testing.T) {
	k := testKey(t, 1)
	if k.ID() != KeyIDOf(k.PublicKey()) {
		t.Fatal("key id is not derived from the public key")
	}
	enc, err := MarshalKey(k)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := UnmarshalKey(enc)
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID() != k.ID() || !bytes.Equal(k2.PublicKey(), k.PublicKey()) {
		t.Fatal("reloaded key differs")
	}
	// Tokens issued before the reload redeem after it.
	tok := issue(t, NewIssuer(k, t0, time.Hour), 1, 10)[0]
	if _, err := NewIssuer(k2, t0, time.Hour).Redeem(tok, t0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(testKey(t, 1).PublicKey(), k.PublicKey()) {
		t.Fatal("key generation does not follow its reader")
	}
	if bytes.Equal(testKey(t, 2).PublicKey(), k.PublicKey()) {
		t.Fatal("two seeds gave one key")
	}
	_, err = UnmarshalKey(append([]byte{keyVersion}, make([]byte, 32)...)) // zero scalar
	wantCode(t, err, CodeMalformed)
	_, err = UnmarshalKey(append([]byte{2}, enc[1:]...))
	wantCode(t, err, CodeUnsupportedVersion)
	_, err = UnmarshalKey(enc[:20])
	wantCode(t, err, CodeMalformed)
}

func TestIssuerStateRoundTrip(t *testing.T) {
	const grace = time.Hour
	is := NewIssuer(testKey(t, 1), t0, grace)
	old := issue(t, is, 1, 10)[0]
	for _, rotate := range []bool{false, true} {
		if rotate {
			is.Rotate(testKey(t, 2), t0.Add(time.Minute))
		}
		st, err := is.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		re, err := LoadIssuer(st, grace)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(re.Keys(t0.Add(time.Minute)), is.Keys(t0.Add(time.Minute))) {
			t.Fatalf("rotate=%v: reloaded keys differ", rotate)
		}
		if _, err := re.Redeem(old, t0.Add(time.Minute)); err != nil {
			t.Fatalf("rotate=%v: %v", rotate, err)
		}
		if re.RotationDue(t0.Add(time.Minute+time.Hour-time.Millisecond), time.Hour) != is.RotationDue(t0.Add(time.Minute+time.Hour-time.Millisecond), time.Hour) {
			t.Fatal("rotation schedule not restored")
		}
		st2, _ := re.MarshalState()
		if !bytes.Equal(st, st2) {
			t.Fatal("state encoding not stable")
		}
	}
	_, err := LoadIssuer([]byte{1, 2, 3}, grace)
	wantCode(t, err, CodeMalformed)
}

func TestWireRoundTrip(t *testing.T) {
	is := NewIssuer(testKey(t, 1), t0, time.Hour)
	state, _, _ := Blind(3, is.Current().PublicKey, testRand(1))
	req := state.Request()
	enc, _ := req.MarshalBinary()
	got, err := ParseIssueRequest(enc)
	if err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("request round trip: %v", err)
	}
	resp, _ := is.Issue(req)
	enc, _ = resp.MarshalBinary()
	gotResp, err := ParseIssueResponse(enc)
	if err != nil || !reflect.DeepEqual(gotResp, resp) {
		t.Fatalf("response round trip: %v", err)
	}
	// Kinds are not interchangeable.
	_, err = ParseIssueRequest(enc)
	wantCode(t, err, CodeMalformed)
	_, err = ParseToken(enc)
	wantCode(t, err, CodeMalformed)
	_, err = ParseIssueRequest(append(enc[:0:0], 9))
	wantCode(t, err, CodeMalformed)
}

func FuzzParseToken(f *testing.F) {
	is := NewIssuer(testKey(f, 1), t0, time.Hour)
	tok := issue(f, is, 1, 10)[0]
	enc, _ := tok.MarshalBinary()
	f.Add(enc)
	f.Add(enc[:50])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := ParseToken(data)
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		re, err := tk.MarshalBinary()
		if err != nil || !bytes.Equal(re, data) {
			t.Fatal("token decoding is not canonical")
		}
		if _, err := is.Redeem(tk, t0); err == nil && !bytes.Equal(data, enc) {
			t.Fatal("forged token redeems")
		} else if err != nil && CodeOf(err) == "" {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func FuzzParseIssueRequest(f *testing.F) {
	is := NewIssuer(testKey(f, 1), t0, time.Hour)
	state, _, _ := Blind(2, is.Current().PublicKey, testRand(1))
	enc, _ := state.Request().MarshalBinary()
	f.Add(enc)
	f.Add(enc[:12])
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ParseIssueRequest(data)
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		re, err := req.MarshalBinary()
		if err != nil || !bytes.Equal(re, data) {
			t.Fatal("request decoding is not canonical")
		}
		if _, _, err := is.Evaluate(req.KeyID, req.Blinded); err != nil && CodeOf(err) == "" {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func FuzzParseIssueResponse(f *testing.F) {
	is := NewIssuer(testKey(f, 1), t0, time.Hour)
	state, _, _ := Blind(2, is.Current().PublicKey, testRand(1))
	resp, _ := is.Issue(state.Request())
	enc, _ := resp.MarshalBinary()
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseIssueResponse(data)
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		re, err := r.MarshalBinary()
		if err != nil || !bytes.Equal(re, data) {
			t.Fatal("response decoding is not canonical")
		}
		if _, err := FinalizeResponse(state, r); err != nil && CodeOf(err) == "" {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func BenchmarkRedeem(b *testing.B) {
	is := NewIssuer(testKey(b, 1), t0, time.Hour)
	tok := issue(b, is, 1, 10)[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := is.Redeem(tok, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvaluate10(b *testing.B) {
	is := NewIssuer(testKey(b, 1), t0, time.Hour)
	state, blinded, _ := Blind(10, is.Current().PublicKey, testRand(1))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := is.Evaluate(state.KeyID(), blinded); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindFinalize10(b *testing.B) {
	is := NewIssuer(testKey(b, 1), t0, time.Hour)
	pub := is.Current().PublicKey
	state, blinded, _ := Blind(10, pub, testRand(1))
	ev, proof, _ := is.Evaluate(state.KeyID(), blinded)
	b.ReportAllocs()
	for b.Loop() {
		st, _, err := Blind(10, pub, testRand(1))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Finalize(st, ev, proof); err != nil {
			b.Fatal(err)
		}
	}
}
