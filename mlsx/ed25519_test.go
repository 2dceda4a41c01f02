package mlsx

import (
	"crypto/ed25519"
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"testing"

	"filippo.io/edwards25519"
	"github.com/thomas-vilte/mls-go/ciphersuite"
)

// edgeKeys are public key encodings that implementations disagree on:
// the eight points of small order, and non-canonical encodings (y ≥ p,
// or x = 0 with the sign bit set), each with both sign bits.
func edgeKeys(t testing.TB) [][]byte {
	var keys [][]byte
	for _, h := range []string{
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	} {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, b)
	}
	// y = 0 … 20 and y = p … p+18 (p = 2^255 − 19), little-endian.
	for k := range 21 {
		y := make([]byte, 32)
		y[0] = byte(k)
		keys = append(keys, y)
		if k <= 18 {
			p := make([]byte, 32)
			for i := range p {
				p[i] = 0xff
			}
			p[31] = 0x7f
			p[0] = 0xed + byte(k) // p = 0x7fff…ffed
			keys = append(keys, p)
		}
	}
	// y = −1 (order 2).
	m := make([]byte, 32)
	for i := range m {
		m[i] = 0xff
	}
	m[31], m[0] = 0x7f, 0xec
	keys = append(keys, m)
	var out [][]byte
	for _, k := range keys {
		out = append(out, k)
		s := append([]byte(nil), k...)
		s[31] ^= 0x80
		out = append(out, s)
	}
	return out
}

// agree fails the test unless verifyEd25519 decides (pub, msg, sig) as
// crypto/ed25519 does, on a first call and on a second one (key cached).
func agree(t testing.TB, what string, pub, msg, sig []byte) bool {
	t.Helper()
	want := len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
	for _, pass := range []string{"first", "cached"} {
		if got := verifyEd25519(pub, msg, sig); got != want {
			t.Errorf("%s (%s call): verifyEd25519 = %v, crypto/ed25519 = %v\npub %x\nsig %x", what, pass, got, want, pub, sig)
			return want
		}
	}
	return want
}

// The Ed25519 check accepts and refuses exactly what crypto/ed25519 does:
// valid signatures, random single-bit changes of key, message and
// signature, S + ℓ (non-canonical), the top bits of S, wrong lengths, and
// keys and R values of small order or in non-canonical encodings.
func TestVerifyEd25519MatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seed := make([]byte, ed25519.SeedSize)
	valid := 0
	for i := range 40 {
		for j := range seed {
			seed[j] = byte(rng.Uint32())
		}
		priv := ed25519.NewKeyFromSeed(seed)
		pub := priv.Public().(ed25519.PublicKey)
		msg := make([]byte, rng.IntN(300))
		for j := range msg {
			msg[j] = byte(rng.Uint32())
		}
		sig := ed25519.Sign(priv, msg)
		if agree(t, "valid", pub, msg, sig) {
			valid++
		}
		for range 8 {
			for _, b := range [][]byte{pub, msg, sig} {
				if len(b) == 0 {
					continue
				}
				k := rng.IntN(len(b) * 8)
				b[k/8] ^= 1 << (k % 8)
				agree(t, "one bit changed", pub, msg, sig)
				b[k/8] ^= 1 << (k % 8)
			}
		}
		// S + ℓ: the same scalar, not canonically encoded.
		s, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
		if err != nil {
			t.Fatal(err)
		}
		high := addL(s.Bytes())
		if high != nil {
			if agree(t, "S + ℓ", pub, msg, append(append([]byte(nil), sig[:32]...), high...)) {
				t.Error("S + ℓ accepted")
			}
		}
		top := append([]byte(nil), sig...)
		top[63] |= 0x80 >> (i % 3)
		agree(t, "top bits of S", pub, msg, top)
		agree(t, "short signature", pub, msg, sig[:63])
		agree(t, "long signature", pub, msg, append(append([]byte(nil), sig...), 0))
		if verifyEd25519(pub[:31], msg, sig) {
			t.Error("31-byte key accepted")
		}
	}
	if valid != 40 {
		t.Fatalf("%d of 40 valid signatures accepted", valid)
	}
	edges := edgeKeys(t)
	msg := []byte("edge")
	zero := make([]byte, 32)
	accepted := 0
	for _, pub := range edges {
		for _, r := range edges {
			if agree(t, "edge key, edge R, S = 0", pub, msg, append(append([]byte(nil), r...), zero...)) {
				accepted++
			}
		}
		random := make([]byte, 64)
		for j := range random {
			random[j] = byte(rng.Uint32())
		}
		random[63] &= 0x0f
		agree(t, "edge key, random signature", pub, msg, random)
	}
	// The identity key with R = identity and S = 0 satisfies the
	// cofactorless equation: crypto/ed25519 accepts it, so must we.
	if accepted == 0 {
		t.Error("no edge case accepted by either: the edge keys are not exercised")
	}
}

// addL returns the 32-byte little-endian encoding of s + ℓ, or nil if it
// does not fit under 2^253 (the top three bits must stay clear, or the
// check of those bits would refuse it before the canonical-S check).
func addL(s []byte) []byte {
	l := []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	out := make([]byte, 32)
	carry := 0
	for i := range 32 {
		v := int(s[i]) + int(l[i]) + carry
		out[i], carry = byte(v), v>>8
	}
	if carry != 0 || out[31]&224 != 0 {
		return nil
	}
	return out
}

// useKeyCache makes verifyEd25519 use a cache of generations of size
// keys for the rest of the test.
func useKeyCache(t *testing.T, size int) *edKeyCache {
	c, old := newEdKeyCache(size), edKeys
	edKeys = c
	t.Cleanup(func() { edKeys = old })
	return c
}

type signedMsg struct{ pub, msg, sig []byte }

// signedMsgs returns n messages signed by n keys from a seeded generator.
func signedMsgs(n int, stream uint64) []signedMsg {
	rng := rand.New(rand.NewPCG(3, stream))
	seed := make([]byte, ed25519.SeedSize)
	out := make([]signedMsg, n)
	for i := range out {
		for j := range seed {
			seed[j] = byte(rng.Uint32())
		}
		priv := ed25519.NewKeyFromSeed(seed)
		msg := []byte{byte(i), byte(i >> 8)}
		out[i] = signedMsg{priv.Public().(ed25519.PublicKey), msg, ed25519.Sign(priv, msg)}
	}
	return out
}

// The key cache stays within two generations, and keys pushed out of it
// still verify (decoded again), as do changed signatures not.
func TestEdKeyCacheBounded(t *testing.T) {
	c := useKeyCache(t, 64)
	msgs := signedMsgs(3*64+10, 4)
	for _, m := range msgs {
		if !verifyEd25519(m.pub, m.msg, m.sig) {
			t.Fatal("valid signature refused")
		}
		if n := c.len(); n > 2*64 {
			t.Fatalf("cache holds %d keys, bound %d", n, 2*64)
		}
	}
	for _, m := range []signedMsg{msgs[0], msgs[len(msgs)-1]} {
		if !verifyEd25519(m.pub, m.msg, m.sig) {
			t.Error("signature by a key evicted or kept no longer verifies")
		}
		m.sig[0] ^= 1
		if verifyEd25519(m.pub, m.msg, m.sig) {
			t.Error("changed signature verifies")
		}
		m.sig[0] ^= 1
	}
}

// A key in use stays in the cache while one-off keys stream through it:
// it is decoded once, each one-off key once.
func TestEdKeyCacheKeepsKeysInUse(t *testing.T) {
	c := useKeyCache(t, 8)
	msgs := signedMsgs(101, 6)
	used, oneOff := msgs[0], msgs[1:]
	for i, m := range oneOff {
		if i%4 == 0 && !verifyEd25519(used.pub, used.msg, used.sig) {
			t.Fatal("valid signature refused")
		}
		if !verifyEd25519(m.pub, m.msg, m.sig) {
			t.Fatal("valid signature refused")
		}
	}
	if got, want := c.decoded.Load(), int64(1+len(oneOff)); got != want {
		t.Fatalf("%d keys decoded, want %d (the key in use once)", got, want)
	}
}

// Checks running at once, over more keys than the cache holds, each get
// the right answer (run with -race: make test does).
func TestEdKeyCacheConcurrent(t *testing.T) {
	useKeyCache(t, 16)
	msgs := signedMsgs(100, 5)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				m := msgs[(i*7+g*13)%len(msgs)]
				other := msgs[(i*7+g*13+1)%len(msgs)]
				if !verifyEd25519(m.pub, m.msg, m.sig) {
					errs <- "valid signature refused"
					return
				}
				if verifyEd25519(other.pub, m.msg, m.sig) {
					errs <- "signature accepted under another key"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// The suite's Ed25519 path agrees with mls-go's VerifyWithLabel on
// signatures made by mls-go's SignWithLabel, and on changed ones.
func TestSuiteVerifyMatchesMLSGo(t *testing.T) {
	s, ok := suiteFor(SuiteX25519AES128)
	if !ok {
		t.Fatal("suite 1 unsupported")
	}
	_, edPriv, err := ed25519.GenerateKey(nil)
	priv := ciphersuite.NewEd25519SignaturePrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.PublicKey().AsSlice()
	for i, content := range [][]byte{nil, []byte("x"), make([]byte, 1000)} {
		sig, err := ciphersuite.SignWithLabel(priv, "LeafNodeTBS", content)
		if err != nil {
			t.Fatal(err)
		}
		for _, label := range []string{"LeafNodeTBS", "KeyPackageTBS"} {
			for _, flip := range []bool{false, true} {
				sg := append([]byte(nil), sig.AsSlice()...)
				if flip {
					sg[i] ^= 1
				}
				want := ciphersuite.VerifyWithLabel(ciphersuite.NewMLSSignaturePublicKey(pub, ciphersuite.ED25519), label, content, ciphersuite.NewSignature(sg)) == nil
				if got := s.verify(pub, label, content, sg); got != want {
					t.Errorf("content %d, label %s, changed %v: suite.verify = %v, mls-go = %v", i, label, flip, got, want)
				}
				if want != (label == "LeafNodeTBS" && !flip) {
					t.Errorf("content %d, label %s, changed %v: mls-go says %v", i, label, flip, want)
				}
			}
		}
	}
}

// FuzzVerifyEd25519 compares the check with crypto/ed25519 on any key,
// message and signature.
func FuzzVerifyEd25519(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	msg := []byte("fuzz")
	f.Add([]byte(priv.Public().(ed25519.PublicKey)), msg, ed25519.Sign(priv, msg))
	for _, k := range edgeKeys(f) {
		f.Add(k, msg, append(append([]byte(nil), k...), make([]byte, 32)...))
	}
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		agree(t, "fuzz", pub, msg, sig)
	})
}

// BenchmarkVerifyEd25519 compares crypto/ed25519.Verify with the check
// through a remembered key.
func BenchmarkVerifyEd25519(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	msg := make([]byte, 150)
	sig := ed25519.Sign(priv, msg)
	b.Run("crypto-ed25519", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("remembered-key", func(b *testing.B) {
		for b.Loop() {
			if !verifyEd25519(pub, msg, sig) {
				b.Fatal("refused")
			}
		}
	})
}
