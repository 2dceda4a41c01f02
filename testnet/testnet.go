// Package testnet runs several homeservers on one machine, federated
// through a hub NATS server (each homeserver's embedded NATS server a leaf
// node of it, allowed to publish only as itself), and drives scenarios on
// them with real clients. `homeserver testnet` and the cross-homeserver
// tests use it.
package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/mlshome/homeserver/api"
	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/federation"
	"github.com/mlshome/homeserver/node"
)

// Config configures a testnet.
type Config struct {
	// Servers is the number of homeservers (default 3).
	Servers int
	// Dir holds the hub's state and one data directory per homeserver.
	Dir string
	// Addrs, if set, are the homeservers' HTTP addresses (and so their
	// domains), so a testnet can be started again on the same data; empty
	// or missing entries pick a free loopback port.
	Addrs []string
	// Logger receives the homeservers' logs (default: discarded).
	Logger *slog.Logger
	// Limits, if set, replace the default rate limits (tests lift them).
	DirectoryLimits *api.DirectoryLimits
	GroupLimits     *api.GroupLimits
	// Node, if set, adjusts each homeserver's configuration.
	Node func(i int, c *node.Config)
}

// Server is one homeserver of the testnet.
type Server struct {
	Domain string
	URL    string
	Data   string
	Node   *node.Node
	ln     net.Listener
	cfg    node.Config
}

// Net is a running testnet.
type Net struct {
	Hub     *federation.Hub
	Servers []*Server
	cfg     Config
}

// Start starts the hub and the homeservers. Each homeserver's domain is
// its loopback HTTP address, so other homeservers find its keys at
// http://<domain>/.well-known/mls-homeserver.
func Start(cfg Config) (*Net, error) {
	if cfg.Servers <= 0 {
		cfg.Servers = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	n := &Net{cfg: cfg}
	var domains []string
	for i := 0; i < cfg.Servers; i++ {
		addr := "127.0.0.1:0"
		if i < len(cfg.Addrs) && cfg.Addrs[i] != "" {
			addr = cfg.Addrs[i]
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			n.Close()
			return nil, err
		}
		s := &Server{Domain: ln.Addr().String(), URL: "http://" + ln.Addr().String(), ln: ln,
			Data: filepath.Join(cfg.Dir, fmt.Sprintf("hs%d", i+1))}
		n.Servers = append(n.Servers, s)
		domains = append(domains, s.Domain)
	}
	hub, err := federation.StartHub(federation.HubConfig{Listen: "127.0.0.1:0", Domains: domains, StoreDir: filepath.Join(cfg.Dir, "hub")})
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("hub: %w", err)
	}
	n.Hub = hub
	for i, s := range n.Servers {
		leaf, err := hub.LeafURL(s.Domain)
		if err != nil {
			n.Close()
			return nil, err
		}
		s.cfg = node.Config{
			Domain: s.Domain, DataDir: s.Data, Listener: s.ln,
			Logger:          cfg.Logger.With("homeserver", s.Domain),
			DirectoryLimits: cfg.DirectoryLimits, GroupLimits: cfg.GroupLimits,
			Bus:        federation.BusConfig{LeafRemote: leaf},
			Federation: node.FederationConfig{Scheme: "http"},
		}
		if cfg.Node != nil {
			cfg.Node(i, &s.cfg)
		}
		if err := s.start(); err != nil {
			n.Close()
			return nil, fmt.Errorf("%s: %w", s.Domain, err)
		}
	}
	return n, nil
}

func (s *Server) start() error {
	if err := os.MkdirAll(s.Data, 0o700); err != nil {
		return err
	}
	nd, err := node.Open(s.cfg)
	if err != nil {
		return err
	}
	if err := nd.Start(); err != nil {
		nd.Shutdown(context.Background())
		return err
	}
	s.Node = nd
	return nil
}

// Stop shuts the homeserver down (its data stays).
func (s *Server) Stop() error {
	if s.Node == nil {
		return nil
	}
	err := s.Node.Shutdown(context.Background())
	s.Node = nil
	return err
}

// Restart starts a stopped homeserver again on the same address.
func (s *Server) Restart() error {
	if s.Node != nil {
		return errors.New("testnet: already running")
	}
	ln, err := net.Listen("tcp", s.Domain)
	if err != nil {
		return err
	}
	s.cfg.Listener = ln
	return s.start()
}

// Conn dials the homeserver as a client would.
func (s *Server) Conn(ctx context.Context) (*client.Conn, error) {
	return client.Dial(ctx, s.URL, s.Domain)
}

// Directory returns a directory client on this homeserver that resolves
// other homeservers' keys through it.
func (s *Server) Directory(c *client.Conn) *client.Directory {
	return &client.Directory{Conn: c, Resolve: c.RemoteAuthKey}
}

// Close stops every homeserver and the hub.
func (n *Net) Close() error {
	var errs []error
	for _, s := range n.Servers {
		errs = append(errs, s.Stop())
	}
	if n.Hub != nil {
		n.Hub.Close()
	}
	return errors.Join(errs...)
}
