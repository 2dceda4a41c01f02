package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/mlsx"
	"github.com/mlshome/homeserver/tokens"
	"github.com/mlshome/homeserver/validation"
)

// groupState is the client's groups and queue position.
type groupState struct {
	mu     sync.Mutex
	groups map[string]*Group
	tokens []tokens.Token
	next   uint64 // queue position to fetch from
}

// Group is one group the client is a member of.
type Group struct {
	c  *Client
	ID []byte
	mu sync.Mutex
	m  *mlsx.Member
}

// Member returns the MLS member state (for tests and tools).
func (g *Group) Member() *mlsx.Member { return g.m }

func (c *Client) state() *groupState {
	c.gsOnce.Do(func() { c.gs = &groupState{groups: map[string]*Group{}} })
	return c.gs
}

// Group returns a group the client is in, or nil.
func (c *Client) Group(gid []byte) *Group {
	s := c.state()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groups[string(gid)]
}

// ForgetGroup drops the client's state of a group (after it was removed).
func (c *Client) ForgetGroup(gid []byte) {
	s := c.state()
	s.mu.Lock()
	delete(s.groups, string(gid))
	s.mu.Unlock()
}

// Groups returns every group the client is in.
func (c *Client) Groups() []*Group {
	s := c.state()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Group, 0, len(s.groups))
	for _, g := range s.groups {
		out = append(out, g)
	}
	return out
}

type tokenKeys struct {
	Keys []struct {
		ID        []byte `json:"id"`
		PublicKey []byte `json:"public_key"`
		Issuing   bool   `json:"issuing"`
	} `json:"keys"`
}

// GetTokens asks the homeserver for n group-creation tokens (GC-6: within
// the user's allowance). The homeserver sees only blinded elements; the
// finalised tokens cannot be linked to this request (GC-4).
func (c *Client) GetTokens(ctx context.Context, n int) error {
	var keys tokenKeys
	if err := c.Conn.do(ctx, http.MethodGet, "/v1/tokens/keys", nil, nil, &keys); err != nil {
		return err
	}
	var pub []byte
	for _, k := range keys.Keys {
		if k.Issuing {
			pub = k.PublicKey
		}
	}
	if pub == nil {
		return errors.New("client: the homeserver has no issuing token key")
	}
	st, _, err := tokens.Blind(n, pub, rand.Reader)
	if err != nil {
		return err
	}
	req, err := st.Request().MarshalBinary()
	if err != nil {
		return err
	}
	var reply struct {
		Response []byte `json:"response"`
	}
	if err := c.Conn.do(ctx, http.MethodPost, "/v1/tokens", map[string]any{"request": req}, c, &reply); err != nil {
		return err
	}
	resp, err := tokens.ParseIssueResponse(reply.Response)
	if err != nil {
		return err
	}
	ts, err := tokens.FinalizeResponse(st, resp)
	if err != nil {
		return err
	}
	s := c.state()
	s.mu.Lock()
	s.tokens = append(s.tokens, ts...)
	s.mu.Unlock()
	return nil
}

// TokenCount returns how many unspent tokens the client holds.
func (c *Client) TokenCount() int {
	s := c.state()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens)
}

func (c *Client) popToken() (tokens.Token, bool) {
	s := c.state()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokens) == 0 {
		return tokens.Token{}, false
	}
	t := s.tokens[0]
	s.tokens = s.tokens[1:]
	return t, true
}

// NewGroupID returns a fresh group id owned by the client's homeserver.
func (c *Client) NewGroupID() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return []byte(c.Conn.Keys.Domain + "/" + hex.EncodeToString(b))
}

func lifetime() mlsx.Lifetime {
	now := time.Now()
	return mlsx.Lifetime{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(KeyPackageLifetime)}
}

// CreateGroupRequest is the body the client sends to create a group; it is
// exported so tests can alter it.
type CreateGroupRequest struct {
	GroupID     []byte `json:"group_id"`
	GroupInfo   []byte `json:"group_info"`
	RatchetTree []byte `json:"ratchet_tree,omitempty"`
	QueueConfig []byte `json:"queue_config"`
	Token       []byte `json:"token"`
	Signature   []byte `json:"signature"`
}

// PrepareGroup makes the epoch-0 group and its signed creation request,
// spending one token, without sending it.
func (c *Client) PrepareGroup(gid []byte) (*Group, *CreateGroupRequest, error) {
	t, ok := c.popToken()
	if !ok {
		return nil, nil, errors.New("client: no group-creation token left; call GetTokens")
	}
	id, err := c.MLS()
	if err != nil {
		return nil, nil, err
	}
	m, err := id.CreateGroup(gid, lifetime())
	if err != nil {
		return nil, nil, err
	}
	gi, tree, err := m.GroupInfo()
	if err != nil {
		return nil, nil, err
	}
	sealed, err := c.SealedQueueConfig()
	if err != nil {
		return nil, nil, err
	}
	tok, err := t.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	req := &CreateGroupRequest{GroupID: gid, GroupInfo: gi, RatchetTree: tree, QueueConfig: sealed, Token: tok}
	req.Signature, err = m.SignWithLeafKey(validation.CreateGroupLabel, validation.CreateGroupTBS(gid, gi, tree, sealed, tok))
	if err != nil {
		return nil, nil, err
	}
	return &Group{c: c, ID: gid, m: m}, req, nil
}

// PrepareGroupNoToken makes an epoch-0 group without a token (for tests
// of refusals).
func (c *Client) PrepareGroupNoToken(gid []byte) (*Group, []byte, error) {
	id, err := c.MLS()
	if err != nil {
		return nil, nil, err
	}
	m, err := id.CreateGroup(gid, lifetime())
	if err != nil {
		return nil, nil, err
	}
	return &Group{c: c, ID: gid, m: m}, nil, nil
}

// SubmitRaw posts body to path unsigned and returns the homeserver's
// verdict (for tests and tools).
func (c *Conn) SubmitRaw(ctx context.Context, path string, body any) error {
	return c.do(ctx, http.MethodPost, path, body, nil, nil)
}

// SubmitGroup sends a prepared creation request and, once accepted, keeps
// the group.
func (c *Client) SubmitGroup(ctx context.Context, g *Group, req *CreateGroupRequest) error {
	if err := c.Conn.do(ctx, http.MethodPost, "/v1/groups", req, nil, nil); err != nil {
		return err
	}
	s := c.state()
	s.mu.Lock()
	s.groups[string(g.ID)] = g
	s.mu.Unlock()
	return nil
}

// CreateGroup creates a group owned by the client's homeserver with the
// client as its only member, spending one token.
func (c *Client) CreateGroup(ctx context.Context) (*Group, error) {
	g, req, err := c.PrepareGroup(c.NewGroupID())
	if err != nil {
		return nil, err
	}
	return g, c.SubmitGroup(ctx, g, req)
}

func (g *Group) path(what string) string {
	return "/v1/groups/" + base64.RawURLEncoding.EncodeToString(g.ID) + "/" + what
}

// commit sends a staged commit and confirms or discards it.
func (g *Group) commit(ctx context.Context, res *mlsx.CommitResult) error {
	err := g.c.Conn.do(ctx, http.MethodPost, g.path("handshake"), map[string]any{"message": res.Commit, "welcome": res.Welcome}, nil, nil)
	if err != nil {
		if derr := g.m.DiscardPendingCommit(); derr != nil {
			return errors.Join(err, derr)
		}
		return err
	}
	g.m.ConfirmCommit()
	return nil
}

// stage makes a commit with make under the group's lock and sends it.
func (g *Group) stage(ctx context.Context, make func() (*mlsx.CommitResult, error)) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	res, err := make()
	if err != nil {
		return err
	}
	return g.commit(ctx, res)
}

// AddKeyPackages adds members by their KeyPackages in one commit.
func (g *Group) AddKeyPackages(ctx context.Context, kps ...[]byte) error {
	return g.stage(ctx, func() (*mlsx.CommitResult, error) { return g.m.Add(kps...) })
}

// Add claims a KeyPackage for every client of each user through the
// directory and adds them all in one commit.
func (g *Group) Add(ctx context.Context, dir *Directory, users ...string) error {
	var kps [][]byte
	for _, u := range users {
		vb, err := dir.Claim(ctx, u)
		if err != nil {
			return fmt.Errorf("claim %s: %w", u, err)
		}
		for i, c := range vb.Clients {
			// The adding client itself is already a member.
			if len(c.KeyPackage) > 0 && vb.Credentials[i].ClientID != g.c.ClientID {
				kps = append(kps, c.KeyPackage)
			}
		}
	}
	if len(kps) == 0 {
		return errors.New("client: no KeyPackage to add")
	}
	return g.AddKeyPackages(ctx, kps...)
}

// Remove removes member leaves in one commit.
func (g *Group) Remove(ctx context.Context, leaves ...uint32) error {
	return g.stage(ctx, func() (*mlsx.CommitResult, error) { return g.m.Remove(leaves...) })
}

// Update refreshes the client's own leaf and path keys.
func (g *Group) Update(ctx context.Context) error {
	return g.stage(ctx, g.m.SelfUpdate)
}

// CommitPending commits the proposals received so far.
func (g *Group) CommitPending(ctx context.Context) error {
	return g.stage(ctx, g.m.CommitPending)
}

// Leave proposes the client's own removal; another member commits it.
func (g *Group) Leave(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	p, err := g.m.ProposeRemove(g.m.LeafIndex())
	if err != nil {
		return err
	}
	return g.c.Conn.do(ctx, http.MethodPost, g.path("handshake"), map[string]any{"message": p}, nil, nil)
}

// Send encrypts plaintext for the group and sends it with the leaf's
// request signature.
func (g *Group) Send(ctx context.Context, plaintext []byte) error {
	m, err := g.Seal(plaintext)
	if err != nil {
		return err
	}
	return g.SendSealed(ctx, m)
}

// Sealed is an application message ready to send.
type Sealed struct {
	Sender           uint32
	Message          []byte
	RequestSignature []byte
}

// Seal encrypts plaintext and signs the request without sending it
// (benchmarks build messages before timing).
func (g *Group) Seal(plaintext []byte) (*Sealed, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	msg, sig, err := g.m.Send(plaintext)
	if err != nil {
		return nil, err
	}
	return &Sealed{Sender: g.m.LeafIndex(), Message: msg, RequestSignature: sig}, nil
}

// SendSealed sends a sealed application message, in the request's binary
// form (api.MessageContentType).
func (g *Group) SendSealed(ctx context.Context, m *Sealed) error {
	b, err := m.Request()
	if err != nil {
		return err
	}
	return g.c.Conn.do(ctx, http.MethodPost, g.path("messages"), rawBody{api.MessageContentType, b}, nil, nil)
}

// SendSealedJSON sends a sealed application message in the request's JSON
// form, which the homeserver accepts as well.
func (g *Group) SendSealedJSON(ctx context.Context, m *Sealed) error {
	return g.c.Conn.do(ctx, http.MethodPost, g.path("messages"), map[string]any{"sender": m.Sender, "message": m.Message, "request_signature": m.RequestSignature}, nil, nil)
}

// Request is the binary body of m's message request.
func (m *Sealed) Request() ([]byte, error) {
	return api.EncodeMessageRequest(api.MessageRequest{Sender: m.Sender, Message: m.Message, RequestSignature: m.RequestSignature})
}

// Path is the path that group messages are posted to.
func (g *Group) Path() string { return g.path("messages") }

// SendHandshake posts a raw handshake message (and Welcome) to the group,
// for tests of what the Delivery Service refuses.
func (g *Group) SendHandshake(ctx context.Context, msg, welcome []byte) error {
	return g.c.Conn.do(ctx, http.MethodPost, g.path("handshake"), map[string]any{"message": msg, "welcome": welcome}, nil, nil)
}

// Incoming is one message the client fetched and processed.
type Incoming struct {
	Seq     uint64
	GroupID []byte
	Type    string // event type: ApplicationMessageAccepted, CommitAccepted, …
	Sender  uint32
	// Plaintext is set for application messages.
	Plaintext []byte
	// Joined is set when the message was a Welcome that made the client a
	// member of GroupID.
	Joined bool
	// Left is set when the message was the commit that removed the client;
	// its state of the group is dropped.
	Left bool
	// Raw is the message exactly as delivered (MD-5).
	Raw []byte
	// Err is set if the message could not be processed.
	Err error
}

type queued struct {
	Seq     uint64   `json:"seq"`
	Type    string   `json:"type"`
	GroupID []byte   `json:"group_id"`
	Epoch   uint64   `json:"epoch"`
	Sender  uint32   `json:"sender"`
	Message []byte   `json:"message"`
	Welcome []byte   `json:"welcome"`
	Removed []uint32 `json:"removed"`
}

// Fetch fetches the next batch of the client's queue (waiting up to wait
// for something to arrive), processes each message with MLS, and returns
// them in order. Call Ack to let the homeserver delete them.
func (c *Client) Fetch(ctx context.Context, wait time.Duration) ([]Incoming, error) {
	s := c.state()
	s.mu.Lock()
	from := s.next
	s.mu.Unlock()
	var reply struct {
		Messages []queued `json:"messages"`
		Next     uint64   `json:"next"`
	}
	path := "/v1/queue?from=" + strconv.FormatUint(from, 10) + "&wait=" + wait.String()
	if err := c.Conn.do(ctx, http.MethodGet, path, nil, c, &reply); err != nil {
		return nil, err
	}
	out := make([]Incoming, 0, len(reply.Messages))
	for _, q := range reply.Messages {
		out = append(out, c.process(q))
	}
	s.mu.Lock()
	if reply.Next > s.next {
		s.next = reply.Next
	}
	s.mu.Unlock()
	return out, nil
}

func (c *Client) process(q queued) Incoming {
	in := Incoming{Seq: q.Seq, GroupID: q.GroupID, Type: q.Type, Sender: q.Sender, Raw: q.Message}
	g := c.Group(q.GroupID)
	if g == nil {
		if len(q.Welcome) == 0 {
			in.Err = fmt.Errorf("client: message for unknown group %q", q.GroupID)
			return in
		}
		id, err := c.MLS()
		if err != nil {
			in.Err = err
			return in
		}
		m, err := id.Join(q.Welcome)
		if err != nil {
			in.Err = fmt.Errorf("client: join %q: %w", q.GroupID, err)
			return in
		}
		s := c.state()
		s.mu.Lock()
		s.groups[string(q.GroupID)] = &Group{c: c, ID: q.GroupID, m: m}
		s.mu.Unlock()
		in.Joined = true
		return in
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if slices.Contains(q.Removed, g.m.LeafIndex()) && q.Epoch == g.m.Epoch()+1 {
		c.ForgetGroup(q.GroupID)
		in.Left = true
		return in
	}
	r, err := g.m.Process(q.Message)
	if err != nil {
		in.Err = err
		return in
	}
	in.Plaintext = r.Plaintext
	in.Sender = r.Sender
	return in
}

// Ack tells the homeserver that everything fetched so far was processed.
func (c *Client) Ack(ctx context.Context) error {
	s := c.state()
	s.mu.Lock()
	upTo := s.next
	s.mu.Unlock()
	if upTo == 0 {
		return nil
	}
	return c.Conn.do(ctx, http.MethodPost, "/v1/queue/ack", map[string]any{"up_to": upTo - 1}, c, nil)
}

// BlockGroup asks the client's homeserver to refuse, from now on, every
// delivery of group gid (owned by another homeserver) to this client.
func (c *Client) BlockGroup(ctx context.Context, gid []byte) error {
	c.ForgetGroup(gid)
	return c.Conn.do(ctx, http.MethodPost, "/v1/queue/block", map[string]any{"group_id": gid}, c, nil)
}
