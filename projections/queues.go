package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
)

// Queues is the projection of local clients' message queues. A message is
// stored once, in its event; a queue holds only the sequence numbers of the
// events meant for the client, so fan-out to n members writes n small keys
// and no copies. For each group it keeps the local recipients: the member
// leaves whose sealed queue config opened (once, when they were added) to a
// local client.
//
//	p/q/c/<client id>/<event seq BE>   empty value
//	p/q/g/<hex group id>               recipients: (leaf u32, len u8, client id)*
//	p/q/b/<client id>/<hex group id>   the client blocked that group (FED-5)
//	p/q/a/<client id>                  u64: entries up to here are deleted (acknowledged)
//
// It must run before Groups in the projection set: a commit is fanned out
// to the members of the epoch it ends.
type Queues struct {
	Resolve QueueResolver
	// Domain is this homeserver; recipients elsewhere are the outbox's.
	Domain string
}

const qName = "q"

func queuePrefix(clientID string) []byte { return append(Prefix(qName), "c/"+clientID+"/"...) }
func queueKey(clientID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(queuePrefix(clientID), seq)
}
func ackedKey(clientID string) []byte { return append(Prefix(qName), "a/"+clientID...) }
func blockKey(clientID string, gid []byte) []byte {
	return hexKey(qName+"/", "b/"+clientID+"/", gid, "", 0)
}

func recipientsKey(gid []byte) []byte {
	return hexKey(qName+"/", "g/", gid, "", 0)
}

// recipient is a local member of a group.
type recipient struct {
	leaf   uint32
	client string
}

func loadRecipients(r eventlog.Reader, gid []byte) ([]recipient, error) {
	b, err := r.Get(recipientsKey(gid))
	if errors.Is(err, eventlog.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []recipient
	for len(b) > 0 {
		if len(b) < 5 || len(b) < 5+int(b[4]) {
			return nil, fmt.Errorf("recipients of %x: truncated", gid)
		}
		n := int(b[4])
		out = append(out, recipient{leaf: binary.BigEndian.Uint32(b), client: string(b[5 : 5+n])})
		b = b[5+n:]
	}
	return out, nil
}

func saveRecipients(rw eventlog.ReadWriter, gid []byte, rs []recipient) error {
	slices.SortFunc(rs, func(a, b recipient) int { return int(a.leaf) - int(b.leaf) })
	var b []byte
	for _, r := range rs {
		b = binary.BigEndian.AppendUint32(b, r.leaf)
		b = append(b, byte(len(r.client)))
		b = append(b, r.client...)
	}
	return rw.Set(recipientsKey(gid), b)
}

// local returns the local client a sealed queue config leads to, or "".
func (q Queues) local(sealed []byte) (string, error) {
	t, err := q.Resolve(sealed)
	if err != nil {
		return "", err
	}
	return t.ClientID, nil
}

// Name implements Projection.
func (Queues) Name() string { return qName }

// Handles implements Projection.
func (Queues) Handles() []string {
	return []string{events.TypeGroupCreated, events.TypeCommitAccepted, events.TypeProposalAccepted, events.TypeApplicationMessageAccepted, events.TypeQueueAcked, events.TypeDeliveryReceived, events.TypeQueueGroupBlocked}
}

// Apply implements Projection.
func (q Queues) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error {
	var gid []byte
	var sender uint32
	switch ev.Type {
	case events.TypeGroupCreated:
		var e events.GroupCreated
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		client, err := q.local(e.QueueConfig)
		if err != nil {
			return err
		}
		var rs []recipient
		if client != "" {
			rs = append(rs, recipient{leaf: 0, client: client})
		}
		return saveRecipients(rw, e.GroupID, rs)
	case events.TypeDeliveryReceived:
		// A message of a group owned elsewhere, for local members.
		e, err := deliveryRouting(ev)
		if err != nil {
			return err
		}
		for _, sealed := range e.Message.Recipients {
			client, err := q.local(sealed)
			if err != nil {
				return err
			}
			if client == "" {
				return fmt.Errorf("delivery %s/%d: a recipient is not local", e.Origin, e.Counter)
			}
			if err := rw.Set(queueKey(client, ev.Seq), nil); err != nil {
				return err
			}
		}
		return nil
	case events.TypeQueueGroupBlocked:
		var e events.QueueGroupBlocked
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		return rw.Set(blockKey(e.ClientID, e.GroupID), nil)
	case events.TypeQueueAcked:
		var e events.QueueAcked
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		// Every queue entry is keyed by the event that wrote it, so none
		// beyond this event's predecessor exists yet.
		return deleteThrough(rw, ackedKey(e.ClientID), min(e.UpTo, ev.Seq-1), func(n uint64) []byte { return queueKey(e.ClientID, n) })
	case events.TypeApplicationMessageAccepted, events.TypeProposalAccepted:
		h, err := events.DecodeHeader(ev)
		if err != nil {
			return err
		}
		gid, sender = h.GroupID, h.Sender
	case events.TypeCommitAccepted:
		var e events.CommitAccepted
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		rs, err := loadRecipients(rw, e.GroupID)
		if err != nil {
			return err
		}
		// The commit goes to the members of the epoch it ends (the removed
		// ones learn of their removal), the Welcome to the added ones.
		if err := q.enqueue(rw, rs, e.Sender, ev.Seq); err != nil {
			return err
		}
		next := rs[:0:0]
		for _, r := range rs {
			if !slices.Contains(e.Removed, r.leaf) {
				next = append(next, r)
			}
		}
		for _, a := range e.Added {
			client, err := q.local(a.QueueConfig)
			if err != nil {
				return fmt.Errorf("queue config of added leaf %d: %w", a.Leaf, err)
			}
			if client == "" {
				continue
			}
			next = append(next, recipient{leaf: a.Leaf, client: client})
			if len(e.Welcome) > 0 {
				if err := rw.Set(queueKey(client, ev.Seq), nil); err != nil {
					return err
				}
			}
		}
		return saveRecipients(rw, e.GroupID, next)
	}
	rs, err := loadRecipients(rw, gid)
	if err != nil {
		return err
	}
	return q.enqueue(rw, rs, sender, ev.Seq)
}

// enqueue indexes event seq in every recipient's queue but the sender's.
func (q Queues) enqueue(rw eventlog.ReadWriter, rs []recipient, sender uint32, seq uint64) error {
	for _, r := range rs {
		if r.leaf == sender {
			continue
		}
		if err := rw.Set(queueKey(r.client, seq), nil); err != nil {
			return err
		}
	}
	return nil
}

// QueueView reads a client's queue.
type QueueView struct{ R eventlog.Reader }

// Blocked reports whether clientID blocked group gid.
func (v QueueView) Blocked(clientID string, gid []byte) (bool, error) {
	_, err := v.R.Get(blockKey(clientID, gid))
	if errors.Is(err, eventlog.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// From returns up to max event sequence numbers queued for clientID at or
// after from, in order. It starts past what the client acknowledged, all
// deleted, whatever from says: a scan over those would step over their
// tombstones one by one.
func (v QueueView) From(clientID string, from uint64, max int) ([]uint64, error) {
	acked, err := getU64(v.R, ackedKey(clientID))
	if err != nil {
		return nil, err
	}
	if from <= acked {
		from = acked + 1
	}
	var out []uint64
	p := queuePrefix(clientID)
	err = v.R.Scan(queueKey(clientID, from), eventlog.PrefixEnd(p), func(k, _ []byte) error {
		out = append(out, binary.BigEndian.Uint64(k[len(p):]))
		if len(out) >= max {
			return errStopScan
		}
		return nil
	})
	if err == errStopScan {
		err = nil
	}
	return out, err
}
