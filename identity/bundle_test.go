package identity

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func testBundle(t testing.TB, ks *KeySet, user string, clients int) Bundle {
	t.Helper()
	b := Bundle{UserID: user, Domain: ks.Domain(), Time: t0.UnixMilli()}
	for i := range clients {
		cred, err := ks.IssueCredential(testCredential(t, user, fmt.Sprintf("c%d", i), byte(i)))
		if err != nil {
			t.Fatal(err)
		}
		b.Clients = append(b.Clients, BundleClient{Credential: cred, KeyPackage: bytes.Repeat([]byte{byte(i)}, 300)})
	}
	return b
}

func TestBundleSignVerify(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	b := testBundle(t, ks, "alice@hs1.test", 3)
	b.Clients[1].KeyPackage = nil // a lookup without a claim
	signed, err := ks.SignBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := VerifyBundle(signed, ks.AuthPublicKey(), "alice@hs1.test")
	if err != nil {
		t.Fatal(err)
	}
	if vb.UserID != b.UserID || vb.Domain != b.Domain || vb.Time != b.Time || len(vb.Clients) != 3 {
		t.Fatalf("verified %+v", vb.Bundle)
	}
	for i, c := range vb.Clients {
		if !bytes.Equal(c.Credential, b.Clients[i].Credential) || !bytes.Equal(c.KeyPackage, b.Clients[i].KeyPackage) {
			t.Errorf("client %d changed", i)
		}
		if vb.Credentials[i].ClientID != fmt.Sprintf("c%d", i) || vb.Credentials[i].UserID != "alice@hs1.test" {
			t.Errorf("credential %d = %+v", i, vb.Credentials[i])
		}
	}
	again, _ := SignBundle(vb.Bundle, ks.auth)
	if !bytes.Equal(again, signed) {
		t.Fatal("re-signing the verified bundle gives other bytes")
	}
}

func TestBundleTamperedFails(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	b := testBundle(t, ks, "alice@hs1.test", 2)
	b.Clients[1].KeyPackage = []byte("kp")
	signed, err := ks.SignBundle(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range signed {
		bad := bytes.Clone(signed)
		bad[i] ^= 0x01
		if _, err := VerifyBundle(bad, ks.AuthPublicKey(), "alice@hs1.test"); err == nil {
			t.Fatalf("flipping byte %d of %d still verifies", i, len(signed))
		}
	}
	for _, n := range []int{0, 1, len(signed) - 1} {
		if _, err := VerifyBundle(signed[:n], ks.AuthPublicKey(), "alice@hs1.test"); err == nil {
			t.Fatalf("truncation to %d bytes verifies", n)
		}
	}
	_, err = VerifyBundle(append(bytes.Clone(signed), 0), ks.AuthPublicKey(), "alice@hs1.test")
	wantCode(t, err, CodeMalformed)
}

func TestBundleChecks(t *testing.T) {
	hs1 := testKeySet(t, "hs1.test", 1)
	hs2 := testKeySet(t, "hs2.test", 2)
	good := testBundle(t, hs1, "alice@hs1.test", 2)

	signed, _ := hs1.SignBundle(good)
	_, err := VerifyBundle(signed, hs2.AuthPublicKey(), "alice@hs1.test")
	wantCode(t, err, CodeBadSignature)
	_, err = VerifyBundle(signed, hs1.AuthPublicKey(), "bob@hs1.test")
	wantCode(t, err, CodeUserMismatch)

	// A genuine credential of another user of the same homeserver.
	mallory := testBundle(t, hs1, "mallory@hs1.test", 1)
	b := good
	b.Clients = append(append([]BundleClient(nil), good.Clients...), mallory.Clients[0])
	signed, _ = hs1.SignBundle(b)
	_, err = VerifyBundle(signed, hs1.AuthPublicKey(), "alice@hs1.test")
	wantCode(t, err, CodeUserMismatch)

	// A credential for alice@hs1.test signed by another homeserver.
	forged, err := IssueCredential(testCredential(t, "alice@hs1.test", "evil", 9), hs2.auth)
	if err != nil {
		t.Fatal(err)
	}
	b.Clients = append(append([]BundleClient(nil), good.Clients...), BundleClient{Credential: forged})
	signed, _ = hs1.SignBundle(b)
	_, err = VerifyBundle(signed, hs1.AuthPublicKey(), "alice@hs1.test")
	wantCode(t, err, CodeBadSignature)

	// The same client twice.
	b.Clients = append(append([]BundleClient(nil), good.Clients...), good.Clients[0])
	signed, _ = hs1.SignBundle(b)
	_, err = VerifyBundle(signed, hs1.AuthPublicKey(), "alice@hs1.test")
	wantCode(t, err, CodeMalformed)

	// hs2 cannot sign for hs1's users.
	_, err = hs2.SignBundle(good)
	wantCode(t, err, CodeDomainMismatch)
	b = good
	b.Domain = "hs2.test"
	_, err = SignBundle(b, hs2.auth)
	wantCode(t, err, CodeDomainMismatch)
}

func TestBundleFreshness(t *testing.T) {
	b := Bundle{Time: t0.UnixMilli()}
	if err := b.CheckFresh(t0.Add(time.Minute), time.Minute); err != nil {
		t.Fatal(err)
	}
	wantCode(t, b.CheckFresh(t0.Add(time.Minute+time.Millisecond), time.Minute), CodeExpired)
	wantCode(t, b.CheckFresh(t0.Add(-time.Hour), time.Minute), CodeExpired)
}

func TestBundleEmptyClientList(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	signed, err := ks.SignBundle(Bundle{UserID: "nobody@hs1.test", Domain: "hs1.test", Time: 5})
	if err != nil {
		t.Fatal(err)
	}
	vb, err := VerifyBundle(signed, ks.AuthPublicKey(), "nobody@hs1.test")
	if err != nil || len(vb.Clients) != 0 {
		t.Fatalf("VerifyBundle = %+v, %v", vb, err)
	}
}

func FuzzVerifyBundle(f *testing.F) {
	ks := testKeySet(f, "hs1.test", 1)
	signed, _ := ks.SignBundle(testBundle(f, ks, "alice@hs1.test", 2))
	f.Add(signed)
	f.Add(signed[:60])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, tbs, _, derr := decodeBundle(data)
		if derr == nil {
			enc, err := b.Marshal()
			if err == nil && !bytes.Equal(enc, tbs) {
				t.Fatal("decoding is not canonical")
			}
		}
		vb, err := VerifyBundle(data, ks.AuthPublicKey(), "alice@hs1.test")
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if !bytes.Equal(data, signed) {
			t.Fatal("forged bundle verifies")
		}
		if len(vb.Credentials) != len(vb.Clients) {
			t.Fatal("credentials and clients differ in number")
		}
	})
}

func BenchmarkVerifyBundle(b *testing.B) {
	ks := testKeySet(b, "hs1.test", 1)
	signed, err := ks.SignBundle(testBundle(b, ks, "alice@hs1.test", 5))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(signed)))
	for b.Loop() {
		if _, err := VerifyBundle(signed, ks.AuthPublicKey(), "alice@hs1.test"); err != nil {
			b.Fatal(err)
		}
	}
}
