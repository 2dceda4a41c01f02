package federation

import (
	"golang.org/x/crypto/cryptobyte"
)

// maxErrorMsgLen bounds the human message of an error reply.
const maxErrorMsgLen = 1024

// ErrorPayload is the payload of a [KindError] reply:
//
//	u8<code> u16<message>
//
// The code is a stable machine code ([a-z0-9_]{1,32}); the message is for
// humans, at most 1024 bytes.
type ErrorPayload struct {
	Code string
	Msg  string
}

// Marshal encodes p, truncating a long message and replacing an invalid
// code with [CodeInternal].
func (p ErrorPayload) Marshal() []byte {
	if !validKind(p.Code) {
		p.Code = CodeInternal
	}
	if len(p.Msg) > maxErrorMsgLen {
		p.Msg = p.Msg[:maxErrorMsgLen]
	}
	b := cryptobyte.NewBuilder(nil)
	addU8(b, []byte(p.Code))
	addU16(b, []byte(p.Msg))
	return b.BytesOrPanic()
}

// ParseErrorPayload decodes an [ErrorPayload] strictly.
func ParseErrorPayload(data []byte) (ErrorPayload, error) {
	s := cryptobyte.String(data)
	var code, msg cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&code) || !s.ReadUint16LengthPrefixed(&msg) || !s.Empty() ||
		!validKind(string(code)) || len(msg) > maxErrorMsgLen {
		return ErrorPayload{}, Errorf(CodeMalformed, "malformed error reply")
	}
	return ErrorPayload{Code: string(code), Msg: string(msg)}, nil
}
