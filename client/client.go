// Package client is the Go client library of the homeserver: it registers
// users and clients, publishes KeyPackages, looks users up and claims their
// KeyPackages, and verifies every signed answer (GUC-3). Tests, the testnet
// and the benchmarks use it, so they exercise the server as a real client
// would. HTTP goes through go-retryablehttp: transient failures are
// retried, and signed requests are re-signed for each attempt (the server
// refuses a replayed signature).
package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/mlsx"
)

// Error is an error reply of the homeserver.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("homeserver: %d %s: %s", e.Status, e.Code, e.Message)
}

// CodeOf returns the stable code of a homeserver error, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Conn is an HTTP connection to one homeserver, with its pinned public
// keys.
type Conn struct {
	base string
	hc   *retryablehttp.Client
	Keys identity.PublicKeys
}

type signKey struct{}

type signing struct {
	body     []byte
	clientID string
	key      ed25519.PrivateKey
}

// Dial fetches the homeserver's public keys from its well-known URL and
// pins them for this connection. domain is the homeserver's domain.
func Dial(ctx context.Context, baseURL, domain string) (*Conn, error) {
	hc := retryablehttp.NewClient()
	hc.Logger = nil
	hc.RetryMax = 4
	hc.RetryWaitMin = 50 * time.Millisecond
	hc.RetryWaitMax = 2 * time.Second
	hc.CheckRetry = checkRetry
	hc.PrepareRetry = func(req *http.Request) error {
		if s, ok := req.Context().Value(signKey{}).(*signing); ok {
			return identity.SignRequest(req, s.body, s.clientID, s.key, time.Now())
		}
		return nil
	}
	hc.HTTPClient.Timeout = 90 * time.Second // above the longest long poll
	if t, ok := hc.HTTPClient.Transport.(*http.Transport); ok {
		// Many concurrent requests to one homeserver: keep their
		// connections instead of dialing anew each time.
		t.MaxIdleConnsPerHost = 256
	}
	c := &Conn{base: baseURL, hc: hc}
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/.well-known/mls-homeserver", nil, nil, &raw); err != nil {
		return nil, fmt.Errorf("fetch keys of %s: %w", domain, err)
	}
	keys, err := identity.ParsePublicKeys(raw, domain)
	if err != nil {
		return nil, fmt.Errorf("keys of %s: %w", domain, err)
	}
	c.Keys = keys
	return c, nil
}

// checkRetry retries connection errors and 5xx answers, never a client
// error: a 429 is reported with its Retry-After for the caller to decide.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
		return true, nil
	}
	return false, nil
}

// do sends a request; if signer is not nil the request is signed by that
// client. out, if not nil, receives the JSON reply.
// rawBody is a request body sent as it is, with its media type.
type rawBody struct {
	contentType string
	body        []byte
}

func (c *Conn) do(ctx context.Context, method, path string, body any, signer *Client, out any) error {
	var b []byte
	contentType := "application/json"
	if rb, ok := body.(rawBody); ok {
		b, contentType = rb.body, rb.contentType
	} else if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	if signer != nil {
		ctx = context.WithValue(ctx, signKey{}, &signing{body: b, clientID: signer.ClientID, key: signer.key})
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.base+path, b)
	if err != nil {
		return err
	}
	if b != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if signer != nil {
		if err := identity.SignRequest(req.Request, b, signer.ClientID, signer.key, time.Now()); err != nil {
			return err
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		var eb struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(rb, &eb) == nil {
			e.Code, e.Message = eb.Error.Code, eb.Error.Message
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			return fmt.Errorf("decode reply of %s %s: %w", method, path, err)
		}
	}
	return nil
}

// Client is one registered client of a user: its directory signature key,
// credential and secret queue id.
type Client struct {
	Conn       *Conn
	UserID     string
	ClientID   string
	Credential []byte
	QueueID    []byte
	key        ed25519.PrivateKey
	mls        *mlsx.Identity

	gsOnce sync.Once
	gs     *groupState
}

type registered struct {
	UserID     string `json:"user_id"`
	ClientID   string `json:"client_id"`
	Credential []byte `json:"credential"`
	QueueID    []byte `json:"queue_id"`
}

func (c *Conn) newClient(r registered, key ed25519.PrivateKey) (*Client, error) {
	cred, err := identity.VerifyCredential(r.Credential, c.Keys.AuthKey)
	if err != nil {
		return nil, fmt.Errorf("credential from the homeserver: %w", err)
	}
	if cred.UserID != r.UserID || cred.ClientID != r.ClientID || !bytes.Equal(cred.SignatureKey, key.Public().(ed25519.PublicKey)) {
		return nil, errors.New("credential from the homeserver does not match the registration")
	}
	return &Client{Conn: c, UserID: r.UserID, ClientID: r.ClientID, Credential: r.Credential, QueueID: r.QueueID, key: key}, nil
}

// Register creates user name on the homeserver with a first client.
func (c *Conn) Register(ctx context.Context, name string) (*Client, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var r registered
	if err := c.do(ctx, http.MethodPost, "/v1/users", map[string]any{"user_id": name, "signature_key": pub}, nil, &r); err != nil {
		return nil, err
	}
	return c.newClient(r, priv)
}

// AddClient registers another client for the same user, authorised by c.
func (c *Client) AddClient(ctx context.Context) (*Client, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var r registered
	if err := c.Conn.do(ctx, http.MethodPost, "/v1/clients", map[string]any{"signature_key": pub}, c, &r); err != nil {
		return nil, err
	}
	return c.Conn.newClient(r, priv)
}

// SealedQueueConfig seals this client's queue config to its homeserver's
// queue key, fresh for each KeyPackage so groups cannot link the client.
func (c *Client) SealedQueueConfig() ([]byte, error) {
	return identity.SealQueueConfig(identity.QueueConfig{Domain: c.Conn.Keys.Domain, QueueID: c.QueueID}, c.Conn.Keys.QueueKey, rand.Reader)
}

// PublishKeyPackages replaces the client's published KeyPackages.
func (c *Client) PublishKeyPackages(ctx context.Context, kps [][]byte) error {
	return c.Conn.do(ctx, http.MethodPut, "/v1/keypackages", map[string]any{"key_packages": kps}, c, nil)
}

// KeyPackageCount is how many KeyPackages the client has left.
type KeyPackageCount struct {
	Count      int `json:"count"`
	LastResort int `json:"last_resort"`
}

// CountKeyPackages returns the client's remaining KeyPackages.
func (c *Client) CountKeyPackages(ctx context.Context) (KeyPackageCount, error) {
	var n KeyPackageCount
	err := c.Conn.do(ctx, http.MethodGet, "/v1/keypackages/count", nil, c, &n)
	return n, err
}
