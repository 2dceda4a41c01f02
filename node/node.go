// Package node assembles one homeserver: its keys, event log, projections,
// validator, HTTP API and federation bus. cmd/homeserver, the testnet and
// the tests all run homeservers through it, so they run the same code.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/federation"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/validation"
)

// Config configures a homeserver.
type Config struct {
	Domain string
	// DataDir holds the store ("store"), the keys ("keys") and embedded
	// NATS state ("nats").
	DataDir string
	// Listen is the HTTP listen address; "127.0.0.1:0" picks a free port.
	Listen string
	// Listener, if set, is used instead of listening on Listen (so the
	// domain can be the address before the node starts).
	Listener      net.Listener
	Logger        *slog.Logger
	RequestWindow time.Duration
	// SyncInterval is how long the event log holds its next batch after an
	// fsync while group requests are on their way
	// (eventlog.Options.MinSyncInterval: 0 default, negative never).
	SyncInterval time.Duration
	// Clock, if set, replaces time.Now for the writer and request checks.
	Clock func() time.Time
	// Bus says how to reach NATS; the zero value runs an embedded server
	// with its JetStream state in DataDir/nats. Name and StoreDir are
	// filled in when empty.
	Bus federation.BusConfig
	// DirectoryLimits overrides the directory rate limits.
	DirectoryLimits *api.DirectoryLimits
	// Tokens configures group-creation tokens (zero: defaults).
	Tokens TokenPolicy
	// EpochWindow is how many epochs back an application message may be
	// (0: DefaultEpochWindow).
	EpochWindow uint64
	// GroupLimits are the MD-8 limits (nil: defaults).
	GroupLimits *api.GroupLimits
	// Federation configures federation over the bus.
	Federation FederationConfig
	// RegistrationToken, if set, is required to register users.
	RegistrationToken string
}

// Node is a running homeserver.
type Node struct {
	cfg       Config
	Keys      *identity.KeySet
	Log       *eventlog.Log
	Set       *projections.Set
	Validator *validation.Validator
	Metrics   *api.Metrics
	API       *api.Server
	Bus       *federation.Bus

	keyring *keyring
	fed     *fed
	stop    chan struct{}
	wg      sync.WaitGroup

	ln  net.Listener
	srv *http.Server
}

// StoreDir returns the Pebble directory of a data dir.
func StoreDir(dataDir string) string { return filepath.Join(dataDir, "store") }

// KeysDir returns the key directory of a data dir.
func KeysDir(dataDir string) string { return filepath.Join(dataDir, "keys") }

// handler joins the validator (Decide) and the projections (Apply).
type handler struct {
	*validation.Validator
	set *projections.Set
}

func (h handler) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error { return h.set.Apply(rw, ev) }

// Open loads or creates the keys and the store and starts the writer. It
// does not listen yet; see Start.
func Open(cfg Config) (*Node, error) {
	if cfg.Domain == "" {
		return nil, errors.New("node: domain is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	cfg.Tokens.fill()
	if cfg.EpochWindow == 0 {
		cfg.EpochWindow = DefaultEpochWindow
	}
	k, err := openKeyring(cfg.DataDir, cfg.Domain, true, cfg.Tokens, cfg.Clock())
	if err != nil {
		return nil, err
	}
	keys := k.keys
	n := &Node{cfg: cfg, Keys: keys, keyring: k, Set: k.projectionSet(), Metrics: api.NewMetrics(), stop: make(chan struct{})}
	n.Validator = k.validator(cfg.Tokens, cfg.EpochWindow)
	n.Log, err = eventlog.Open(StoreDir(cfg.DataDir), eventlog.Options{
		Origin:  cfg.Domain,
		Signer:  keys.LogSigner(),
		Handler: handler{Validator: n.Validator, set: n.Set},
		Metrics: n.Metrics,
		Clock:   cfg.Clock,

		CachePrefixes:   projections.CachePrefixes(),
		MinSyncInterval: cfg.SyncInterval,
		Prepare:         func(db *pebble.DB) error { return upgradeProjections(n.Set, db, cfg.Logger) },
	})
	if err != nil {
		return nil, err
	}
	if cfg.Bus.Name == "" {
		cfg.Bus.Name = cfg.Domain
	}
	if cfg.Bus.StoreDir == "" {
		cfg.Bus.StoreDir = filepath.Join(cfg.DataDir, "nats")
	}
	if cfg.Bus.Logger == nil {
		cfg.Bus.Logger = cfg.Logger
	}
	if n.Bus, err = federation.OpenBus(cfg.Bus); err != nil {
		n.Log.Close()
		return nil, err
	}
	if err := n.startFederation(cfg.Federation); err != nil {
		n.Bus.Close()
		n.Log.Close()
		return nil, err
	}
	n.API = api.New(api.Config{
		Domain:            cfg.Domain,
		Log:               n.Log,
		Keys:              newAPIKeys(keys, cfg.RequestWindow, cfg.Clock),
		Logger:            cfg.Logger,
		Metrics:           n.Metrics,
		RequestWindow:     cfg.RequestWindow,
		Now:               cfg.Clock,
		Ready:             n.Bus.Ready,
		Validator:         n.Validator,
		Limits:            cfg.DirectoryLimits,
		GroupLimits:       cfg.GroupLimits,
		Tokens:            k.tokens,
		Relay:             n.fed,
		GroupRelay:        n.fed,
		RemoteKeys:        n.fed.remoteKeys,
		AdminToken:        cfg.Federation.AdminToken,
		RegistrationToken: cfg.RegistrationToken,
		PolicyChanged: func(b []byte) {
			if p, err := federation.ParsePolicy(b); err == nil {
				n.fed.tr.SetPolicy(p)
			}
		},
		NormalizePolicy: func(b []byte) ([]byte, error) {
			p, err := federation.ParsePolicy(b)
			if err != nil {
				return nil, err
			}
			return p.Marshal()
		},
	})
	n.fed.start()
	n.wg.Add(1)
	go n.rotateTokens()
	return n, nil
}

// upgradeProjections rebuilds the store's projections from its log if
// this code writes them in another layout, logging its progress.
func upgradeProjections(set *projections.Set, db *pebble.DB, logger *slog.Logger) error {
	start, last := time.Now(), time.Now()
	got, n, err := set.Upgrade(db, func(done, total uint64) {
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			logger.Info("rebuilding projections", "done", done, "total", total)
		}
	})
	if err != nil {
		return err
	}
	if n > 0 {
		logger.Info("projections rebuilt for their new layout", "from_layout", got, "layout", projections.Layout, "events", n, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// Start listens on cfg.Listen and serves the API in the background.
func (n *Node) Start() error {
	ln := n.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", n.cfg.Listen); err != nil {
			return fmt.Errorf("listen %s: %w", n.cfg.Listen, err)
		}
	}
	n.ln = ln
	n.srv = &http.Server{Handler: n.API.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.cfg.Logger.Error("http server", "err", err)
		}
	}()
	return nil
}

// URL returns the base URL the API listens on.
func (n *Node) URL() string { return "http://" + n.ln.Addr().String() }

// Domain returns the homeserver's domain.
func (n *Node) Domain() string { return n.cfg.Domain }

// rotateTokens rotates the token issuing key on schedule.
func (n *Node) rotateTokens() {
	defer n.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		n.keyring.rotateTokens(n.cfg.Clock(), n.cfg.Tokens.Rotation, n.cfg.Logger)
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// Shutdown stops accepting requests, lets in-flight ones finish (their
// batch completes), then closes the log.
func (n *Node) Shutdown(ctx context.Context) error {
	var errs []error
	close(n.stop)
	n.wg.Wait()
	if n.srv != nil {
		if err := n.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	}
	if n.fed != nil {
		n.fed.stop()
	}
	if err := n.Bus.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close nats: %w", err))
	}
	if err := n.Log.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close log: %w", err))
	}
	return errors.Join(errs...)
}
