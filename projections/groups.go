package projections

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/mlsx"
)

// Groups is the projection of the groups this homeserver owns: the MLS
// public-group observer state of each, and a table of member leaves with
// their signature keys and where their messages go.
//
//	p/grp/<hex group id>/state           observer state (mlsx.Observer.MarshalBinary)
//	p/grp/<hex group id>/meta            GroupMeta (JSON)
//	p/grp/<hex group id>/leaf/<leaf BE>  LeafRecord (JSON)
//
// Nothing here names a user or a client (GC-4, MD-6): leaves carry
// per-client pseudonym credentials, and a member's queue is the sealed
// queue config it put in its KeyPackage, opaque but for its domain. Which
// local queue a sealed config opens to is the queue projection's business.
type Groups struct {
	// Resolve opens a sealed queue config (used here for its domain only).
	Resolve QueueResolver
}

// QueueResolver opens a sealed queue config. It must be deterministic.
type QueueResolver func(sealed []byte) (QueueTarget, error)

// QueueTarget is where a member's messages go: a local client's queue, or
// a remote homeserver (with the sealed config it must be shown).
type QueueTarget struct {
	Domain   string `json:"domain"`
	ClientID string `json:"client_id,omitempty"` // set for local queues
	Sealed   []byte `json:"sealed,omitempty"`    // set for remote queues
}

// GroupMeta is what the application-message fast path needs.
type GroupMeta struct {
	Epoch       uint64 `json:"epoch"`
	CipherSuite uint16 `json:"cipher_suite"`
	Members     int    `json:"members"`
}

// LeafRecord is one member leaf.
type LeafRecord struct {
	SignatureKey []byte `json:"signature_key"`
	// Domain is the homeserver of the member's queue; QueueConfig is the
	// sealed queue config that proves the right to deliver there (FED-5).
	Domain      string `json:"domain"`
	QueueConfig []byte `json:"queue_config"`
}

const grpName = "grp"

// GroupKey returns the key prefix of a group.
func GroupKey(groupID []byte) []byte {
	return hexKey(grpName+"/", "", groupID, "/", 16)
}

func grpStateKey(gid []byte) []byte { return append(GroupKey(gid), "state"...) }
func grpMetaKey(gid []byte) []byte  { return append(GroupKey(gid), "meta"...) }
func grpLeafPrefix(gid []byte) []byte {
	return append(GroupKey(gid), "leaf/"...)
}
func grpLeafKey(gid []byte, leaf uint32) []byte {
	return binary.BigEndian.AppendUint32(grpLeafPrefix(gid), leaf)
}

// Name implements Projection.
func (Groups) Name() string { return grpName }

// Handles implements Projection.
func (Groups) Handles() []string {
	return []string{events.TypeGroupCreated, events.TypeCommitAccepted, events.TypeProposalAccepted}
}

// Apply implements Projection.
func (g Groups) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error {
	switch ev.Type {
	case events.TypeGroupCreated:
		var e events.GroupCreated
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		o, err := mlsx.NewObserverFromGroupInfo(e.GroupInfo, e.RatchetTree, mlsx.Policy{})
		if err != nil {
			return fmt.Errorf("group %x: %w", e.GroupID, err)
		}
		q, err := g.Resolve(e.QueueConfig)
		if err != nil {
			return fmt.Errorf("creator queue config: %w", err)
		}
		if err := g.saveState(rw, e.GroupID, o); err != nil {
			return err
		}
		return setJSON(rw, grpLeafKey(e.GroupID, 0), LeafRecord{SignatureKey: o.LeafSignatureKey(0), Domain: q.Domain, QueueConfig: e.QueueConfig})
	case events.TypeProposalAccepted, events.TypeCommitAccepted:
		var gid, msg []byte
		var added []events.AddedLeaf
		var removed, updated []uint32
		var sender uint32
		if ev.Type == events.TypeProposalAccepted {
			var e events.ProposalAccepted
			if err := events.Decode(ev, &e); err != nil {
				return err
			}
			gid, msg = e.GroupID, e.Message
		} else {
			var e events.CommitAccepted
			if err := events.Decode(ev, &e); err != nil {
				return err
			}
			gid, msg, added, removed, updated, sender = e.GroupID, e.Message, e.Added, e.Removed, e.Updated, e.Sender
		}
		o, err := LoadObserver(rw, gid)
		if err != nil {
			return err
		}
		if _, err := o.ProcessPublicMessage(msg, mlsx.Policy{}); err != nil {
			return fmt.Errorf("replaying accepted handshake of %x: %w", gid, err)
		}
		if err := g.saveState(rw, gid, o); err != nil {
			return err
		}
		if ev.Type == events.TypeProposalAccepted {
			return nil
		}
		for _, l := range removed {
			if err := rw.Delete(grpLeafKey(gid, l)); err != nil {
				return err
			}
		}
		for _, a := range added {
			q, err := g.Resolve(a.QueueConfig)
			if err != nil {
				return fmt.Errorf("queue config of added leaf %d: %w", a.Leaf, err)
			}
			if err := setJSON(rw, grpLeafKey(gid, a.Leaf), LeafRecord{SignatureKey: o.LeafSignatureKey(a.Leaf), Domain: q.Domain, QueueConfig: a.QueueConfig}); err != nil {
				return err
			}
		}
		// The committer's leaf (its path) and updated leaves get new keys.
		for _, l := range append([]uint32{sender}, updated...) {
			var rec LeafRecord
			if err := getJSON(rw, grpLeafKey(gid, l), &rec); err != nil {
				return fmt.Errorf("leaf %d of %x: %w", l, gid, err)
			}
			rec.SignatureKey = o.LeafSignatureKey(l)
			if err := setJSON(rw, grpLeafKey(gid, l), rec); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g Groups) saveState(rw eventlog.ReadWriter, gid []byte, o *mlsx.Observer) error {
	st, err := o.MarshalBinary()
	if err != nil {
		return err
	}
	if err := rw.Set(grpStateKey(gid), st); err != nil {
		return err
	}
	return setJSON(rw, grpMetaKey(gid), GroupMeta{Epoch: o.Epoch(), CipherSuite: o.CipherSuite(), Members: len(o.Members())})
}

// LoadObserver returns the observer of a group, or eventlog.ErrNotFound.
func LoadObserver(r eventlog.Reader, gid []byte) (*mlsx.Observer, error) {
	st, err := r.Get(grpStateKey(gid))
	if err != nil {
		return nil, err
	}
	return mlsx.UnmarshalObserver(st)
}

// GroupView reads the group projection.
type GroupView struct{ R eventlog.Reader }

// Meta returns a group's metadata, or eventlog.ErrNotFound. The result is
// shared: callers must not change it.
func (v GroupView) Meta(gid []byte) (*GroupMeta, error) {
	b, err := v.R.Get(grpMetaKey(gid))
	if err != nil {
		return nil, err
	}
	return metaMemo.get(b)
}

// Leaf returns a member leaf, or eventlog.ErrNotFound. The result is
// shared: callers must not change it.
func (v GroupView) Leaf(gid []byte, leaf uint32) (*LeafRecord, error) {
	b, err := v.R.Get(grpLeafKey(gid, leaf))
	if err != nil {
		return nil, err
	}
	return leafMemo.get(b)
}

// Leaves calls fn for each member leaf in leaf order.
func (v GroupView) Leaves(gid []byte, fn func(leaf uint32, rec *LeafRecord) error) error {
	p := grpLeafPrefix(gid)
	return v.R.Scan(p, eventlog.PrefixEnd(p), func(k, val []byte) error {
		var rec LeafRecord
		if err := json.Unmarshal(val, &rec); err != nil {
			return err
		}
		return fn(binary.BigEndian.Uint32(k[len(p):]), &rec)
	})
}
