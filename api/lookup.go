package api

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/ratelimit"
	"github.com/mlshome/homeserver/validation"
)

// MaxLookupBatch bounds the users of one lookup (GUC-5 asks for >= 50).
const MaxLookupBatch = 100

// DirectoryLimits are the GUC-2 / GUC-5 rate limits.
type DirectoryLimits struct {
	LookupPerRequester ratelimit.Limit // tokens are users looked up
	LookupPerTarget    ratelimit.Limit
	ClaimPerRequester  ratelimit.Limit
	ClaimPerTarget     ratelimit.Limit
}

// DefaultDirectoryLimits are generous for people, tight for scrapers.
var DefaultDirectoryLimits = DirectoryLimits{
	LookupPerRequester: ratelimit.Limit{PerSecond: 20, Burst: 200},
	LookupPerTarget:    ratelimit.Limit{PerSecond: 5, Burst: 50},
	ClaimPerRequester:  ratelimit.Limit{PerSecond: 5, Burst: 50},
	ClaimPerTarget:     ratelimit.Limit{PerSecond: 1, Burst: 20},
}

type directoryLimiters struct {
	lookupReq, lookupTarget, claimReq, claimTarget *ratelimit.Limiter
}

func newDirectoryLimiters(l DirectoryLimits) directoryLimiters {
	return directoryLimiters{
		lookupReq:    ratelimit.New(l.LookupPerRequester, 0),
		lookupTarget: ratelimit.New(l.LookupPerTarget, 0),
		claimReq:     ratelimit.New(l.ClaimPerRequester, 0),
		claimTarget:  ratelimit.New(l.ClaimPerTarget, 0),
	}
}

// Relay carries a directory request for a user of another homeserver to
// that homeserver (through the federation bus) and returns its signed
// answer. The remote homeserver runs the same Directory path.
type Relay interface {
	Lookup(ctx context.Context, domain string, userIDs []string) ([]LookupResult, error)
	Claim(ctx context.Context, domain, userID string) ([]byte, error)
}

// LookupRequest asks for the clients of users (anonymous).
type LookupRequest struct {
	Users []string `json:"users"`
}

// LookupResult is the answer for one user: a bundle signed by the user's
// homeserver, or an error.
type LookupResult struct {
	UserID string       `json:"user_id"`
	Bundle []byte       `json:"bundle,omitempty"`
	Error  *ErrorDetail `json:"error,omitempty"`
}

// LookupReply is the reply to a lookup.
type LookupReply struct {
	Results []LookupResult `json:"results"`
}

// ClaimRequest claims one KeyPackage per client of a user (anonymous).
type ClaimRequest struct {
	UserID string `json:"user_id"`
}

// ClaimBundle is the reply to a claim: a bundle with KeyPackages.
type ClaimBundle struct {
	Bundle []byte `json:"bundle"`
}

// RelayedRequester names a homeserver relaying for its clients, for rate
// limits (GUC-2: per origin homeserver for federated requesters).
func RelayedRequester(origin string) string { return "hs:" + origin }

// IsRelayed reports whether a requester is a relaying homeserver.
func IsRelayed(requester string) bool { return strings.HasPrefix(requester, "hs:") }

// requesterOf names who asks, for rate limits only: the connection's IP.
// It is never logged with the request nor stored (GUC-4).
func requesterOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func rateLimited(retry time.Duration) error {
	secs := int(math.Ceil(retry.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return &validation.Error{Code: validation.CodeRateLimited, Status: http.StatusTooManyRequests,
		Msg: "rate limited; retry after " + strconv.Itoa(secs) + "s"}
}

// writeLimited writes 429 with Retry-After.
func (s *Server) writeLimited(w http.ResponseWriter, r *http.Request, retry time.Duration) {
	secs := int(math.Ceil(retry.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	s.writeError(w, r, rateLimited(retry))
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	var req LookupRequest
	if !s.jsonBody(w, r, &req) {
		return
	}
	if len(req.Users) == 0 || len(req.Users) > MaxLookupBatch {
		s.writeError(w, r, validation.Reject(validation.CodeMalformed, "users: 1 to %d user ids", MaxLookupBatch))
		return
	}
	results, retry := s.Lookup(r.Context(), requesterOf(r), req.Users)
	if retry > 0 {
		s.writeLimited(w, r, retry)
		return
	}
	writeJSON(w, http.StatusOK, LookupReply{Results: results})
}

// Lookup answers a lookup for requester (an IP for local clients, an
// origin domain for relayed ones). Local users are answered from the
// directory; others are relayed to their homeserver. A positive duration
// means the requester is over its limit.
func (s *Server) Lookup(ctx context.Context, requester string, users []string) ([]LookupResult, time.Duration) {
	now := s.cfg.Now()
	for range users {
		if ok, retry := s.limits.lookupReq.Allow(requester, now); !ok {
			return nil, retry
		}
	}
	results := make([]LookupResult, len(users))
	remote := map[string][]int{}
	var domains []string
	for i, u := range users {
		results[i].UserID = u
		uid, err := identity.ParseUserID(u)
		if err != nil {
			results[i].Error = &ErrorDetail{Code: validation.CodeInvalidUserID, Message: err.Error()}
			continue
		}
		if ok, _ := s.limits.lookupTarget.Allow(u, now); !ok {
			results[i].Error = &ErrorDetail{Code: validation.CodeRateLimited, Message: "too many lookups of this user"}
			continue
		}
		if uid.Domain != s.cfg.Domain {
			if IsRelayed(requester) {
				// A homeserver asks only about its peer's own users.
				results[i].Error = &ErrorDetail{Code: "not_local", Message: u + " is not a user of " + s.cfg.Domain}
				continue
			}
			if _, seen := remote[uid.Domain]; !seen {
				domains = append(domains, uid.Domain)
			}
			remote[uid.Domain] = append(remote[uid.Domain], i)
			continue
		}
		b, err := s.localBundle(u, nil, now)
		if err != nil {
			results[i].Error = errorDetail(err)
			continue
		}
		results[i].Bundle = b
	}
	for _, d := range domains {
		idx := remote[d]
		if s.cfg.Relay == nil {
			for _, i := range idx {
				results[i].Error = &ErrorDetail{Code: "federation_unavailable", Message: "no federation configured for " + d}
			}
			continue
		}
		ids := make([]string, len(idx))
		for j, i := range idx {
			ids[j] = users[i]
		}
		got, err := s.cfg.Relay.Lookup(ctx, d, ids)
		for j, i := range idx {
			switch {
			case err != nil:
				results[i].Error = errorDetail(err)
			case j < len(got) && got[j].UserID == users[i]:
				results[i] = got[j]
			default:
				results[i].Error = &ErrorDetail{Code: "bad_remote_answer", Message: "remote homeserver answered for other users"}
			}
		}
	}
	return results, 0
}

func errorDetail(err error) *ErrorDetail {
	if e, ok := validation.AsError(err); ok {
		return &ErrorDetail{Code: e.Code, Message: e.Msg}
	}
	if errors.Is(err, eventlog.ErrNotFound) {
		return &ErrorDetail{Code: validation.CodeUnknownUser, Message: "no such user"}
	}
	return &ErrorDetail{Code: validation.CodeInternal, Message: "internal error"}
}

// localBundle signs the client set of a local user; kps, if not nil,
// gives a KeyPackage per client id.
func (s *Server) localBundle(userID string, claimed *validation.ClaimReply, now time.Time) ([]byte, error) {
	b := identity.Bundle{UserID: userID, Domain: s.cfg.Domain, Time: now.UnixMilli()}
	if claimed != nil {
		for _, c := range claimed.Clients {
			b.Clients = append(b.Clients, identity.BundleClient{Credential: c.Credential, KeyPackage: c.KeyPackage})
		}
	} else {
		dir := projections.DirectoryView{R: s.reader()}
		if _, err := dir.User(userID); err != nil {
			if errors.Is(err, eventlog.ErrNotFound) {
				return nil, validation.Reject(validation.CodeUnknownUser, "no user %s", userID)
			}
			return nil, err
		}
		clients, err := dir.Clients(userID)
		if err != nil {
			return nil, err
		}
		for _, c := range clients {
			b.Clients = append(b.Clients, identity.BundleClient{Credential: c.Credential})
		}
	}
	return s.cfg.Keys.SignBundle(b)
}

func (s *Server) claim(w http.ResponseWriter, r *http.Request) {
	var req ClaimRequest
	if !s.jsonBody(w, r, &req) {
		return
	}
	bundle, retry, err := s.Claim(r.Context(), requesterOf(r), req.UserID)
	if retry > 0 {
		s.writeLimited(w, r, retry)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ClaimBundle{Bundle: bundle})
}

// Claim claims one KeyPackage per client of userID for requester and
// returns the signed bundle, relaying to the user's homeserver if needed.
func (s *Server) Claim(ctx context.Context, requester, userID string) ([]byte, time.Duration, error) {
	now := s.cfg.Now()
	uid, err := identity.ParseUserID(userID)
	if err != nil {
		return nil, 0, validation.Reject(validation.CodeInvalidUserID, "%v", err)
	}
	if ok, retry := s.limits.claimReq.Allow(requester, now); !ok {
		return nil, retry, nil
	}
	if ok, retry := s.limits.claimTarget.Allow(userID, now); !ok {
		return nil, retry, nil
	}
	if uid.Domain != s.cfg.Domain {
		if IsRelayed(requester) {
			return nil, 0, validation.Reject(validation.CodeWrongDomain, "%s is not a user of %s", userID, s.cfg.Domain)
		}
		if s.cfg.Relay == nil {
			return nil, 0, &validation.Error{Code: "federation_unavailable", Status: http.StatusBadGateway, Msg: "no federation configured for " + uid.Domain}
		}
		b, err := s.cfg.Relay.Claim(ctx, uid.Domain, userID)
		return b, 0, err
	}
	out, err := s.cfg.Log.Append(ctx, eventlog.Command{Body: validation.ClaimKeyPackages{UserID: userID}})
	if err != nil {
		var rej *eventlog.Rejection
		if errors.As(err, &rej) {
			err = rej.Err
		}
		return nil, 0, err
	}
	var reply validation.ClaimReply
	if err := json.Unmarshal(out.Reply, &reply); err != nil {
		return nil, 0, err
	}
	b, err := s.localBundle(userID, &reply, now)
	return b, 0, err
}
