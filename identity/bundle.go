package identity

import (
	"crypto/ed25519"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// bundleLabel starts every encoded bundle; see credentialLabel.
const bundleLabel = "mlshome directory bundle"

// BundleVersion is the version of the bundle encoding.
const BundleVersion = 1

// Bundle limits. A lookup of one user returns at most MaxBundleClients
// clients, each with at most one KeyPackage of MaxKeyPackageSize bytes.
const (
	MaxBundleClients  = 256
	MaxKeyPackageSize = 64 << 10
	MaxBundleSize     = 1 << 20
)

// Bundle is a homeserver's signed answer to a directory lookup or claim for
// one of its users (GUC-3): the user's clients with their credentials and,
// for a claim, one KeyPackage each, at a time. The homeserver signs it with
// its authentication key, the key that also signed every credential inside.
//
// Encoding (the bytes signed), all lengths big-endian:
//
//	opaque label<0..255> = "mlshome directory bundle"
//	uint8  version = 1
//	opaque user_id<0..2^16-1>
//	opaque domain<0..2^16-1>
//	uint64 time                       (unix milliseconds)
//	uint16 client_count
//	client_count times:
//	    opaque credential<0..2^16-1>  (a signed ClientCredential)
//	    opaque key_package<0..2^32-1> (empty for a lookup)
//
// followed, in the signed form, by the 64-byte Ed25519 signature over
// everything before it. Clients appear in the order given to [SignBundle];
// a client id may appear only once.
type Bundle struct {
	// UserID is the user looked up, "name@domain".
	UserID string
	// Domain is the signing homeserver; it equals the domain of UserID.
	Domain string
	// Clients are the user's clients.
	Clients []BundleClient
	// Time is when the homeserver answered, in unix milliseconds.
	Time int64
}

// BundleClient is one client in a [Bundle].
type BundleClient struct {
	// Credential is the signed [ClientCredential] bytes, as issued.
	Credential []byte
	// KeyPackage is a claimed MLS KeyPackage (opaque here), or empty.
	KeyPackage []byte
}

// VerifiedBundle is a [Bundle] whose signature and credentials verified,
// with the decoded credentials in the order of Bundle.Clients.
type VerifiedBundle struct {
	Bundle
	// Credentials[i] is the decoded Clients[i].Credential.
	Credentials []ClientCredential
}

// CheckFresh reports a [CodeExpired] error if b.Time is more than maxAge
// away from now, in either direction.
func (b Bundle) CheckFresh(now time.Time, maxAge time.Duration) error {
	d := time.Duration(now.UnixMilli()-b.Time) * time.Millisecond
	if d > maxAge || d < -maxAge {
		return errorf(CodeExpired, "bundle time is %v away from now (max %v)", d, maxAge)
	}
	return nil
}

// Marshal returns the canonical encoding of b, the bytes the signature
// covers. It checks the shape only (ids, sizes, counts); it does not verify
// the credentials inside.
func (b Bundle) Marshal() ([]byte, error) {
	uid, err := ParseUserID(b.UserID)
	if err != nil {
		return nil, err
	}
	if b.Domain != uid.Domain {
		return nil, errorf(CodeDomainMismatch, "bundle domain %q is not the domain of %q", b.Domain, b.UserID)
	}
	if b.Time < 0 {
		return nil, errorf(CodeMalformed, "negative bundle time")
	}
	if len(b.Clients) > MaxBundleClients {
		return nil, errorf(CodeMalformed, "more than %d clients", MaxBundleClients)
	}
	var bb cryptobyte.Builder
	addLabel(&bb, bundleLabel, BundleVersion)
	addU16Bytes(&bb, []byte(b.UserID))
	addU16Bytes(&bb, []byte(b.Domain))
	bb.AddUint64(uint64(b.Time))
	bb.AddUint16(uint16(len(b.Clients)))
	for i, c := range b.Clients {
		if len(c.Credential) == 0 || len(c.Credential) > MaxCredentialSize {
			return nil, errorf(CodeMalformed, "client %d: credential must be 1 to %d bytes", i, MaxCredentialSize)
		}
		if len(c.KeyPackage) > MaxKeyPackageSize {
			return nil, errorf(CodeMalformed, "client %d: key package larger than %d bytes", i, MaxKeyPackageSize)
		}
		addU16Bytes(&bb, c.Credential)
		addU32Bytes(&bb, c.KeyPackage)
	}
	out, err := bb.Bytes()
	if err != nil {
		return nil, err
	}
	if len(out)+ed25519.SignatureSize > MaxBundleSize {
		return nil, errorf(CodeMalformed, "bundle larger than %d bytes", MaxBundleSize)
	}
	return out, nil
}

// SignBundle returns the signed bundle: the canonical encoding of b followed
// by authKey's signature over it. Signing is deterministic.
func SignBundle(b Bundle, authKey ed25519.PrivateKey) ([]byte, error) {
	tbs, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	return append(tbs, ed25519.Sign(authKey, tbs)...), nil
}

// decodeBundle parses a signed bundle without verifying anything but its
// shape, and returns the signed part and the signature.
func decodeBundle(signed []byte) (Bundle, []byte, []byte, *Error) {
	if len(signed) > MaxBundleSize {
		return Bundle{}, nil, nil, errorf(CodeMalformed, "bundle larger than %d bytes", MaxBundleSize)
	}
	s := cryptobyte.String(signed)
	if e := readLabel(&s, bundleLabel, BundleVersion); e != nil {
		return Bundle{}, nil, nil, e
	}
	var b Bundle
	var t uint64
	var n uint16
	if !readU16String(&s, &b.UserID) || !readU16String(&s, &b.Domain) ||
		!s.ReadUint64(&t) || !s.ReadUint16(&n) {
		return Bundle{}, nil, nil, errorf(CodeMalformed, "bundle truncated")
	}
	b.Time = int64(t)
	if b.Time < 0 {
		return Bundle{}, nil, nil, errorf(CodeMalformed, "negative bundle time")
	}
	if n > MaxBundleClients {
		return Bundle{}, nil, nil, errorf(CodeMalformed, "more than %d clients", MaxBundleClients)
	}
	if n > 0 {
		b.Clients = make([]BundleClient, n)
	}
	for i := range b.Clients {
		c := &b.Clients[i]
		if !readU16Bytes(&s, &c.Credential) || !readU32Bytes(&s, &c.KeyPackage) {
			return Bundle{}, nil, nil, errorf(CodeMalformed, "bundle client %d truncated", i)
		}
		if len(c.Credential) == 0 || len(c.Credential) > MaxCredentialSize || len(c.KeyPackage) > MaxKeyPackageSize {
			return Bundle{}, nil, nil, errorf(CodeMalformed, "bundle client %d: field size out of range", i)
		}
		if len(c.KeyPackage) == 0 {
			c.KeyPackage = nil
		}
	}
	if len(s) != ed25519.SignatureSize {
		return Bundle{}, nil, nil, errorf(CodeMalformed, "bundle signature must be %d bytes, got %d", ed25519.SignatureSize, len(s))
	}
	k := len(signed) - ed25519.SignatureSize
	return b, signed[:k], signed[k:], nil
}

// VerifyBundle decodes a signed bundle and checks, in order: the encoding
// ([CodeMalformed], [CodeUnsupportedVersion]); the signature with authPub,
// the authentication key of the user's homeserver ([CodeBadSignature]); that
// the bundle is for expectedUserID ([CodeUserMismatch]) and its domain is that
// user's domain ([CodeDomainMismatch]); and every credential inside: it
// verifies with authPub, names the bundle's user ([CodeUserMismatch]) and
// domain, and no client id appears twice ([CodeMalformed]). It does not check
// Time; call [Bundle.CheckFresh]. Nor does it look inside KeyPackages: the
// MLS layer must check that each KeyPackage's leaf signature key is the
// credential's SignatureKey, or whatever binding the client protocol uses.
func VerifyBundle(signed []byte, authPub ed25519.PublicKey, expectedUserID string) (*VerifiedBundle, error) {
	if len(authPub) != ed25519.PublicKeySize {
		return nil, errorf(CodeBadKey, "authentication key must be %d bytes", ed25519.PublicKeySize)
	}
	b, tbs, sig, e := decodeBundle(signed)
	if e != nil {
		return nil, e
	}
	if !ed25519.Verify(authPub, tbs, sig) {
		return nil, errorf(CodeBadSignature, "bundle signature does not verify")
	}
	if b.UserID != expectedUserID {
		return nil, errorf(CodeUserMismatch, "bundle is for %q, not %q", b.UserID, expectedUserID)
	}
	uid, err := ParseUserID(b.UserID)
	if err != nil {
		return nil, err
	}
	if b.Domain != uid.Domain {
		return nil, errorf(CodeDomainMismatch, "bundle domain %q is not the domain of %q", b.Domain, b.UserID)
	}
	vb := &VerifiedBundle{Bundle: b, Credentials: make([]ClientCredential, len(b.Clients))}
	seen := make(map[string]bool, len(b.Clients))
	for i, c := range b.Clients {
		cred, err := VerifyCredential(c.Credential, authPub)
		if err != nil {
			return nil, errorf(CodeOf(err), "bundle client %d: %v", i, err)
		}
		if cred.UserID != b.UserID {
			return nil, errorf(CodeUserMismatch, "bundle client %d: credential is for %q, not %q", i, cred.UserID, b.UserID)
		}
		if seen[cred.ClientID] {
			return nil, errorf(CodeMalformed, "bundle client %d: client id %q appears twice", i, cred.ClientID)
		}
		seen[cred.ClientID] = true
		vb.Credentials[i] = cred
	}
	return vb, nil
}
