package federation

// This file owns the bus connection: by default an embedded NATS server
// with JetStream and an in-process connection (no listener unless asked),
// optionally joined to a hub as a leaf node; or a connection to an external
// NATS server or cluster.

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/mlshome/homeserver/identity"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// MaxPayload is the max_payload the bus is configured with: room for a
// [MaxEnvelopeSize] envelope plus headers. An external server or hub must
// allow at least this much.
const MaxPayload = MaxEnvelopeSize + 64<<10

// BusConfig says how a homeserver reaches the NATS bus.
type BusConfig struct {
	// Name identifies the homeserver to NATS: its domain. When it is a
	// valid domain the connection uses [InboxPrefix](Name), which
	// [NewTransport] requires.
	Name string
	// URL of an external NATS server or cluster. Empty: run an embedded
	// server.
	URL string
	// Creds is the credentials file for URL.
	Creds string
	// StoreDir is where the embedded server keeps JetStream state.
	StoreDir string
	// Listen is the embedded server's client listen address ("host:port");
	// empty means in-process connections only.
	Listen string
	// LeafRemote is a hub URL the embedded server joins as a leaf node,
	// e.g. "nats-leaf://user:password@127.0.0.1:7422" as [Hub.LeafURL]
	// returns it (user and password percent-encoded in the URL).
	LeafRemote string
	// LeafCreds is the credentials file for LeafRemote.
	LeafCreds string
	Logger    *slog.Logger
}

// Bus is a connection to NATS, with the embedded server if there is one.
type Bus struct {
	Conn   *nats.Conn
	Server *server.Server // nil when connected to an external server
}

// OpenBus starts the embedded server (if any) and connects.
func OpenBus(cfg BusConfig) (*Bus, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				cfg.Logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { cfg.Logger.Info("nats reconnected", "url", c.ConnectedUrl()) }),
	}
	if identity.ValidateDomain(cfg.Name) == nil {
		opts = append(opts, nats.CustomInboxPrefix(InboxPrefix(cfg.Name)))
	}
	if cfg.URL != "" {
		if cfg.Creds != "" {
			opts = append(opts, nats.UserCredentials(cfg.Creds))
		}
		nc, err := nats.Connect(cfg.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect nats %s: %w", cfg.URL, err)
		}
		return &Bus{Conn: nc}, nil
	}
	so := &server.Options{
		ServerName: serverName(cfg.Name),
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		DontListen: cfg.Listen == "",
		MaxPayload: MaxPayload,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen %q: %w", cfg.Listen, err)
		}
		so.Host = host
		if so.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("nats listen port %q: %w", port, err)
		}
		if so.Port == 0 {
			so.Port = server.RANDOM_PORT
		}
	}
	if cfg.LeafRemote != "" {
		u, err := url.Parse(cfg.LeafRemote)
		if err != nil {
			return nil, fmt.Errorf("nats leaf remote %q: %w", cfg.LeafRemote, err)
		}
		so.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}, Credentials: cfg.LeafCreds}}
		so.LeafNode.ReconnectInterval = time.Second
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready after 10s")
	}
	nc, err := nats.Connect(ns.ClientURL(), append(opts, nats.InProcessServer(ns))...)
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	return &Bus{Conn: nc, Server: ns}, nil
}

// serverName makes a domain usable as a NATS server name (no spaces).
func serverName(domain string) string {
	b := []byte(domain)
	for i, c := range b {
		if c == ' ' || c == '\t' {
			b[i] = '_'
		}
	}
	return string(b)
}

// Ready reports whether the bus connection is up.
func (b *Bus) Ready() error {
	if b == nil || b.Conn == nil {
		return errors.New("no nats connection")
	}
	if st := b.Conn.Status(); st != nats.CONNECTED {
		return fmt.Errorf("nats %s", st)
	}
	return nil
}

// ClientURL is the embedded server's client URL ("" if none or in-process).
func (b *Bus) ClientURL() string {
	if b.Server == nil {
		return ""
	}
	return b.Server.ClientURL()
}

// Close drains the connection and stops the embedded server.
func (b *Bus) Close() error {
	if b == nil {
		return nil
	}
	var err error
	if b.Conn != nil {
		err = b.Conn.Drain()
		b.Conn.Close()
	}
	if b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
	return err
}
