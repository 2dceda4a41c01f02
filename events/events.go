// Package events defines the domain events of the homeserver: their type
// names and payloads. Payloads are JSON objects of the structs below;
// encoding/json writes struct fields in declaration order, so an event's
// bytes are a deterministic function of its value. The envelope (sequence,
// time, type, version) is eventlog's.
//
// Changing a payload struct changes what the log means: add fields with
// omitempty, never rename or reuse one.
package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/mlshome/homeserver/eventlog"
)

// Event type names.
const (
	TypeUserRegistered   = "UserRegistered"
	TypeClientRegistered = "ClientRegistered"

	TypeKeyPackagesPublished = "KeyPackagesPublished"
	TypeKeyPackageClaimed    = "KeyPackageClaimed"

	TypeTokensIssued               = "TokensIssued"
	TypeGroupCreated               = "GroupCreated"
	TypeCommitAccepted             = "CommitAccepted"
	TypeProposalAccepted           = "ProposalAccepted"
	TypeApplicationMessageAccepted = "ApplicationMessageAccepted"
	TypeQueueAcked                 = "QueueAcked"

	TypeDeliveryReceived        = "DeliveryReceived"
	TypeDeliveryRefused         = "DeliveryRefused"
	TypeOutboxTrimmed           = "OutboxTrimmed"
	TypeFederationPolicyChanged = "FederationPolicyChanged"
	TypeQueueGroupBlocked       = "QueueGroupBlocked"
)

// UserRegistered records a new local user.
type UserRegistered struct {
	UserID string `json:"user_id"`
}

// ClientRegistered records a client of a local user: its signature key and
// the client credential the homeserver's authentication key signed for it.
type ClientRegistered struct {
	UserID       string `json:"user_id"`
	ClientID     string `json:"client_id"`
	SignatureKey []byte `json:"signature_key"`
	Credential   []byte `json:"credential"`
}

// PublishedKeyPackage is one validated KeyPackage with what the directory
// needs to hand it out; Data is the KeyPackage exactly as published.
type PublishedKeyPackage struct {
	Ref        []byte `json:"ref"`
	LastResort bool   `json:"last_resort,omitempty"`
	NotBefore  uint64 `json:"not_before"`
	NotAfter   uint64 `json:"not_after"`
	Data       []byte `json:"data"`
}

// KeyPackagesPublished replaces all of a client's KeyPackages.
type KeyPackagesPublished struct {
	UserID      string                `json:"user_id"`
	ClientID    string                `json:"client_id"`
	KeyPackages []PublishedKeyPackage `json:"key_packages"`
}

// KeyPackageClaimed records that an ordinary KeyPackage was handed out
// (and so deleted). It names the target only: who claimed is not recorded
// (GUC-4).
type KeyPackageClaimed struct {
	UserID   string `json:"user_id"`
	ClientID string `json:"client_id"`
	Ref      []byte `json:"ref"`
}

// TokensIssued records that a user's client got Count group-creation
// tokens in allowance window Window (GC-6). The blinded elements are not
// recorded: they would add nothing but linkability risk.
type TokensIssued struct {
	UserID string `json:"user_id"`
	Window int64  `json:"window"`
	Count  int    `json:"count"`
}

// GroupCreated records a new group owned by this homeserver: its epoch-0
// GroupInfo and ratchet tree, the creator's sealed queue config, and the
// spent token's key id and nonce (GC-4: nothing names the creator).
type GroupCreated struct {
	GroupID     []byte `json:"group_id"`
	GroupInfo   []byte `json:"group_info"`
	RatchetTree []byte `json:"ratchet_tree,omitempty"`
	QueueConfig []byte `json:"queue_config"`
	TokenKeyID  []byte `json:"token_key_id"`
	TokenNonce  []byte `json:"token_nonce"`
	Token       []byte `json:"token"`
	Signature   []byte `json:"signature"`
}

// AddedLeaf is a member added by a commit, with what routing needs.
type AddedLeaf struct {
	Leaf          uint32 `json:"leaf"`
	KeyPackageRef []byte `json:"key_package_ref"`
	QueueConfig   []byte `json:"queue_config"`
}

// CommitAccepted records the one commit accepted for an epoch, with the
// Welcome for the members it added, and the membership change the
// observer computed (replay recomputes and the audit compares).
type CommitAccepted struct {
	GroupID []byte      `json:"group_id"`
	Epoch   uint64      `json:"epoch"` // the new epoch
	Sender  uint32      `json:"sender"`
	Message []byte      `json:"message"`
	Welcome []byte      `json:"welcome,omitempty"`
	Added   []AddedLeaf `json:"added,omitempty"`
	Removed []uint32    `json:"removed,omitempty"`
	Updated []uint32    `json:"updated,omitempty"`
}

// ProposalAccepted records a proposal stored for the current epoch.
type ProposalAccepted struct {
	GroupID []byte `json:"group_id"`
	Epoch   uint64 `json:"epoch"`
	Sender  uint32 `json:"sender"`
	Message []byte `json:"message"`
}

// ApplicationMessageAccepted records an application message (a
// PrivateMessage) with the sender leaf's request signature.
type ApplicationMessageAccepted struct {
	GroupID          []byte `json:"group_id"`
	Epoch            uint64 `json:"epoch"`
	Sender           uint32 `json:"sender"`
	Message          []byte `json:"message"`
	RequestSignature []byte `json:"request_signature"`
}

// GroupMessageHeader is the part of ApplicationMessageAccepted,
// ProposalAccepted and CommitAccepted that routing needs: decoding only it
// skips the message bytes.
type GroupMessageHeader struct {
	GroupID []byte `json:"group_id"`
	Epoch   uint64 `json:"epoch"`
	Sender  uint32 `json:"sender"`
}

// QueueAcked records that a local client acknowledged its queue up to and
// including sequence UpTo.
type QueueAcked struct {
	ClientID string `json:"client_id"`
	UpTo     uint64 `json:"up_to"`
}

// FederatedMessage is what a group's owning homeserver sends another
// homeserver for its members there: one group message (or Welcome) and the
// sealed queue configs of the recipients, which only the destination can
// open (FED-5). It is the payload of an outbox entry and of the signed
// envelope the destination records.
type FederatedMessage struct {
	OriginSeq  uint64   `json:"origin_seq"`
	Type       string   `json:"type"` // the owning homeserver's event type
	GroupID    []byte   `json:"group_id"`
	Epoch      uint64   `json:"epoch"`
	Sender     uint32   `json:"sender"`
	Message    []byte   `json:"message,omitempty"`
	Welcome    []byte   `json:"welcome,omitempty"`
	Removed    []uint32 `json:"removed,omitempty"`
	Recipients [][]byte `json:"recipients"`
}

// DeliveryReceived records a delivery from another homeserver: its origin
// and per-origin counter, and the signed envelope as received, which
// proves what the origin sent (FED-3).
//
// Message is the envelope's payload with Recipients narrowed to the queue
// configs this homeserver issued (the others are refused, FED-5).
type DeliveryReceived struct {
	Origin   string           `json:"origin"`
	Counter  uint64           `json:"counter"`
	Envelope []byte           `json:"envelope"`
	Message  FederatedMessage `json:"message"`
}

// DeliveryRouting is the part of a DeliveryReceived that projections
// route by: decoding only it skips the envelope and the message bytes,
// which are most of the event.
type DeliveryRouting struct {
	Origin  string `json:"origin"`
	Counter uint64 `json:"counter"`
	Message struct {
		Recipients [][]byte `json:"recipients"`
	} `json:"message"`
}

// UnmarshalDeliveryRouting parses the routing part of the payload of a
// DeliveryReceived event, ignoring its other fields; the audit decodes and
// checks the whole event (validation.Revalidate).
func UnmarshalDeliveryRouting(payload []byte, d *DeliveryRouting) error {
	return json.Unmarshal(payload, d)
}

// DeliveryRefused records a delivery from another homeserver that named no
// queue this homeserver issued (FED-5); it keeps the per-origin order.
type DeliveryRefused struct {
	Origin  string `json:"origin"`
	Counter uint64 `json:"counter"`
	Code    string `json:"code"`
}

// OutboxTrimmed records that Destination committed every delivery up to
// UpTo, so those outbox entries are dropped.
type OutboxTrimmed struct {
	Destination string `json:"destination"`
	UpTo        uint64 `json:"up_to"`
}

// FederationPolicyChanged sets the federation policy (FED-1, FED-5);
// Policy is its deterministic JSON.
type FederationPolicyChanged struct {
	Policy json.RawMessage `json:"policy"`
}

// QueueGroupBlocked records that a local client wants nothing more from a
// group owned by another homeserver: deliveries for it to this client's
// queue are refused (FED-5).
type QueueGroupBlocked struct {
	ClientID string `json:"client_id"`
	GroupID  []byte `json:"group_id"`
}

// Draft encodes v as the payload of a new event of type typ.
func Draft(typ string, v any) eventlog.Draft {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own structs are encoded here; failure is a programming error.
		panic(fmt.Sprintf("events: encode %s: %v", typ, err))
	}
	return eventlog.Draft{Type: typ, Payload: b}
}

// DecodeHeader parses the routing header of a group message event,
// ignoring the other fields. Every projection routes each message by its
// header, so the common case is read without a JSON decoder: a payload
// that starts as Draft writes it ({"group_id":"<base64>","epoch":N,
// "sender":N, …) is read from those leading fields alone, and the rest of
// the payload is left to whoever decodes it; any other payload goes
// through encoding/json. Live writes and replay call the same function on
// the same bytes, so both read the same header.
func DecodeHeader(ev *eventlog.Event) (GroupMessageHeader, error) {
	if h, ok := scanHeader(ev.Payload); ok {
		return h, nil
	}
	var h GroupMessageHeader
	if err := json.Unmarshal(ev.Payload, &h); err != nil {
		return h, fmt.Errorf("event %d (%s): %w", ev.Seq, ev.Type, err)
	}
	return h, nil
}

// Decode parses the payload of ev into v, refusing unknown fields.
func Decode(ev *eventlog.Event, v any) error {
	d := json.NewDecoder(bytes.NewReader(ev.Payload))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("event %d (%s): %w", ev.Seq, ev.Type, err)
	}
	return nil
}

// scanHeader reads the header from the leading fields of p as
// encoding/json writes them. It reports false, leaving the payload to
// encoding/json, for anything else: other field order, null, escapes, or
// numbers outside JSON's plain integer form.
func scanHeader(p []byte) (GroupMessageHeader, bool) {
	var h GroupMessageHeader
	rest, ok := bytes.CutPrefix(p, []byte(`{"group_id":"`))
	if !ok {
		return h, false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.ContainsAny(rest[:end], "\\\r\n") {
		return h, false
	}
	gid := make([]byte, base64.StdEncoding.DecodedLen(end))
	n, err := base64.StdEncoding.Decode(gid, rest[:end])
	if err != nil {
		return h, false
	}
	h.GroupID = gid[:n]
	if rest, ok = bytes.CutPrefix(rest[end+1:], []byte(`,"epoch":`)); !ok {
		return h, false
	}
	if h.Epoch, rest, ok = scanUint(rest, math.MaxUint64); !ok {
		return h, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"sender":`)); !ok {
		return h, false
	}
	sender, rest, ok := scanUint(rest, math.MaxUint32)
	if !ok || len(rest) == 0 || (rest[0] != ',' && rest[0] != '}') {
		return h, false
	}
	h.Sender = uint32(sender)
	return h, true
}

// scanUint reads a JSON non-negative integer no larger than max.
func scanUint(p []byte, max uint64) (uint64, []byte, bool) {
	i := 0
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	if i == 0 || (i > 1 && p[0] == '0') || i > 20 {
		return 0, p, false
	}
	v, err := strconv.ParseUint(string(p[:i]), 10, 64)
	if err != nil || v > max {
		return 0, p, false
	}
	return v, p[i:], true
}
