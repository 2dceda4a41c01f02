package identity

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestLoadOrCreateKeySetPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	ks1, err := LoadOrCreateKeySet(dir, "hs1.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{authKeyFile, federationKeyFile, logKeyFile, queueKeyFile, domainFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode %v, want 0700", fi.Mode().Perm())
	}
	ks2, err := LoadOrCreateKeySet(dir, "hs1.test")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ks1.PublicKeys().Marshal(), ks2.PublicKeys().Marshal()) {
		t.Fatal("reloaded key set has other public keys")
	}
	// The four keys are distinct.
	p := ks1.PublicKeys()
	if bytes.Equal(p.AuthKey, p.FederationKey) || bytes.Equal(p.AuthKey, ks1.log[32:]) || bytes.Equal(p.FederationKey, ks1.log[32:]) {
		t.Error("key set reuses one Ed25519 key for two purposes")
	}
}

func TestLoadOrCreateKeySetRefusesOtherDomain(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateKeySet(dir, "hs1.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeySet(dir, "hs2.test"); err == nil {
		t.Fatal("key dir of hs1.test opened for hs2.test")
	}
}

func TestLoadOrCreateKeySetRefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateKeySet(dir, "hs1.test"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, authKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeySet(dir, "hs1.test"); err == nil {
		t.Fatal("loaded a world-readable private key")
	}
}

func TestLoadOrCreateKeySetRefusesCorruptKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateKeySet(dir, "hs1.test"); err != nil {
		t.Fatal(err)
	}
	// A queue key where an Ed25519 key belongs.
	q, err := os.ReadFile(filepath.Join(dir, queueKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, authKeyFile), q, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKeySet(dir, "hs1.test"); err == nil {
		t.Fatal("loaded an X25519 key as the authentication key")
	}
}

func TestLoadOrCreateKeySetConcurrentStartAgrees(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	out := make([][]byte, 4)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ks, err := LoadOrCreateKeySet(dir, "hs1.test")
			if err != nil {
				t.Error(err)
				return
			}
			out[i] = ks.PublicKeys().Marshal()
		}()
	}
	wg.Wait()
	for i := range out {
		if !bytes.Equal(out[0], out[i]) {
			t.Fatal("concurrent starts created different keys")
		}
	}
}

func TestLogSignerIsNoteSigner(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	if ks.LogSigner().Name() != "hs1.test" {
		t.Errorf("signer name %q", ks.LogSigner().Name())
	}
	msg, err := note.Sign(&note.Note{Text: "hs1.test\n5\nAAAA\n"}, ks.LogSigner())
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(ks.LogVerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatalf("checkpoint does not verify with LogVerifierKey: %v", err)
	}
	other := testKeySet(t, "hs1.test", 2)
	v2, _ := note.NewVerifier(other.LogVerifierKey())
	if _, err := note.Open(msg, note.VerifierList(v2)); err == nil {
		t.Fatal("checkpoint verifies with another homeserver's log key")
	}
}

func TestPublicKeysRoundTrip(t *testing.T) {
	ks := testKeySet(t, "hs1.test:8443", 1)
	enc := ks.PublicKeys().Marshal()
	if !bytes.Equal(enc, ks.PublicKeys().Marshal()) {
		t.Fatal("encoding is not deterministic")
	}
	p, err := ParsePublicKeys(enc, "hs1.test:8443")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Marshal(), enc) {
		t.Fatal("decode/encode changed the document")
	}
	if !bytes.Equal(p.AuthKey, ks.AuthPublicKey()) || !bytes.Equal(p.QueueKey, ks.QueuePublicKey()) ||
		!bytes.Equal(p.FederationKey, ks.FederationPublicKey()) || p.LogKey != ks.LogVerifierKey() {
		t.Fatal("public keys do not match the key set")
	}
	_, err = ParsePublicKeys(enc, "hs2.test")
	wantCode(t, err, CodeDomainMismatch)

	// A log key named after another domain is refused.
	other := testKeySet(t, "evil.test", 2)
	p.LogKey = other.LogVerifierKey()
	_, err = ParsePublicKeys(p.Marshal(), "")
	wantCode(t, err, CodeDomainMismatch)

	p, _ = ParsePublicKeys(enc, "")
	p.AuthKey = p.AuthKey[:31]
	_, err = ParsePublicKeys(p.Marshal(), "")
	wantCode(t, err, CodeBadKey)

	_, err = ParsePublicKeys([]byte(`{"version":2}`), "")
	wantCode(t, err, CodeUnsupportedVersion)
	_, err = ParsePublicKeys([]byte(`{`), "")
	wantCode(t, err, CodeMalformed)
}

func TestPublicKeysJSONShape(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	got := string(ks.PublicKeys().Marshal())
	for _, field := range []string{`{"version":1,"domain":"hs1.test","auth_key":"`, `","federation_key":"`, `","log_key":"hs1.test+`, `","queue_key":"`, `","queue_suite":"` + QueueSuiteName + `"}`} {
		if !bytes.Contains([]byte(got), []byte(field)) {
			t.Errorf("document %s lacks %s", got, field)
		}
	}
}

func TestGenerateKeySetDeterministicFromReader(t *testing.T) {
	a := testKeySet(t, "hs1.test", 7)
	b := testKeySet(t, "hs1.test", 7)
	if !bytes.Equal(a.PublicKeys().Marshal(), b.PublicKeys().Marshal()) {
		t.Fatal("same randomness gave different keys")
	}
	if _, err := GenerateKeySet("Bad Domain", testRand(1)); err == nil {
		t.Fatal("generated a key set for an invalid domain")
	}
}

func FuzzParsePublicKeys(f *testing.F) {
	ks := testKeySet(f, "hs1.test", 1)
	f.Add(ks.PublicKeys().Marshal())
	f.Add([]byte(`{"version":1,"domain":"x"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePublicKeys(data, "")
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// An accepted document survives a round trip through its
		// canonical encoding.
		if _, err := ParsePublicKeys(p.Marshal(), p.Domain); err != nil {
			t.Fatalf("canonical re-encoding rejected: %v", err)
		}
		if _, err := p.LogVerifier(); err != nil {
			t.Fatal(err)
		}
	})
}
