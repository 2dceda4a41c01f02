package federation

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/mlshome/homeserver/identity"
	"github.com/nats-io/nats-server/v2/server"
)

// HubPermissions returns the NATS permissions of domain's bus user:
//
//	publish    hs.<self>.>     requests, cursor queries and deliveries naming
//	                           itself as origin, and its replies
//	                           ("hs.<self>.<requester>.rep.<token>")
//	subscribe  hs.*.<self>.>   what is addressed to it, and its replies
//
// That is the whole set. Replies and JetStream acknowledgements use
// "hs.<replier>.<requester>.rep.<token>" rather than inboxes, so no
// _INBOX.> (which would let a homeserver read or forge others' replies) and
// no allow_responses (which does not propagate interest through leaf
// nodes) are needed. No $JS.API.> or $JS.ACK.> either: with a hub, every
// homeserver's JetStream is its own embedded server and its API traffic
// never crosses the hub. (On a shared external cluster a homeserver also
// needs the JetStream API of its own stream; see [ClusterConfig].)
func HubPermissions(domain string) *server.Permissions {
	tok := Token(domain)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{subjectPrefix + "." + tok + ".>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{subjectPrefix + ".*." + tok + ".>"}},
	}
}

// HubConfig configures a testnet hub.
type HubConfig struct {
	// Listen is the leaf node listen address; "127.0.0.1:0" (the default)
	// picks a free port.
	Listen string
	// Domains are the homeservers that may join, one NATS user each.
	Domains []string
	// StoreDir, if set, keeps the generated passwords ([HubUsersFile]) so
	// the hub can be restarted with the same leaf URLs.
	StoreDir string
}

// HubUsersFile holds a hub's generated passwords, domain → password, in
// [HubConfig.StoreDir].
const HubUsersFile = "hub-users.json"

// Hub is a running testnet hub: an in-process NATS server without
// JetStream and without a client listener, with a leaf node listener and one
// user per domain restricted by [HubPermissions].
type Hub struct {
	// Server is the hub's NATS server.
	Server *server.Server
	addr   string
	users  map[string]string // domain → password
}

// StartHub starts a hub for cfg.Domains.
func StartHub(cfg HubConfig) (*Hub, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("hub listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("hub listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	users, err := hubPasswords(cfg.StoreDir, cfg.Domains)
	if err != nil {
		return nil, err
	}
	so := &server.Options{
		ServerName: "mlshome-hub",
		NoSigs:     true,
		NoLog:      true,
		DontListen: true,
		MaxPayload: MaxPayload,
		LeafNode:   server.LeafNodeOpts{Host: host, Port: port},
	}
	for _, d := range slices.Sorted(maps.Keys(users)) {
		so.Users = append(so.Users, &server.User{Username: d, Password: users[d], Permissions: HubPermissions(d)})
	}
	ns, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("hub: not ready after 10s")
	}
	// The server writes the port it picked back into its options.
	return &Hub{Server: ns, addr: net.JoinHostPort(host, strconv.Itoa(so.LeafNode.Port)), users: users}, nil
}

// Addr is the leaf node listen address.
func (h *Hub) Addr() string { return h.addr }

// LeafURL returns the URL for [BusConfig.LeafRemote] of domain, with its
// user and password.
func (h *Hub) LeafURL(domain string) (string, error) {
	pw, ok := h.users[domain]
	if !ok {
		return "", fmt.Errorf("hub: no user for %s", domain)
	}
	u := url.URL{Scheme: "nats-leaf", User: url.UserPassword(domain, pw), Host: h.addr}
	return u.String(), nil
}

// Close stops the hub.
func (h *Hub) Close() {
	h.Server.Shutdown()
	h.Server.WaitForShutdown()
}

// hubPasswords loads the stored passwords and generates missing ones.
func hubPasswords(dir string, domains []string) (map[string]string, error) {
	users := make(map[string]string)
	path := filepath.Join(dir, HubUsersFile)
	if dir != "" {
		data, err := os.ReadFile(path)
		if err == nil {
			if err := strictUnmarshal(data, &users); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("hub users: %w", err)
		}
	}
	changed := false
	for _, d := range domains {
		if err := identity.ValidateDomain(d); err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		if users[d] != "" {
			continue
		}
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("hub password: %w", err)
		}
		users[d] = hex.EncodeToString(b[:])
		changed = true
	}
	if dir != "" && changed {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("hub store: %w", err)
		}
		data, err := json.MarshalIndent(users, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("hub users: %w", err)
		}
		if err := writeFileAtomic(path, append(data, '\n')); err != nil {
			return nil, err
		}
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("hub users: %w", err)
		}
	}
	return users, nil
}
