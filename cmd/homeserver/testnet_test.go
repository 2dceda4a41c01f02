package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/testnet"
)

var demoSummary = regexp.MustCompile(`(?m)^demo: PASS — 3 homeservers, 5 users, 8 clients, 120 messages sent, 784 deliveries decrypted, 25 handshakes processed, 0 errors`)

// pidColumn finds the PIDs in the table `homeserver testnet --processes`
// prints.
var pidColumn = regexp.MustCompile(`(?m)^hs\d+\s+\S+\s+\S+\s+\S+\s+(\d+)\s`)

// TestTestnetDemo runs `homeserver testnet --servers 3 --scenario demo`
// as a user would and expects the summary line and status 0; a second run
// on the same directory reuses the homeservers' addresses and data.
func TestTestnetDemo(t *testing.T) {
	dir := t.TempDir()
	for run := 1; run <= 2; run++ {
		stdout, stderr, code := runHomeserver(t, "testnet", "--servers", "3", "--dir", dir, "--scenario", "demo")
		if code != 0 || !demoSummary.MatchString(stdout) {
			t.Fatalf("run %d: status %d\nstdout:\n%s\nstderr:\n%s", run, code, stdout, stderr)
		}
		if run == 2 && !strings.Contains(stdout, "reusing the addresses and data of 3 homeservers") {
			t.Fatalf("second run did not reuse the first one's homeservers:\n%s", stdout)
		}
	}
}

// TestTestnetDemoProcesses runs the demo with every homeserver in its own
// process; when the testnet exits, so have they.
func TestTestnetDemoProcesses(t *testing.T) {
	stdout, stderr, code := runHomeserver(t, "testnet", "--servers", "3", "--dir", t.TempDir(), "--scenario", "demo", "--processes")
	if code != 0 || !demoSummary.MatchString(stdout) {
		t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	pids := pidColumn.FindAllStringSubmatch(stdout, -1)
	if len(pids) != 3 {
		t.Fatalf("no PID column for 3 homeservers:\n%s", stdout)
	}
	for _, m := range pids {
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || processAlive(pid) {
			t.Fatalf("homeserver process %d outlived the testnet", pid)
		}
	}
}

// TestTestnetUsageErrors: bad invocations fail with a message, not a
// half-started testnet; a demo that cannot pass exits with status 1.
func TestTestnetUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--scenario", "nope", "--dir", dir}, 1, `unknown scenario "nope"`},
		{[]string{"--servers", "0", "--dir", dir}, 1, "at least 1"},
		{[]string{"kill", "1", "--dir", dir}, 1, "no testnet running"},
		{[]string{"restart", "--dir", dir}, 2, "want 1 argument"},
		{[]string{"--servers", "1", "--scenario", "demo", "--dir", dir}, 1, "demo needs at least 2 homeservers"},
	} {
		_, stderr, code := runHomeserver(t, append([]string{"testnet"}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("testnet %q: status %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// TestTestnetKillRestartProcesses starts a long-running testnet with
// --processes, kills one homeserver with SIGKILL through `homeserver
// testnet kill`, sends messages to its user while it is down, restarts
// it with `homeserver testnet restart` and expects every message to
// arrive; then the demo passes on the restarted testnet and SIGTERM
// stops everything.
func TestTestnetKillRestartProcesses(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "testnet", "--servers", "3", "--dir", dir, "--processes", "--admin-token", "let-me-in")
	cmd.Env = append(os.Environ(), "HOMESERVER_TEST_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// However the test ends, no homeserver process outlives it: stop the
	// testnet, and kill whatever child it left behind.
	waited := false
	t.Cleanup(func() {
		if !waited {
			cmd.Process.Signal(syscall.SIGTERM)
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
			}
		}
		if st, err := readTestnetState(dir); err == nil && st.Running != nil {
			for _, pid := range st.Running.PIDs {
				if p, err := os.FindProcess(pid); err == nil && processAlive(pid) {
					p.Kill()
				}
			}
		}
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var printed strings.Builder
	waitLine := func(prefix string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("testnet exited before %q:\n%s", prefix, printed.String())
				}
				printed.WriteString(l + "\n")
				if strings.HasPrefix(l, prefix) {
					return
				}
			case <-timeout:
				t.Fatalf("no %q line after 60s:\n%s", prefix, printed.String())
			}
		}
	}
	waitLine("testnet: up;")
	st, err := readTestnetState(dir)
	if err != nil || st.Running == nil || len(st.Running.PIDs) != 3 {
		t.Fatalf("state file: %+v %v", st, err)
	}
	net := &testnet.Net{}
	for i, d := range st.Servers {
		net.Servers = append(net.Servers, &testnet.Server{Domain: d, URL: "http://" + d, Data: filepath.Join(dir, fmt.Sprintf("hs%d", i+1))})
	}
	// --admin-token reaches every homeserver process: the policy API
	// takes the token and refuses anything else.
	for _, tok := range []string{"let-me-in", "guess"} {
		req, _ := http.NewRequest(http.MethodPut, net.Servers[1].URL+"/v1/admin/federation/policy", strings.NewReader(`{"mode":"open"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ok := resp.StatusCode == http.StatusOK; ok != (tok == "let-me-in") {
			t.Fatalf("policy with token %q: %d", tok, resp.StatusCode)
		}
	}
	ctx := context.Background()
	sender := demoUser(t, net.Servers[0], "sender")
	recipient := demoUser(t, net.Servers[2], "recipient")
	if err := sender.GetTokens(ctx, 1); err != nil {
		t.Fatal(err)
	}
	g, err := sender.CreateGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Add(ctx, net.Servers[0].Directory(sender.Conn), recipient.UserID); err != nil {
		t.Fatal(err)
	}
	if in := fetchN(t, recipient, 1); !in[0].Joined {
		t.Fatalf("recipient did not join: %+v", in[0])
	}

	killed := st.Running.PIDs[2]
	if stdout, stderr, code := runHomeserver(t, "testnet", "kill", "3", "--dir", dir); code != 0 || !strings.Contains(stdout, "killed") {
		t.Fatalf("testnet kill 3: %d %s %s", code, stdout, stderr)
	}
	if processAlive(killed) {
		t.Fatalf("homeserver 3 (pid %d) survived testnet kill", killed)
	}
	if _, err := http.Get(net.Servers[2].URL + "/readyz"); err == nil {
		t.Fatal("homeserver 3 still answers after testnet kill")
	}
	const down = 50
	for i := 0; i < down; i++ {
		if err := g.Send(ctx, []byte(fmt.Sprintf("while down %d", i))); err != nil {
			t.Fatalf("send %d while the recipient's homeserver is down: %v", i, err)
		}
	}
	if stdout, stderr, code := runHomeserver(t, "testnet", "restart", "3", "--dir", dir); code != 0 || !strings.Contains(stdout, "restarted") {
		t.Fatalf("testnet restart 3: %d %s %s", code, stdout, stderr)
	}
	in := fetchN(t, recipient, down)
	for i, m := range in {
		if want := fmt.Sprintf("while down %d", i); string(m.Plaintext) != want {
			t.Fatalf("after the restart, message %d is %q, want %q", i, m.Plaintext, want)
		}
	}
	if stdout, _, code := runHomeserver(t, "testnet", "status", "--dir", dir); code != 0 || len(pidColumn.FindAllString(stdout, -1)) != 3 {
		t.Fatalf("testnet status after the restart: %d\n%s", code, stdout)
	}
	var demoOut strings.Builder
	if _, err := testnet.Demo(ctx, net, &demoOut); err != nil {
		t.Fatalf("demo after the restart: %v\n%s", err, demoOut.String())
	}

	st, _ = readTestnetState(dir)
	cmd.Process.Signal(syscall.SIGTERM)
	waitLine("testnet: stopped")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("testnet after SIGTERM: %v", err)
	}
	waited = true
	for _, pid := range st.Running.PIDs {
		if processAlive(pid) {
			t.Fatalf("homeserver process %d outlived the testnet", pid)
		}
	}
	if st, _ := readTestnetState(dir); st.Running != nil || len(st.Servers) != 3 {
		t.Fatalf("state after the testnet stopped: %+v", st)
	}
}

// TestServeFederationFlags: serve's federation settings come from flags,
// the environment or the config file like every other, with safe
// defaults (https, admin API off).
func TestServeFederationFlags(t *testing.T) {
	c, err := loadServeConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.FederationScheme != "https" || c.AdminToken != "" || c.FederationRetryMax != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
	env := map[string]string{"HOMESERVER_ADMIN_TOKEN": "from-env"}
	c, err = loadServeConfig([]string{"--federation-scheme", "http", "--federation-retry-max", "3s"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.FederationScheme != "http" || c.AdminToken != "from-env" || c.FederationRetryMax != 3*time.Second {
		t.Fatalf("flags and env: %+v", c)
	}
}

// demoUser registers a user with one client and KeyPackages on s.
func demoUser(t *testing.T, s *testnet.Server, name string) *client.Client {
	t.Helper()
	ctx := context.Background()
	conn, err := s.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := conn.Register(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	kps, err := c.MakeKeyPackages(2, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PublishKeyPackages(ctx, kps); err != nil {
		t.Fatal(err)
	}
	return c
}

// fetchN long-polls c's queue until it has processed n messages.
func fetchN(t *testing.T, c *client.Client, n int) []client.Incoming {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	var got []client.Incoming
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d messages after 60s", c.UserID, len(got), n)
		}
		in, err := c.Fetch(ctx, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range in {
			if m.Err != nil {
				t.Fatalf("%s seq %d: %v", c.UserID, m.Seq, m.Err)
			}
		}
		got = append(got, in...)
	}
	if err := c.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	return got
}

// processAlive reports whether a process with this pid exists (and is
// not a zombie awaiting its parent).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err == nil {
		// The state follows the parenthesised command name.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
			return s[i+2] != 'Z'
		}
		return true
	}
	p, err := os.FindProcess(pid)
	return err == nil && p.Signal(syscall.Signal(0)) == nil
}
