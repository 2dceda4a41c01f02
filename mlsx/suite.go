package mlsx

import (
	"hash"

	"github.com/thomas-vilte/mls-go/ciphersuite"
)

// Cipher suites (RFC 9420 §17.1) that mls-go implements.
const (
	// SuiteX25519AES128 is MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
	// mandatory for this homeserver.
	SuiteX25519AES128 uint16 = 0x0001
	// SuiteP256AES128 is MLS_128_DHKEMP256_AES128GCM_SHA256_P256.
	SuiteP256AES128 uint16 = 0x0002
	// SuiteX25519ChaCha20 is MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519.
	SuiteX25519ChaCha20 uint16 = 0x0003
)

// ProtocolVersionMLS10 is the only protocol version accepted.
const ProtocolVersionMLS10 uint16 = 1

// Credential types (RFC 9420 §17.5).
const (
	CredentialTypeBasic uint16 = 0x0001
	CredentialTypeX509  uint16 = 0x0002
)

// Extension types this package interprets.
const (
	extTypeApplicationID        uint16 = 0x0001
	extTypeRatchetTree          uint16 = 0x0002
	extTypeRequiredCapabilities uint16 = 0x0003
	extTypeExternalPub          uint16 = 0x0004
	extTypeExternalSenders      uint16 = 0x0005
	// ExtensionTypeLastResort is the last_resort KeyPackage extension
	// (draft-ietf-mls-extensions; mls-go's extensions.ExtensionTypeLastResort).
	ExtensionTypeLastResort uint16 = 0x000A
	// SealedQueueConfigExtensionType is this homeserver's private-use
	// KeyPackage extension carrying the HPKE-sealed queue configuration of
	// the client. It sits in KeyPackage.extensions, so the KeyPackage
	// signature covers it.
	SealedQueueConfigExtensionType uint16 = 0xF0A1
)

// suite wraps an mls-go cipher suite with the few operations the observer
// needs. All hashing and signature checks go through mls-go, except the
// final Ed25519 check (see verify).
type suite struct {
	id ciphersuite.CipherSuite
}

func suiteFor(id uint16) (suite, bool) {
	cs := ciphersuite.CipherSuite(id)
	if !cs.IsSupported() {
		return suite{}, false
	}
	return suite{id: cs}, true
}

func (s suite) hashFn() func() hash.Hash { return s.id.HashFunction() }

func (s suite) hash(data []byte) []byte {
	h := s.id.HashFunction()()
	h.Write(data)
	return h.Sum(nil)
}

// refHash is RefHash(label, value) of RFC 9420 §5.2.
func (s suite) keyPackageRef(kp []byte) []byte {
	return ciphersuite.MakeKeyPackageRef(kp, s.hashFn()).AsSlice()
}

func (s suite) proposalRef(authContent []byte) []byte {
	return ciphersuite.MakeProposalRef(authContent, s.hashFn()).AsSlice()
}

// verify is VerifyWithLabel of RFC 9420 §5.1.2.
func (s suite) verify(pub []byte, label string, content, sig []byte) bool {
	if len(pub) != s.id.SignatureKeyLength() {
		return false
	}
	if s.id.SignatureScheme() == ciphersuite.ED25519 {
		// SignContent serialised by mls-go, the Ed25519 check with a
		// remembered decompressed key (ed25519.go).
		return verifyEd25519(pub, ciphersuite.NewSignContent(label, content).Marshal(), sig)
	}
	pk := ciphersuite.NewMLSSignaturePublicKey(pub, s.id.SignatureScheme())
	return ciphersuite.VerifyWithLabel(pk, label, content, ciphersuite.NewSignature(sig)) == nil
}

// validHPKEKey reports whether b is a well-formed KEM public key of the
// suite, so that a member cannot install a key nobody can encrypt to.
func (s suite) validHPKEKey(b []byte) bool {
	c := s.id.Curve()
	if c == nil {
		return false
	}
	_, err := c.NewPublicKey(b)
	return err == nil
}
