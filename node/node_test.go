package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/projections"
)

func startNode(t *testing.T, domain string) *node.Node {
	t.Helper()
	n, err := node.Open(node.Config{Domain: domain, DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n
}

type reply struct {
	status int
	body   []byte
}

func (r reply) code() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func post(t *testing.T, url string, body []byte, sign func(*http.Request)) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sign != nil {
		sign(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, b}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

type testClient struct {
	userID string
	id     string
	key    ed25519.PrivateKey
}

func register(t *testing.T, n *node.Node, name string) (*testClient, reply) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	r := post(t, n.URL()+"/v1/users", mustJSON(map[string]any{"user_id": name, "signature_key": pub}), nil)
	var ok struct {
		UserID   string `json:"user_id"`
		ClientID string `json:"client_id"`
	}
	json.Unmarshal(r.body, &ok)
	return &testClient{userID: ok.UserID, id: ok.ClientID, key: priv}, r
}

func (c *testClient) signer(body []byte) func(*http.Request) {
	return func(req *http.Request) {
		if err := identity.SignRequest(req, body, c.id, c.key, time.Now()); err != nil {
			panic(err)
		}
	}
}

func addClient(t *testing.T, n *node.Node, by *testClient) (*testClient, reply) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	body := mustJSON(map[string]any{"signature_key": pub})
	r := post(t, n.URL()+"/v1/clients", body, by.signer(body))
	var ok struct {
		UserID   string `json:"user_id"`
		ClientID string `json:"client_id"`
	}
	json.Unmarshal(r.body, &ok)
	return &testClient{userID: ok.UserID, id: ok.ClientID, key: priv}, r
}

func TestRegisterUserAndClientsThroughHTTP(t *testing.T) {
	n := startNode(t, "reg.test")
	alice, r := register(t, n, "alice")
	if r.status != http.StatusCreated || alice.userID != "alice@reg.test" {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	var cred struct {
		Credential []byte `json:"credential"`
	}
	json.Unmarshal(r.body, &cred)
	c, err := identity.VerifyCredential(cred.Credential, n.Keys.AuthPublicKey())
	if err != nil || c.UserID != "alice@reg.test" || c.ClientID != alice.id {
		t.Fatalf("credential %+v %v", c, err)
	}
	second, r := addClient(t, n, alice)
	if r.status != http.StatusCreated || second.userID != "alice@reg.test" {
		t.Fatalf("add client: %d %s", r.status, r.body)
	}
	clients, err := projections.DirectoryView{R: eventlog.NewReader(n.Log.DB())}.Clients("alice@reg.test")
	if err != nil || len(clients) != 2 {
		t.Fatalf("clients %d %v", len(clients), err)
	}
}

// Bad input gets a stable code and appends nothing.
func TestBadInputAppendsNothing(t *testing.T) {
	n := startNode(t, "bad.test")
	alice, _ := register(t, n, "alice")
	size := n.Log.Size()
	pub, _, _ := ed25519.GenerateKey(nil)
	body := mustJSON(map[string]any{"signature_key": pub})
	cases := []struct {
		name   string
		path   string
		body   []byte
		sign   func(*http.Request)
		status int
		code   string
	}{
		{"malformed json", "/v1/users", []byte(`{"user_id":`), nil, 400, "malformed"},
		{"not an object", "/v1/users", []byte(`[1,2]`), nil, 400, "malformed"},
		{"trailing data", "/v1/users", []byte(`{"user_id":"bob"} {}`), nil, 400, "malformed"},
		{"unknown field", "/v1/users", mustJSON(map[string]any{"user_id": "bob", "signature_key": pub, "admin": true}), nil, 400, "malformed"},
		{"oversized body", "/v1/users", bytes.Repeat([]byte(" "), 2<<20), nil, 413, "too_large"},
		{"duplicate user", "/v1/users", mustJSON(map[string]any{"user_id": "alice", "signature_key": pub}), nil, 409, "user_exists"},
		{"bad user name", "/v1/users", mustJSON(map[string]any{"user_id": "Bob!", "signature_key": pub}), nil, 400, "invalid_user_id"},
		{"foreign domain", "/v1/users", mustJSON(map[string]any{"user_id": "bob@elsewhere.test", "signature_key": pub}), nil, 400, "wrong_domain"},
		{"short key", "/v1/users", mustJSON(map[string]any{"user_id": "bob", "signature_key": pub[:31]}), nil, 400, "invalid_key"},
		{"key in use", "/v1/users", mustJSON(map[string]any{"user_id": "bob", "signature_key": alice.key.Public()}), nil, 409, "key_in_use"},
		{"unsigned client add", "/v1/clients", body, nil, 401, ""},
		{"client add signed by a stranger", "/v1/clients", body, (&testClient{id: alice.id, key: mustKey()}).signer(body), 401, "bad_signature"},
	}
	for _, tc := range cases {
		r := post(t, n.URL()+tc.path, tc.body, tc.sign)
		if r.status != tc.status || (tc.code != "" && r.code() != tc.code) {
			t.Errorf("%s: got %d %s, want %d %s", tc.name, r.status, r.body, tc.status, tc.code)
		}
		if r.code() == "" {
			t.Errorf("%s: no error code in %s", tc.name, r.body)
		}
	}
	// A signed request replayed verbatim is refused.
	signed := alice.signer(body)
	req1, _ := http.NewRequest(http.MethodPost, n.URL()+"/v1/clients", bytes.NewReader(body))
	signed(req1)
	req2, _ := http.NewRequest(http.MethodPost, n.URL()+"/v1/clients", bytes.NewReader(body))
	req2.Header = req1.Header.Clone()
	resp1, _ := http.DefaultClient.Do(req1)
	resp1.Body.Close()
	resp2, _ := http.DefaultClient.Do(req2)
	b, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp1.StatusCode != http.StatusCreated || resp2.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replay: first %d, second %d %s", resp1.StatusCode, resp2.StatusCode, b)
	}
	if got := n.Log.Size(); got != size+1 {
		t.Fatalf("log grew from %d to %d; only the one good client add may append", size, got)
	}
}

func mustKey() ed25519.PrivateKey {
	_, k, _ := ed25519.GenerateKey(nil)
	return k
}

// LOG-2: after a randomized workload through HTTP, rebuilding every
// projection from the log gives the live projections byte for byte.
func TestLOG_2_RebuildEqualsLive(t *testing.T) {
	n := startNode(t, "replay.test")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 2))
	var clients []*testClient
	for i := 0; i < 300; i++ {
		switch op := rng.IntN(10); {
		case op < 5 || len(clients) == 0:
			c, r := register(t, n, fmt.Sprintf("u%d", rng.IntN(200)))
			if r.status == http.StatusCreated {
				clients = append(clients, c)
			}
		case op < 9:
			c, r := addClient(t, n, clients[rng.IntN(len(clients))])
			if r.status == http.StatusCreated {
				clients = append(clients, c)
			}
		default:
			register(t, n, strings.Repeat("x", rng.IntN(80)))
		}
	}
	if n.Log.Size() < 100 {
		t.Fatalf("workload appended only %d events (seed %d)", n.Log.Size(), seed)
	}
	snap := n.Log.DB().NewSnapshot()
	defer snap.Close()
	size, err := eventlog.StoredSize(eventlog.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := pebble.Open(filepath.Join(t.TempDir(), "rebuilt"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := n.Set.Rebuild(eventlog.NewReader(snap), fresh, size, nil); err != nil {
		t.Fatal(err)
	}
	d, err := projections.Compare(snap, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Equals {
		t.Fatalf("seed %d: rebuilt projections differ at %q: live %q rebuilt %q", seed, d.Key, d.A, d.B)
	}
	// The comparison must be able to fail: change one live byte.
	if err := n.Log.DB().Set(append(projections.Prefix("dir"), "user/zzz"...), []byte("{}"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if d, _ := projections.Compare(n.Log.DB(), fresh); d.Equals {
		t.Fatal("compare missed an extra projection key")
	}
}

func TestRegistrationToken(t *testing.T) {
	n, err := node.Open(node.Config{Domain: "closed.test", DataDir: t.TempDir(), Listen: "127.0.0.1:0", RegistrationToken: "let-me-in"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	pub, _, _ := ed25519.GenerateKey(nil)
	body := mustJSON(map[string]any{"user_id": "amy", "signature_key": pub})
	if r := post(t, n.URL()+"/v1/users", body, nil); r.status != http.StatusUnauthorized || r.code() != "unauthenticated" {
		t.Fatalf("without the token: %d %s", r.status, r.body)
	}
	if n.Log.Size() != 0 {
		t.Fatal("a refused registration appended events")
	}
	r := post(t, n.URL()+"/v1/users", body, func(req *http.Request) { req.Header.Set("Authorization", "Bearer let-me-in") })
	if r.status != http.StatusCreated {
		t.Fatalf("with the token: %d %s", r.status, r.body)
	}
}
