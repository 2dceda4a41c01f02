package events

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/mlshome/homeserver/eventlog"
)

// The fast header path must read what encoding/json reads from every
// payload Draft writes.
func TestDecodeHeaderMatchesJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		gid := make([]byte, rng.IntN(80))
		for j := range gid {
			gid[j] = byte(rng.Uint32())
		}
		msg := make([]byte, rng.IntN(300))
		epochs := []uint64{0, 1, rng.Uint64(), math.MaxUint64}
		senders := []uint32{0, 7, rng.Uint32(), math.MaxUint32}
		var v any
		switch i % 3 {
		case 0:
			v = ApplicationMessageAccepted{GroupID: gid, Epoch: epochs[i%4], Sender: senders[(i/4)%4], Message: msg, RequestSignature: msg[:len(msg)/2]}
		case 1:
			v = ProposalAccepted{GroupID: gid, Epoch: epochs[i%4], Sender: senders[(i/4)%4], Message: msg}
		default:
			v = CommitAccepted{GroupID: gid, Epoch: epochs[i%4], Sender: senders[(i/4)%4], Message: msg, Removed: []uint32{1, 2}}
		}
		d := Draft("T", v)
		fast, ok := scanHeader(d.Payload)
		if !ok {
			t.Fatalf("fast path refused a Draft payload: %s", d.Payload)
		}
		var want GroupMessageHeader
		if err := json.Unmarshal(d.Payload, &want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast.GroupID, want.GroupID) || fast.Epoch != want.Epoch || fast.Sender != want.Sender {
			t.Fatalf("fast %+v, encoding/json %+v for %s", fast, want, d.Payload)
		}
	}
}

func TestDecodeHeaderFallsBack(t *testing.T) {
	for _, tc := range []struct {
		payload string
		want    GroupMessageHeader
		err     bool
	}{
		{`{"epoch":3,"group_id":"AQI=","sender":1}`, GroupMessageHeader{GroupID: []byte{1, 2}, Epoch: 3, Sender: 1}, false},
		{`{"group_id":null,"epoch":3,"sender":1}`, GroupMessageHeader{Epoch: 3, Sender: 1}, false},
		{`{"group_id":"AQI\u003d","epoch":3,"sender":1}`, GroupMessageHeader{GroupID: []byte{1, 2}, Epoch: 3, Sender: 1}, false},
		{`{"group_id":"AQI=","epoch":03,"sender":1}`, GroupMessageHeader{}, true},
		{`{"group_id":"AQI=","epoch":3,"sender":4294967296}`, GroupMessageHeader{}, true},
		{`{"group_id":"AQI=","epoch":3,"sender":1.5}`, GroupMessageHeader{}, true},
		{`{"group_id":"AQI","epoch":3,"sender":1}`, GroupMessageHeader{}, true},
		{`not json`, GroupMessageHeader{}, true},
	} {
		h, err := DecodeHeader(&eventlog.Event{Seq: 1, Type: "T", Payload: []byte(tc.payload)})
		if (err != nil) != tc.err {
			t.Fatalf("%s: err %v, want error %v", tc.payload, err, tc.err)
		}
		if err == nil && (!bytes.Equal(h.GroupID, tc.want.GroupID) || h.Epoch != tc.want.Epoch || h.Sender != tc.want.Sender) {
			t.Fatalf("%s: got %+v, want %+v", tc.payload, h, tc.want)
		}
	}
}

// FuzzDecodeHeader: whenever the fast path accepts a payload that is
// valid JSON without repeated keys, encoding/json reads the same header.
func FuzzDecodeHeader(f *testing.F) {
	f.Add(Draft("T", ApplicationMessageAccepted{GroupID: []byte("g@hs"), Epoch: 5, Sender: 2, Message: []byte("m")}).Payload)
	f.Add([]byte(`{"group_id":"","epoch":0,"sender":0}`))
	f.Add([]byte(`{"group_id":"AQI=","epoch":3,"sender":1,"group_id":"AA=="}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		fast, ok := scanHeader(p)
		_, _ = DecodeHeader(&eventlog.Event{Payload: p})
		if !ok || !json.Valid(p) || repeatedKeys(p) {
			return
		}
		var want GroupMessageHeader
		if err := json.Unmarshal(p, &want); err != nil {
			return // e.g. a later field of the wrong type
		}
		if !bytes.Equal(fast.GroupID, want.GroupID) || fast.Epoch != want.Epoch || fast.Sender != want.Sender {
			t.Fatalf("fast %+v, encoding/json %+v for %q", fast, want, p)
		}
	})
}

// repeatedKeys reports whether the top-level object p names a header
// field twice (encoding/json keeps the last one, case-insensitively).
func repeatedKeys(p []byte) bool {
	d := json.NewDecoder(bytes.NewReader(p))
	if _, err := d.Token(); err != nil {
		return false
	}
	seen := map[string]bool{}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return false
		}
		ks := string(bytes.ToLower([]byte(k.(string))))
		if seen[ks] {
			return true
		}
		seen[ks] = true
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

// The routing decode of a DeliveryReceived reads what the full decode
// reads from every payload Draft writes, and refuses what is not one.
func TestDecodeDeliveryRoutingMatchesDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 500; i++ {
		var recipients [][]byte
		for range rng.IntN(4) {
			r := make([]byte, 1+rng.IntN(60))
			for j := range r {
				r[j] = byte(rng.Uint32())
			}
			recipients = append(recipients, r)
		}
		env := make([]byte, rng.IntN(2000))
		d := Draft(TypeDeliveryReceived, DeliveryReceived{
			Origin: "hs" + string(rune('a'+i%26)) + ".example", Counter: rng.Uint64(), Envelope: env,
			Message: FederatedMessage{OriginSeq: uint64(i), Type: TypeApplicationMessageAccepted, GroupID: env[:len(env)/3], Message: env, Recipients: recipients},
		})
		ev := &eventlog.Event{Seq: uint64(i + 1), Type: d.Type, Payload: d.Payload}
		var full DeliveryReceived
		if err := Decode(ev, &full); err != nil {
			t.Fatal(err)
		}
		var got DeliveryRouting
		if err := UnmarshalDeliveryRouting(ev.Payload, &got); err != nil {
			t.Fatal(err)
		}
		if got.Origin != full.Origin || got.Counter != full.Counter || len(got.Message.Recipients) != len(full.Message.Recipients) {
			t.Fatalf("routing %+v, full decode %+v", got, full)
		}
		for j := range got.Message.Recipients {
			if !bytes.Equal(got.Message.Recipients[j], full.Message.Recipients[j]) {
				t.Fatalf("recipient %d: routing %x, full decode %x", j, got.Message.Recipients[j], full.Message.Recipients[j])
			}
		}
	}
	for _, p := range []string{`not json`, `{"origin":1,"counter":2}`, `{"origin":"a","counter":-1}`, `{"origin":"a","message":{"recipients":["%%"]}}`} {
		var d DeliveryRouting
		if err := UnmarshalDeliveryRouting([]byte(p), &d); err == nil {
			t.Errorf("%s: accepted", p)
		}
	}
}
