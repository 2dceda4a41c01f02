package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/cloudflare/circl/oprf"
)

// suite is RFC 9497 ristretto255-SHA512; every operation uses VOPRF mode.
var suite = oprf.SuiteRistretto255

// SuiteName is the RFC 9497 identifier of the suite in use.
const SuiteName = "ristretto255-SHA512"

// Sizes of the fixed-size values, in bytes.
const (
	KeyIDSize     = 8
	NonceSize     = 32
	OutputSize    = 64 // SHA-512
	ElementSize   = 32 // compressed ristretto255 element
	ProofSize     = 64 // two scalars
	PublicKeySize = ElementSize
)

// keyVersion is the first byte of a [MarshalKey] encoding.
const keyVersion = 1

// keyDeriveInfo separates our key derivation from any other use of the seed.
const keyDeriveInfo = "mlshome group-creation token key v1"

// KeyID names an issuer key: the first 8 bytes of SHA-256 of its public key.
type KeyID [KeyIDSize]byte

// KeyIDOf returns the id of the public key pub.
func KeyIDOf(pub []byte) KeyID {
	sum := sha256.Sum256(pub)
	return KeyID(sum[:KeyIDSize])
}

// String returns the id in lowercase hex.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// Key is an issuer's VOPRF private key with its public key and id.
type Key struct {
	priv   *oprf.PrivateKey
	server oprf.VerifiableServer
	pub    []byte
	id     KeyID
}

// GenerateKey returns a new key drawn from rnd (32 bytes, expanded with the
// RFC 9497 DeriveKeyPair for VOPRF mode). A nil rnd means crypto/rand.Reader.
func GenerateKey(rnd io.Reader) (*Key, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	seed := make([]byte, 32)
	if _, err := io.ReadFull(rnd, seed); err != nil {
		return nil, fmt.Errorf("generate token key: %w", err)
	}
	priv, err := oprf.DeriveKey(suite, oprf.VerifiableMode, seed, []byte(keyDeriveInfo))
	if err != nil {
		return nil, fmt.Errorf("generate token key: %w", err)
	}
	return newKey(priv)
}

func newKey(priv *oprf.PrivateKey) (*Key, error) {
	pub, err := priv.Public().MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("token public key: %w", err)
	}
	return &Key{priv: priv, server: oprf.NewVerifiableServer(suite, priv), pub: pub, id: KeyIDOf(pub)}, nil
}

// ID returns the key id.
func (k *Key) ID() KeyID { return k.id }

// PublicKey returns the public key clients blind against, 32 bytes.
func (k *Key) PublicKey() []byte { return append([]byte(nil), k.pub...) }

// MarshalKey encodes k for the key directory: a version byte and the 32-byte
// scalar. The result is secret.
func MarshalKey(k *Key) ([]byte, error) {
	s, err := k.priv.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("marshal token key: %w", err)
	}
	return append([]byte{keyVersion}, s...), nil
}

// UnmarshalKey decodes a [MarshalKey] encoding. Errors have code
// [CodeMalformed] or [CodeUnsupportedVersion].
func UnmarshalKey(b []byte) (*Key, error) {
	if len(b) == 0 {
		return nil, errorf(CodeMalformed, "empty token key")
	}
	if b[0] != keyVersion {
		return nil, errorf(CodeUnsupportedVersion, "token key version %d", b[0])
	}
	if len(b) != 1+int(suite.Group().Params().ScalarLength) {
		return nil, errorf(CodeMalformed, "token key must be %d bytes", 1+suite.Group().Params().ScalarLength)
	}
	priv := new(oprf.PrivateKey)
	if err := priv.UnmarshalBinary(suite, b[1:]); err != nil {
		return nil, errorf(CodeMalformed, "token key: %v", err)
	}
	return newKey(priv)
}

// Verify checks that t is a token issued under k, ignoring time and rotation
// (an auditor re-checking an old redemption uses this with the retired key).
// It fails with [CodeUnknownKey] if t names another key and with
// [CodeInvalidToken] or [CodeMalformed] otherwise.
func (k *Key) Verify(t Token) error {
	if t.KeyID != k.id {
		return errorf(CodeUnknownKey, "token is for key %s, not %s", t.KeyID, k.id)
	}
	if len(t.Nonce) != NonceSize || len(t.Output) != OutputSize {
		return errorf(CodeMalformed, "token nonce must be %d bytes and output %d", NonceSize, OutputSize)
	}
	if !k.server.VerifyFinalize(t.Nonce, t.Output) {
		return errorf(CodeInvalidToken, "token output does not match its nonce")
	}
	return nil
}
