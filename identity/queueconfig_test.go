package identity

import (
	"bytes"
	"testing"
)

func testQueueID(seed byte) []byte {
	id := make([]byte, 32)
	for i := range id {
		id[i] = seed + byte(i)
	}
	return id
}

func TestQueueConfigSealOpen(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	qc := QueueConfig{Domain: "hs1.test", QueueID: testQueueID(1)}
	sealed, err := SealQueueConfig(qc, ks.PublicKeys().QueueKey, testRand(10))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ks.OpenQueueConfig(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if got.Domain != qc.Domain || !bytes.Equal(got.QueueID, qc.QueueID) {
		t.Fatalf("opened %+v, sealed %+v", got, qc)
	}
	d, err := SealedQueueConfigDomain(sealed)
	if err != nil || d != "hs1.test" {
		t.Fatalf("SealedQueueConfigDomain = %q, %v", d, err)
	}
}

// TestQueueConfigUnlinkable: two KeyPackages of one client carry sealed
// configs that share nothing but the version and the domain.
func TestQueueConfigUnlinkable(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	qc := QueueConfig{Domain: "hs1.test", QueueID: testQueueID(1)}
	a, err := SealQueueConfig(qc, ks.QueuePublicKey(), testRand(10))
	if err != nil {
		t.Fatal(err)
	}
	b, err := SealQueueConfig(qc, ks.QueuePublicKey(), testRand(11))
	if err != nil {
		t.Fatal(err)
	}
	hdr := len(sealedHeader("hs1.test"))
	if !bytes.Equal(a[:hdr], b[:hdr]) {
		t.Fatal("headers differ")
	}
	if len(a) != len(b) {
		t.Fatal("lengths differ")
	}
	same := 0
	for i := hdr; i < len(a); i++ {
		if a[i] == b[i] {
			same++
		}
	}
	// Independent random bytes agree at about 1 position in 256.
	if same > 4 {
		t.Fatalf("two seals of one config agree in %d of %d bytes", same, len(a)-hdr)
	}
	// The length does not depend on the queue id's length either.
	short, _ := SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: testQueueID(1)[:MinQueueIDLen]}, ks.QueuePublicKey(), testRand(12))
	long, _ := SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: bytes.Repeat([]byte{7}, MaxQueueIDLen)}, ks.QueuePublicKey(), testRand(13))
	if len(short) != len(a) || len(long) != len(a) {
		t.Fatalf("sealed lengths %d, %d, %d differ with queue id length", len(short), len(a), len(long))
	}
	// Nor does the queue id appear in the clear.
	if bytes.Contains(a, qc.QueueID[:8]) {
		t.Fatal("queue id visible in sealed bytes")
	}
}

func TestQueueConfigOtherHomeserverCannotOpen(t *testing.T) {
	hs1 := testKeySet(t, "hs1.test", 1)
	hs2 := testKeySet(t, "hs2.test", 2)
	sealed, err := SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: testQueueID(1)}, hs1.QueuePublicKey(), testRand(10))
	if err != nil {
		t.Fatal(err)
	}
	_, err = hs2.OpenQueueConfig(sealed)
	wantCode(t, err, CodeWrongHomeserver)

	// Relabelled with hs2's domain, it does not decrypt: the domain is
	// bound into the HPKE context.
	swapped := append(sealedHeader("hs2.test"), sealed[len(sealedHeader("hs1.test")):]...)
	_, err = hs2.OpenQueueConfig(swapped)
	wantCode(t, err, CodeOpenFailed)

	// Sealed to hs2's key but claiming hs1: hs1 cannot open it.
	misdirected, err := SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: testQueueID(1)}, hs2.QueuePublicKey(), testRand(11))
	if err != nil {
		t.Fatal(err)
	}
	_, err = hs1.OpenQueueConfig(misdirected)
	wantCode(t, err, CodeOpenFailed)

	// A homeserver that rotated its queue key under the same domain.
	hs1b := testKeySet(t, "hs1.test", 3)
	_, err = hs1b.OpenQueueConfig(sealed)
	wantCode(t, err, CodeOpenFailed)
}

func TestQueueConfigEveryByteTamperedFails(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	sealed, err := SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: testQueueID(1)}, ks.QueuePublicKey(), testRand(10))
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x20
		if _, err := ks.OpenQueueConfig(bad); err == nil {
			t.Fatalf("flipping byte %d still opens", i)
		}
	}
}

func TestQueueConfigRefusesBadInput(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	_, err := SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: make([]byte, MinQueueIDLen-1)}, ks.QueuePublicKey(), testRand(1))
	wantCode(t, err, CodeBadQueueID)
	_, err = SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: make([]byte, MaxQueueIDLen+1)}, ks.QueuePublicKey(), testRand(1))
	wantCode(t, err, CodeBadQueueID)
	_, err = SealQueueConfig(QueueConfig{Domain: "HS1", QueueID: testQueueID(1)}, ks.QueuePublicKey(), testRand(1))
	wantCode(t, err, CodeBadDomain)
	_, err = SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: testQueueID(1)}, ks.QueuePublicKey()[:31], testRand(1))
	wantCode(t, err, CodeBadKey)
	_, err = ks.OpenQueueConfig([]byte{2, 0, 1, 'x'})
	wantCode(t, err, CodeUnsupportedVersion)
	_, err = ks.OpenQueueConfig(nil)
	wantCode(t, err, CodeMalformed)
}

func FuzzOpenQueueConfig(f *testing.F) {
	ks := testKeySet(f, "hs1.test", 1)
	sealed, _ := SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: testQueueID(1)}, ks.QueuePublicKey(), testRand(10))
	f.Add(sealed)
	f.Add(sealed[:20])
	f.Add([]byte{1, 0, 8, 'h', 's', '2', '.', 't', 'e', 's', 't'})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, derr := SealedQueueConfigDomain(data)
		qc, err := ks.OpenQueueConfig(data)
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if derr != nil || d != "hs1.test" || qc.Domain != "hs1.test" {
			t.Fatalf("opened a config for %q / %q (%v)", qc.Domain, d, derr)
		}
		if len(qc.QueueID) < MinQueueIDLen || len(qc.QueueID) > MaxQueueIDLen {
			t.Fatalf("opened queue id of %d bytes", len(qc.QueueID))
		}
	})
}

func BenchmarkOpenQueueConfig(b *testing.B) {
	ks := testKeySet(b, "hs1.test", 1)
	sealed, _ := SealQueueConfig(QueueConfig{Domain: "hs1.test", QueueID: testQueueID(1)}, ks.QueuePublicKey(), testRand(10))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ks.OpenQueueConfig(sealed); err != nil {
			b.Fatal(err)
		}
	}
}
