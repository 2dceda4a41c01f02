package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/projections"
)

// wlClient is a client registered by the HTTP workload.
type wlClient struct {
	id  string
	key ed25519.PrivateKey
}

// wlPost sends a JSON body, signed by `by` if not nil, and decodes the
// reply into out.
func wlPost(t *testing.T, hc *http.Client, url string, body any, by *wlClient, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if by != nil {
		if err := identity.SignRequest(req, b, by.id, by.key, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, rb)
	}
	if err := json.Unmarshal(rb, out); err != nil {
		t.Fatal(err)
	}
}

// runWorkload registers users named prefix0..prefix{n-1} through the real
// HTTP API, each with a first client (POST /v1/users) and a second one
// added by a request the first signs (POST /v1/clients): three events per
// user.
func runWorkload(t *testing.T, base, prefix string, n int) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < n; i++ {
		pub, priv, _ := ed25519.GenerateKey(nil)
		var reg struct {
			UserID   string `json:"user_id"`
			ClientID string `json:"client_id"`
		}
		wlPost(t, hc, base+"/v1/users", map[string]any{"user_id": fmt.Sprintf("%s%d", prefix, i), "signature_key": pub}, nil, &reg)
		first := &wlClient{id: reg.ClientID, key: priv}
		pub2, _, _ := ed25519.GenerateKey(nil)
		var added struct {
			UserID string `json:"user_id"`
		}
		wlPost(t, hc, base+"/v1/clients", map[string]any{"signature_key": pub2}, first, &added)
		if added.UserID != reg.UserID {
			t.Fatalf("client added to %q, want %q", added.UserID, reg.UserID)
		}
	}
}

// stopServe stops `homeserver serve` with SIGTERM and waits for a clean exit.
func stopServe(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
}

// runHomeserver runs the homeserver binary (this test binary) with args and
// returns its stdout, stderr and exit status.
func runHomeserver(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HOMESERVER_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// copyDir copies a stopped homeserver's data dir, keeping file modes (the
// keys must stay 0600).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// liveDigest returns the size and the projection digest of a stopped
// homeserver's store, read from a copy so the original stays untouched.
func liveDigest(t *testing.T, data string) (uint64, string) {
	t.Helper()
	cp := t.TempDir()
	copyDir(t, node.StoreDir(data), cp)
	db, err := pebble.Open(cp, &pebble.Options{ReadOnly: true, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := eventlog.NewReader(db)
	size, err := eventlog.StoredSize(r)
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := projections.Digest(r)
	if err != nil {
		t.Fatal(err)
	}
	return size, fmt.Sprintf("%x", d)
}

var digestLine = regexp.MustCompile(`digest ([0-9a-f]{64})`)

// LOG-2: `homeserver replay` rebuilds from a log written through the HTTP
// API projections identical to the live ones, and `--to SEQ` rebuilds the
// state the live server had when its log ended at SEQ.
func TestLOG_2_ReplayIdenticalAndTo(t *testing.T) {
	data := t.TempDir()
	cmd, base := startServe(t, data)
	runWorkload(t, base, "early", 5)
	stopServe(t, cmd)
	midSize, midDigest := liveDigest(t, data)
	if midSize != 15 {
		t.Fatalf("log size %d after the first phase, want 15", midSize)
	}

	cmd, base = startServe(t, data)
	runWorkload(t, base, "late", 4)
	stopServe(t, cmd)
	size, finalDigest := liveDigest(t, data)
	if size != 27 || finalDigest == midDigest {
		t.Fatalf("log size %d after the second phase, want 27 (digest %s)", size, finalDigest)
	}

	out, errOut, code := runHomeserver(t, "replay", "--data", data)
	if code != 0 || !strings.Contains(out, "IDENTICAL") {
		t.Fatalf("replay: exit %d\n%s%s", code, out, errOut)
	}
	if m := digestLine.FindStringSubmatch(out); m == nil || m[1] != finalDigest {
		t.Fatalf("replay digest %v, live %s\n%s", m, finalDigest, out)
	}

	out, errOut, code = runHomeserver(t, "replay", "--data", data, "--to", fmt.Sprint(midSize))
	m := digestLine.FindStringSubmatch(out)
	if code != 0 || m == nil || m[1] != midDigest {
		t.Fatalf("replay --to %d: exit %d, digest %v, want the live digest %s at that size\n%s%s", midSize, code, m, midDigest, out, errOut)
	}

	if _, errOut, code := runHomeserver(t, "replay", "--data", data, "--to", "28"); code != 1 || !strings.Contains(errOut, "beyond the log size 27") {
		t.Fatalf("replay --to beyond the log: exit %d %s", code, errOut)
	}
}

// LOG-2 across an upgrade: projections written in an older layout replay
// as DIFFERENT, with a note saying why, until `serve` opens the store and
// rebuilds them; then the replay is IDENTICAL again.
func TestLOG_2_ReplayAfterLayoutUpgrade(t *testing.T) {
	data := t.TempDir()
	cmd, base := startServe(t, data)
	runWorkload(t, base, "old", 3)
	stopServe(t, cmd)

	// What an older homeserver would have left: no layout recorded, and
	// projections that differ from what this one writes.
	db, err := pebble.Open(node.StoreDir(data), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(projections.LayoutKey, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Set(append(projections.Prefix("dir"), "user/zz-old-layout"...), []byte("{}"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runHomeserver(t, "replay", "--data", data)
	if code == 0 || !strings.Contains(out, "DIFFERENT") || !strings.Contains(out, "written in layout 0") {
		t.Fatalf("replay of an old layout: exit %d\n%s%s", code, out, errOut)
	}

	cmd, _ = startServe(t, data)
	stopServe(t, cmd)
	out, errOut, code = runHomeserver(t, "replay", "--data", data)
	if code != 0 || !strings.Contains(out, "IDENTICAL") {
		t.Fatalf("replay after serve upgraded the store: exit %d\n%s%s", code, out, errOut)
	}
}
