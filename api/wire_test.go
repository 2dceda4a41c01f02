package api

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mlshome/homeserver/validation"
)

func TestMessageRequestForms(t *testing.T) {
	m := MessageRequest{Sender: 0x01020304, Message: []byte("mls message"), RequestSignature: bytes.Repeat([]byte{9}, 64)}
	enc, err := EncodeMessageRequest(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMessageRequest(enc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sender != m.Sender || !bytes.Equal(got.Message, m.Message) || !bytes.Equal(got.RequestSignature, m.RequestSignature) {
		t.Fatalf("binary round trip: %+v", got)
	}
	got, err = DecodeMessageRequest([]byte(` {"sender":7,"message":"AQI=","request_signature":"Aw=="}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.Sender != 7 || !bytes.Equal(got.Message, []byte{1, 2}) || !bytes.Equal(got.RequestSignature, []byte{3}) {
		t.Fatalf("JSON form: %+v", got)
	}
	if _, err := EncodeMessageRequest(MessageRequest{RequestSignature: make([]byte, 1<<16)}); err == nil {
		t.Error("a 65,536-byte request signature was encoded")
	}
	for _, bad := range [][]byte{
		nil, {}, {1, 0, 0}, {1, 0, 0, 0, 0, 0, 9, 1}, {2, 0, 0, 0, 0, 0, 0},
		[]byte(`{"sender":1,"extra":2}`), []byte(`{"sender":1} {}`), []byte(`[1]`),
	} {
		_, err := DecodeMessageRequest(bad)
		var ve *validation.Error
		if !errors.As(err, &ve) || ve.Code != validation.CodeMalformed {
			t.Errorf("%q: got %v, want code %s", bad, err, validation.CodeMalformed)
		}
	}
}

func FuzzDecodeMessageRequest(f *testing.F) {
	seed, err := EncodeMessageRequest(MessageRequest{Sender: 1, Message: []byte("m"), RequestSignature: []byte("s")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"sender":7,"message":"AQI=","request_signature":"Aw=="}`))
	f.Add([]byte{1, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessageRequest(b)
		if err != nil {
			var ve *validation.Error
			if !errors.As(err, &ve) || ve.Code != validation.CodeMalformed {
				t.Fatalf("error without code malformed: %v", err)
			}
			return
		}
		if len(b) > 0 && b[0] == messageFormatV1 {
			if again, err := EncodeMessageRequest(m); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("binary form does not round-trip: %x → %x", b, again)
			}
		}
	})
}
