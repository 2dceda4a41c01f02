package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/mlshome/homeserver/identity"
)

// KeyStoreConfig configures a [KeyStore]. Zero durations take the defaults
// given in brackets.
type KeyStoreConfig struct {
	// Configured keys (domain → Ed25519 federation key) are trusted as
	// given and never fetched.
	Configured map[string]ed25519.PublicKey
	// Scheme of the well-known URL: "https" (the default) or "http" (only
	// for a loopback testnet: without TLS nothing authenticates the
	// document).
	Scheme string
	// PinDir, if set, is where pins are persisted ([PinFile]); otherwise
	// they live in memory only.
	PinDir string
	// HTTPClient is the base client (TLS settings, proxies); its Timeout
	// and CheckRedirect are replaced.
	HTTPClient *http.Client
	// AttemptTimeout bounds one HTTP attempt [10s].
	AttemptTimeout time.Duration
	// FetchTimeout bounds a whole fetch with its retries [60s].
	FetchTimeout time.Duration
	// RetryMax is the number of retries after the first attempt [4].
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the jittered exponential backoff
	// [250ms, 10s].
	RetryWaitMin, RetryWaitMax time.Duration
	// RetryAfterMax clamps a server's Retry-After [30s].
	RetryAfterMax time.Duration
	// Recheck is how often a pinned key is fetched again, in the
	// background, to detect a change [1h]; negative: never.
	Recheck time.Duration
	// FailureTTL is how long a failed fetch is remembered, so an origin
	// whose key cannot be fetched does not cause a fetch per envelope
	// [30s].
	FailureTTL time.Duration
	Logger     *slog.Logger
	// Now replaces time.Now.
	Now func() time.Time
}

func (c *KeyStoreConfig) setDefaults() error {
	switch c.Scheme {
	case "":
		c.Scheme = "https"
	case "https", "http":
	default:
		return fmt.Errorf("key store: scheme %q is not https or http", c.Scheme)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.AttemptTimeout, 10*time.Second)
	def(&c.FetchTimeout, 60*time.Second)
	def(&c.RetryWaitMin, 250*time.Millisecond)
	def(&c.RetryWaitMax, 10*time.Second)
	def(&c.RetryAfterMax, 30*time.Second)
	def(&c.Recheck, time.Hour)
	def(&c.FailureTTL, 30*time.Second)
	if c.RetryMax == 0 {
		c.RetryMax = 4
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	for d, k := range c.Configured {
		if err := identity.ValidateDomain(d); err != nil {
			return fmt.Errorf("key store: configured key: %w", err)
		}
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("key store: configured key of %s has %d bytes", d, len(k))
		}
	}
	return nil
}

// KeyStore supplies remote homeservers' federation keys ([Keys]): from
// configuration, or fetched from <scheme>://<domain>/.well-known/mls-homeserver
// and pinned (trust on first use). A pinned key is re-fetched every
// Recheck; if the domain then publishes another key, the domain is refused
// with [CodeKeyChanged] until the operator checks the change out of band
// and calls [KeyStore.Unpin]. A fetch failure never unpins: a pinned domain
// whose server is unreachable keeps its pinned key.
//
// Concurrent lookups of one domain share one fetch. A KeyStore is safe for
// concurrent use.
type KeyStore struct {
	cfg    KeyStoreConfig
	client *retryablehttp.Client
	ctx    context.Context // parent of fetches; cancelled by Close
	cancel context.CancelFunc

	mu      sync.Mutex
	pins    map[string]*pin
	failed  map[string]failure
	flights map[string]*flight

	persistMu sync.Mutex // serializes pin file writes
}

// failure is a remembered fetch error.
type failure struct {
	until time.Time
	err   error
}

// flight is one fetch shared by every lookup of its domain.
type flight struct {
	done    chan struct{}
	key     ed25519.PublicKey
	err     error
	waiters int // lookups waiting, for tests
}

// NewKeyStore returns a key store, loading persisted pins from
// cfg.PinDir.
func NewKeyStore(cfg KeyStoreConfig) (*KeyStore, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &KeyStore{
		cfg: cfg, ctx: ctx, cancel: cancel,
		pins:    make(map[string]*pin),
		failed:  make(map[string]failure),
		flights: make(map[string]*flight),
	}
	k.client = newFetchClient(&k.cfg)
	if cfg.PinDir != "" {
		pins, err := loadPins(cfg.PinDir)
		if err != nil {
			cancel()
			return nil, err
		}
		k.pins = pins
	}
	return k, nil
}

// Close cancels fetches in flight.
func (k *KeyStore) Close() { k.cancel() }

// FederationKey implements [Keys]: the configured key, else the pinned key
// (refused with [CodeKeyChanged] after a change was seen), else a fresh
// fetch, which is then pinned. Fetch failures are [CodeUnknownOrigin].
func (k *KeyStore) FederationKey(ctx context.Context, domain string) (ed25519.PublicKey, error) {
	if err := identity.ValidateDomain(domain); err != nil {
		return nil, &Error{Code: CodeUnknownOrigin, Msg: "bad domain", Err: err}
	}
	if pub, ok := k.cfg.Configured[domain]; ok {
		return pub, nil
	}
	now := k.cfg.Now()
	k.mu.Lock()
	if p := k.pins[domain]; p != nil {
		if p.Changed != nil {
			k.mu.Unlock()
			return nil, keyChanged(domain)
		}
		if k.cfg.Recheck > 0 && now.Sub(time.UnixMilli(p.CheckedMs)) > k.cfg.Recheck && !now.Before(k.failed[domain].until) {
			k.startLocked(domain) // in the background; the pin serves meanwhile
		}
		key := p.Key
		k.mu.Unlock()
		return key, nil
	}
	if f, ok := k.failed[domain]; ok && now.Before(f.until) {
		k.mu.Unlock()
		return nil, f.err
	}
	fl := k.startLocked(domain)
	fl.waiters++
	k.mu.Unlock()
	return k.wait(ctx, fl)
}

// Refresh fetches domain's key now and compares it with the pin: nil if
// they agree (or nothing was pinned, in which case the key is pinned now),
// [CodeKeyChanged] if they differ, the fetch error otherwise. Operators and
// tests use it; FederationKey rechecks on its own.
func (k *KeyStore) Refresh(ctx context.Context, domain string) error {
	if _, ok := k.cfg.Configured[domain]; ok {
		return nil
	}
	k.mu.Lock()
	fl := k.startLocked(domain)
	fl.waiters++
	k.mu.Unlock()
	_, err := k.wait(ctx, fl)
	return err
}

// Unpin forgets domain's pinned key, a change seen for it and any
// remembered failure; the next lookup fetches and pins afresh. Call it
// only after checking out of band that the domain's new key is genuine.
func (k *KeyStore) Unpin(domain string) error {
	k.mu.Lock()
	delete(k.pins, domain)
	delete(k.failed, domain)
	k.mu.Unlock()
	return k.persist()
}

// PinInfo describes a pinned key for operators.
type PinInfo struct {
	Domain string
	Key    ed25519.PublicKey
	// Pinned is when the key was first fetched; Checked when it was last
	// confirmed.
	Pinned, Checked time.Time
	// Changed is the different key the domain published later, if any:
	// the domain is refused until Unpin.
	Changed ed25519.PublicKey
}

// Pins lists the pinned keys.
func (k *KeyStore) Pins() []PinInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]PinInfo, 0, len(k.pins))
	for d, p := range k.pins {
		out = append(out, PinInfo{Domain: d, Key: p.Key, Pinned: time.UnixMilli(p.PinnedMs), Checked: time.UnixMilli(p.CheckedMs), Changed: p.Changed})
	}
	sortPins(out)
	return out
}

// startLocked returns domain's fetch in flight, starting one if needed.
func (k *KeyStore) startLocked(domain string) *flight {
	if fl := k.flights[domain]; fl != nil {
		return fl
	}
	fl := &flight{done: make(chan struct{})}
	k.flights[domain] = fl
	go k.run(domain, fl)
	return fl
}

// run performs a fetch on behalf of every waiter, detached from any one
// caller's context so that a caller giving up does not fail the others.
func (k *KeyStore) run(domain string, fl *flight) {
	ctx, cancel := context.WithTimeout(k.ctx, k.cfg.FetchTimeout)
	key, err := k.fetchKey(ctx, domain)
	cancel()
	now := k.cfg.Now()

	k.mu.Lock()
	p := k.pins[domain]
	dirty := false
	switch {
	case err != nil && p != nil:
		k.cfg.Logger.Warn("federation key recheck failed; keeping pinned key", "domain", domain, "err", err)
		k.failed[domain] = failure{until: now.Add(k.cfg.FailureTTL), err: err}
		if p.Changed != nil {
			err = keyChanged(domain)
		} else {
			key = p.Key
		}
	case err != nil:
		k.failed[domain] = failure{until: now.Add(k.cfg.FailureTTL), err: err}
	case p == nil:
		k.pins[domain] = &pin{Key: key, PinnedMs: now.UnixMilli(), CheckedMs: now.UnixMilli()}
		delete(k.failed, domain)
		dirty = true
		k.cfg.Logger.Info("federation key pinned", "domain", domain)
	case bytes.Equal(p.Key, key):
		p.CheckedMs = now.UnixMilli()
		if p.Changed != nil {
			err = keyChanged(domain)
		}
		dirty = true
	default:
		if !bytes.Equal(p.Changed, key) {
			p.Changed = key
			dirty = true
			k.cfg.Logger.Error("federation key changed; refusing the domain until its pin is cleared", "domain", domain)
		}
		key, err = nil, keyChanged(domain)
	}
	fl.key, fl.err = key, err
	delete(k.flights, domain)
	k.mu.Unlock()
	// Persist before answering, so that a pin or a change a caller saw is
	// on disk.
	if dirty {
		if perr := k.persist(); perr != nil {
			k.cfg.Logger.Error("persist federation key pins", "err", perr)
		}
	}
	close(fl.done)
}

func (k *KeyStore) wait(ctx context.Context, fl *flight) (ed25519.PublicKey, error) {
	select {
	case <-fl.done:
		return fl.key, fl.err
	case <-ctx.Done():
		return nil, &Error{Code: CodeUnknownOrigin, Msg: "waiting for key fetch", Err: ctx.Err()}
	}
}

func keyChanged(domain string) error {
	return Errorf(CodeKeyChanged, "%s now publishes a federation key different from the pinned one; verify it and clear the pin", domain)
}
