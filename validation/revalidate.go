package validation

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/projections"
)

// RevalidateDeferred is Revalidate split in two: the part that reads the
// state runs now, and the part that does not (a signature verification, for
// application messages) is returned to be run later, possibly in parallel
// with other events. deferred is nil when there is nothing left to run.
func (v *Validator) RevalidateDeferred(r eventlog.Reader, ev *eventlog.Event) (deferred func() error, err error) {
	if ev.Type != events.TypeApplicationMessageAccepted {
		return nil, v.Revalidate(r, ev)
	}
	var e events.ApplicationMessageAccepted
	if err := events.Decode(ev, &e); err != nil {
		return nil, Reject(CodeMalformed, "%v", err)
	}
	epoch, verify, err := v.appMessageState(r, e.GroupID, e.Sender, e.Message, e.RequestSignature)
	if err != nil {
		return nil, err
	}
	if epoch != e.Epoch {
		return nil, Reject(CodeMalformed, "recorded epoch %d, group epoch %d", e.Epoch, epoch)
	}
	return verify, nil
}

// Revalidate re-runs, for an audit (LOG-4), the checks that admitted ev:
// r is the projected state just before ev (every earlier event applied),
// and the event's own time stands for the batch time. It returns nil if
// the event would be accepted today, else the rejection. Event types that
// carry no client input (none yet) are accepted as they are.
func (v *Validator) Revalidate(r eventlog.Reader, ev *eventlog.Event) error {
	switch ev.Type {
	case events.TypeUserRegistered:
		var e events.UserRegistered
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		if err := ParseLocalUserID(e.UserID, v.Env.Domain); err != nil {
			return err
		}
		if _, err := (projections.DirectoryView{R: r}).User(e.UserID); err == nil {
			return Reject(CodeUserExists, "user %s already exists", e.UserID)
		} else if !errors.Is(err, eventlog.ErrNotFound) {
			return err
		}
		return nil
	case events.TypeClientRegistered:
		var e events.ClientRegistered
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		dir := projections.DirectoryView{R: r}
		if _, err := dir.User(e.UserID); errors.Is(err, eventlog.ErrNotFound) {
			return Reject(CodeUnknownUser, "no user %s", e.UserID)
		} else if err != nil {
			return err
		}
		if clients, err := dir.Clients(e.UserID); err != nil {
			return err
		} else if len(clients) >= MaxClientsPerUser {
			return Reject(CodeTooManyClients, "a user may register at most %d clients", MaxClientsPerUser)
		}
		return v.checkClient(r, e.UserID, ClientReg{ClientID: e.ClientID, SignatureKey: e.SignatureKey, Credential: e.Credential})
	case events.TypeKeyPackagesPublished:
		var e events.KeyPackagesPublished
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		raws := make([][]byte, len(e.KeyPackages))
		for i, kp := range e.KeyPackages {
			raws[i] = kp.Data
		}
		checked, err := v.CheckKeyPackages(e.ClientID, raws, time.Unix(0, ev.Time))
		if err != nil {
			return err
		}
		for i := range checked {
			a, _ := json.Marshal(checked[i])
			b, _ := json.Marshal(e.KeyPackages[i])
			if !bytes.Equal(a, b) {
				return Reject(CodeInvalidKeyPackage, "KeyPackage %d: recorded metadata differs from the KeyPackage", i)
			}
		}
		return checkPublish(r, ev.Time, e.UserID, e.ClientID, e.KeyPackages)
	case events.TypeKeyPackageClaimed:
		var e events.KeyPackageClaimed
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		return revalidateClaim(r, ev, e)
	case events.TypeTokensIssued:
		var e events.TokensIssued
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		if _, err := (projections.DirectoryView{R: r}).User(e.UserID); err != nil {
			return Reject(CodeUnknownUser, "no user %s", e.UserID)
		}
		d, err := v.issueTokens(r, ev.Time, IssueTokens{UserID: e.UserID, Count: e.Count})
		if err != nil {
			return err
		}
		return samePayload(ev, d.Events[0])
	case events.TypeGroupCreated:
		var e events.GroupCreated
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		if v.Env.VerifyToken == nil {
			return Reject(CodeInvalidToken, "no token keys to verify with")
		}
		keyID, nonce, err := v.Env.VerifyToken(e.Token, time.Unix(0, ev.Time))
		if err != nil {
			return Reject(CodeInvalidToken, "%v", err)
		}
		if !bytes.Equal(keyID, e.TokenKeyID) || !bytes.Equal(nonce, e.TokenNonce) {
			return Reject(CodeInvalidToken, "recorded token key id or nonce differs from the token")
		}
		d, err := v.createGroup(r, ev.Time, CreateGroup{GroupID: e.GroupID, GroupInfo: e.GroupInfo, RatchetTree: e.RatchetTree,
			QueueConfig: e.QueueConfig, Token: e.Token, TokenKeyID: e.TokenKeyID, TokenNonce: e.TokenNonce, Signature: e.Signature})
		if err != nil {
			return err
		}
		return samePayload(ev, d.Events[0])
	case events.TypeCommitAccepted, events.TypeProposalAccepted:
		var h Handshake
		if ev.Type == events.TypeCommitAccepted {
			var e events.CommitAccepted
			if err := events.Decode(ev, &e); err != nil {
				return Reject(CodeMalformed, "%v", err)
			}
			h = Handshake{GroupID: e.GroupID, Message: e.Message, Welcome: e.Welcome}
		} else {
			var e events.ProposalAccepted
			if err := events.Decode(ev, &e); err != nil {
				return Reject(CodeMalformed, "%v", err)
			}
			h = Handshake{GroupID: e.GroupID, Message: e.Message}
		}
		c, err := v.checkHandshake(r, ev.Time, h)
		if err != nil {
			return err
		}
		return samePayload(ev, c.draft)
	case events.TypeApplicationMessageAccepted:
		var e events.ApplicationMessageAccepted
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		epoch, err := v.CheckAppMessage(r, e.GroupID, e.Sender, e.Message, e.RequestSignature)
		if err != nil {
			return err
		}
		if epoch != e.Epoch {
			return Reject(CodeMalformed, "recorded epoch %d, group epoch %d", e.Epoch, epoch)
		}
		return nil
	case events.TypeDeliveryReceived, events.TypeDeliveryRefused, events.TypeOutboxTrimmed, events.TypeFederationPolicyChanged, events.TypeQueueGroupBlocked:
		return v.revalidateFederation(r, ev)
	case events.TypeQueueAcked:
		var e events.QueueAcked
		if err := events.Decode(ev, &e); err != nil {
			return Reject(CodeMalformed, "%v", err)
		}
		_, err := v.ackQueue(r, AckQueue{ClientID: e.ClientID, UpTo: e.UpTo})
		return err
	}
	return Reject(CodeUnknownCommand, "unknown event type %q", ev.Type)
}

// samePayload checks that re-deciding produced exactly the recorded event.
func samePayload(ev *eventlog.Event, d eventlog.Draft) error {
	if d.Type != ev.Type || !bytes.Equal(d.Payload, ev.Payload) {
		return Reject(CodeMalformed, "the event differs from what its checks produce today")
	}
	return nil
}
