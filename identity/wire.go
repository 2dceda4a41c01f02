package identity

import (
	"golang.org/x/crypto/cryptobyte"
)

// Helpers for the canonical binary encodings: TLS-style length-prefixed
// fields (RFC 8446 §3 presentation language), big-endian integers, no
// optional fields, no trailing bytes. Decoding is strict, so each value has
// exactly one encoding and re-encoding a decoded value gives the same bytes.

func addU8Bytes(b *cryptobyte.Builder, v []byte) {
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

func addU16Bytes(b *cryptobyte.Builder, v []byte) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

func addU32Bytes(b *cryptobyte.Builder, v []byte) {
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

func readU8Bytes(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) {
		return false
	}
	*out = append([]byte(nil), v...)
	return true
}

func readU16Bytes(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) {
		return false
	}
	*out = append([]byte(nil), v...)
	return true
}

func readU32Bytes(s *cryptobyte.String, out *[]byte) bool {
	var n uint32
	var v []byte
	if !s.ReadUint32(&n) || uint64(n) > uint64(len(*s)) || !s.ReadBytes(&v, int(n)) {
		return false
	}
	*out = append([]byte(nil), v...)
	return true
}

func readU8String(s *cryptobyte.String, out *string) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) {
		return false
	}
	*out = string(v)
	return true
}

func readU16String(s *cryptobyte.String, out *string) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) {
		return false
	}
	*out = string(v)
	return true
}

// readLabel consumes a u8-length-prefixed label and a version byte and
// reports a [CodeMalformed] or [CodeUnsupportedVersion] error if they are
// not label and version.
func readLabel(s *cryptobyte.String, label string, version uint8) *Error {
	var got string
	var v uint8
	if !readU8String(s, &got) || got != label {
		return errorf(CodeMalformed, "not a %s", label)
	}
	if !s.ReadUint8(&v) {
		return errorf(CodeMalformed, "%s: truncated", label)
	}
	if v != version {
		return errorf(CodeUnsupportedVersion, "%s version %d", label, v)
	}
	return nil
}

func addLabel(b *cryptobyte.Builder, label string, version uint8) {
	addU8Bytes(b, []byte(label))
	b.AddUint8(version)
}
