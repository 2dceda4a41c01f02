package identity

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
)

// SealedQueueConfigVersion is the version byte of a sealed queue config.
const SealedQueueConfigVersion = 1

// Queue id bounds. Anyone can seal to a homeserver's public queue key, so a
// sealed config proves nothing by itself: it authorises a delivery (FED-5)
// only because the queue id inside is a secret the homeserver handed to its
// client. Queue ids must therefore be random and long enough not to be
// guessed.
const (
	MinQueueIDLen = 16
	MaxQueueIDLen = 64
)

const queueConfigInfoLabel = "mlshome queue config"

// queuePlaintextLen is the fixed plaintext size: a length byte and the queue
// id padded with zeros to MaxQueueIDLen, so the ciphertext length does not
// reveal the queue id's length.
const queuePlaintextLen = 1 + MaxQueueIDLen

// QueueConfig names the queue a client receives on: its homeserver and its
// queue id there. It travels sealed ([SealQueueConfig]) in every KeyPackage
// of the client, so that the Delivery Service of a group can route messages
// to the client's homeserver while only that homeserver learns the queue.
type QueueConfig struct {
	// Domain is the homeserver that holds the queue.
	Domain string
	// QueueID is the queue's secret id, MinQueueIDLen to MaxQueueIDLen
	// bytes.
	QueueID []byte
}

// SealQueueConfig seals qc to the homeserver queue key queuePub (HPKE base
// mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM) with fresh
// randomness from rnd, so two seals of one config are unrelated bytes and two
// groups cannot link a client through them. The result is
//
//	uint8  version = 1
//	opaque domain<0..2^16-1>     (in the clear, for routing)
//	opaque enc[32]               (HPKE encapsulated key)
//	opaque ciphertext[81]        (AEAD of the padded queue id)
//
// where version and domain are bound into the HPKE info and AAD, so the
// domain cannot be swapped. queuePub should come from the target
// homeserver's [PublicKeys]. A nil rnd means crypto/rand.Reader.
func SealQueueConfig(qc QueueConfig, queuePub []byte, rnd io.Reader) ([]byte, error) {
	if err := checkDomain(qc.Domain); err != nil {
		return nil, err
	}
	if len(qc.QueueID) < MinQueueIDLen || len(qc.QueueID) > MaxQueueIDLen {
		return nil, errorf(CodeBadQueueID, "queue id must be %d to %d bytes", MinQueueIDLen, MaxQueueIDLen)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	pk, err := queueSuiteKEM().UnmarshalBinaryPublicKey(queuePub)
	if err != nil {
		return nil, errorf(CodeBadKey, "queue key: %v", err)
	}
	header := sealedHeader(qc.Domain)
	sender, err := queueSuite.NewSender(pk, queueConfigInfo(header))
	if err != nil {
		return nil, fmt.Errorf("seal queue config: %w", err)
	}
	enc, sealer, err := sender.Setup(rnd)
	if err != nil {
		return nil, fmt.Errorf("seal queue config: %w", err)
	}
	pt := make([]byte, queuePlaintextLen)
	pt[0] = byte(len(qc.QueueID))
	copy(pt[1:], qc.QueueID)
	ct, err := sealer.Seal(pt, header)
	if err != nil {
		return nil, fmt.Errorf("seal queue config: %w", err)
	}
	out := append(header, enc...)
	return append(out, ct...), nil
}

func sealedHeader(domain string) []byte {
	var b cryptobyte.Builder
	b.AddUint8(SealedQueueConfigVersion)
	addU16Bytes(&b, []byte(domain))
	return b.BytesOrPanic()
}

func queueConfigInfo(header []byte) []byte {
	return append([]byte(queueConfigInfoLabel), header...)
}

// splitSealed parses the clear part of a sealed queue config.
func splitSealed(sealed []byte) (domain string, header, enc, ct []byte, e *Error) {
	s := cryptobyte.String(sealed)
	var v uint8
	if !s.ReadUint8(&v) {
		return "", nil, nil, nil, errorf(CodeMalformed, "sealed queue config is empty")
	}
	if v != SealedQueueConfigVersion {
		return "", nil, nil, nil, errorf(CodeUnsupportedVersion, "sealed queue config version %d", v)
	}
	if !readU16String(&s, &domain) {
		return "", nil, nil, nil, errorf(CodeMalformed, "sealed queue config truncated")
	}
	if e := checkDomain(domain); e != nil {
		return "", nil, nil, nil, e
	}
	encLen := queueSuiteKEM().CiphertextSize()
	ctLen := queuePlaintextLen + 16 // AES-128-GCM tag
	if len(s) != encLen+ctLen {
		return "", nil, nil, nil, errorf(CodeMalformed, "sealed queue config body must be %d bytes, got %d", encLen+ctLen, len(s))
	}
	h := len(sealed) - len(s)
	return domain, sealed[:h], sealed[h : h+encLen], sealed[h+encLen:], nil
}

// SealedQueueConfigDomain returns the destination domain of a sealed queue
// config without opening it: what a Delivery Service needs to route a
// message to the client's homeserver. The domain is authenticated only when
// that homeserver opens the config. Errors have code [CodeMalformed],
// [CodeUnsupportedVersion] or [CodeBadDomain].
func SealedQueueConfigDomain(sealed []byte) (string, error) {
	domain, _, _, _, e := splitSealed(sealed)
	if e != nil {
		return "", e
	}
	return domain, nil
}

// OpenQueueConfig opens a sealed queue config with the queue key. It fails
// with [CodeWrongHomeserver] if the config names another domain, with
// [CodeOpenFailed] if it names this domain but does not decrypt (sealed to
// another key, or any byte changed), and with [CodeMalformed] or
// [CodeUnsupportedVersion] for a bad encoding.
func (ks *KeySet) OpenQueueConfig(sealed []byte) (QueueConfig, error) {
	domain, header, enc, ct, e := splitSealed(sealed)
	if e != nil {
		return QueueConfig{}, e
	}
	if domain != ks.domain {
		return QueueConfig{}, errorf(CodeWrongHomeserver, "queue config is for %q, this is %q", domain, ks.domain)
	}
	recv, err := queueSuite.NewReceiver(ks.queue, queueConfigInfo(header))
	if err != nil {
		return QueueConfig{}, fmt.Errorf("open queue config: %w", err)
	}
	opener, err := recv.Setup(enc)
	if err != nil {
		return QueueConfig{}, errorf(CodeOpenFailed, "queue config: bad encapsulated key")
	}
	pt, err := opener.Open(ct, header)
	if err != nil {
		return QueueConfig{}, errorf(CodeOpenFailed, "queue config does not decrypt with this homeserver's queue key")
	}
	n := int(pt[0])
	if n < MinQueueIDLen || n > MaxQueueIDLen || !allZero(pt[1+n:]) {
		return QueueConfig{}, errorf(CodeMalformed, "queue config plaintext is not a padded queue id")
	}
	return QueueConfig{Domain: domain, QueueID: bytes.Clone(pt[1 : 1+n])}, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
