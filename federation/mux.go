package federation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// Replies travel on "hs.<replier>.<requester>.rep.<token>", not on NATS
// inboxes: the replier publishes a subject naming itself as origin and the
// requester subscribes to a subject naming itself as destination, so the
// two permissions every homeserver has ("publish hs.<self>.>", "subscribe
// hs.*.<self>.>") cover replies and JetStream acknowledgements too. No
// homeserver can read another's replies or forge one at the NATS level.
const suffixReply = "rep"

// replySubject returns the reply subject of a request from self to dest.
func replySubject(dest, self, token string) string {
	return subjectPrefix + "." + Token(dest) + "." + Token(self) + "." + suffixReply + "." + token
}

// replyPrefix is what every reply subject for a request from requester to
// replier starts with.
func replyPrefix(replier, requester string) string {
	return subjectPrefix + "." + Token(replier) + "." + Token(requester) + "." + suffixReply + "."
}

// replyMux routes replies arriving on "hs.*.<self>.rep.>" to the request
// waiting for each, with one subscription for all of them.
type replyMux struct {
	nc   *nats.Conn
	self string

	mu      sync.Mutex
	sub     *nats.Subscription
	waiting map[string]chan *nats.Msg // reply subject → waiter
}

func (r *replyMux) deliver(m *nats.Msg) {
	r.mu.Lock()
	ch := r.waiting[m.Subject]
	delete(r.waiting, m.Subject)
	r.mu.Unlock()
	if ch != nil {
		ch <- m // buffered; one reply per waiter
	}
}

// roundTrip publishes m to dest with a fresh reply subject and waits for
// the one reply. A NATS no-responders status becomes [nats.ErrNoResponders].
func (r *replyMux) roundTrip(ctx context.Context, dest string, m *nats.Msg) (*nats.Msg, error) {
	wait, err := r.send(dest, m)
	if err != nil {
		return nil, err
	}
	return wait(ctx)
}

// send publishes m to dest with a fresh reply subject and returns the
// function that waits for its reply (and must be called). Messages sent one
// after another leave in that order, so a caller can keep several in
// flight without reordering them.
func (r *replyMux) send(dest string, m *nats.Msg) (func(context.Context) (*nats.Msg, error), error) {
	var tok [12]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("reply token: %w", err)
	}
	m.Reply = replySubject(dest, r.self, hex.EncodeToString(tok[:]))
	ch := make(chan *nats.Msg, 1)
	r.mu.Lock()
	if r.sub == nil {
		sub, err := r.nc.Subscribe(subjectPrefix+".*."+Token(r.self)+"."+suffixReply+".>", r.deliver)
		if err != nil {
			r.mu.Unlock()
			return nil, fmt.Errorf("subscribe replies: %w", err)
		}
		r.sub = sub
	}
	r.waiting[m.Reply] = ch
	r.mu.Unlock()
	forget := func() {
		r.mu.Lock()
		delete(r.waiting, m.Reply)
		r.mu.Unlock()
	}
	if err := r.nc.PublishMsg(m); err != nil {
		forget()
		return nil, err
	}
	return func(ctx context.Context) (*nats.Msg, error) {
		defer forget()
		select {
		case rep := <-ch:
			if len(rep.Data) == 0 && rep.Header.Get("Status") == "503" {
				return nil, nats.ErrNoResponders
			}
			return rep, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, nil
}

// close unsubscribes.
func (r *replyMux) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sub == nil {
		return nil
	}
	err := r.sub.Unsubscribe()
	r.sub = nil
	if errors.Is(err, nats.ErrConnectionClosed) {
		return nil
	}
	return err
}

// replyAllowed says whether a request from origin asked for its reply on a
// subject this homeserver should publish to: only origin's reply subjects
// for requests to self, so a request cannot make this homeserver publish
// elsewhere.
func replyAllowed(reply, self, origin string) bool {
	p := replyPrefix(self, origin)
	return strings.HasPrefix(reply, p) && len(reply) > len(p) && !strings.ContainsAny(reply[len(p):], ".*> ")
}
