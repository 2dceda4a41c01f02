package identity

import (
	"crypto/ed25519"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// testRand returns a deterministic reader so that failures reproduce.
func testRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func testKeySet(t testing.TB, domain string, seed byte) *KeySet {
	t.Helper()
	ks, err := GenerateKeySet(domain, testRand(seed))
	if err != nil {
		t.Fatalf("GenerateKeySet(%q): %v", domain, err)
	}
	return ks
}

func testClientKey(t testing.TB, seed byte) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(testRand(100 + seed))
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// wantCode fails the test unless err is an *Error with code.
func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want code %q", code)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *Error with code %q", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("got code %q (%v), want %q", e.Code, err, code)
	}
}
