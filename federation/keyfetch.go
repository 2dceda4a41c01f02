package federation

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/mlshome/homeserver/identity"
)

// WellKnownPath is where a homeserver serves its [identity.PublicKeys].
const WellKnownPath = "/.well-known/mls-homeserver"

// newFetchClient builds the retrying HTTP client of a [KeyStore]: bounded
// retries on connection errors, 429 and 5xx; jittered exponential backoff;
// Retry-After honoured but clamped; per-attempt timeout; no redirects (the
// document must come from the domain itself, whose TLS certificate is what
// authenticates it).
func newFetchClient(cfg *KeyStoreConfig) *retryablehttp.Client {
	base := cfg.HTTPClient
	if base == nil {
		base = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	} else {
		c := *base
		base = &c
	}
	base.Timeout = cfg.AttemptTimeout
	base.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	b := backoff{min: cfg.RetryWaitMin, max: cfg.RetryWaitMax}
	retryAfterMax := cfg.RetryAfterMax
	return &retryablehttp.Client{
		HTTPClient:   base,
		Logger:       cfg.Logger.With("component", "federation-keys"),
		RetryWaitMin: cfg.RetryWaitMin,
		RetryWaitMax: cfg.RetryWaitMax,
		RetryMax:     cfg.RetryMax,
		CheckRetry:   retryablehttp.DefaultRetryPolicy,
		Backoff: func(_, _ time.Duration, attempt int, resp *http.Response) time.Duration {
			if d, ok := retryAfter(resp, time.Now()); ok {
				return min(d, retryAfterMax)
			}
			return b.delay(attempt)
		},
	}
}

// retryAfter reads the Retry-After header (delay-seconds or HTTP-date) of a
// 429 or 503 response.
func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	h := resp.Header.Get("Retry-After")
	if h == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		if s > int64(time.Hour/time.Second) {
			s = int64(time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// fetchKey downloads domain's public keys document and returns its
// federation key. Every failure is an *Error with code
// [CodeUnknownOrigin].
func (k *KeyStore) fetchKey(ctx context.Context, domain string) (ed25519.PublicKey, error) {
	url := k.cfg.Scheme + "://" + domain + WellKnownPath
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, &Error{Code: CodeUnknownOrigin, Msg: "fetch " + url, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, &Error{Code: CodeUnknownOrigin, Msg: "fetch " + url, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, Errorf(CodeUnknownOrigin, "fetch %s: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, identity.MaxPublicKeysSize+1))
	if err != nil {
		return nil, &Error{Code: CodeUnknownOrigin, Msg: "read " + url, Err: err}
	}
	pk, err := identity.ParsePublicKeys(body, domain)
	if err != nil {
		return nil, &Error{Code: CodeUnknownOrigin, Msg: "parse " + url, Err: err}
	}
	if len(pk.FederationKey) != ed25519.PublicKeySize {
		return nil, &Error{Code: CodeUnknownOrigin, Msg: "parse " + url, Err: errors.New("bad federation key size")}
	}
	return ed25519.PublicKey(pk.FederationKey), nil
}
