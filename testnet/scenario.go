package testnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mlshome/homeserver/client"
)

// DemoMessages is how many messages every member client sends in each of
// the demo's two rounds.
const DemoMessages = 8

// DemoDeliveryTimeout bounds how long the demo waits, after each step, for
// every client to receive what the step sent it (or less, if the context
// given to [Demo] ends sooner).
const DemoDeliveryTimeout = 60 * time.Second

// DemoResult counts what [Demo] did and lists what went wrong.
type DemoResult struct {
	Homeservers int
	Users       int
	Clients     int
	// MessagesSent counts application messages accepted by the group's
	// Delivery Service.
	MessagesSent int
	// Decrypted counts application messages decrypted by a recipient with
	// the expected plaintext, in the expected place of its queue.
	Decrypted int
	// Handshakes counts Welcomes and commits processed by a recipient as
	// expected (joins, commits of others, its own removal).
	Handshakes int
	// Errors describes every failed expectation (empty: the demo passed).
	Errors  []string
	Elapsed time.Duration
}

// Passed reports whether every expectation held.
func (r *DemoResult) Passed() bool { return len(r.Errors) == 0 }

// String is the demo's one-line summary, e.g.
//
//	demo: PASS — 3 homeservers, 5 users, 8 clients, 120 messages sent, 784 deliveries decrypted, 0 errors
func (r *DemoResult) String() string {
	verdict := "PASS"
	if !r.Passed() {
		verdict = "FAIL"
	}
	return fmt.Sprintf("demo: %s — %d %s, %d %s, %d %s, %d messages sent, %d deliveries decrypted, %d handshakes processed, %d %s (%s)",
		verdict, r.Homeservers, plural(r.Homeservers, "homeserver"), r.Users, plural(r.Users, "user"), r.Clients, plural(r.Clients, "client"),
		r.MessagesSent, r.Decrypted, r.Handshakes, len(r.Errors), plural(len(r.Errors), "error"), r.Elapsed.Round(100*time.Millisecond))
}

// Demo drives real MLS clients through every homeserver of n: one user
// with two clients on the first homeserver and, on each other one, a user
// with two clients and a user with one. The first user creates a group on
// the first homeserver and adds everyone else in two commits (KeyPackages
// claimed across homeservers); every member client sends [DemoMessages]
// messages; a member on the second homeserver removes the second user of
// the last one and a member on the last homeserver updates its keys (both
// commits relayed to the owner); every remaining client sends again.
//
// After each step Demo long-polls every client's queue until it holds
// exactly what the step should have delivered to it, in order: the
// Welcome, the commits of others, its own removal, each message
// decrypted to its plaintext. Nothing else may arrive. Progress goes to
// out, one line per step, then the summary ([DemoResult.String]).
//
// The returned error is non-nil if any expectation failed or a request
// was refused; the result then says how far the demo got. Demo needs at
// least two homeservers and uses fresh user names, so it can run again on
// the same testnet.
func Demo(ctx context.Context, n *Net, out io.Writer) (*DemoResult, error) {
	start := time.Now()
	d := &demo{ctx: ctx, net: n, out: out, res: &DemoResult{Homeservers: len(n.Servers)}}
	err := d.run()
	if err != nil && len(d.res.Errors) == 0 {
		d.res.Errors = append(d.res.Errors, err.Error())
	}
	d.res.Elapsed = time.Since(start)
	fmt.Fprintln(out, d.res)
	if err == nil && !d.res.Passed() {
		err = fmt.Errorf("demo: %d errors, the first: %s", len(d.res.Errors), d.res.Errors[0])
	}
	return d.res, err
}

// demo is one run of [Demo].
type demo struct {
	ctx context.Context
	net *Net
	out io.Writer
	res *DemoResult

	users   []*demoUser
	clients []*demoClient // every client, in a fixed order
	group   *client.Group // the owner's view
	gid     []byte
}

// demoUser is one user of the demo.
type demoUser struct {
	name    string // display name: "bob"
	server  int    // index in net.Servers
	id      string // user id
	clients []*demoClient
}

// demoClient is one client and what its queue must deliver.
type demoClient struct {
	user   *demoUser
	c      *client.Client
	label  string // "bob/2"
	member bool   // in the group (as far as the demo has committed)
	want   []expectation
	got    int // expectations met so far
	failed bool
}

type expectKind int

const (
	expectJoin expectKind = iota
	expectCommit
	expectLeft
	expectMessage
)

// expectation is the next thing a client's queue must deliver.
type expectation struct {
	kind expectKind
	text string // expectMessage: the plaintext
}

func (e expectation) String() string {
	switch e.kind {
	case expectJoin:
		return "a Welcome"
	case expectCommit:
		return "a commit"
	case expectLeft:
		return "its removal"
	}
	return fmt.Sprintf("message %q", e.text)
}

var demoNames = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"}

func (d *demo) printf(format string, args ...any) {
	fmt.Fprintf(d.out, "demo: "+format+"\n", args...)
}

func (d *demo) run() error {
	if len(d.net.Servers) < 2 {
		return errors.New("demo: needs at least 2 homeservers")
	}
	steps := []func() error{d.register, d.lookup, d.create, d.addFirst, d.addSecond,
		func() error { return d.round(1) }, d.remove, d.update, func() error { return d.round(2) }, d.drain}
	for _, step := range steps {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return err
		}
		if !d.res.Passed() {
			return fmt.Errorf("demo: %d errors, the first: %s", len(d.res.Errors), d.res.Errors[0])
		}
	}
	return nil
}

// register creates the cast: on the first homeserver one user with two
// clients, on every other one a user with two clients and one with one.
func (d *demo) register() error {
	var suffix [2]byte
	rand.Read(suffix[:])
	tag := hex.EncodeToString(suffix[:])
	next := 0
	name := func() string {
		nm := fmt.Sprintf("user%d", next+1)
		if next < len(demoNames) {
			nm = demoNames[next]
		}
		next++
		return nm
	}
	for i, s := range d.net.Servers {
		conn, err := s.Conn(d.ctx)
		if err != nil {
			return fmt.Errorf("demo: connect to hs%d %s: %w", i+1, s.Domain, err)
		}
		sizes := []int{2, 1}
		if i == 0 {
			sizes = []int{2}
		}
		var line []string
		for _, size := range sizes {
			u := &demoUser{name: name(), server: i}
			first, err := conn.Register(d.ctx, u.name+"-"+tag)
			if err != nil {
				return fmt.Errorf("demo: register %s on hs%d: %w", u.name, i+1, err)
			}
			u.id = first.UserID
			cs := []*client.Client{first}
			for len(cs) < size {
				c, err := first.AddClient(d.ctx)
				if err != nil {
					return fmt.Errorf("demo: add a client of %s: %w", u.name, err)
				}
				cs = append(cs, c)
			}
			for j, c := range cs {
				kps, err := c.MakeKeyPackages(3, true)
				if err != nil {
					return err
				}
				if err := c.PublishKeyPackages(d.ctx, kps); err != nil {
					return fmt.Errorf("demo: publish KeyPackages of %s: %w", u.name, err)
				}
				dc := &demoClient{user: u, c: c, label: fmt.Sprintf("%s/%d", u.name, j+1)}
				u.clients = append(u.clients, dc)
				d.clients = append(d.clients, dc)
			}
			d.users = append(d.users, u)
			line = append(line, fmt.Sprintf("%s (%d %s)", u.id, size, plural(size, "client")))
		}
		d.printf("hs%d %s: registered %s", i+1, s.Domain, strings.Join(line, ", "))
	}
	d.res.Users, d.res.Clients = len(d.users), len(d.clients)
	return nil
}

// lookup has the owner look up every user of the other homeservers
// through its own homeserver; each answer must verify with the remote
// homeserver's key and list all of the user's clients.
func (d *demo) lookup() error {
	owner := d.users[0]
	var ids []string
	for _, u := range d.users[1:] {
		ids = append(ids, u.id)
	}
	res, err := d.dir().Lookup(d.ctx, ids...)
	if err != nil {
		return fmt.Errorf("demo: lookup: %w", err)
	}
	for i, r := range res {
		switch {
		case r.Err != nil || r.Bundle == nil:
			d.fail("lookup %s: %v", r.UserID, r.Err)
		case len(r.Bundle.Clients) != len(d.users[i+1].clients):
			d.fail("lookup %s: %d clients, want %d", r.UserID, len(r.Bundle.Clients), len(d.users[i+1].clients))
		}
	}
	d.printf("%s looked up %d users on %d other homeservers: every answer verified", owner.name, len(ids), len(d.net.Servers)-1)
	return nil
}

func (d *demo) owner() *demoClient { return d.users[0].clients[0] }

// dir is the owner's directory, resolving other homeservers' keys
// through its own homeserver.
func (d *demo) dir() *client.Directory {
	return d.net.Servers[0].Directory(d.owner().c.Conn)
}

func (d *demo) create() error {
	o := d.owner()
	if err := o.c.GetTokens(d.ctx, 1); err != nil {
		return fmt.Errorf("demo: tokens for %s: %w", o.label, err)
	}
	g, err := o.c.CreateGroup(d.ctx)
	if err != nil {
		return fmt.Errorf("demo: create group: %w", err)
	}
	d.group, d.gid = g, g.ID
	o.member = true
	d.printf("%s created group %s on hs1, spending a one-time token", o.label, g.ID)
	return nil
}

// add has the owner add users (all their clients; for the owner's own
// user, its other clients) in one commit.
func (d *demo) add(users ...*demoUser) error {
	var ids, names []string
	var joining []*demoClient
	for _, u := range users {
		ids = append(ids, u.id)
		var labels []string
		for _, c := range u.clients {
			if !c.member {
				joining = append(joining, c)
				labels = append(labels, c.label)
			}
		}
		name := u.name
		if len(labels) < len(u.clients) {
			name = strings.Join(labels, ", ") // the adder's own user: its other clients
		}
		names = append(names, fmt.Sprintf("%s (hs%d)", name, u.server+1))
	}
	if err := d.group.Add(d.ctx, d.dir(), ids...); err != nil {
		return fmt.Errorf("demo: add %s: %w", strings.Join(names, ", "), err)
	}
	d.commitSeen(d.owner())
	for _, c := range joining {
		c.want = append(c.want, expectation{kind: expectJoin})
		c.member = true
	}
	d.settle("add")
	d.printf("%s added %s in one commit: %d clients joined, %d members", d.owner().label, strings.Join(names, ", "), len(joining), len(d.members()))
	return nil
}

// addFirst adds the owner's second client and the first user of every
// other homeserver.
func (d *demo) addFirst() error {
	users := []*demoUser{d.users[0]}
	for _, u := range d.users[1:] {
		if u.server != users[len(users)-1].server {
			users = append(users, u)
		}
	}
	return d.add(users...)
}

// addSecond adds the users not in the group yet.
func (d *demo) addSecond() error {
	var users []*demoUser
	for _, u := range d.users {
		if !u.clients[0].member {
			users = append(users, u)
		}
	}
	return d.add(users...)
}

// commitSeen records that every member but by will process by's commit.
func (d *demo) commitSeen(by *demoClient) {
	for _, c := range d.members() {
		if c != by {
			c.want = append(c.want, expectation{kind: expectCommit})
		}
	}
}

func (d *demo) members() []*demoClient {
	var ms []*demoClient
	for _, c := range d.clients {
		if c.member {
			ms = append(ms, c)
		}
	}
	return ms
}

// round has every member send DemoMessages messages, one sender after
// the other, so every recipient must see them in exactly this order.
func (d *demo) round(r int) error {
	members := d.members()
	servers := map[int]bool{}
	sent := 0
	for i := 0; i < DemoMessages; i++ {
		for _, s := range members {
			text := fmt.Sprintf("round %d #%d from %s", r, i+1, s.label)
			if err := s.c.Group(d.gid).Send(d.ctx, []byte(text)); err != nil {
				return fmt.Errorf("demo: %s sends %q: %w", s.label, text, err)
			}
			d.res.MessagesSent++
			sent++
			servers[s.user.server] = true
			for _, m := range members {
				if m != s {
					m.want = append(m.want, expectation{kind: expectMessage, text: text})
				}
			}
		}
	}
	before := d.res.Decrypted
	d.settle(fmt.Sprintf("round %d", r))
	d.printf("round %d: %d messages from %d clients on %d homeservers, %d deliveries decrypted in order",
		r, sent, len(members), len(servers), d.res.Decrypted-before)
	return nil
}

// remove has the first user of the second homeserver remove the second
// user of the last homeserver: a commit relayed to the owner's
// homeserver, whose removal reaches a third one.
func (d *demo) remove() error {
	by := d.firstUser(1).clients[0]
	gone := d.users[len(d.users)-1]
	var leaves []uint32
	for _, c := range gone.clients {
		leaves = append(leaves, c.c.Group(d.gid).Member().LeafIndex())
	}
	if err := by.c.Group(d.gid).Remove(d.ctx, leaves...); err != nil {
		return fmt.Errorf("demo: %s removes %s: %w", by.label, gone.name, err)
	}
	for _, c := range gone.clients {
		c.member = false
		c.want = append(c.want, expectation{kind: expectLeft})
	}
	d.commitSeen(by)
	d.settle("remove")
	for _, c := range gone.clients {
		if c.c.Group(d.gid) != nil && !c.failed {
			d.fail("remove: %s still holds the group after its removal", c.label)
		}
	}
	d.printf("%s (hs%d) removed %s (hs%d): the removal reached it, %d members processed the commit",
		by.label, by.user.server+1, gone.name, gone.server+1, len(d.members())-1)
	return nil
}

// update has the second client of the last homeserver's first user
// update its keys (a relayed commit with an UpdatePath).
func (d *demo) update() error {
	u := d.firstUser(len(d.net.Servers) - 1)
	by := u.clients[len(u.clients)-1]
	if err := by.c.Group(d.gid).Update(d.ctx); err != nil {
		return fmt.Errorf("demo: %s updates: %w", by.label, err)
	}
	d.commitSeen(by)
	d.settle("update")
	d.printf("%s (hs%d) updated its keys: %d members processed the commit", by.label, by.user.server+1, len(d.members())-1)
	return nil
}

// drain checks that no queue holds anything more.
func (d *demo) drain() error {
	for _, c := range d.clients {
		in, err := c.c.Fetch(d.ctx, 0)
		if err != nil {
			d.fail("final fetch of %s: %v", c.label, err)
			continue
		}
		for _, m := range in {
			d.fail("%s: unexpected %s (seq %d) after the last step", c.label, describe(m), m.Seq)
		}
	}
	d.printf("no client received anything it should not have")
	return nil
}

func (d *demo) firstUser(server int) *demoUser {
	for _, u := range d.users {
		if u.server == server {
			return u
		}
	}
	panic("demo: no user on homeserver")
}

// settle long-polls every client's queue until it delivered everything
// expected so far, or DemoDeliveryTimeout passes, checking each message
// against the client's next expectation.
func (d *demo) settle(step string) {
	deadline := time.Now().Add(DemoDeliveryTimeout)
	if dl, ok := d.ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	for _, c := range d.clients {
		for !c.failed && c.got < len(c.want) {
			if time.Now().After(deadline) {
				d.failClient(c, "%s: %s received %d of %d expected deliveries; still waiting for %s", step, c.label, c.got, len(c.want), c.want[c.got])
				break
			}
			in, err := c.c.Fetch(d.ctx, 2*time.Second)
			if err != nil {
				d.failClient(c, "%s: fetch of %s: %v", step, c.label, err)
				break
			}
			for _, m := range in {
				if c.failed {
					break
				}
				d.check(step, c, m)
			}
		}
		if err := c.c.Ack(d.ctx); err != nil && !c.failed {
			d.failClient(c, "%s: ack of %s: %v", step, c.label, err)
		}
	}
}

// check matches one delivery against c's next expectation.
func (d *demo) check(step string, c *demoClient, m client.Incoming) {
	if m.Err != nil {
		d.failClient(c, "%s: %s could not process seq %d (%s): %v", step, c.label, m.Seq, m.Type, m.Err)
		return
	}
	if c.got >= len(c.want) {
		d.failClient(c, "%s: %s received an unexpected %s (seq %d)", step, c.label, describe(m), m.Seq)
		return
	}
	want := c.want[c.got]
	var ok bool
	switch want.kind {
	case expectJoin:
		ok = m.Joined && string(m.GroupID) == string(d.gid)
	case expectLeft:
		ok = m.Left
	case expectCommit:
		ok = !m.Joined && !m.Left && m.Plaintext == nil
	case expectMessage:
		ok = m.Plaintext != nil && string(m.Plaintext) == want.text
	}
	if !ok {
		d.failClient(c, "%s: %s delivery %d: got %s, want %s", step, c.label, c.got+1, describe(m), want)
		return
	}
	c.got++
	if want.kind == expectMessage {
		d.res.Decrypted++
	} else {
		d.res.Handshakes++
	}
}

func describe(m client.Incoming) string {
	switch {
	case m.Joined:
		return "Welcome"
	case m.Left:
		return "removal"
	case m.Plaintext != nil:
		return fmt.Sprintf("message %q", m.Plaintext)
	}
	return m.Type
}

// fail records an error.
func (d *demo) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	d.res.Errors = append(d.res.Errors, msg)
	d.printf("ERROR %s", msg)
}

// failClient records an error and stops checking c, whose state no
// longer follows the group.
func (d *demo) failClient(c *demoClient, format string, args ...any) {
	c.failed = true
	d.fail(format, args...)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
