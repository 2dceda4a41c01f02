package identity

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"
)

func testCredential(t testing.TB, user, client string, seed byte) ClientCredential {
	t.Helper()
	return ClientCredential{
		UserID:       user,
		ClientID:     client,
		SignatureKey: testClientKey(t, seed).Public().(ed25519.PublicKey),
		Domain:       user[bytes.IndexByte([]byte(user), '@')+1:],
		IssuedAt:     1_700_000_000_000,
	}
}

func TestCredentialIssueVerify(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	cred := testCredential(t, "alice@hs1.test", "laptop", 1)
	signed, err := ks.IssueCredential(cred)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := ks.IssueCredential(cred)
	if !bytes.Equal(signed, again) {
		t.Fatal("issuing is not deterministic")
	}
	got, err := VerifyCredential(signed, ks.AuthPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != cred.UserID || got.ClientID != cred.ClientID || got.Domain != cred.Domain ||
		got.IssuedAt != cred.IssuedAt || !got.SignatureKey.Equal(cred.SignatureKey) {
		t.Fatalf("verified %+v, issued %+v", got, cred)
	}
	// Re-encoding the decoded credential gives the signed bytes back.
	tbs, _ := got.Marshal()
	if !bytes.Equal(tbs, signed[:len(signed)-ed25519.SignatureSize]) {
		t.Fatal("encoding is not canonical")
	}
}

func TestCredentialOtherHomeserverKeyFails(t *testing.T) {
	hs1 := testKeySet(t, "hs1.test", 1)
	hs2 := testKeySet(t, "hs2.test", 2)
	signed, err := hs1.IssueCredential(testCredential(t, "alice@hs1.test", "laptop", 1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyCredential(signed, hs2.AuthPublicKey())
	wantCode(t, err, CodeBadSignature)
	// Federation and log keys are not authentication keys.
	_, err = VerifyCredential(signed, hs1.FederationPublicKey())
	wantCode(t, err, CodeBadSignature)
}

func TestCredentialEveryByteTamperedFails(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	signed, err := ks.IssueCredential(testCredential(t, "alice@hs1.test", "laptop", 1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range signed {
		bad := bytes.Clone(signed)
		bad[i] ^= 0x01
		if _, err := VerifyCredential(bad, ks.AuthPublicKey()); err == nil {
			t.Fatalf("flipping byte %d still verifies", i)
		}
	}
	for _, bad := range [][]byte{nil, signed[:len(signed)-1], append(bytes.Clone(signed), 0)} {
		if _, err := VerifyCredential(bad, ks.AuthPublicKey()); err == nil {
			t.Fatalf("credential of %d bytes verifies", len(bad))
		}
	}
}

func TestCredentialRefusesInconsistentFields(t *testing.T) {
	ks := testKeySet(t, "hs1.test", 1)
	c := testCredential(t, "alice@hs1.test", "laptop", 1)

	c2 := c
	c2.Domain = "hs2.test"
	_, err := IssueCredential(c2, ks.auth)
	wantCode(t, err, CodeDomainMismatch)

	c3 := testCredential(t, "alice@hs2.test", "laptop", 1)
	_, err = ks.IssueCredential(c3) // another homeserver's user
	wantCode(t, err, CodeDomainMismatch)

	c4 := c
	c4.SignatureKey = c.SignatureKey[:16]
	_, err = ks.IssueCredential(c4)
	wantCode(t, err, CodeBadKey)

	c5 := c
	c5.ClientID = "has space"
	_, err = ks.IssueCredential(c5)
	wantCode(t, err, CodeBadClientID)

	c6 := c
	c6.UserID = "Alice@hs1.test"
	_, err = ks.IssueCredential(c6)
	wantCode(t, err, CodeBadUserID)
}

func TestCredentialLabelSeparatesFromBundle(t *testing.T) {
	// A bundle signature is never a credential signature: the encodings
	// start with different labels.
	ks := testKeySet(t, "hs1.test", 1)
	b, err := ks.SignBundle(Bundle{UserID: "alice@hs1.test", Domain: "hs1.test", Time: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyCredential(b, ks.AuthPublicKey())
	wantCode(t, err, CodeMalformed)
}

func FuzzDecodeCredential(f *testing.F) {
	ks := testKeySet(f, "hs1.test", 1)
	signed, _ := ks.IssueCredential(testCredential(f, "alice@hs1.test", "laptop", 1))
	f.Add(signed)
	f.Add([]byte{})
	f.Add(signed[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		cred, tbs, sig, err := DecodeCredential(data)
		if err != nil {
			if CodeOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// What decodes re-encodes to the same bytes.
		enc, err := cred.Marshal()
		if err != nil {
			t.Fatalf("decoded credential does not encode: %v", err)
		}
		if !bytes.Equal(enc, tbs) || !bytes.Equal(append(enc, sig...), data) {
			t.Fatal("decoding is not canonical")
		}
		if _, err := VerifyCredential(data, ks.AuthPublicKey()); err == nil && !bytes.Equal(data, signed) {
			t.Fatal("forged credential verifies")
		}
	})
}

func ExampleIssueCredential() {
	ks, _ := GenerateKeySet("example.org", testRand(1))
	clientKey, _, _ := ed25519.GenerateKey(testRand(2))
	signed, _ := ks.IssueCredential(ClientCredential{
		UserID:       "alice@example.org",
		ClientID:     "phone",
		SignatureKey: clientKey,
		Domain:       "example.org",
		IssuedAt:     1700000000000,
	})
	cred, err := VerifyCredential(signed, ks.AuthPublicKey())
	if err != nil {
		panic(err)
	}
	fmt.Println(cred.UserID, cred.ClientID)
	other, _ := GenerateKeySet("evil.example", testRand(3))
	_, err = VerifyCredential(signed, other.AuthPublicKey())
	fmt.Println(CodeOf(err))
	// Output:
	// alice@example.org phone
	// bad_signature
}
