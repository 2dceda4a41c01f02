package federation

import (
	"crypto/ed25519"
	"strconv"
	"strings"

	"github.com/mlshome/homeserver/identity"
	"golang.org/x/crypto/cryptobyte"
)

// Envelope kinds with a meaning to this package. Request kinds are chosen by
// the caller of [Transport.Request] (e.g. "lookup", "claim", "relay"); any
// kind matching [a-z0-9_]{1,32} that is not one of the kinds below is a
// request kind.
const (
	// KindDeliver is a durable delivery (JetStream). Its timestamp is not
	// checked against a window: replay protection is the per-origin
	// delivery counter in its id.
	KindDeliver = "deliver"
	// KindCursor asks for the receiver's delivery cursor.
	KindCursor = "cursor"
	// KindReply answers a request; its id is the request's id.
	KindReply = "reply"
	// KindError answers a request with a coded error; its id is the
	// request's id and its payload an [ErrorPayload].
	KindError = "error"
)

// EnvelopeVersion is the only envelope version this code produces and
// accepts.
const EnvelopeVersion = 1

// MaxEnvelopeSize bounds an encoded envelope. The bus is configured with a
// larger max_payload ([MaxPayload]) so that headers fit too.
const MaxEnvelopeSize = 4 << 20

// envelopeLabel starts every encoded envelope, so an envelope signature can
// never be valid for another kind of signed object (domain separation).
const envelopeLabel = "mlshome federation envelope"

const (
	maxKindLen = 32
	maxIDLen   = 128
)

// Envelope is the signed wrapper of every federation message: requests,
// replies, deliveries and cursor queries.
//
// Its canonical encoding ([Envelope.Marshal]) is TLS-style length-prefixed,
// big-endian, with no optional fields and no trailing bytes:
//
//	u8<label "mlshome federation envelope">
//	u8 version (1)
//	u16<origin domain>
//	u16<destination domain>
//	u8<kind>
//	u8<id>
//	u64 timestamp (unix ms)
//	u32<payload>
//	[64] Ed25519 signature
//
// The signature is by the origin's federation key over every byte before it.
type Envelope struct {
	Version     uint8
	Origin      string
	Destination string
	Kind        string
	ID          string
	Timestamp   int64 // unix milliseconds
	Payload     []byte
	Signature   []byte
}

// signedPart encodes every field but the signature.
func (e *Envelope) signedPart() ([]byte, error) {
	b := cryptobyte.NewBuilder(make([]byte, 0, 64+len(e.Origin)+len(e.Destination)+len(e.Kind)+len(e.ID)+len(e.Payload)+ed25519.SignatureSize))
	addU8(b, []byte(envelopeLabel))
	b.AddUint8(e.Version)
	addU16(b, []byte(e.Origin))
	addU16(b, []byte(e.Destination))
	addU8(b, []byte(e.Kind))
	addU8(b, []byte(e.ID))
	b.AddUint64(uint64(e.Timestamp))
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Payload) })
	return b.Bytes()
}

// Marshal returns the canonical encoding of e. It fails if a field is out of
// range (see [Decode]) or the result exceeds [MaxEnvelopeSize].
func (e *Envelope) Marshal() ([]byte, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	if len(e.Signature) != ed25519.SignatureSize {
		return nil, Errorf(CodeMalformed, "signature must be %d bytes", ed25519.SignatureSize)
	}
	raw, err := e.signedPart()
	if err != nil {
		return nil, Errorf(CodeMalformed, "encode envelope: %v", err)
	}
	raw = append(raw, e.Signature...)
	if len(raw) > MaxEnvelopeSize {
		return nil, Errorf(CodeTooLarge, "envelope is %d bytes, limit %d", len(raw), MaxEnvelopeSize)
	}
	return raw, nil
}

// Seal fills in e.Version and e.Signature, signing with sign (the origin's
// federation key, e.g. [identity.KeySet.SignFederation]), and returns the
// canonical encoding.
func Seal(e *Envelope, sign func([]byte) []byte) ([]byte, error) {
	e.Version = EnvelopeVersion
	if err := e.check(); err != nil {
		return nil, err
	}
	msg, err := e.signedPart()
	if err != nil {
		return nil, Errorf(CodeMalformed, "encode envelope: %v", err)
	}
	e.Signature = sign(msg)
	return e.Marshal()
}

// Verify checks e's signature against pub, the federation key of e.Origin.
// It checks nothing else: see [Opener] for the full acceptance rules.
// Auditors use it to re-check a stored delivery (FED-3).
func (e *Envelope) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return Errorf(CodeUnknownOrigin, "federation key of %s has %d bytes", e.Origin, len(pub))
	}
	msg, err := e.signedPart()
	if err != nil {
		return Errorf(CodeMalformed, "encode envelope: %v", err)
	}
	if len(e.Signature) != ed25519.SignatureSize || !ed25519.Verify(pub, msg, e.Signature) {
		return Errorf(CodeBadSignature, "envelope from %s: signature does not verify", e.Origin)
	}
	return nil
}

// Decode parses a canonical envelope encoding strictly: size limit, label,
// version, well-formed domains, kind and id syntax, no trailing bytes. It
// does not verify the signature.
func Decode(raw []byte) (Envelope, error) {
	if len(raw) > MaxEnvelopeSize {
		return Envelope{}, Errorf(CodeTooLarge, "envelope is %d bytes, limit %d", len(raw), MaxEnvelopeSize)
	}
	s := cryptobyte.String(raw)
	var label, origin, dest, kind, id cryptobyte.String
	var e Envelope
	if !s.ReadUint8LengthPrefixed(&label) || string(label) != envelopeLabel {
		return Envelope{}, Errorf(CodeMalformed, "not a federation envelope")
	}
	if !s.ReadUint8(&e.Version) {
		return Envelope{}, Errorf(CodeMalformed, "envelope truncated")
	}
	if e.Version != EnvelopeVersion {
		return Envelope{}, Errorf(CodeUnsupportedVersion, "envelope version %d", e.Version)
	}
	var ts uint64
	var n uint32
	var payload, sig []byte
	if !s.ReadUint16LengthPrefixed(&origin) || !s.ReadUint16LengthPrefixed(&dest) ||
		!s.ReadUint8LengthPrefixed(&kind) || !s.ReadUint8LengthPrefixed(&id) ||
		!s.ReadUint64(&ts) || !s.ReadUint32(&n) || uint64(n) > uint64(len(s)) ||
		!s.ReadBytes(&payload, int(n)) || !s.ReadBytes(&sig, ed25519.SignatureSize) {
		return Envelope{}, Errorf(CodeMalformed, "envelope truncated")
	}
	if !s.Empty() {
		return Envelope{}, Errorf(CodeMalformed, "%d trailing bytes after envelope", len(s))
	}
	e.Origin, e.Destination, e.Kind, e.ID = string(origin), string(dest), string(kind), string(id)
	e.Timestamp = int64(ts)
	e.Payload = append([]byte{}, payload...)
	e.Signature = append([]byte(nil), sig...)
	if err := e.check(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}

// check validates field syntax shared by encoding and decoding.
func (e *Envelope) check() error {
	if e.Version != EnvelopeVersion {
		return Errorf(CodeUnsupportedVersion, "envelope version %d", e.Version)
	}
	if err := identity.ValidateDomain(e.Origin); err != nil {
		return Errorf(CodeMalformed, "origin: %v", err)
	}
	if err := identity.ValidateDomain(e.Destination); err != nil {
		return Errorf(CodeMalformed, "destination: %v", err)
	}
	if !validKind(e.Kind) {
		return Errorf(CodeMalformed, "kind %q is not [a-z0-9_]{1,%d}", e.Kind, maxKindLen)
	}
	if !validID(e.ID) {
		return Errorf(CodeMalformed, "id must be 1 to %d printable ASCII characters", maxIDLen)
	}
	if e.Timestamp < 0 {
		return Errorf(CodeMalformed, "negative timestamp")
	}
	if e.Kind == KindDeliver {
		if _, err := e.DeliveryCounter(); err != nil {
			return err
		}
	}
	return nil
}

func validKind(k string) bool {
	if len(k) == 0 || len(k) > maxKindLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// DeliveryID returns the id of origin's delivery number counter,
// "<origin>/<counter>". It is also the JetStream Nats-Msg-Id.
func DeliveryID(origin string, counter uint64) string {
	return origin + "/" + strconv.FormatUint(counter, 10)
}

// DeliveryCounter returns the per-(origin, destination) delivery counter of
// a [KindDeliver] envelope, parsed from its id "<origin>/<counter>": decimal,
// at least 1, no leading zeros, and the id's origin must be e.Origin.
func (e *Envelope) DeliveryCounter() (uint64, error) {
	origin, num, ok := strings.Cut(e.ID, "/")
	if !ok || origin != e.Origin || num == "" || num[0] == '0' {
		return 0, Errorf(CodeMalformed, "delivery id %q is not %q/<counter>", e.ID, e.Origin)
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, Errorf(CodeMalformed, "delivery id %q is not %q/<counter>", e.ID, e.Origin)
	}
	return n, nil
}

func addU8(b *cryptobyte.Builder, v []byte) {
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

func addU16(b *cryptobyte.Builder, v []byte) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}
