package projections

import (
	"encoding/json"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
)

// KeyPackages is the projection of the KeyPackages each local client has
// published and not yet had claimed.
//
//	p/kp/<user id> 0x00 <client id> 0x00 <ref>   KeyPackageRecord (JSON)
//
// Keys sort by ref within a client, which fixes the order claims take
// them in.
type KeyPackages struct{}

// KeyPackageRecord is one stored KeyPackage.
type KeyPackageRecord struct {
	Ref        []byte `json:"ref"`
	LastResort bool   `json:"last_resort,omitempty"`
	NotBefore  uint64 `json:"not_before"`
	NotAfter   uint64 `json:"not_after"`
	Data       []byte `json:"data"`
}

const kpName = "kp"

func kpClientPrefix(userID, clientID string) []byte {
	return append(Prefix(kpName), userID+"\x00"+clientID+"\x00"...)
}

// Name implements Projection.
func (KeyPackages) Name() string { return kpName }

// Handles implements Projection.
func (KeyPackages) Handles() []string {
	return []string{events.TypeKeyPackagesPublished, events.TypeKeyPackageClaimed}
}

// Apply implements Projection.
func (KeyPackages) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error {
	switch ev.Type {
	case events.TypeKeyPackagesPublished:
		var e events.KeyPackagesPublished
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		p := kpClientPrefix(e.UserID, e.ClientID)
		if err := deleteKeys(rw, p, eventlog.PrefixEnd(p)); err != nil {
			return err
		}
		for _, kp := range e.KeyPackages {
			rec := KeyPackageRecord(kp)
			if err := setJSON(rw, append(p, kp.Ref...), rec); err != nil {
				return err
			}
		}
	case events.TypeKeyPackageClaimed:
		var e events.KeyPackageClaimed
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		return rw.Delete(append(kpClientPrefix(e.UserID, e.ClientID), e.Ref...))
	}
	return nil
}

// KeyPackageView reads the KeyPackage projection.
type KeyPackageView struct{ R eventlog.Reader }

// List returns a client's KeyPackages in ref order.
func (v KeyPackageView) List(userID, clientID string) ([]KeyPackageRecord, error) {
	var out []KeyPackageRecord
	err := v.Each(userID, clientID, func(r KeyPackageRecord) bool {
		out = append(out, r)
		return true
	})
	return out, err
}

// Each calls fn with a client's KeyPackages in ref order until fn returns
// false, decoding only those it visits: a claim, which takes the first
// one that is valid, reads one record rather than up to all of them.
func (v KeyPackageView) Each(userID, clientID string, fn func(KeyPackageRecord) bool) error {
	p := kpClientPrefix(userID, clientID)
	err := v.R.Scan(p, eventlog.PrefixEnd(p), func(_, val []byte) error {
		var r KeyPackageRecord
		if err := json.Unmarshal(val, &r); err != nil {
			return err
		}
		if !fn(r) {
			return errStopScan
		}
		return nil
	})
	if err == errStopScan {
		return nil
	}
	return err
}
