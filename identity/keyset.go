package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"
	"golang.org/x/mod/sumdb/note"
)

// Key file names inside the key directory. Each holds one PKCS#8 private key
// in PEM, mode 0600.
const (
	authKeyFile       = "auth.pem"
	federationKeyFile = "federation.pem"
	logKeyFile        = "log.pem"
	queueKeyFile      = "queue.pem"
	domainFile        = "domain"
)

// queueSuite is the HPKE suite of sealed queue configs: base mode,
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM.
var queueSuite = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES128GCM)

// QueueSuiteName names [queueSuite] in [PublicKeys]: the RFC 9180 KEM, KDF and
// AEAD identifiers in hex.
const QueueSuiteName = "hpke-base-0x0020-0x0001-0x0001"

// KeySet is one homeserver's long-term key material:
//
//   - the authentication key (Ed25519) signs client credentials and
//     directory bundles;
//   - the federation key (Ed25519) signs federation envelopes;
//   - the log key (Ed25519) signs Merkle checkpoints as a
//     golang.org/x/mod/sumdb/note signer named after the domain;
//   - the queue key (X25519) opens sealed queue configs.
//
// A KeySet is immutable after construction and safe for concurrent use.
type KeySet struct {
	domain     string
	auth       ed25519.PrivateKey
	federation ed25519.PrivateKey
	log        ed25519.PrivateKey
	queue      kem.PrivateKey
	queuePub   []byte

	logSigner      note.Signer
	logVerifierKey string
}

// GenerateKeySet returns a fresh in-memory key set for domain, reading all
// key material from rnd. Use it in tests and tools; a server uses
// [LoadOrCreateKeySet]. A nil rnd means crypto/rand.Reader.
func GenerateKeySet(domain string, rnd io.Reader) (*KeySet, error) {
	if err := ValidateDomain(domain); err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	var seeds [4][32]byte
	for i := range seeds {
		if _, err := io.ReadFull(rnd, seeds[i][:]); err != nil {
			return nil, fmt.Errorf("generate key set: %w", err)
		}
	}
	return newKeySet(domain,
		ed25519.NewKeyFromSeed(seeds[0][:]),
		ed25519.NewKeyFromSeed(seeds[1][:]),
		ed25519.NewKeyFromSeed(seeds[2][:]),
		seeds[3][:])
}

func newKeySet(domain string, auth, federation, log ed25519.PrivateKey, queue []byte) (*KeySet, error) {
	sk, err := queueSuiteKEM().UnmarshalBinaryPrivateKey(queue)
	if err != nil {
		return nil, fmt.Errorf("queue key: %w", err)
	}
	pk, err := sk.Public().MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("queue key: %w", err)
	}
	ks := &KeySet{domain: domain, auth: auth, federation: federation, log: log, queue: sk, queuePub: pk}
	logPub := log.Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(domain, logPub)
	if err != nil {
		return nil, fmt.Errorf("log verifier key: %w", err)
	}
	// A note signer key is "PRIVATE+KEY+<name>+<hash>+<base64(alg||seed)>",
	// where name and hash are those of the verifier key.
	parts := strings.SplitN(vkey, "+", 3)
	skey := "PRIVATE+KEY+" + parts[0] + "+" + parts[1] + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{1}, log.Seed()...))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("log signer: %w", err)
	}
	ks.logSigner = signer
	ks.logVerifierKey = vkey
	return ks, nil
}

func queueSuiteKEM() kem.Scheme { return hpke.KEM_X25519_HKDF_SHA256.Scheme() }

// LoadOrCreateKeySet loads the key set kept in dir, creating the directory
// (mode 0700) and any missing key file (mode 0600) with fresh keys from
// crypto/rand. Creation is atomic per file and safe against a concurrent
// start on the same directory: the first writer wins and the other loads its
// key. The directory remembers its domain; opening it for another domain is
// an error, as is a key file readable by group or others.
func LoadOrCreateKeySet(dir, domain string) (*KeySet, error) {
	if err := ValidateDomain(domain); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key dir: %w", err)
	}
	stored, err := loadOrCreateFile(dir, domainFile, func() ([]byte, error) { return []byte(domain + "\n"), nil })
	if err != nil {
		return nil, err
	}
	if got := strings.TrimSpace(string(stored)); got != domain {
		return nil, fmt.Errorf("key dir %s belongs to domain %q, not %q", dir, got, domain)
	}
	var eds [3]ed25519.PrivateKey
	for i, name := range []string{authKeyFile, federationKeyFile, logKeyFile} {
		raw, err := loadOrCreateFile(dir, name, func() ([]byte, error) {
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return nil, err
			}
			return encodePrivateKeyPEM(priv)
		})
		if err != nil {
			return nil, err
		}
		key, err := decodePrivateKeyPEM(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		ed, ok := key.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: not an Ed25519 key", filepath.Join(dir, name))
		}
		eds[i] = ed
	}
	raw, err := loadOrCreateFile(dir, queueKeyFile, func() ([]byte, error) {
		priv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return encodePrivateKeyPEM(priv)
	})
	if err != nil {
		return nil, err
	}
	key, err := decodePrivateKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, queueKeyFile), err)
	}
	x, ok := key.(*ecdh.PrivateKey)
	if !ok || x.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%s: not an X25519 key", filepath.Join(dir, queueKeyFile))
	}
	return newKeySet(domain, eds[0], eds[1], eds[2], x.Bytes())
}

// loadOrCreateFile returns the contents of dir/name, creating it from gen
// first if it does not exist. The new file is written to a temporary name,
// synced, and linked into place, so a reader never sees a partial key and two
// concurrent creators agree on one key.
func loadOrCreateFile(dir, name string, gen func() ([]byte, error)) ([]byte, error) {
	path := filepath.Join(dir, name)
	data, err := readPrivateFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return data, err
	}
	content, err := gen()
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable; best effort on platforms without dir sync
		d.Close()
	}
	return readPrivateFile(path)
}

func readPrivateFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v is readable by others; want 0600", path, fi.Mode().Perm())
	}
	return os.ReadFile(path)
}

func encodePrivateKeyPEM(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decodePrivateKeyPEM(data []byte) (any, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("want exactly one PEM PRIVATE KEY block")
	}
	return x509.ParsePKCS8PrivateKey(block.Bytes)
}

// Domain returns the homeserver domain the key set belongs to.
func (ks *KeySet) Domain() string { return ks.domain }

// AuthPublicKey returns the public authentication key, which verifies client
// credentials and bundles.
func (ks *KeySet) AuthPublicKey() ed25519.PublicKey {
	return ks.auth.Public().(ed25519.PublicKey)
}

// FederationPublicKey returns the public federation key, which verifies this
// homeserver's federation envelopes.
func (ks *KeySet) FederationPublicKey() ed25519.PublicKey {
	return ks.federation.Public().(ed25519.PublicKey)
}

// SignFederation signs msg with the federation key. The caller defines the
// envelope encoding and must include its own domain-separation label in msg.
func (ks *KeySet) SignFederation(msg []byte) []byte {
	return ed25519.Sign(ks.federation, msg)
}

// LogSigner returns the note signer for Merkle checkpoints; its name is the
// homeserver domain.
func (ks *KeySet) LogSigner() note.Signer { return ks.logSigner }

// LogVerifierKey returns the encoded note verifier key
// ("<domain>+<hash>+<base64 key>") matching [KeySet.LogSigner], for
// note.NewVerifier.
func (ks *KeySet) LogVerifierKey() string { return ks.logVerifierKey }

// QueuePublicKey returns the X25519 public key clients seal queue configs to.
func (ks *KeySet) QueuePublicKey() []byte { return bytes.Clone(ks.queuePub) }

// IssueCredential signs cred with the authentication key; see
// [IssueCredential]. cred.Domain must be this key set's domain.
func (ks *KeySet) IssueCredential(cred ClientCredential) ([]byte, error) {
	if cred.Domain != ks.domain {
		return nil, errorf(CodeDomainMismatch, "credential domain %q is not %q", cred.Domain, ks.domain)
	}
	return IssueCredential(cred, ks.auth)
}

// SignBundle signs b with the authentication key; see [SignBundle].
// b.Domain must be this key set's domain.
func (ks *KeySet) SignBundle(b Bundle) ([]byte, error) {
	if b.Domain != ks.domain {
		return nil, errorf(CodeDomainMismatch, "bundle domain %q is not %q", b.Domain, ks.domain)
	}
	return SignBundle(b, ks.auth)
}
