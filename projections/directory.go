package projections

import (
	"encoding/json"
	"errors"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
)

// Directory is the projection of local users and their clients.
//
//	p/dir/user/<user id>                   UserRecord (JSON)
//	p/dir/client/<user id> 0x00 <client id> ClientRecord (JSON)
//	p/dir/clientid/<client id>              user id
type Directory struct{}

// UserRecord is a registered local user.
type UserRecord struct {
	UserID       string `json:"user_id"`
	RegisteredAt int64  `json:"registered_at"`
	Seq          uint64 `json:"seq"`
}

// ClientRecord is a registered client of a local user.
type ClientRecord struct {
	UserID       string `json:"user_id"`
	ClientID     string `json:"client_id"`
	SignatureKey []byte `json:"signature_key"`
	Credential   []byte `json:"credential"`
	RegisteredAt int64  `json:"registered_at"`
}

const dirName = "dir"

func dirUserKey(userID string) []byte { return append(Prefix(dirName), "user/"+userID...) }
func dirClientPrefix(userID string) []byte {
	return append(Prefix(dirName), "client/"+userID+"\x00"...)
}
func dirClientKey(userID, clientID string) []byte {
	return append(dirClientPrefix(userID), clientID...)
}
func dirClientIDKey(clientID string) []byte {
	return append(Prefix(dirName), "clientid/"+clientID...)
}

// Name implements Projection.
func (Directory) Name() string { return dirName }

// Handles implements Projection.
func (Directory) Handles() []string {
	return []string{events.TypeUserRegistered, events.TypeClientRegistered}
}

// Apply implements Projection.
func (Directory) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error {
	switch ev.Type {
	case events.TypeUserRegistered:
		var e events.UserRegistered
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		return setJSON(rw, dirUserKey(e.UserID), UserRecord{UserID: e.UserID, RegisteredAt: ev.Time, Seq: ev.Seq})
	case events.TypeClientRegistered:
		var e events.ClientRegistered
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		rec := ClientRecord{UserID: e.UserID, ClientID: e.ClientID, SignatureKey: e.SignatureKey, Credential: e.Credential, RegisteredAt: ev.Time}
		if err := setJSON(rw, dirClientKey(e.UserID, e.ClientID), rec); err != nil {
			return err
		}
		return rw.Set(dirClientIDKey(e.ClientID), []byte(e.UserID))
	}
	return nil
}

// DirectoryView reads the directory projection.
type DirectoryView struct{ R eventlog.Reader }

// User returns a local user, or eventlog.ErrNotFound.
func (d DirectoryView) User(userID string) (*UserRecord, error) {
	var u UserRecord
	if err := getJSON(d.R, dirUserKey(userID), &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// Clients returns the clients of a user in client id order.
func (d DirectoryView) Clients(userID string) ([]ClientRecord, error) {
	var out []ClientRecord
	p := dirClientPrefix(userID)
	err := d.R.Scan(p, eventlog.PrefixEnd(p), func(_, v []byte) error {
		var c ClientRecord
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// Client returns a client by its id, or eventlog.ErrNotFound.
func (d DirectoryView) Client(clientID string) (*ClientRecord, error) {
	uid, err := d.R.Get(dirClientIDKey(clientID))
	if err != nil {
		return nil, err
	}
	var c ClientRecord
	if err := getJSON(d.R, dirClientKey(string(uid), clientID), &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func setJSON(rw eventlog.ReadWriter, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return rw.Set(key, b)
}

func getJSON(r eventlog.Reader, key []byte, v any) error {
	b, err := r.Get(key)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// IsNotFound reports whether err means a missing record.
func IsNotFound(err error) bool { return errors.Is(err, eventlog.ErrNotFound) }
