package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/mlshome/homeserver/identity"
)

// KeyResolver returns the authentication key of a homeserver domain, for
// verifying bundles of users there.
type KeyResolver func(ctx context.Context, domain string) ([]byte, error)

// Directory looks users up and claims KeyPackages anonymously through one
// homeserver (the requester's own; it relays for other domains).
type Directory struct {
	Conn *Conn
	// Resolve gives other homeservers' authentication keys; nil trusts
	// only the connection's own homeserver.
	Resolve KeyResolver
}

// ErrTampered is wrapped by every bundle verification failure.
var ErrTampered = errors.New("client: directory answer does not verify")

func (d *Directory) authKey(ctx context.Context, userID string) ([]byte, error) {
	uid, err := identity.ParseUserID(userID)
	if err != nil {
		return nil, err
	}
	if uid.Domain == d.Conn.Keys.Domain {
		return d.Conn.Keys.AuthKey, nil
	}
	if d.Resolve == nil {
		return nil, fmt.Errorf("client: no key for homeserver %s", uid.Domain)
	}
	return d.Resolve(ctx, uid.Domain)
}

// LookupResult is one user's verified answer, or its error.
type LookupResult struct {
	UserID string
	Bundle *identity.VerifiedBundle
	Err    error
}

// Lookup returns the verified client sets of users (up to 100 at once).
// A bundle that does not verify is reported as an error wrapping
// ErrTampered, never returned.
func (d *Directory) Lookup(ctx context.Context, users ...string) ([]LookupResult, error) {
	var reply struct {
		Results []struct {
			UserID string `json:"user_id"`
			Bundle []byte `json:"bundle"`
			Error  *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := d.Conn.do(ctx, http.MethodPost, "/v1/directory/lookup", map[string]any{"users": users}, nil, &reply); err != nil {
		return nil, err
	}
	if len(reply.Results) != len(users) {
		return nil, fmt.Errorf("%w: %d results for %d users", ErrTampered, len(reply.Results), len(users))
	}
	out := make([]LookupResult, len(users))
	for i, r := range reply.Results {
		out[i].UserID = users[i]
		if r.Error != nil {
			out[i].Err = &Error{Status: http.StatusOK, Code: r.Error.Code, Message: r.Error.Message}
			continue
		}
		out[i].Bundle, out[i].Err = d.verify(ctx, users[i], r.Bundle, false)
	}
	return out, nil
}

// Claim claims one KeyPackage per client of userID and returns the
// verified bundle.
func (d *Directory) Claim(ctx context.Context, userID string) (*identity.VerifiedBundle, error) {
	var reply struct {
		Bundle []byte `json:"bundle"`
	}
	if err := d.Conn.do(ctx, http.MethodPost, "/v1/directory/claim", map[string]any{"user_id": userID}, nil, &reply); err != nil {
		return nil, err
	}
	return d.verify(ctx, userID, reply.Bundle, true)
}

func (d *Directory) verify(ctx context.Context, userID string, bundle []byte, claim bool) (*identity.VerifiedBundle, error) {
	key, err := d.authKey(ctx, userID)
	if err != nil {
		return nil, err
	}
	vb, err := identity.VerifyBundle(bundle, key, userID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTampered, err)
	}
	if !claim {
		for i, c := range vb.Clients {
			if len(c.KeyPackage) != 0 {
				return nil, fmt.Errorf("%w: lookup answer carries a KeyPackage for client %d", ErrTampered, i)
			}
		}
	}
	return vb, nil
}

// RemoteAuthKey asks the connection's homeserver for another homeserver's
// authentication key (as that homeserver pinned it): a KeyResolver that
// keeps the client talking to its own homeserver only.
func (c *Conn) RemoteAuthKey(ctx context.Context, domain string) ([]byte, error) {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/v1/federation/keys/"+url.PathEscape(domain), nil, nil, &raw); err != nil {
		return nil, err
	}
	pk, err := identity.ParsePublicKeys(raw, domain)
	if err != nil {
		return nil, err
	}
	return pk.AuthKey, nil
}
