package projections

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
)

// Queues is the projection of local clients' message queues. A message is
// stored once, in its event; a queue holds only the sequence numbers of the
// events meant for the client, so fan-out to n members writes n small keys
// and no copies. Routes map a sealed queue config (by hash) to the local
// client it was issued to, opened once when the member is added.
//
//	p/q/c/<client id>/<event seq BE>     empty value
//	p/q/route/<hex SHA-256 of sealed>    client id
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

func routeKey(sealed []byte) []byte {
	h := sha256.Sum256(sealed)
	return append(Prefix(qName), "route/"+hex.EncodeToString(h[:])...)
}

// route records where a local sealed queue config leads.
func (q Queues) route(rw eventlog.ReadWriter, sealed []byte) (string, error) {
	t, err := q.Resolve(sealed)
	if err != nil {
		return "", err
	}
	if t.ClientID == "" {
		return "", nil
	}
	return t.ClientID, rw.Set(routeKey(sealed), []byte(t.ClientID))
}
func queueKey(clientID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(queuePrefix(clientID), seq)
}

// Name implements Projection.
func (Queues) Name() string { return qName }

// Handles implements Projection.
func (Queues) Handles() []string {
	return []string{events.TypeGroupCreated, events.TypeCommitAccepted, events.TypeProposalAccepted, events.TypeApplicationMessageAccepted, events.TypeQueueAcked}
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
		_, err := q.route(rw, e.QueueConfig)
		return err
	case events.TypeQueueAcked:
		var e events.QueueAcked
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		return rw.DeleteRange(queuePrefix(e.ClientID), queueKey(e.ClientID, e.UpTo+1))
	case events.TypeApplicationMessageAccepted:
		var e events.ApplicationMessageAccepted
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		gid, sender = e.GroupID, e.Sender
	case events.TypeProposalAccepted:
		var e events.ProposalAccepted
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		gid, sender = e.GroupID, e.Sender
	case events.TypeCommitAccepted:
		var e events.CommitAccepted
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		gid, sender = e.GroupID, e.Sender
		// The Welcome goes to the new members (routed by the KeyPackage
		// they were added with), the commit to the others.
		for _, a := range e.Added {
			client, err := q.route(rw, a.QueueConfig)
			if err != nil {
				return fmt.Errorf("queue config of added leaf %d: %w", a.Leaf, err)
			}
			if client != "" && len(e.Welcome) > 0 {
				if err := rw.Set(queueKey(client, ev.Seq), nil); err != nil {
					return err
				}
			}
		}
	}
	return GroupView{R: rw}.Leaves(gid, func(leaf uint32, rec *LeafRecord) error {
		if leaf == sender || rec.Domain != q.Domain {
			return nil
		}
		client, err := rw.Get(routeKey(rec.QueueConfig))
		if err != nil {
			return fmt.Errorf("route of leaf %d: %w", leaf, err)
		}
		return rw.Set(queueKey(string(client), ev.Seq), nil)
	})
}

// QueueView reads a client's queue.
type QueueView struct{ R eventlog.Reader }

// From returns up to max event sequence numbers queued for clientID at or
// after from, in order.
func (v QueueView) From(clientID string, from uint64, max int) ([]uint64, error) {
	var out []uint64
	p := queuePrefix(clientID)
	stop := fmt.Errorf("enough")
	err := v.R.Scan(queueKey(clientID, from), eventlog.PrefixEnd(p), func(k, _ []byte) error {
		out = append(out, binary.BigEndian.Uint64(k[len(p):]))
		if len(out) >= max {
			return stop
		}
		return nil
	})
	if err == stop {
		err = nil
	}
	return out, err
}
