package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/ratelimit"
	"github.com/mlshome/homeserver/tokens"
	"github.com/mlshome/homeserver/validation"
)

// GroupLimits are the MD-8 and GC-6 rate limits of the Delivery Service.
type GroupLimits struct {
	PerSenderPerGroup ratelimit.Limit // key: group id + sender leaf
	PerGroup          ratelimit.Limit // key: group id
	TokenRequests     ratelimit.Limit // key: client id (the allowance itself is in the log)
	PerOrigin         ratelimit.Limit // key: relaying homeserver (MD-8, FED-6)
}

// DefaultGroupLimits allow a busy chat, not a flood.
var DefaultGroupLimits = GroupLimits{
	PerSenderPerGroup: ratelimit.Limit{PerSecond: 50, Burst: 200},
	PerGroup:          ratelimit.Limit{PerSecond: 500, Burst: 2000},
	TokenRequests:     ratelimit.Limit{PerSecond: 1, Burst: 10},
	PerOrigin:         ratelimit.Limit{PerSecond: 2000, Burst: 5000},
}

type groupLimiters struct {
	sender, group, tokens, origin *ratelimit.Limiter
}

func newGroupLimiters(l GroupLimits) groupLimiters {
	return groupLimiters{
		sender: ratelimit.New(l.PerSenderPerGroup, 0),
		group:  ratelimit.New(l.PerGroup, 0),
		tokens: ratelimit.New(l.TokenRequests, 0),
		origin: ratelimit.New(l.PerOrigin, 0),
	}
}

// TokenKeysReply lists the token issuer's public keys: every client must
// see the same ones, or the issuer could tell clients apart by key.
type TokenKeysReply struct {
	Keys []TokenKey `json:"keys"`
}

// TokenKey is one issuer key.
type TokenKey struct {
	ID          []byte `json:"id"`
	PublicKey   []byte `json:"public_key"`
	Issuing     bool   `json:"issuing"`
	RedeemUntil int64  `json:"redeem_until,omitempty"` // unix ms
}

// TokenRequest carries an encoded tokens.IssueRequest.
type TokenRequest struct {
	Request []byte `json:"request"`
}

// TokenResponse carries an encoded tokens.IssueResponse.
type TokenResponse struct {
	Response []byte `json:"response"`
}

// CreateGroupRequest creates a group (anonymous: the token authorises it).
type CreateGroupRequest struct {
	GroupID     []byte `json:"group_id"`
	GroupInfo   []byte `json:"group_info"`
	RatchetTree []byte `json:"ratchet_tree,omitempty"`
	QueueConfig []byte `json:"queue_config"`
	Token       []byte `json:"token"`
	Signature   []byte `json:"signature"`
}

// HandshakeRequest is a commit or proposal (PublicMessage), with the
// Welcome for members a commit adds.
type HandshakeRequest struct {
	Message []byte `json:"message"`
	Welcome []byte `json:"welcome,omitempty"`
}

// MessageRequest is an application message with its request signature.
type MessageRequest struct {
	Sender           uint32 `json:"sender"`
	Message          []byte `json:"message"`
	RequestSignature []byte `json:"request_signature"`
}

func (s *Server) tokenKeys(w http.ResponseWriter, r *http.Request) {
	var reply TokenKeysReply
	for _, k := range s.cfg.Tokens.Keys(s.cfg.Now()) {
		tk := TokenKey{ID: k.ID[:], PublicKey: k.PublicKey, Issuing: k.Issuing}
		if !k.RedeemUntil.IsZero() {
			tk.RedeemUntil = k.RedeemUntil.UnixMilli()
		}
		reply.Keys = append(reply.Keys, tk)
	}
	writeJSON(w, http.StatusOK, reply)
}

func (s *Server) issueTokens(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	client := s.signedBody(w, r, &req)
	if client == nil {
		return
	}
	if ok, retry := s.groupLimits.tokens.Allow(client.ClientID, s.cfg.Now()); !ok {
		s.writeLimited(w, r, retry)
		return
	}
	ir, err := tokens.ParseIssueRequest(req.Request)
	if err != nil {
		s.writeError(w, r, validation.Reject(validation.CodeMalformed, "token request: %v", err))
		return
	}
	if ir.KeyID != s.cfg.Tokens.Current().ID {
		s.writeError(w, r, validation.Reject(validation.CodeInvalidToken, "blinded for key %s, the issuing key is %s", ir.KeyID, s.cfg.Tokens.Current().ID))
		return
	}
	// Count against the allowance first (durably), then evaluate.
	if _, err := s.append(r, eventlog.Command{Body: validation.IssueTokens{UserID: client.UserID, Count: len(ir.Blinded)}}); err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := s.cfg.Tokens.Issue(ir)
	if err != nil {
		s.writeError(w, r, validation.Reject(validation.CodeInvalidToken, "%v", err))
		return
	}
	b, err := resp.MarshalBinary()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TokenResponse{Response: b})
}

// append submits cmd and unwraps a rejection.
func (s *Server) append(r *http.Request, cmd eventlog.Command) (eventlog.Outcome, error) {
	out, err := s.cfg.Log.Append(r.Context(), cmd)
	var rej *eventlog.Rejection
	if errors.As(err, &rej) {
		err = rej.Err
	}
	return out, err
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) {
	var req CreateGroupRequest
	if !s.jsonBody(w, r, &req) {
		return
	}
	t, err := tokens.ParseToken(req.Token)
	if err != nil {
		s.writeError(w, r, validation.Reject(validation.CodeInvalidToken, "%v", err))
		return
	}
	now := s.cfg.Now()
	nonce, err := s.cfg.Tokens.Redeem(t, now)
	if err != nil {
		s.writeError(w, r, validation.Reject(validation.CodeInvalidToken, "%v", err))
		return
	}
	c := validation.CreateGroup{GroupID: req.GroupID, GroupInfo: req.GroupInfo, RatchetTree: req.RatchetTree,
		QueueConfig: req.QueueConfig, Token: req.Token, TokenKeyID: t.KeyID[:], TokenNonce: nonce, Signature: req.Signature}
	if _, err := s.cfg.Validator.CheckCreateGroup(c, now); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.submit(w, r, eventlog.Command{Body: c}, http.StatusCreated)
}

// groupID decodes the {group} path segment (base64url, no padding).
func groupID(r *http.Request) ([]byte, error) {
	gid, err := base64.RawURLEncoding.DecodeString(r.PathValue("group"))
	if err != nil || len(gid) == 0 || len(gid) > validation.MaxGroupIDLen {
		return nil, validation.Reject(validation.CodeMalformed, "group id must be base64url without padding")
	}
	return gid, nil
}

// EncodeGroupID is the path form of a group id.
func EncodeGroupID(gid []byte) string { return base64.RawURLEncoding.EncodeToString(gid) }

// GroupRelay carries a group request for a group owned by another
// homeserver to that homeserver (through the federation bus), which runs
// it through the same checks as its own clients' requests (MD-1).
type GroupRelay interface {
	RelayGroup(ctx context.Context, domain, kind string, gid, body []byte) ([]byte, error)
}

// Kinds of relayed group requests.
const (
	RelayHandshake = "handshake"
	RelayMessage   = "message"
)

func (s *Server) groupRequest(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		gid, err := groupID(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		body, err := readBody(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var reply []byte
		if d := validation.GroupIDDomain(gid); d != s.cfg.Domain {
			if s.cfg.GroupRelay == nil {
				s.writeError(w, r, &validation.Error{Code: "federation_unavailable", Status: http.StatusBadGateway, Msg: "no federation configured for " + d})
				return
			}
			reply, err = s.cfg.GroupRelay.RelayGroup(r.Context(), d, kind, gid, body)
		} else {
			reply, err = s.GroupRequest(r.Context(), "", kind, gid, body)
		}
		if err != nil {
			var lim *limited
			if errors.As(err, &lim) {
				s.writeLimited(w, r, lim.retry)
				return
			}
			s.writeError(w, r, err)
			return
		}
		writeRawJSON(w, http.StatusOK, reply)
	}
}

// limited is a rate-limit rejection with its Retry-After.
type limited struct{ retry time.Duration }

func (l *limited) Error() string { return "rate limited" }
func (l *limited) Unwrap() error { return rateLimited(l.retry) }

// GroupRequest runs a handshake or application-message request for a group
// this homeserver owns. origin is "" for its own clients, or the homeserver
// that relays for its client (limited per origin, MD-8).
func (s *Server) GroupRequest(ctx context.Context, origin, kind string, gid, body []byte) ([]byte, error) {
	if validation.GroupIDDomain(gid) != s.cfg.Domain {
		return nil, validation.Reject(validation.CodeNotGroupOwner, "group %q is not owned here", gid)
	}
	// Announce the append this request is preparing: a busy log holds its
	// next batch for such appends, so that many share one fsync.
	expected := s.cfg.Log.Expect()
	defer expected()
	now := s.cfg.Now()
	if origin != "" {
		if ok, retry := s.groupLimits.origin.Allow(origin, now); !ok {
			return nil, &limited{retry}
		}
	}
	switch kind {
	case RelayHandshake:
		var req HandshakeRequest
		if err := decodeStrict(body, &req); err != nil {
			return nil, err
		}
		if ok, retry := s.groupLimits.group.Allow(string(gid), now); !ok {
			return nil, &limited{retry}
		}
		expected()
		return s.appendReply(ctx, eventlog.Command{Body: validation.Handshake{GroupID: gid, Message: req.Message, Welcome: req.Welcome}})
	case RelayMessage:
		req, err := DecodeMessageRequest(body)
		if err != nil {
			return nil, err
		}
		// The signature check needs only committed state: it runs here, in
		// parallel with other requests; the writer checks again only if a
		// commit moved the epoch meanwhile.
		epoch, err := s.cfg.Validator.CheckAppMessage(s.reader(), gid, req.Sender, req.Message, req.RequestSignature)
		if err != nil {
			return nil, err
		}
		if ok, retry := s.groupLimits.sender.Allow(string(gid)+"\x00"+strconv.FormatUint(uint64(req.Sender), 10), now); !ok {
			return nil, &limited{retry}
		}
		if ok, retry := s.groupLimits.group.Allow(string(gid), now); !ok {
			return nil, &limited{retry}
		}
		expected()
		return s.appendReply(ctx, eventlog.Command{Body: validation.AppMessage{GroupID: gid, Sender: req.Sender, Message: req.Message,
			RequestSignature: req.RequestSignature, CheckedEpoch: epoch}})
	}
	return nil, validation.Reject(validation.CodeUnknownCommand, "unknown group request %q", kind)
}

func (s *Server) appendReply(ctx context.Context, cmd eventlog.Command) ([]byte, error) {
	out, err := s.cfg.Log.Append(ctx, cmd)
	var rej *eventlog.Rejection
	if errors.As(err, &rej) {
		err = rej.Err
	}
	return out.Reply, err
}

// QueuedMessage is one entry of a client's queue.
type QueuedMessage struct {
	Seq     uint64 `json:"seq"`
	Type    string `json:"type"` // the event type
	GroupID []byte `json:"group_id"`
	Epoch   uint64 `json:"epoch"`
	Sender  uint32 `json:"sender"`
	Message []byte `json:"message"`
	Welcome []byte `json:"welcome,omitempty"`
	// Removed lists the leaves a commit removes, so a removed member knows
	// the commit (which it cannot decrypt) ends its membership.
	Removed []uint32 `json:"removed,omitempty"`
}

// QueueReply is a batch of queued messages; Next is where to fetch from
// next.
type QueueReply struct {
	Messages []QueuedMessage `json:"messages"`
	Next     uint64          `json:"next"`
}

// AckRequest acknowledges the queue up to and including UpTo.
type AckRequest struct {
	UpTo uint64 `json:"up_to"`
}

// MaxQueueBatch bounds one fetch.
const MaxQueueBatch = 500

// MaxQueueWait bounds a long poll.
const MaxQueueWait = 60 * time.Second

func (s *Server) fetchQueue(w http.ResponseWriter, r *http.Request) {
	client, err := s.authenticate(r, nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	from, _ := strconv.ParseUint(q.Get("from"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > MaxQueueBatch {
		limit = MaxQueueBatch
	}
	wait, _ := time.ParseDuration(q.Get("wait"))
	if wait > MaxQueueWait {
		wait = MaxQueueWait
	}
	deadline := time.Now().Add(wait)
	for {
		size := s.cfg.Log.Size()
		seqs, err := projections.QueueView{R: s.reader()}.From(client.ClientID, from, limit)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		// The projection shows a batch as soon as it is applied, a little
		// before its fsync: hand out only events already durable.
		for i, seq := range seqs {
			if seq > size {
				seqs = seqs[:i]
				break
			}
		}
		if len(seqs) > 0 || wait <= 0 || !time.Now().Before(deadline) {
			reply, err := s.queued(seqs, from)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, reply)
			return
		}
		// Long poll: wait for the log to grow, then look again.
		ctx, cancel := contextWithDeadline(r, deadline)
		err = s.cfg.Log.Wait(ctx, size+1)
		cancel()
		if r.Context().Err() != nil {
			return
		}
		_ = err
	}
}

func (s *Server) queued(seqs []uint64, from uint64) (QueueReply, error) {
	reply := QueueReply{Messages: []QueuedMessage{}, Next: from}
	for _, seq := range seqs {
		ev, err := s.cfg.Log.Event(seq)
		if err != nil {
			return reply, err
		}
		m := QueuedMessage{Seq: seq, Type: ev.Type}
		switch ev.Type {
		case events.TypeApplicationMessageAccepted:
			var e events.ApplicationMessageAccepted
			err = json.Unmarshal(ev.Payload, &e)
			m.GroupID, m.Epoch, m.Sender, m.Message = e.GroupID, e.Epoch, e.Sender, e.Message
		case events.TypeCommitAccepted:
			var e events.CommitAccepted
			err = json.Unmarshal(ev.Payload, &e)
			m.GroupID, m.Epoch, m.Sender, m.Message, m.Welcome, m.Removed = e.GroupID, e.Epoch, e.Sender, e.Message, e.Welcome, e.Removed
		case events.TypeProposalAccepted:
			var e events.ProposalAccepted
			err = json.Unmarshal(ev.Payload, &e)
			m.GroupID, m.Epoch, m.Sender, m.Message = e.GroupID, e.Epoch, e.Sender, e.Message
		case events.TypeDeliveryReceived:
			// A message of a group owned by another homeserver: shown as
			// the owner's event.
			var e events.DeliveryReceived
			err = json.Unmarshal(ev.Payload, &e)
			f := e.Message
			m.Type, m.GroupID, m.Epoch, m.Sender, m.Message, m.Welcome, m.Removed = f.Type, f.GroupID, f.Epoch, f.Sender, f.Message, f.Welcome, f.Removed
		}
		if err != nil {
			return reply, err
		}
		reply.Messages = append(reply.Messages, m)
		reply.Next = seq + 1
	}
	return reply, nil
}

func (s *Server) ackQueue(w http.ResponseWriter, r *http.Request) {
	var req AckRequest
	client := s.signedBody(w, r, &req)
	if client == nil {
		return
	}
	s.submit(w, r, eventlog.Command{Body: validation.AckQueue{ClientID: client.ClientID, UpTo: req.UpTo}}, http.StatusOK)
}

// BlockRequest asks the homeserver to refuse a group's deliveries to the
// signing client's queue.
type BlockRequest struct {
	GroupID []byte `json:"group_id"`
}

func (s *Server) blockGroup(w http.ResponseWriter, r *http.Request) {
	var req BlockRequest
	client := s.signedBody(w, r, &req)
	if client == nil {
		return
	}
	s.submit(w, r, eventlog.Command{Body: validation.BlockGroup{ClientID: client.ClientID, GroupID: req.GroupID}}, http.StatusOK)
}
