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
	}
	return Reject(CodeUnknownCommand, "unknown event type %q", ev.Type)
}
