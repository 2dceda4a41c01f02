package validation

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/projections"
)

// Codes of federation.
const (
	CodeOutOfOrder    = "out_of_order"
	CodeNotGroupOwner = "not_group_owner"
	CodeBadPolicy     = "bad_policy"
	CodeGroupBlocked  = "group_blocked"
)

func init() {
	statusOf[CodeOutOfOrder] = http.StatusConflict
	statusOf[CodeNotGroupOwner] = http.StatusForbidden
	statusOf[CodeBadPolicy] = http.StatusBadRequest
	statusOf[CodeGroupBlocked] = http.StatusForbidden
}

// MaxRecipients bounds the recipients of one federated delivery (the
// largest group the observer accepts).
const MaxRecipients = 1 << 16

// DeliverFederated records a delivery from another homeserver, whose
// envelope the federation layer opened and verified (signature, policy).
type DeliverFederated struct {
	Origin   string
	Counter  uint64
	Envelope []byte
	Message  events.FederatedMessage
}

// BlockGroup makes a local client's queue refuse a group owned elsewhere.
type BlockGroup struct {
	ClientID string
	GroupID  []byte
}

func (v *Validator) blockGroup(r eventlog.Reader, c BlockGroup) (eventlog.Decision, error) {
	if len(c.GroupID) == 0 || len(c.GroupID) > MaxGroupIDLen {
		return eventlog.Decision{}, Reject(CodeMalformed, "group id of 1 to %d bytes", MaxGroupIDLen)
	}
	if _, err := (projections.DirectoryView{R: r}).Client(c.ClientID); err != nil {
		return eventlog.Decision{}, Reject(CodeUnknownClient, "no client %s", c.ClientID)
	}
	return eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeQueueGroupBlocked, events.QueueGroupBlocked{
		ClientID: c.ClientID, GroupID: c.GroupID,
	})}, Reply: []byte(`{"blocked":true}`)}, nil
}

// TrimOutbox drops outbox entries a destination has committed.
type TrimOutbox struct {
	Destination string
	UpTo        uint64
}

// SetFederationPolicy changes the federation policy; Policy is the
// normalised JSON of federation.Policy.
type SetFederationPolicy struct {
	Policy []byte
}

// DeliveryReply is the writer's reply to a delivery.
type DeliveryReply struct {
	Duplicate bool   `json:"duplicate,omitempty"`
	Refused   string `json:"refused,omitempty"`
}

func (v *Validator) deliverFederated(r eventlog.Reader, c DeliverFederated) (eventlog.Decision, error) {
	ev, dup, err := v.checkDelivery(r, c)
	if err != nil {
		return eventlog.Decision{}, err
	}
	if dup {
		b, _ := json.Marshal(DeliveryReply{Duplicate: true})
		return eventlog.Decision{Reply: b}, nil
	}
	reply := DeliveryReply{}
	if ev.Type == events.TypeDeliveryRefused {
		reply.Refused = CodeBadQueueConfig
	}
	b, _ := json.Marshal(reply)
	return eventlog.Decision{Events: []eventlog.Draft{ev}, Reply: b}, nil
}

// checkDelivery keeps per-origin order (exactly once, in order: FED-4),
// makes sure the origin owns the group (FED-2: nobody fans out for another
// homeserver's group) and keeps only the recipients whose sealed queue
// config this homeserver issued (FED-5).
func (v *Validator) checkDelivery(r eventlog.Reader, c DeliverFederated) (eventlog.Draft, bool, error) {
	cur, err := projections.FederationView{R: r}.Cursor(c.Origin)
	if err != nil {
		return eventlog.Draft{}, false, err
	}
	switch {
	case c.Counter <= cur:
		return eventlog.Draft{}, true, nil
	case c.Counter > cur+1:
		return eventlog.Draft{}, false, Reject(CodeOutOfOrder, "delivery %d from %s, expected %d", c.Counter, c.Origin, cur+1)
	}
	refuse := func(code string) (eventlog.Draft, bool, error) {
		return events.Draft(events.TypeDeliveryRefused, events.DeliveryRefused{Origin: c.Origin, Counter: c.Counter, Code: code}), false, nil
	}
	if GroupIDDomain(c.Message.GroupID) != c.Origin {
		return refuse(CodeNotGroupOwner)
	}
	if len(c.Message.Recipients) > MaxRecipients {
		return refuse(CodeMalformed)
	}
	m := c.Message
	m.Recipients = nil
	blocked := 0
	for _, sealed := range c.Message.Recipients {
		t, err := v.Env.ResolveQueue(sealed)
		if err != nil || t.Domain != v.Env.Domain || t.ClientID == "" {
			continue
		}
		if b, err := (projections.QueueView{R: r}).Blocked(t.ClientID, m.GroupID); err != nil {
			return eventlog.Draft{}, false, err
		} else if b {
			blocked++
			continue
		}
		m.Recipients = append(m.Recipients, sealed)
	}
	if len(m.Recipients) == 0 {
		if blocked > 0 {
			return refuse(CodeGroupBlocked)
		}
		return refuse(CodeBadQueueConfig)
	}
	return events.Draft(events.TypeDeliveryReceived, events.DeliveryReceived{
		Origin: c.Origin, Counter: c.Counter, Envelope: c.Envelope, Message: m,
	}), false, nil
}

func (v *Validator) trimOutbox(r eventlog.Reader, c TrimOutbox) (eventlog.Decision, error) {
	view := projections.OutboxView{R: r}
	done, err := view.Trimmed(c.Destination)
	if err != nil {
		return eventlog.Decision{}, err
	}
	if c.UpTo <= done {
		return eventlog.Decision{}, nil
	}
	return eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeOutboxTrimmed, events.OutboxTrimmed{
		Destination: c.Destination, UpTo: c.UpTo,
	})}}, nil
}

func (v *Validator) setFederationPolicy(c SetFederationPolicy) (eventlog.Decision, error) {
	var probe map[string]any
	if err := json.Unmarshal(c.Policy, &probe); err != nil {
		return eventlog.Decision{}, Reject(CodeBadPolicy, "policy: %v", err)
	}
	return eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeFederationPolicyChanged, events.FederationPolicyChanged{
		Policy: c.Policy,
	})}, Reply: c.Policy}, nil
}

func (v *Validator) revalidateFederation(r eventlog.Reader, ev *eventlog.Event) error {
	switch ev.Type {
	case events.TypeDeliveryReceived, events.TypeDeliveryRefused:
		var c DeliverFederated
		if ev.Type == events.TypeDeliveryReceived {
			var e events.DeliveryReceived
			if err := events.Decode(ev, &e); err != nil {
				return Reject(CodeMalformed, "%v", err)
			}
			c = DeliverFederated{Origin: e.Origin, Counter: e.Counter, Envelope: e.Envelope, Message: e.Message}
		} else {
			var e events.DeliveryRefused
			if err := events.Decode(ev, &e); err != nil {
				return Reject(CodeMalformed, "%v", err)
			}
			cur, err := projections.FederationView{R: r}.Cursor(e.Origin)
			if err != nil {
				return err
			}
			if e.Counter != cur+1 {
				return Reject(CodeOutOfOrder, "refused delivery %d from %s, expected %d", e.Counter, e.Origin, cur+1)
			}
			return nil
		}
		d, dup, err := v.checkDelivery(r, c)
		if err != nil {
			return err
		}
		if dup {
			return Reject(CodeOutOfOrder, "delivery %d from %s recorded twice", c.Counter, c.Origin)
		}
		return samePayload(ev, d)
	case events.TypeOutboxTrimmed:
		var e events.OutboxTrimmed
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		done, err := projections.OutboxView{R: r}.Trimmed(e.Destination)
		if err != nil {
			return err
		}
		if e.UpTo <= done {
			return Reject(CodeMalformed, "trim of %s to %d after %d", e.Destination, e.UpTo, done)
		}
		return nil
	case events.TypeFederationPolicyChanged:
		var e events.FederationPolicyChanged
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		_, err := v.setFederationPolicy(SetFederationPolicy{Policy: e.Policy})
		return err
	case events.TypeQueueGroupBlocked:
		var e events.QueueGroupBlocked
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		_, err := v.blockGroup(r, BlockGroup{ClientID: e.ClientID, GroupID: e.GroupID})
		return err
	}
	return errors.New("not a federation event")
}
