package node

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/tokens"
	"github.com/mlshome/homeserver/validation"
)

// keyring is everything secret a homeserver holds, loaded from its keys
// directory.
type keyring struct {
	dir    string
	keys   *identity.KeySet
	queues *queueIDs
	tokens *tokens.Issuer
	// tokMu serialises rotation with persisting the issuer state.
	tokMu sync.Mutex

	resolveOnce sync.Once
	resolve     projections.QueueResolver
}

const tokenStateFile = "token-issuer.state"

// TokenPolicy configures group-creation tokens.
type TokenPolicy struct {
	Allowance int           // tokens per user per Window (GC-6)
	Window    time.Duration // allowance window
	Rotation  time.Duration // issuing key lifetime
	Grace     time.Duration // how long the previous key stays redeemable
}

// DefaultTokenPolicy: 50 groups a day per user, keys rotated weekly.
var DefaultTokenPolicy = TokenPolicy{Allowance: 50, Window: 24 * time.Hour, Rotation: 7 * 24 * time.Hour, Grace: 7 * 24 * time.Hour}

func (p *TokenPolicy) fill() {
	d := DefaultTokenPolicy
	if p.Allowance <= 0 {
		p.Allowance = d.Allowance
	}
	if p.Window <= 0 {
		p.Window = d.Window
	}
	if p.Rotation <= 0 {
		p.Rotation = d.Rotation
	}
	if p.Grace <= 0 {
		p.Grace = d.Grace
	}
}

// openKeyring loads (or, if create, creates) the keys of dataDir.
func openKeyring(dataDir, domain string, create bool, tp TokenPolicy, now time.Time) (*keyring, error) {
	dir := KeysDir(dataDir)
	if !create {
		if _, err := os.Stat(filepath.Join(dir, "domain")); err != nil {
			return nil, fmt.Errorf("no keys in %s: %w", dir, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "domain"))
		if err != nil {
			return nil, err
		}
		if d := strings.TrimSpace(string(b)); domain == "" {
			domain = d
		}
	}
	keys, err := identity.LoadOrCreateKeySet(dir, domain)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	q, err := loadQueueIDs(dir)
	if err != nil {
		return nil, err
	}
	k := &keyring{dir: dir, keys: keys, queues: q}
	st, err := os.ReadFile(filepath.Join(dir, tokenStateFile))
	switch {
	case err == nil:
		if k.tokens, err = tokens.LoadIssuer(st, tp.Grace); err != nil {
			return nil, fmt.Errorf("token issuer: %w", err)
		}
	case errors.Is(err, os.ErrNotExist) && create:
		key, err := tokens.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		k.tokens = tokens.NewIssuer(key, now, tp.Grace)
		if err := k.saveTokens(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	return k, nil
}

func (k *keyring) saveTokens() error {
	st, err := k.tokens.MarshalState()
	if err != nil {
		return err
	}
	p := filepath.Join(k.dir, tokenStateFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, st, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// rotateTokens rotates the issuing key when due; the previous key stays
// redeemable for the grace period.
func (k *keyring) rotateTokens(now time.Time, period time.Duration, log *slog.Logger) {
	k.tokMu.Lock()
	defer k.tokMu.Unlock()
	if !k.tokens.RotationDue(now, period) {
		return
	}
	key, err := tokens.GenerateKey(rand.Reader)
	if err != nil {
		log.Error("token key rotation", "err", err)
		return
	}
	k.tokens.Rotate(key, now)
	if err := k.saveTokens(); err != nil {
		log.Error("token key rotation: save", "err", err)
		return
	}
	log.Info("token issuing key rotated", "key", key.ID().String())
}

// resolver opens sealed queue configs: local ones to the client id they
// were issued to, others to their domain. Opening is an HPKE decryption;
// its results are cached (the function is deterministic, so the cache
// changes nothing but the cost).
func (k *keyring) resolver() projections.QueueResolver {
	k.resolveOnce.Do(func() {
		domain := k.keys.Domain()
		var mu sync.Mutex
		cache := map[[32]byte]projections.QueueTarget{}
		k.resolve = func(sealed []byte) (projections.QueueTarget, error) {
			key := sha256.Sum256(sealed)
			mu.Lock()
			t, ok := cache[key]
			mu.Unlock()
			if ok {
				return t, nil
			}
			d, err := identity.SealedQueueConfigDomain(sealed)
			if err != nil {
				return projections.QueueTarget{}, err
			}
			if d != domain {
				t = projections.QueueTarget{Domain: d, Sealed: sealed}
			} else {
				qc, err := k.keys.OpenQueueConfig(sealed)
				if err != nil {
					return projections.QueueTarget{}, err
				}
				c, ok := k.queues.ClientOf(qc.QueueID)
				if !ok {
					return projections.QueueTarget{}, errors.New("queue id not issued by this homeserver")
				}
				t = projections.QueueTarget{Domain: domain, ClientID: c}
			}
			mu.Lock()
			if len(cache) >= resolveCacheSize {
				clear(cache)
			}
			cache[key] = t
			mu.Unlock()
			return t, nil
		}
	})
	return k.resolve
}

// resolveCacheSize bounds the resolved queue config cache.
const resolveCacheSize = 1 << 16

// projectionSet is the homeserver's projections, in the order they apply:
// queues see a group's members before the group projection applies a
// commit.
func (k *keyring) projectionSet() *projections.Set {
	res := k.resolver()
	return projections.NewSet(
		projections.Directory{},
		projections.KeyPackages{},
		projections.Tokens{},
		projections.Federation{},
		projections.Queues{Resolve: res, Domain: k.keys.Domain()},
		projections.Outbox{Resolve: res, Domain: k.keys.Domain()},
		projections.Groups{Resolve: res},
	)
}

func (k *keyring) validator(tp TokenPolicy, epochWindow uint64) *validation.Validator {
	return &validation.Validator{Env: validation.Env{
		Domain:           k.keys.Domain(),
		CheckCredential:  credentialChecker(k.keys),
		CheckQueueConfig: queueConfigChecker(k.keys, k.queues),
		QueueID:          k.queues.QueueID,
		ResolveQueue:     k.resolver(),
		TokenAllowance:   tp.Allowance,
		TokenWindow:      tp.Window,
		EpochWindow:      epochWindow,
		VerifyToken: func(raw []byte, now time.Time) ([]byte, []byte, error) {
			t, err := tokens.ParseToken(raw)
			if err != nil {
				return nil, nil, err
			}
			nonce, err := k.tokens.Redeem(t, now)
			if err != nil {
				return nil, nil, err
			}
			return t.KeyID[:], nonce, nil
		},
	}}
}

// ForAudit loads, without creating anything, the projections and the
// validator of the homeserver whose data directory is dataDir: replay and
// audit run exactly the live code.
func ForAudit(dataDir string) (*projections.Set, *validation.Validator, *identity.KeySet, error) {
	k, err := openKeyring(dataDir, "", false, DefaultTokenPolicy, time.Now())
	if err != nil {
		return nil, nil, nil, err
	}
	return k.projectionSet(), k.validator(DefaultTokenPolicy, DefaultEpochWindow), k.keys, nil
}

// DefaultEpochWindow is how many epochs back an application message may be.
const DefaultEpochWindow = 3

// PublicProjections is the projection set for someone without the
// homeserver's private keys (an auditor with only its public keys): sealed
// queue configs are routed by domain only, so local queues are not
// rebuilt. Everything else is.
func PublicProjections(domain string) *projections.Set {
	res := func(sealed []byte) (projections.QueueTarget, error) {
		d, err := identity.SealedQueueConfigDomain(sealed)
		if err != nil {
			return projections.QueueTarget{}, err
		}
		return projections.QueueTarget{Domain: d, Sealed: sealed}, nil
	}
	return projections.NewSet(
		projections.Directory{},
		projections.KeyPackages{},
		projections.Tokens{},
		projections.Federation{},
		projections.Queues{Resolve: res, Domain: domain},
		projections.Outbox{Resolve: res, Domain: domain},
		projections.Groups{Resolve: res},
	)
}
