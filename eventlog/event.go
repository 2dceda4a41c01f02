package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// EncodingVersion is the version byte at the start of every encoded event.
const EncodingVersion = 1

// Limits on the parts of an event; the decoder refuses anything larger.
const (
	MaxTypeLen    = 64
	MaxKeyLen     = 256
	MaxPayloadLen = 16 << 20
)

// Event is one appended fact. Seq and Time are assigned by the writer.
type Event struct {
	Seq  uint64 // dense, starting at 1
	Time int64  // unix nanoseconds of the batch that appended the event
	Type string // e.g. "UserRegistered"
	// Key is the idempotency key of the command that produced the event; it
	// is set on the first event of such a command only.
	Key     []byte
	Payload []byte
}

// Draft is an event proposed by a Handler, before the writer numbers it.
type Draft struct {
	Type    string
	Payload []byte
}

// ErrMalformedEvent is returned for bytes that are not a valid encoded event.
var ErrMalformedEvent = errors.New("eventlog: malformed event")

// Encode returns the canonical encoding of e:
//
//	version(1) | uvarint seq | varint time | uvarint len | type | uvarint len | key | uvarint len | payload
//
// The encoding is what the Merkle tree hashes, so it must never change for a
// given version.
func (e *Event) Encode() []byte {
	n := 1 + 3*binary.MaxVarintLen64 + binary.MaxVarintLen64 + len(e.Type) + len(e.Key) + len(e.Payload) + 2*binary.MaxVarintLen64
	b := make([]byte, 0, n)
	b = append(b, EncodingVersion)
	b = binary.AppendUvarint(b, e.Seq)
	b = binary.AppendVarint(b, e.Time)
	b = appendBytes(b, []byte(e.Type))
	b = appendBytes(b, e.Key)
	b = appendBytes(b, e.Payload)
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// DecodeEvent parses an encoded event. It accepts only the canonical
// encoding: no trailing bytes, no non-minimal varints.
func DecodeEvent(b []byte) (*Event, error) {
	if len(b) == 0 || b[0] != EncodingVersion {
		return nil, fmt.Errorf("%w: unknown version", ErrMalformedEvent)
	}
	d := decoder{b: b[1:]}
	e := &Event{}
	e.Seq = d.uvarint()
	e.Time = d.varint()
	e.Type = string(d.bytes(MaxTypeLen))
	e.Key = d.bytes(MaxKeyLen)
	e.Payload = d.bytes(MaxPayloadLen)
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformedEvent, len(d.b))
	}
	if len(e.Key) == 0 {
		e.Key = nil
	}
	// Canonical form only: re-encoding must give the same bytes, which rules
	// out padded varints.
	if enc := e.Encode(); string(enc) != string(b) {
		return nil, fmt.Errorf("%w: not canonical", ErrMalformedEvent)
	}
	return e, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint", ErrMalformedEvent)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint", ErrMalformedEvent)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(max int) []byte {
	l := d.uvarint()
	if d.err != nil {
		return nil
	}
	if l > uint64(max) || l > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: field length %d", ErrMalformedEvent, l)
		return nil
	}
	v := append([]byte(nil), d.b[:l]...)
	d.b = d.b[l:]
	return v
}
