package projections

import (
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
)

// Federation is the projection of what this homeserver received from
// others: the per-origin delivery cursor (every delivery 1..cursor is
// committed, received or refused) and the federation policy in force.
//
//	p/fed/cursor/<origin>   counter (8 bytes BE)
//	p/fed/policy            the policy's JSON
//	p/fed/policyseq         the sequence number of the event that set it (8 bytes BE)
type Federation struct{}

const fedName = "fed"

func fedCursorKey(origin string) []byte { return append(Prefix(fedName), "cursor/"+origin...) }
func fedPolicyKey() []byte              { return append(Prefix(fedName), "policy"...) }
func fedPolicySeqKey() []byte           { return append(Prefix(fedName), "policyseq"...) }

// Name implements Projection.
func (Federation) Name() string { return fedName }

// Handles implements Projection.
func (Federation) Handles() []string {
	return []string{events.TypeDeliveryReceived, events.TypeDeliveryRefused, events.TypeFederationPolicyChanged}
}

// Apply implements Projection.
func (Federation) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error {
	switch ev.Type {
	case events.TypeDeliveryReceived:
		e, err := deliveryRouting(ev)
		if err != nil {
			return err
		}
		return setU64(rw, fedCursorKey(e.Origin), e.Counter)
	case events.TypeDeliveryRefused:
		var e events.DeliveryRefused
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		return setU64(rw, fedCursorKey(e.Origin), e.Counter)
	case events.TypeFederationPolicyChanged:
		var e events.FederationPolicyChanged
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		if err := rw.Set(fedPolicyKey(), e.Policy); err != nil {
			return err
		}
		return setU64(rw, fedPolicySeqKey(), ev.Seq)
	}
	return nil
}

// FederationView reads the federation projection.
type FederationView struct{ R eventlog.Reader }

// Cursor returns the delivery cursor of origin.
func (v FederationView) Cursor(origin string) (uint64, error) {
	return getU64(v.R, fedCursorKey(origin))
}

// Policy returns the stored policy JSON, or eventlog.ErrNotFound.
func (v FederationView) Policy() ([]byte, error) { return v.R.Get(fedPolicyKey()) }

// PolicySeq returns the sequence number of the event that set the stored
// policy (0: none, or set before the projection recorded it).
func (v FederationView) PolicySeq() (uint64, error) { return getU64(v.R, fedPolicySeqKey()) }
