package api

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/mlshome/homeserver/validation"
)

// MessageContentType is the media type of the binary form of an
// application-message request. Senders post messages far more often than
// anything else, and the binary form spares both sides JSON and base64:
//
//	0x01                          format version
//	uint32 sender                 leaf index, big-endian
//	uint16 len, request_signature big-endian length, then the bytes
//	message                       the rest of the body: the MLSMessage
//
// The JSON form ({"sender", "message", "request_signature"}) stays
// accepted; the two are told apart by the first byte, so a relayed request
// reaches the owning homeserver unchanged in either form.
const MessageContentType = "application/vnd.mlshome.message"

const messageFormatV1 = 0x01

// EncodeMessageRequest returns the binary form of m. A request signature
// longer than 65,535 bytes has no binary form.
func EncodeMessageRequest(m MessageRequest) ([]byte, error) {
	if len(m.RequestSignature) > 0xffff {
		return nil, fmt.Errorf("message request: request signature of %d bytes has no binary form", len(m.RequestSignature))
	}
	b := make([]byte, 0, 7+len(m.RequestSignature)+len(m.Message))
	b = append(b, messageFormatV1)
	b = binary.BigEndian.AppendUint32(b, m.Sender)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.RequestSignature)))
	b = append(b, m.RequestSignature...)
	return append(b, m.Message...), nil
}

// DecodeMessageRequest parses an application-message request in either
// form: binary (first byte 0x01) or strict JSON. The returned slices alias
// b. Every failure is a validation error with code "malformed".
func DecodeMessageRequest(b []byte) (MessageRequest, error) {
	var m MessageRequest
	if len(b) > 0 && b[0] == messageFormatV1 {
		if len(b) < 7 {
			return m, validation.Reject(validation.CodeMalformed, "message request: %d bytes, shorter than its 7-byte header", len(b))
		}
		m.Sender = binary.BigEndian.Uint32(b[1:5])
		n := int(binary.BigEndian.Uint16(b[5:7]))
		if len(b) < 7+n {
			return m, validation.Reject(validation.CodeMalformed, "message request: request signature of %d bytes runs past the body", n)
		}
		m.RequestSignature, m.Message = b[7:7+n:7+n], b[7+n:]
		return m, nil
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return m, validation.Reject(validation.CodeMalformed, "message request: neither the binary form (first byte 0x01) nor a JSON object")
	}
	err := decodeStrict(b, &m)
	return m, err
}
