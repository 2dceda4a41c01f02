package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	"golang.org/x/mod/sumdb/note"
)

// PublicKeysVersion is the version of the [PublicKeys] document.
const PublicKeysVersion = 1

// MaxPublicKeysSize bounds the [PublicKeys] document a peer will parse.
const MaxPublicKeysSize = 16 << 10

// PublicKeys is the public half of a [KeySet], served at
// /.well-known/mls-homeserver. Byte fields are base64 (standard, padded) in
// JSON. Its JSON encoding ([PublicKeys.Marshal]) is deterministic: fields in
// declaration order, no optional whitespace.
type PublicKeys struct {
	// Version is [PublicKeysVersion].
	Version int `json:"version"`
	// Domain is the homeserver domain.
	Domain string `json:"domain"`
	// AuthKey is the Ed25519 authentication key (credentials, bundles).
	AuthKey []byte `json:"auth_key"`
	// FederationKey is the Ed25519 federation key (envelopes).
	FederationKey []byte `json:"federation_key"`
	// LogKey is the note verifier key of the checkpoint signer.
	LogKey string `json:"log_key"`
	// QueueKey is the X25519 HPKE key for sealed queue configs.
	QueueKey []byte `json:"queue_key"`
	// QueueSuite names the HPKE suite, [QueueSuiteName].
	QueueSuite string `json:"queue_suite"`
}

// PublicKeys returns the public halves of the key set.
func (ks *KeySet) PublicKeys() PublicKeys {
	return PublicKeys{
		Version:       PublicKeysVersion,
		Domain:        ks.domain,
		AuthKey:       bytes.Clone(ks.AuthPublicKey()),
		FederationKey: bytes.Clone(ks.FederationPublicKey()),
		LogKey:        ks.logVerifierKey,
		QueueKey:      ks.QueuePublicKey(),
		QueueSuite:    QueueSuiteName,
	}
}

// Marshal returns the canonical JSON encoding of p.
func (p PublicKeys) Marshal() []byte {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // unreachable: only strings, ints and byte slices
	}
	return b
}

// ParsePublicKeys decodes and checks a [PublicKeys] document fetched from a
// peer: version, domain syntax, key sizes, and that the log key is a valid
// note verifier key named after the domain. If expectedDomain is not empty
// the document must be for that domain ([CodeDomainMismatch]). Other errors
// have code [CodeMalformed], [CodeUnsupportedVersion], [CodeBadDomain] or
// [CodeBadKey].
func ParsePublicKeys(data []byte, expectedDomain string) (PublicKeys, error) {
	if len(data) > MaxPublicKeysSize {
		return PublicKeys{}, errorf(CodeMalformed, "public keys document larger than %d bytes", MaxPublicKeysSize)
	}
	var p PublicKeys
	if err := json.Unmarshal(data, &p); err != nil {
		return PublicKeys{}, errorf(CodeMalformed, "public keys: %v", err)
	}
	if p.Version != PublicKeysVersion {
		return PublicKeys{}, errorf(CodeUnsupportedVersion, "public keys version %d", p.Version)
	}
	if err := checkDomain(p.Domain); err != nil {
		return PublicKeys{}, err
	}
	if expectedDomain != "" && p.Domain != expectedDomain {
		return PublicKeys{}, errorf(CodeDomainMismatch, "public keys are for %q, not %q", p.Domain, expectedDomain)
	}
	if len(p.AuthKey) != ed25519.PublicKeySize || len(p.FederationKey) != ed25519.PublicKeySize {
		return PublicKeys{}, errorf(CodeBadKey, "auth and federation keys must be %d bytes", ed25519.PublicKeySize)
	}
	if len(p.QueueKey) != queueSuiteKEM().PublicKeySize() {
		return PublicKeys{}, errorf(CodeBadKey, "queue key must be %d bytes", queueSuiteKEM().PublicKeySize())
	}
	if p.QueueSuite != QueueSuiteName {
		return PublicKeys{}, errorf(CodeBadKey, "queue suite %q not supported", p.QueueSuite)
	}
	v, err := note.NewVerifier(p.LogKey)
	if err != nil {
		return PublicKeys{}, errorf(CodeBadKey, "log key: %v", err)
	}
	if v.Name() != p.Domain {
		return PublicKeys{}, errorf(CodeDomainMismatch, "log key is named %q, not %q", v.Name(), p.Domain)
	}
	return p, nil
}

// LogVerifier returns the note verifier for p.LogKey.
func (p PublicKeys) LogVerifier() (note.Verifier, error) {
	v, err := note.NewVerifier(p.LogKey)
	if err != nil {
		return nil, fmt.Errorf("log key: %w", err)
	}
	return v, nil
}
