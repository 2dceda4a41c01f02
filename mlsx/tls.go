package mlsx

import (
	"encoding/binary"
	"errors"
)

// This file holds a strict decoder and a small encoder for the TLS
// presentation language as profiled by RFC 9420 §2.1.2 (variable-size
// vectors with a QUIC-style varint length prefix).
//
// mls-go keeps its codec in an internal package, and its exported decoders
// are lenient by design (they try several encodings, locate handshake bodies
// by scanning, ignore trailing bytes). A Delivery Service that must decide
// deterministically what it accepts needs a strict decoder that keeps the
// exact bytes it verified signatures over, so the wire structures are decoded
// here. All cryptography still goes through mls-go.

var errShort = errors.New("truncated input")

// reader decodes from a byte slice. Every read returns an error instead of
// panicking, and slices returned alias the input (callers copy the input once
// at the API boundary).
type reader struct {
	b   []byte
	off int
}

func newReader(b []byte) *reader { return &reader{b: b} }

func (r *reader) empty() bool    { return r.off >= len(r.b) }
func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) u8() (uint8, error) {
	if r.remaining() < 1 {
		return 0, errShort
	}
	v := r.b[r.off]
	r.off++
	return v, nil
}

func (r *reader) u16() (uint16, error) {
	if r.remaining() < 2 {
		return 0, errShort
	}
	v := binary.BigEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v, nil
}

func (r *reader) u32() (uint32, error) {
	if r.remaining() < 4 {
		return 0, errShort
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

func (r *reader) u64() (uint64, error) {
	if r.remaining() < 8 {
		return 0, errShort
	}
	v := binary.BigEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, nil
}

// varint reads an RFC 9420 §2.1.2 length. Non-minimal encodings and the
// reserved 0b11 prefix are rejected.
func (r *reader) varint() (int, error) {
	if r.remaining() < 1 {
		return 0, errShort
	}
	b0 := r.b[r.off]
	switch b0 >> 6 {
	case 0:
		r.off++
		return int(b0), nil
	case 1:
		if r.remaining() < 2 {
			return 0, errShort
		}
		v := int(b0&0x3f)<<8 | int(r.b[r.off+1])
		if v < 64 {
			return 0, errors.New("non-minimal varint")
		}
		r.off += 2
		return v, nil
	case 2:
		if r.remaining() < 4 {
			return 0, errShort
		}
		v := int(b0&0x3f)<<24 | int(r.b[r.off+1])<<16 | int(r.b[r.off+2])<<8 | int(r.b[r.off+3])
		if v < 16384 {
			return 0, errors.New("non-minimal varint")
		}
		r.off += 4
		return v, nil
	default:
		return 0, errors.New("invalid varint prefix")
	}
}

// fixed reads n bytes.
func (r *reader) fixed(n int) ([]byte, error) {
	if n < 0 || r.remaining() < n {
		return nil, errShort
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v, nil
}

// vec reads a variable-size vector and returns its content.
func (r *reader) vec() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	return r.fixed(n)
}

// sub reads a variable-size vector and returns a reader over its content.
func (r *reader) sub() (*reader, error) {
	b, err := r.vec()
	if err != nil {
		return nil, err
	}
	return newReader(b), nil
}

// optional reads the presence octet of an optional<T>.
func (r *reader) optional() (bool, error) {
	p, err := r.u8()
	if err != nil {
		return false, err
	}
	switch p {
	case 0:
		return false, nil
	case 1:
		return true, nil
	default:
		return false, errors.New("invalid optional presence octet")
	}
}

// since returns the bytes consumed since offset start.
func (r *reader) since(start int) []byte { return r.b[start:r.off:r.off] }

// done fails if bytes remain.
func (r *reader) done() error {
	if r.remaining() != 0 {
		return errors.New("trailing bytes")
	}
	return nil
}

// writer encodes in the same profile. It never fails; vectors longer than
// 2^30-1 cannot occur for the structures written here.
type writer struct{ b []byte }

func (w *writer) u8(v uint8)   { w.b = append(w.b, v) }
func (w *writer) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *writer) raw(v []byte) { w.b = append(w.b, v...) }

func (w *writer) varint(n int) {
	switch {
	case n < 64:
		w.b = append(w.b, byte(n))
	case n < 16384:
		w.b = append(w.b, byte(0x40|n>>8), byte(n))
	default:
		w.b = append(w.b, byte(0x80|n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func (w *writer) vec(v []byte) {
	w.varint(len(v))
	w.b = append(w.b, v...)
}

// vecFunc writes a vector whose content is produced by f.
func (w *writer) vecFunc(f func(*writer)) {
	var inner writer
	f(&inner)
	w.vec(inner.b)
}
