package federation

import (
	"context"

	"golang.org/x/crypto/cryptobyte"
)

// CursorReply is the payload of the reply to a [KindCursor] request (whose
// own payload is empty):
//
//	u64 processed  u64 resume
//
// Processed is the receiver's delivery cursor for the asking origin: every
// delivery 1..Processed is committed to its log, so the origin may trim its
// outbox up to it. Resume is the counter after which the origin should
// publish: the last delivery waiting in the receiver's stream when the
// stream holds an unbroken run after Processed, else Processed itself (the
// stream lost deliveries, or never had them, so they must be published
// again).
type CursorReply struct {
	Processed uint64
	Resume    uint64
}

// Marshal encodes r.
func (r CursorReply) Marshal() []byte {
	b := cryptobyte.NewBuilder(make([]byte, 0, 16))
	b.AddUint64(r.Processed)
	b.AddUint64(r.Resume)
	return b.BytesOrPanic()
}

// ParseCursorReply decodes a [CursorReply] strictly; Resume must not be
// below Processed.
func ParseCursorReply(data []byte) (CursorReply, error) {
	s := cryptobyte.String(data)
	var r CursorReply
	if !s.ReadUint64(&r.Processed) || !s.ReadUint64(&r.Resume) || !s.Empty() || r.Resume < r.Processed {
		return CursorReply{}, Errorf(CodeMalformed, "malformed cursor reply")
	}
	return r, nil
}

// QueryCursor asks dest for its delivery cursor for this homeserver.
func (t *Transport) QueryCursor(ctx context.Context, dest string) (CursorReply, error) {
	env, err := t.request(ctx, dest, SuffixCursor, KindCursor, nil)
	if err != nil {
		return CursorReply{}, err
	}
	return ParseCursorReply(env.Payload)
}
