package mlsx

import (
	"bytes"
	"time"
)

// Policy is the Delivery Service's local policy for what it accepts on top of
// RFC 9420. The zero Policy accepts the cipher suites mls-go implements, basic
// credentials only, and skips lifetime checks inside handshake messages.
type Policy struct {
	// CipherSuites lists the accepted cipher suites. Empty means
	// SupportedCipherSuites().
	CipherSuites []uint16
	// GroupCipherSuite, when non-zero, is the only suite a KeyPackage may
	// use (the suite of the group it is being added to).
	GroupCipherSuite uint16
	// CredentialTypes lists the accepted credential types. Empty means
	// basic only: leaf credentials are per-client pseudonyms.
	CredentialTypes []uint16
	// Now is the time of the event being validated, used for KeyPackage
	// lifetimes in Add proposals. The zero value skips the lifetime check
	// (RFC 9420 §7.3 makes it RECOMMENDED, not mandatory, for received
	// leaves). This package never reads the clock itself.
	Now time.Time
	// MaxLeaves bounds the size of the ratchet tree accepted from a
	// GroupInfo or reached by Adds (0 means DefaultMaxLeaves), so that an
	// oversized tree cannot make validation arbitrarily expensive.
	MaxLeaves uint32
}

// DefaultMaxLeaves is the tree size limit when Policy.MaxLeaves is 0.
const DefaultMaxLeaves = 1 << 16

func (p Policy) maxLeaves() uint32 {
	if p.MaxLeaves == 0 {
		return DefaultMaxLeaves
	}
	return p.MaxLeaves
}

// SupportedCipherSuites returns the cipher suites this package can check:
// those mls-go implements (1 is mandatory for the homeserver, 2 and 3
// optional).
func SupportedCipherSuites() []uint16 {
	return []uint16{SuiteX25519AES128, SuiteP256AES128, SuiteX25519ChaCha20}
}

func (p Policy) suiteAllowed(id uint16) bool {
	if _, ok := suiteFor(id); !ok {
		return false
	}
	if len(p.CipherSuites) == 0 {
		return true
	}
	return containsU16(p.CipherSuites, id)
}

func (p Policy) credentialAllowed(t uint16) bool {
	if len(p.CredentialTypes) == 0 {
		return t == CredentialTypeBasic
	}
	return containsU16(p.CredentialTypes, t)
}

// KeyPackageInfo is what the directory and the Delivery Service need to know
// about a valid KeyPackage.
type KeyPackageInfo struct {
	// Ref is the KeyPackageRef (RFC 9420 §5.2): RefHash("MLS 1.0
	// KeyPackage Reference", KeyPackage). Welcome messages name new
	// members by it.
	Ref                []byte
	CipherSuite        uint16
	SignatureKey       []byte
	InitKey            []byte
	EncryptionKey      []byte
	CredentialType     uint16
	CredentialIdentity []byte // basic credential identity (the pseudonym)
	// NotBefore and NotAfter are the leaf lifetime in seconds since the
	// Unix epoch, as in the wire format.
	NotBefore uint64
	NotAfter  uint64
	// LastResort is set when the KeyPackage carries the last_resort
	// extension (type 0x000A): the directory hands it out without
	// deleting it.
	LastResort bool
	// SealedQueueConfig is the payload of the SealedQueueConfigExtensionType
	// KeyPackage extension, nil if absent. Whether it is required is the
	// caller's decision.
	SealedQueueConfig []byte
	// Raw is the KeyPackage exactly as validated.
	Raw []byte
}

// ValidateKeyPackage checks a TLS-encoded KeyPackage (not wrapped in an
// MLSMessage) per RFC 9420 §10.1 and the policy: protocol version mls10,
// an accepted cipher suite (equal to p.GroupCipherSuite when set), a valid
// leaf node with source key_package and a lifetime that contains now, the
// leaf node and KeyPackage signatures, consistent capabilities (credential
// type and every non-default extension type listed), an accepted credential
// type, and encryption_key != init_key. It uses no randomness and no clock.
func ValidateKeyPackage(raw []byte, now time.Time, p Policy) (*KeyPackageInfo, error) {
	raw = bytes.Clone(raw)
	r := newReader(raw)
	kp, err := parseKeyPackage(r)
	if err == nil {
		err = r.done()
	}
	if err != nil {
		return nil, decodeErr("key package", err)
	}
	return checkKeyPackage(kp, now, p)
}

func checkKeyPackage(kp *keyPackage, now time.Time, p Policy) (*KeyPackageInfo, error) {
	if kp.version != ProtocolVersionMLS10 {
		return nil, errf(CodeInvalidKeyPackage, "protocol version %d", kp.version)
	}
	if !p.suiteAllowed(kp.suite) {
		return nil, errf(CodeInvalidKeyPackage, "cipher suite 0x%04x not accepted", kp.suite)
	}
	if p.GroupCipherSuite != 0 && kp.suite != p.GroupCipherSuite {
		return nil, errf(CodeInvalidKeyPackage, "cipher suite 0x%04x, group uses 0x%04x", kp.suite, p.GroupCipherSuite)
	}
	s, _ := suiteFor(kp.suite)
	ln := kp.leaf
	if ln.source != sourceKeyPackage {
		return nil, errf(CodeInvalidKeyPackage, "leaf_node_source %d, want key_package", ln.source)
	}
	if err := checkLeafSelf(s, ln, nil, 0, p); err != nil {
		return nil, errf(CodeInvalidKeyPackage, "leaf node: %s", err.Msg)
	}
	if !now.IsZero() && !lifetimeContains(ln, now) {
		return nil, errf(CodeInvalidKeyPackage, "lifetime [%d, %d] does not contain %d", ln.notBefore, ln.notAfter, now.Unix())
	}
	if !s.verify(ln.sigKey, "KeyPackageTBS", kp.tbs, kp.sig) {
		return nil, errf(CodeInvalidKeyPackage, "bad KeyPackage signature")
	}
	if bytes.Equal(ln.encKey, kp.initKey) {
		return nil, errf(CodeInvalidKeyPackage, "encryption_key equals init_key")
	}
	if !s.validHPKEKey(kp.initKey) {
		return nil, errf(CodeInvalidKeyPackage, "invalid init_key")
	}
	for _, e := range kp.exts {
		if !isDefaultExtension(e.typ) && !containsU16(ln.caps.extensions, e.typ) {
			return nil, errf(CodeInvalidKeyPackage, "extension 0x%04x not listed in capabilities", e.typ)
		}
	}
	info := &KeyPackageInfo{
		Ref:                s.keyPackageRef(kp.raw),
		CipherSuite:        kp.suite,
		SignatureKey:       ln.sigKey,
		InitKey:            kp.initKey,
		EncryptionKey:      ln.encKey,
		CredentialType:     ln.cred.typ,
		CredentialIdentity: ln.cred.identity,
		NotBefore:          ln.notBefore,
		NotAfter:           ln.notAfter,
		Raw:                kp.raw,
	}
	if _, ok := findExtension(kp.exts, ExtensionTypeLastResort); ok {
		info.LastResort = true
	}
	if e, ok := findExtension(kp.exts, SealedQueueConfigExtensionType); ok {
		info.SealedQueueConfig = e.data
	}
	return info, nil
}

func lifetimeContains(ln *leafNode, now time.Time) bool {
	if now.Before(time.Unix(0, 0)) {
		return false
	}
	t := uint64(now.Unix())
	return ln.notBefore <= t && t <= ln.notAfter
}

// isDefaultExtension reports the RFC 9420 §7.2 default extension types that
// need not (and must not) be listed in capabilities.
func isDefaultExtension(t uint16) bool {
	return t >= extTypeApplicationID && t <= extTypeExternalSenders
}

// checkLeafSelf checks everything of RFC 9420 §7.3 that depends only on the
// leaf node itself and the group parameters: credential type accepted and
// listed, group version and suite listed, extensions listed, required
// capabilities met, well-formed keys and the leaf signature (with groupID
// and leaf index for sources update and commit). Lifetime, source and
// uniqueness are the caller's.
func checkLeafSelf(s suite, ln *leafNode, groupID []byte, leafIndex uint32, p Policy) *Error {
	if !p.credentialAllowed(ln.cred.typ) {
		return errf(CodeInvalidLeafNode, "credential type 0x%04x not accepted", ln.cred.typ)
	}
	if !containsU16(ln.caps.credentials, ln.cred.typ) {
		return errf(CodeInvalidLeafNode, "credential type 0x%04x not listed in capabilities", ln.cred.typ)
	}
	if !containsU16(ln.caps.versions, ProtocolVersionMLS10) {
		return errf(CodeInvalidLeafNode, "capabilities do not list mls10")
	}
	if !containsU16(ln.caps.suites, uint16(s.id)) {
		return errf(CodeInvalidLeafNode, "capabilities do not list cipher suite 0x%04x", uint16(s.id))
	}
	for _, e := range ln.exts {
		if !isDefaultExtension(e.typ) && !containsU16(ln.caps.extensions, e.typ) {
			return errf(CodeInvalidLeafNode, "extension 0x%04x not listed in capabilities", e.typ)
		}
	}
	if !s.validHPKEKey(ln.encKey) {
		return errf(CodeInvalidLeafNode, "invalid encryption_key")
	}
	if len(ln.sigKey) != s.id.SignatureKeyLength() {
		return errf(CodeInvalidLeafNode, "signature_key has length %d", len(ln.sigKey))
	}
	if !s.verify(ln.sigKey, "LeafNodeTBS", ln.tbs(groupID, leafIndex), ln.sig) {
		return errf(CodeBadSignature, "bad leaf node signature")
	}
	return nil
}

// requiredCapabilities is the RFC 9420 §11.1 required_capabilities
// GroupContext extension.
type requiredCapabilities struct {
	extensions, proposals, credentials []uint16
}

func parseRequiredCapabilities(exts []extension) (*requiredCapabilities, error) {
	e, ok := findExtension(exts, extTypeRequiredCapabilities)
	if !ok {
		return nil, nil
	}
	r := newReader(e.data)
	rc := &requiredCapabilities{}
	var err error
	for _, dst := range []*[]uint16{&rc.extensions, &rc.proposals, &rc.credentials} {
		if *dst, err = parseU16List(r); err != nil {
			return nil, err
		}
	}
	return rc, r.done()
}

func (rc *requiredCapabilities) satisfiedBy(c capabilities) bool {
	if rc == nil {
		return true
	}
	for _, e := range rc.extensions {
		if !isDefaultExtension(e) && !containsU16(c.extensions, e) {
			return false
		}
	}
	for _, pt := range rc.proposals {
		if pt > proposalGroupContextExtensions && !containsU16(c.proposals, pt) {
			return false
		}
	}
	for _, ct := range rc.credentials {
		if !containsU16(c.credentials, ct) {
			return false
		}
	}
	return true
}
