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
	"encoding/json"
	"fmt"

	"github.com/mlshome/homeserver/eventlog"
)

// Event type names.
const (
	TypeUserRegistered   = "UserRegistered"
	TypeClientRegistered = "ClientRegistered"

	TypeKeyPackagesPublished = "KeyPackagesPublished"
	TypeKeyPackageClaimed    = "KeyPackageClaimed"
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

// Draft encodes v as the payload of a new event of type typ.
func Draft(typ string, v any) eventlog.Draft {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own structs are encoded here; failure is a programming error.
		panic(fmt.Sprintf("events: encode %s: %v", typ, err))
	}
	return eventlog.Draft{Type: typ, Payload: b}
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
