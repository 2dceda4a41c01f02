package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

var t0 = time.UnixMilli(1_700_000_000_000)

const window = 30 * time.Second

type fakeDirectory map[string]ed25519.PublicKey

func (d fakeDirectory) lookup(id string) (ed25519.PublicKey, error) {
	if k, ok := d[id]; ok {
		return k, nil
	}
	return nil, ErrUnknownClient
}

func signedRequest(t testing.TB, method, url string, body []byte, client string, key ed25519.PrivateKey, now time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := SignRequest(req, body, client, key, now); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestSignedRequestVerifies(t *testing.T) {
	key := testClientKey(t, 1)
	dir := fakeDirectory{"laptop": key.Public().(ed25519.PublicKey)}
	body := []byte(`{"count":5}`)
	req := signedRequest(t, "POST", "https://hs1.test/v1/tokens?batch=5&x=%2F", body, "laptop", key, t0)

	// What the server sees: the request line's target, not the full URL.
	if got := req.URL.RequestURI(); got != "/v1/tokens?batch=5&x=%2F" {
		t.Fatalf("request target %q", got)
	}
	id, err := VerifyRequest("POST", req.URL.RequestURI(), body, req.Header, dir.lookup, t0.Add(2*time.Second), window)
	if err != nil || id != "laptop" {
		t.Fatalf("VerifyRequest = %q, %v", id, err)
	}
}

func TestSignedRequestOverHTTP(t *testing.T) {
	key := testClientKey(t, 1)
	dir := fakeDirectory{"laptop": key.Public().(ed25519.PublicKey)}
	var gotID string
	var gotErr error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := new(bytes.Buffer)
		body.ReadFrom(r.Body)
		gotID, gotErr = VerifyRequest(r.Method, r.RequestURI, body.Bytes(), r.Header, dir.lookup, t0, window)
	}))
	defer srv.Close()
	body := []byte("hello")
	req := signedRequest(t, "PUT", srv.URL+"/v1/queue/ack?upto=7&a=b%20c", body, "laptop", key, t0)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotErr != nil || gotID != "laptop" {
		t.Fatalf("server verified %q, %v", gotID, gotErr)
	}
}

func TestSignedRequestTamperedFails(t *testing.T) {
	key := testClientKey(t, 1)
	dir := fakeDirectory{"laptop": key.Public().(ed25519.PublicKey), "phone": testClientKey(t, 2).Public().(ed25519.PublicKey)}
	body := []byte(`{"count":5}`)
	req := signedRequest(t, "POST", "https://hs1.test/v1/tokens?batch=5", body, "laptop", key, t0)
	h := req.Header

	cases := []struct {
		name         string
		method, path string
		body         []byte
		header       http.Header
		code         string
	}{
		{"method", "PUT", "/v1/tokens?batch=5", body, h, CodeBadSignature},
		{"path", "POST", "/v1/tokenz?batch=5", body, h, CodeBadSignature},
		{"query", "POST", "/v1/tokens?batch=6", body, h, CodeBadSignature},
		{"no query", "POST", "/v1/tokens", body, h, CodeBadSignature},
		{"body", "POST", "/v1/tokens?batch=5", []byte(`{"count":6}`), h, CodeBadSignature},
		{"empty body", "POST", "/v1/tokens?batch=5", nil, h, CodeBadSignature},
		{"timestamp", "POST", "/v1/tokens?batch=5", body, with(h, HeaderTimestamp, fmt.Sprint(t0.UnixMilli()+1)), CodeBadSignature},
		{"other client", "POST", "/v1/tokens?batch=5", body, with(h, HeaderClient, "phone"), CodeBadSignature},
		{"unknown client", "POST", "/v1/tokens?batch=5", body, with(h, HeaderClient, "tablet"), CodeUnknownClient},
		{"signature", "POST", "/v1/tokens?batch=5", body, with(h, HeaderSignature, "A"+h.Get(HeaderSignature)[1:]), CodeBadSignature},
		{"short signature", "POST", "/v1/tokens?batch=5", body, with(h, HeaderSignature, h.Get(HeaderSignature)[1:]), CodeMalformed},
		{"no signature", "POST", "/v1/tokens?batch=5", body, with(h, HeaderSignature, ""), CodeMissingAuth},
		{"no headers", "POST", "/v1/tokens?batch=5", body, http.Header{}, CodeMissingAuth},
		{"bad timestamp", "POST", "/v1/tokens?batch=5", body, with(h, HeaderTimestamp, "+1700000000000"), CodeMalformed},
		{"line break in path", "POST", "/v1/tokens?batch=5\nX", body, h, CodeMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyRequest(tc.method, tc.path, tc.body, tc.header, dir.lookup, t0, window)
			wantCode(t, err, tc.code)
		})
	}
}

// with returns a copy of h with key set to v, or deleted if v is empty.
func with(h http.Header, key, v string) http.Header {
	h = h.Clone()
	if v == "" {
		h.Del(key)
	} else {
		h.Set(key, v)
	}
	return h
}

func TestSignedRequestWindow(t *testing.T) {
	key := testClientKey(t, 1)
	dir := fakeDirectory{"laptop": key.Public().(ed25519.PublicKey)}
	req := signedRequest(t, "GET", "https://hs1.test/v1/users/bob@hs2.test", nil, "laptop", key, t0)
	for _, tc := range []struct {
		now  time.Time
		code string
	}{
		{t0.Add(window), ""},
		{t0.Add(-window), ""},
		{t0.Add(window + time.Millisecond), CodeExpired},
		{t0.Add(-window - time.Millisecond), CodeExpired},
		{t0.Add(time.Hour), CodeExpired},
	} {
		_, err := VerifyRequest("GET", "/v1/users/bob@hs2.test", nil, req.Header, dir.lookup, tc.now, window)
		if tc.code == "" {
			if err != nil {
				t.Errorf("at %v: %v", tc.now.Sub(t0), err)
			}
			continue
		}
		wantCode(t, err, tc.code)
	}
}

func TestVerifyRequestLookupFailureIsInternal(t *testing.T) {
	key := testClientKey(t, 1)
	req := signedRequest(t, "GET", "https://hs1.test/x", nil, "laptop", key, t0)
	boom := errors.New("disk on fire")
	_, err := VerifyRequest("GET", "/x", nil, req.Header, func(string) (ed25519.PublicKey, error) { return nil, boom }, t0, window)
	if !errors.Is(err, boom) || CodeOf(err) != "" {
		t.Fatalf("got %v, want the internal lookup error without a client code", err)
	}
}

func TestReplayCacheRefusesSecondUse(t *testing.T) {
	key := testClientKey(t, 1)
	dir := fakeDirectory{"laptop": key.Public().(ed25519.PublicKey)}
	c := NewReplayCache(window, 100)
	req := signedRequest(t, "POST", "https://hs1.test/v1/queue/fetch", []byte("x"), "laptop", key, t0)

	accept := func(now time.Time) error {
		if _, err := VerifyRequest("POST", "/v1/queue/fetch", []byte("x"), req.Header, dir.lookup, now, window); err != nil {
			return err
		}
		return c.Check(req.Header, now)
	}
	if err := accept(t0); err != nil {
		t.Fatal(err)
	}
	wantCode(t, accept(t0.Add(time.Second)), CodeReplayed)
	wantCode(t, accept(t0.Add(window)), CodeReplayed)
	// Once the request's own time leaves the window, it is refused as
	// expired and the cache has forgotten it.
	wantCode(t, accept(t0.Add(window+time.Millisecond)), CodeExpired)
	wantCode(t, c.Check(req.Header, t0.Add(window+time.Millisecond)), CodeExpired)
	if err := c.Use([]byte("other"), t0.Add(window+time.Millisecond).UnixMilli(), t0.Add(window+time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 {
		t.Fatalf("cache holds %d entries, want 1 after expiry", c.Len())
	}

	// A fresh signature of the same request at a new time is a new request.
	req2 := signedRequest(t, "POST", "https://hs1.test/v1/queue/fetch", []byte("x"), "laptop", key, t0.Add(time.Millisecond))
	if err := c.Check(req2.Header, t0.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
}

func TestReplayCacheBounded(t *testing.T) {
	c := NewReplayCache(window, 3)
	for i := range 3 {
		if err := c.Use([]byte{byte(i)}, t0.UnixMilli()+int64(i), t0); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, c.Use([]byte{9}, t0.UnixMilli(), t0), CodeOverloaded)
	// The oldest entry expires first and frees a slot; the others stay.
	later := t0.Add(window + time.Millisecond)
	if err := c.Use([]byte{9}, later.UnixMilli(), later); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	wantCode(t, c.Use([]byte{1}, t0.UnixMilli()+1, later), CodeReplayed)
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}
}

func FuzzParseRequestAuth(f *testing.F) {
	key := testClientKey(f, 1)
	req := signedRequest(f, "POST", "https://hs1.test/v1/x", nil, "laptop", key, t0)
	f.Add(req.Header.Get(HeaderClient), req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature))
	f.Add("", "0", "")
	f.Add("a b", "-1", "====")
	f.Fuzz(func(t *testing.T, client, ts, sig string) {
		h := http.Header{}
		h.Set(HeaderClient, client)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		auth, err := ParseRequestAuth(h)
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// One spelling per value.
		if auth.ClientID != client || fmt.Sprint(auth.Timestamp) != ts || len(auth.Signature) != ed25519.SignatureSize {
			t.Fatalf("parsed %+v from %q %q %q", auth, client, ts, sig)
		}
		dir := fakeDirectory{"laptop": key.Public().(ed25519.PublicKey)}
		if _, err := VerifyRequest("POST", "/v1/x", nil, h, dir.lookup, time.UnixMilli(auth.Timestamp), window); err == nil &&
			sig != req.Header.Get(HeaderSignature) {
			t.Fatal("forged request verifies")
		}
	})
}

func BenchmarkVerifyRequest(b *testing.B) {
	key := testClientKey(b, 1)
	dir := fakeDirectory{"laptop": key.Public().(ed25519.PublicKey)}
	body := bytes.Repeat([]byte("m"), 1024)
	req := signedRequest(b, "POST", "https://hs1.test/v1/queue/fetch?from=10", body, "laptop", key, t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyRequest("POST", "/v1/queue/fetch?from=10", body, req.Header, dir.lookup, t0, window); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReplayCacheUse(b *testing.B) {
	c := NewReplayCache(window, 1<<20)
	sig := make([]byte, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		sig[0], sig[1], sig[2] = byte(i), byte(i>>8), byte(i>>16)
		now := t0.Add(time.Duration(i) * time.Microsecond)
		if err := c.Use(sig, now.UnixMilli(), now); err != nil && CodeOf(err) != CodeReplayed {
			b.Fatal(err)
		}
	}
}
