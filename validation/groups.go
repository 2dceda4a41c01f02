package validation

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/mlsx"
	"github.com/mlshome/homeserver/projections"
)

// Codes of groups, tokens and queues.
const (
	CodeUnknownGroup      = "unknown_group"
	CodeGroupExists       = "group_exists"
	CodeTokenSpent        = "token_spent"
	CodeInvalidToken      = "invalid_token"
	CodeAllowanceExceeded = "allowance_exceeded"
	CodeInvalidGroup      = "invalid_group"
	CodeUnexpectedWelcome = "unexpected_welcome"
	CodeStaleEpoch        = mlsx.CodeStaleEpoch
	CodeNotAMember        = mlsx.CodeNotAMember
)

func init() {
	for code, st := range map[string]int{
		CodeUnknownGroup:           http.StatusNotFound,
		CodeGroupExists:            http.StatusConflict,
		CodeTokenSpent:             http.StatusConflict,
		CodeInvalidToken:           http.StatusUnauthorized,
		CodeAllowanceExceeded:      http.StatusTooManyRequests,
		CodeInvalidGroup:           http.StatusBadRequest,
		CodeUnexpectedWelcome:      http.StatusBadRequest,
		mlsx.CodeStaleEpoch:        http.StatusConflict,
		mlsx.CodeNotAMember:        http.StatusForbidden,
		mlsx.CodeBadSignature:      http.StatusUnauthorized,
		mlsx.CodeInvalidProposal:   http.StatusBadRequest,
		mlsx.CodeInvalidKeyPackage: http.StatusBadRequest,
		mlsx.CodeMalformed:         http.StatusBadRequest,
		mlsx.CodeWrongGroup:        http.StatusBadRequest,
		mlsx.CodeUnsupported:       http.StatusBadRequest,
		mlsx.CodeInvalidCommit:     http.StatusBadRequest,
		mlsx.CodeInvalidPath:       http.StatusBadRequest,
		mlsx.CodeInvalidLeafNode:   http.StatusBadRequest,
		mlsx.CodeInvalidTree:       http.StatusBadRequest,
		mlsx.CodeInvalidGroupInfo:  http.StatusBadRequest,
		mlsx.CodeInvalidState:      http.StatusInternalServerError,
	} {
		statusOf[code] = st
	}
}

// fromMLS turns an mlsx rejection into a validation rejection with the
// same stable code.
func fromMLS(err error) error {
	var me *mlsx.Error
	if errors.As(err, &me) {
		return Reject(me.Code, "%s", me.Msg)
	}
	return err
}

// IssueTokens counts Count group-creation tokens against a local user's
// allowance; the API evaluates the blinded elements once it is accepted.
type IssueTokens struct {
	UserID string
	Count  int
}

// CreateGroup creates a group from its epoch-0 state. The token has been
// redeemed (verified) on the request goroutine; it names no one.
type CreateGroup struct {
	GroupID     []byte
	GroupInfo   []byte
	RatchetTree []byte
	QueueConfig []byte
	Token       []byte
	TokenKeyID  []byte
	TokenNonce  []byte
	Signature   []byte
}

// Handshake is a commit (with the Welcome for the members it adds) or a
// proposal, as an MLS PublicMessage.
type Handshake struct {
	GroupID []byte
	Message []byte
	Welcome []byte
}

// AppMessage is an application message (PrivateMessage) with the sender
// leaf's request signature. The API checked the signature against the
// committed state of CheckedEpoch; the writer accepts it without verifying
// again if the group is still in that epoch.
type AppMessage struct {
	GroupID          []byte
	Sender           uint32
	Message          []byte
	RequestSignature []byte
	CheckedEpoch     uint64
}

// AckQueue acknowledges a local client's queue up to a sequence number.
type AckQueue struct {
	ClientID string
	UpTo     uint64
}

// CreateGroupLabel is the SignWithLabel label of the creator's signature
// over CreateGroupTBS.
const CreateGroupLabel = "homeserver create group"

// CreateGroupTBS is what the creator signs with its leaf key (GC-2): a
// digest of every part of the creation request.
func CreateGroupTBS(groupID, groupInfo, ratchetTree, queueConfig, token []byte) []byte {
	h := sha256.New()
	h.Write([]byte("homeserver create group v1\x00"))
	for _, p := range [][]byte{groupID, groupInfo, ratchetTree, queueConfig, token} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		h.Write(p)
	}
	return h.Sum(nil)
}

// GroupIDDomain returns the domain a group id names: group ids are
// "<domain>/<opaque>".
func GroupIDDomain(gid []byte) string {
	d, _, ok := strings.Cut(string(gid), "/")
	if !ok {
		return ""
	}
	return d
}

// MaxGroupIDLen bounds group ids.
const MaxGroupIDLen = 255

func (v *Validator) issueTokens(r eventlog.Reader, now int64, c IssueTokens) (eventlog.Decision, error) {
	if c.Count < 1 {
		return eventlog.Decision{}, Reject(CodeMalformed, "ask for at least one token")
	}
	window := now / int64(v.Env.TokenWindow)
	n, err := projections.TokenView{R: r}.Issued(c.UserID, window)
	if err != nil {
		return eventlog.Decision{}, err
	}
	if n+c.Count > v.Env.TokenAllowance {
		return eventlog.Decision{}, Reject(CodeAllowanceExceeded, "%d of %d tokens used in this window", n, v.Env.TokenAllowance)
	}
	return eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeTokensIssued, events.TokensIssued{
		UserID: c.UserID, Window: window, Count: c.Count,
	})}}, nil
}

// CheckCreateGroup runs the checks of a group creation that need no state
// (GC-2, GC-3): the group id names this homeserver, the GroupInfo and tree
// are a valid epoch-0 group with exactly one leaf, the creator signed the
// request with that leaf's key, and its queue config is this homeserver's.
func (v *Validator) CheckCreateGroup(c CreateGroup, now time.Time) (*mlsx.Observer, error) {
	if len(c.GroupID) == 0 || len(c.GroupID) > MaxGroupIDLen || GroupIDDomain(c.GroupID) != v.Env.Domain {
		return nil, Reject(CodeInvalidGroup, "group id must be %q followed by an opaque part, at most %d bytes", v.Env.Domain+"/", MaxGroupIDLen)
	}
	o, err := mlsx.NewObserverFromGroupInfo(c.GroupInfo, c.RatchetTree, mlsx.Policy{})
	if err != nil {
		return nil, fromMLS(err)
	}
	if !bytes.Equal(o.GroupID(), c.GroupID) {
		return nil, Reject(CodeInvalidGroup, "the GroupInfo is for another group id")
	}
	if err := o.CheckInitialGroup(now); err != nil {
		return nil, fromMLS(err)
	}
	if err := o.VerifyLeafSignature(0, CreateGroupLabel, CreateGroupTBS(c.GroupID, c.GroupInfo, c.RatchetTree, c.QueueConfig, c.Token), c.Signature); err != nil {
		return nil, fromMLS(err)
	}
	t, err := v.Env.ResolveQueue(c.QueueConfig)
	if err != nil || t.ClientID == "" {
		return nil, Reject(CodeBadQueueConfig, "the creator's queue config must be a queue of this homeserver")
	}
	return o, nil
}

func (v *Validator) createGroup(r eventlog.Reader, now int64, c CreateGroup) (eventlog.Decision, error) {
	if _, err := v.CheckCreateGroup(c, time.Unix(0, now)); err != nil {
		return eventlog.Decision{}, err
	}
	if err := checkCreateState(r, c.GroupID, c.TokenNonce); err != nil {
		return eventlog.Decision{}, err
	}
	return eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeGroupCreated, events.GroupCreated{
		GroupID: c.GroupID, GroupInfo: c.GroupInfo, RatchetTree: c.RatchetTree, QueueConfig: c.QueueConfig,
		TokenKeyID: c.TokenKeyID, TokenNonce: c.TokenNonce, Token: c.Token, Signature: c.Signature,
	})}, Reply: []byte(`{"created":true}`)}, nil
}

func checkCreateState(r eventlog.Reader, gid, nonce []byte) error {
	if _, err := (projections.GroupView{R: r}).Meta(gid); err == nil {
		return Reject(CodeGroupExists, "group id in use")
	} else if !errors.Is(err, eventlog.ErrNotFound) {
		return err
	}
	spent, err := projections.TokenView{R: r}.Spent(nonce)
	if err != nil {
		return err
	}
	if spent {
		return Reject(CodeTokenSpent, "this token was already spent")
	}
	return nil
}

// HandshakeReply is the reply to an accepted handshake.
type HandshakeReply struct {
	Epoch uint64 `json:"epoch"`
}

func (v *Validator) handshake(r eventlog.Reader, now int64, c Handshake) (eventlog.Decision, error) {
	ev, err := v.checkHandshake(r, now, c)
	if err != nil {
		return eventlog.Decision{}, err
	}
	reply, _ := json.Marshal(HandshakeReply{Epoch: ev.epoch})
	return eventlog.Decision{Events: []eventlog.Draft{ev.draft}, Reply: reply}, nil
}

type checkedHandshake struct {
	draft eventlog.Draft
	epoch uint64
}

func (v *Validator) checkHandshake(r eventlog.Reader, now int64, c Handshake) (*checkedHandshake, error) {
	o, err := projections.LoadObserver(r, c.GroupID)
	if errors.Is(err, eventlog.ErrNotFound) {
		return nil, Reject(CodeUnknownGroup, "no group %q here", c.GroupID)
	} else if err != nil {
		return nil, err
	}
	ch, err := o.ProcessPublicMessage(c.Message, mlsx.Policy{Now: time.Unix(0, now)})
	if err != nil {
		return nil, fromMLS(err)
	}
	if ch.Kind != mlsx.ChangeCommit {
		if len(c.Welcome) > 0 {
			return nil, Reject(CodeUnexpectedWelcome, "a Welcome comes with the commit that adds its members")
		}
		return &checkedHandshake{epoch: ch.Epoch, draft: events.Draft(events.TypeProposalAccepted, events.ProposalAccepted{
			GroupID: c.GroupID, Epoch: ch.Epoch, Sender: ch.Sender, Message: c.Message,
		})}, nil
	}
	e := events.CommitAccepted{GroupID: c.GroupID, Epoch: ch.Epoch, Sender: ch.Sender, Message: c.Message, Welcome: c.Welcome,
		Removed: ch.RemovedLeaves, Updated: ch.UpdatedLeaves}
	added := map[string]bool{}
	for _, a := range ch.AddedLeaves {
		if _, err := v.Env.ResolveQueue(a.SealedQueueConfig); err != nil {
			return nil, Reject(CodeBadQueueConfig, "added leaf %d: %v", a.Leaf, err)
		}
		added[string(a.KeyPackageRef)] = true
		e.Added = append(e.Added, events.AddedLeaf{Leaf: a.Leaf, KeyPackageRef: a.KeyPackageRef, QueueConfig: a.SealedQueueConfig})
	}
	if len(c.Welcome) > 0 {
		wi, err := mlsx.ParseWelcome(c.Welcome)
		if err != nil {
			return nil, fromMLS(err)
		}
		if len(wi.NewMembers) == 0 {
			return nil, Reject(CodeUnexpectedWelcome, "the Welcome addresses no one")
		}
		for _, ref := range wi.NewMembers {
			if !added[string(ref)] {
				return nil, Reject(CodeUnexpectedWelcome, "the Welcome is for a KeyPackage this commit does not add")
			}
		}
	}
	return &checkedHandshake{epoch: ch.Epoch, draft: events.Draft(events.TypeCommitAccepted, e)}, nil
}

// CheckAppMessage checks an application message against the state r
// (MD-2, MD-3, MD-4) and returns the group epoch it was checked in.
func (v *Validator) CheckAppMessage(r eventlog.Reader, gid []byte, sender uint32, msg, reqSig []byte) (uint64, error) {
	epoch, verify, err := v.appMessageState(r, gid, sender, msg, reqSig)
	if err != nil {
		return 0, err
	}
	return epoch, verify()
}

// appMessageState reads what checking an application message needs from
// the state r and returns the check itself, which reads no state (a
// signature verification): audits run it in parallel.
func (v *Validator) appMessageState(r eventlog.Reader, gid []byte, sender uint32, msg, reqSig []byte) (uint64, func() error, error) {
	g := projections.GroupView{R: r}
	meta, err := g.Meta(gid)
	if errors.Is(err, eventlog.ErrNotFound) {
		return 0, nil, Reject(CodeUnknownGroup, "no group %q here", gid)
	} else if err != nil {
		return 0, nil, err
	}
	var key []byte
	if leaf, err := g.Leaf(gid, sender); err == nil {
		key = leaf.SignatureKey
	} else if !errors.Is(err, eventlog.ErrNotFound) {
		return 0, nil, err
	}
	ac := mlsx.AppContext{GroupID: gid, Epoch: meta.Epoch, CipherSuite: meta.CipherSuite, EpochWindow: v.Env.EpochWindow}
	return meta.Epoch, func() error {
		if _, err := mlsx.CheckApplicationWith(ac, msg, sender, key, reqSig); err != nil {
			return fromMLS(err)
		}
		return nil
	}, nil
}

func (v *Validator) appMessage(r eventlog.Reader, c AppMessage) (eventlog.Decision, error) {
	meta, err := projections.GroupView{R: r}.Meta(c.GroupID)
	if errors.Is(err, eventlog.ErrNotFound) {
		return eventlog.Decision{}, Reject(CodeUnknownGroup, "no group %q here", c.GroupID)
	} else if err != nil {
		return eventlog.Decision{}, err
	}
	// The request goroutine verified the signature against this epoch's
	// state. Leaf keys change only with a commit, and every commit moves
	// the epoch: if it is still the checked one, so is the key. Otherwise
	// check again against the new state.
	if meta.Epoch != c.CheckedEpoch {
		if _, err := v.CheckAppMessage(r, c.GroupID, c.Sender, c.Message, c.RequestSignature); err != nil {
			return eventlog.Decision{}, err
		}
	}
	return eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeApplicationMessageAccepted, events.ApplicationMessageAccepted{
		GroupID: c.GroupID, Epoch: meta.Epoch, Sender: c.Sender, Message: c.Message, RequestSignature: c.RequestSignature,
	})}, Reply: []byte(`{"accepted":true}`)}, nil
}

func (v *Validator) ackQueue(r eventlog.Reader, c AckQueue) (eventlog.Decision, error) {
	if _, err := (projections.DirectoryView{R: r}).Client(c.ClientID); err != nil {
		if errors.Is(err, eventlog.ErrNotFound) {
			return eventlog.Decision{}, Reject(CodeUnknownClient, "no client %s", c.ClientID)
		}
		return eventlog.Decision{}, err
	}
	return eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeQueueAcked, events.QueueAcked{
		ClientID: c.ClientID, UpTo: c.UpTo,
	})}, Reply: []byte(`{"acked":true}`)}, nil
}
