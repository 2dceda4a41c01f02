package identity

import (
	"bytes"
	"crypto/ed25519"

	"golang.org/x/crypto/cryptobyte"
)

// credentialLabel starts every encoded client credential and separates its
// signatures from those over other objects signed by the authentication key.
const credentialLabel = "mlshome client credential"

// CredentialVersion is the version of the credential encoding.
const CredentialVersion = 1

// MaxCredentialSize bounds an encoded signed credential.
const MaxCredentialSize = 1024

// ClientCredential is a homeserver's statement that SignatureKey is the
// registered signature key of client ClientID of user UserID. It is signed
// by the homeserver's authentication key; the signed bytes travel end-to-end
// encrypted between group members and inside directory bundles.
//
// Encoding (the bytes signed), all lengths big-endian:
//
//	opaque label<0..255> = "mlshome client credential"
//	uint8  version = 1
//	opaque user_id<0..2^16-1>
//	opaque client_id<0..255>
//	opaque signature_key<0..255>   (32 bytes, Ed25519)
//	opaque domain<0..2^16-1>
//	uint64 issued_at               (unix milliseconds)
//
// followed, in the signed form, by the 64-byte Ed25519 signature over
// everything before it.
type ClientCredential struct {
	// UserID is "name@domain"; see [ParseUserID].
	UserID string
	// ClientID identifies the client within the user; see
	// [ValidateClientID].
	ClientID string
	// SignatureKey is the client's registered Ed25519 key.
	SignatureKey ed25519.PublicKey
	// Domain is the issuing homeserver; it equals the domain of UserID.
	Domain string
	// IssuedAt is the issue time in unix milliseconds, taken from the event
	// that registered the client (not the clock), so that re-issuing on
	// replay gives the same bytes.
	IssuedAt int64
}

// Validate checks the fields: user id syntax, client id syntax, key size,
// Domain equal to the user id's domain, IssuedAt not negative.
func (c ClientCredential) Validate() error {
	if err := c.validate(); err != nil {
		return err
	}
	return nil
}

func (c ClientCredential) validate() *Error {
	uid, err := ParseUserID(c.UserID)
	if err != nil {
		return err.(*Error)
	}
	if err := ValidateClientID(c.ClientID); err != nil {
		return err.(*Error)
	}
	if len(c.SignatureKey) != ed25519.PublicKeySize {
		return errorf(CodeBadKey, "signature key must be %d bytes", ed25519.PublicKeySize)
	}
	if c.Domain != uid.Domain {
		return errorf(CodeDomainMismatch, "credential domain %q is not the domain of %q", c.Domain, c.UserID)
	}
	if c.IssuedAt < 0 {
		return errorf(CodeMalformed, "negative issue time")
	}
	return nil
}

// Marshal returns the canonical encoding of c, the bytes the signature
// covers. It fails with the [ClientCredential.Validate] errors.
func (c ClientCredential) Marshal() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	addLabel(&b, credentialLabel, CredentialVersion)
	addU16Bytes(&b, []byte(c.UserID))
	addU8Bytes(&b, []byte(c.ClientID))
	addU8Bytes(&b, c.SignatureKey)
	addU16Bytes(&b, []byte(c.Domain))
	b.AddUint64(uint64(c.IssuedAt))
	return b.Bytes()
}

// IssueCredential returns the signed credential: the canonical encoding of
// cred followed by authKey's signature over it. Issuing is deterministic.
func IssueCredential(cred ClientCredential, authKey ed25519.PrivateKey) ([]byte, error) {
	tbs, err := cred.Marshal()
	if err != nil {
		return nil, err
	}
	return append(tbs, ed25519.Sign(authKey, tbs)...), nil
}

// DecodeCredential parses a signed credential without verifying its
// signature and returns the credential, the signed part and the signature.
// Use it only to find out which homeserver's key to verify with; then call
// [VerifyCredential]. Errors have code [CodeMalformed],
// [CodeUnsupportedVersion] or a [ClientCredential.Validate] code.
func DecodeCredential(signed []byte) (cred ClientCredential, tbs, sig []byte, err error) {
	if len(signed) > MaxCredentialSize {
		return ClientCredential{}, nil, nil, errorf(CodeMalformed, "credential larger than %d bytes", MaxCredentialSize)
	}
	s := cryptobyte.String(signed)
	if e := readLabel(&s, credentialLabel, CredentialVersion); e != nil {
		return ClientCredential{}, nil, nil, e
	}
	var key []byte
	var issued uint64
	if !readU16String(&s, &cred.UserID) ||
		!readU8String(&s, &cred.ClientID) ||
		!readU8Bytes(&s, &key) ||
		!readU16String(&s, &cred.Domain) ||
		!s.ReadUint64(&issued) {
		return ClientCredential{}, nil, nil, errorf(CodeMalformed, "credential truncated")
	}
	cred.SignatureKey = key
	cred.IssuedAt = int64(issued)
	if len(s) != ed25519.SignatureSize {
		return ClientCredential{}, nil, nil, errorf(CodeMalformed, "credential signature must be %d bytes, got %d", ed25519.SignatureSize, len(s))
	}
	if e := cred.validate(); e != nil {
		return ClientCredential{}, nil, nil, e
	}
	n := len(signed) - ed25519.SignatureSize
	return cred, bytes.Clone(signed[:n]), bytes.Clone(signed[n:]), nil
}

// VerifyCredential decodes a signed credential and verifies its signature
// with authPub, the issuing homeserver's authentication key. It does not
// check which homeserver that is: callers compare the returned Domain with
// the domain whose key they used ([VerifyBundle] does). Errors have code
// [CodeBadSignature], [CodeBadKey] or a [DecodeCredential] code.
func VerifyCredential(signed []byte, authPub ed25519.PublicKey) (ClientCredential, error) {
	if len(authPub) != ed25519.PublicKeySize {
		return ClientCredential{}, errorf(CodeBadKey, "authentication key must be %d bytes", ed25519.PublicKeySize)
	}
	cred, tbs, sig, err := DecodeCredential(signed)
	if err != nil {
		return ClientCredential{}, err
	}
	if !ed25519.Verify(authPub, tbs, sig) {
		return ClientCredential{}, errorf(CodeBadSignature, "credential signature does not verify")
	}
	return cred, nil
}
