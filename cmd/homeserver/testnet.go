package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mlshome/homeserver/federation"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/testnet"
)

const testnetUsage = `usage: homeserver testnet [flags]           start a local federated testnet
       homeserver testnet status  [--dir DIR]  list the homeservers of a running testnet
       homeserver testnet stop    N [--dir DIR] stop homeserver N gracefully (SIGTERM)
       homeserver testnet kill    N [--dir DIR] kill homeserver N with SIGKILL (--processes only)
       homeserver testnet restart N [--dir DIR] start homeserver N again (stopping it first
                                                if it runs), on the same address and data

A testnet is N homeservers on loopback ports, each with its data directory
DIR/hsN and an embedded NATS server that joins a hub NATS server (in the
testnet process) as a leaf node, allowed to publish only as itself. A
homeserver's domain is its address (127.0.0.1:PORT); users are
name@127.0.0.1:PORT. Running the testnet again on the same DIR reuses the
addresses and data (DIR/testnet.json); --fresh starts over.

The testnet stays up until Ctrl-C or SIGTERM, which stop every homeserver
gracefully. With --scenario demo it runs the demo instead and exits: users
on every homeserver, a group across all of them, adds, messages from every
homeserver, a remove, an update, more messages; status 0 only if every
client received exactly what it should, in order.

With --processes every homeserver is its own OS process (this binary's
serve command, log in DIR/hsN.log), and kill sends it SIGKILL; without
it the homeservers run inside the testnet process (logs in
DIR/testnet.log) and can be stopped and restarted but not killed. The
status, stop, kill and restart commands reach the running testnet through
a loopback control address it writes to DIR/testnet.json; each returns
once the homeserver is down, or up and ready.

flags:
`

// testnetState is DIR/testnet.json: the homeservers' addresses (kept, so
// a testnet can start again on its data) and, while a testnet runs, how
// to reach it.
type testnetState struct {
	Servers []string        `json:"servers"`
	Running *testnetRunning `json:"running,omitempty"`
}

// testnetRunning describes a running testnet.
type testnetRunning struct {
	PID       int    `json:"pid"`
	Control   string `json:"control"` // HTTP address of the control API
	Token     string `json:"token"`   // its bearer token
	Hub       string `json:"hub"`
	Processes bool   `json:"processes"`
	PIDs      []int  `json:"pids,omitempty"` // homeserver processes; 0 if stopped
}

const testnetStateFile = "testnet.json"

func testnetCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "status", "stop", "kill", "restart":
			return testnetControl(args[0], args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("testnet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), testnetUsage)
		fs.PrintDefaults()
	}
	servers := fs.Int("servers", 3, "number of homeservers")
	dir := fs.String("dir", "./testnet-data", "directory of the hub's state, the homeservers' data (DIR/hsN) and the logs")
	scenario := fs.String("scenario", "", `run a scenario and exit instead of staying up: "demo"`)
	processes := fs.Bool("processes", false, "run every homeserver as its own OS process (this binary's serve command)")
	fresh := fs.Bool("fresh", false, "delete the previous testnet's data in DIR first")
	logLevel := fs.String("log-level", "info", "homeservers' log level: debug, info, warn, error")
	retryMax := fs.Duration("federation-retry-max", 2*time.Second, "longest wait between federation delivery retries (short, so a restarted homeserver catches up quickly)")
	adminToken := fs.String("admin-token", "", "enable every homeserver's admin API (PUT /v1/admin/federation/policy) with this bearer token")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "testnet: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	if *servers < 1 {
		return fmt.Errorf("testnet: --servers must be at least 1")
	}
	switch *scenario {
	case "", "demo":
	default:
		return fmt.Errorf("testnet: unknown scenario %q (known: demo)", *scenario)
	}
	if *scenario == "demo" && *servers < 2 {
		return fmt.Errorf("testnet: the demo needs at least 2 homeservers (--servers)")
	}
	if _, err := newLogger(io.Discard, *logLevel, "text"); err != nil {
		return err
	}
	tn := &testnetRun{
		dir: *dir, servers: *servers, processes: *processes, logLevel: *logLevel,
		retryMax: *retryMax, adminToken: *adminToken, out: stdout,
	}
	return tn.run(*fresh, *scenario)
}

// testnetRun is a running `homeserver testnet`.
type testnetRun struct {
	dir        string
	servers    int
	processes  bool
	logLevel   string
	retryMax   time.Duration
	adminToken string
	out        io.Writer

	mu      sync.Mutex // serializes control actions and shutdown
	net     *testnet.Net
	procs   []*hsProcess // with --processes
	logFile *os.File     // without --processes
	ctl     *http.Server
	state   testnetState
}

func (tn *testnetRun) printf(format string, args ...any) {
	fmt.Fprintf(tn.out, "testnet: "+format+"\n", args...)
}

func (tn *testnetRun) run(fresh bool, scenario string) error {
	if err := os.MkdirAll(tn.dir, 0o700); err != nil {
		return err
	}
	if fresh {
		if err := tn.clean(); err != nil {
			return err
		}
	}
	prev, err := readTestnetState(tn.dir)
	if err != nil {
		return err
	}
	if prev.Running != nil && controlAnswers(prev.Running) {
		return fmt.Errorf("testnet: a testnet (pid %d) is already running in %s", prev.Running.PID, tn.dir)
	}
	if prev.Running != nil {
		// The previous testnet did not stop cleanly (killed?): its
		// homeserver processes may still hold the addresses.
		for i, pid := range prev.Running.PIDs {
			if p, err := os.FindProcess(pid); pid > 0 && err == nil && p.Signal(syscall.Signal(0)) == nil {
				tn.printf("warning: hs%d of a previous testnet may still run as pid %d", i+1, pid)
			}
		}
	}
	addrs := prev.Servers
	if len(addrs) > tn.servers {
		addrs = addrs[:tn.servers]
	}
	if len(addrs) > 0 {
		tn.printf("reusing the addresses and data of %d homeservers in %s (--fresh starts over)", len(addrs), tn.dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if tn.processes {
		err = tn.startProcesses(ctx, addrs)
	} else {
		err = tn.startInProcess(addrs)
	}
	if err != nil {
		tn.shutdown()
		return err
	}
	if err := tn.startControl(); err != nil {
		tn.shutdown()
		return err
	}
	tn.printf("%d homeserver(s) up in %s", len(tn.net.Servers), time.Since(start).Round(10*time.Millisecond))
	tn.table(tn.out)
	if scenario == "demo" {
		_, derr := testnet.Demo(ctx, tn.net, tn.out)
		if err := tn.shutdown(); err != nil && derr == nil {
			return err
		}
		return derr
	}
	tn.printf("control: homeserver testnet status|stop N|kill N|restart N --dir %s", tn.dir)
	tn.printf("up; Ctrl-C or SIGTERM stops every homeserver")
	<-ctx.Done()
	tn.printf("stopping")
	if err := tn.shutdown(); err != nil {
		return err
	}
	tn.printf("stopped")
	return nil
}

// clean deletes what a previous testnet left in the directory, and
// nothing else.
func (tn *testnetRun) clean() error {
	prev, err := readTestnetState(tn.dir)
	if err != nil {
		return err
	}
	if prev.Running != nil && controlAnswers(prev.Running) {
		return fmt.Errorf("testnet: a testnet (pid %d) is running in %s; stop it first", prev.Running.PID, tn.dir)
	}
	paths := []string{filepath.Join(tn.dir, "hub"), filepath.Join(tn.dir, testnetStateFile), filepath.Join(tn.dir, "testnet.log")}
	for _, pat := range []string{"hs[0-9]*"} {
		m, _ := filepath.Glob(filepath.Join(tn.dir, pat))
		paths = append(paths, m...)
	}
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// startInProcess runs the homeservers inside this process.
func (tn *testnetRun) startInProcess(addrs []string) error {
	f, err := os.OpenFile(filepath.Join(tn.dir, "testnet.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	tn.logFile = f
	logger, _ := newLogger(f, tn.logLevel, "text")
	tn.printf("starting the hub and %d homeserver(s) in this process (logs in %s)", tn.servers, f.Name())
	n, err := testnet.Start(testnet.Config{
		Servers: tn.servers, Dir: tn.dir, Addrs: addrs, Logger: logger,
		Node: func(i int, c *node.Config) {
			c.Federation.RetryMax = tn.retryMax
			c.Federation.AdminToken = tn.adminToken
			tn.printf("starting hs%d %s (data %s)", i+1, c.Domain, c.DataDir)
		},
	})
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	tn.net = n
	return nil
}

// startProcesses starts the hub here and every homeserver as a child
// process running `serve`.
func (tn *testnetRun) startProcesses(ctx context.Context, addrs []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("testnet: own executable: %w", err)
	}
	var domains []string
	for i := 0; i < tn.servers; i++ {
		if i < len(addrs) {
			domains = append(domains, addrs[i])
			continue
		}
		a, err := freeLoopbackAddr()
		if err != nil {
			return err
		}
		domains = append(domains, a)
	}
	hub, err := federation.StartHub(federation.HubConfig{Listen: "127.0.0.1:0", Domains: domains, StoreDir: filepath.Join(tn.dir, "hub")})
	if err != nil {
		return fmt.Errorf("testnet: hub: %w", err)
	}
	tn.net = &testnet.Net{Hub: hub}
	tn.printf("hub listening for leaf nodes on %s", hub.Addr())
	for i, d := range domains {
		leaf, err := hub.LeafURL(d)
		if err != nil {
			return err
		}
		s := &testnet.Server{Domain: d, URL: "http://" + d, Data: filepath.Join(tn.dir, fmt.Sprintf("hs%d", i+1))}
		p := &hsProcess{
			name: fmt.Sprintf("hs%d", i+1), srv: s, exe: exe, out: tn.out,
			log: filepath.Join(tn.dir, fmt.Sprintf("hs%d.log", i+1)),
			args: []string{"serve", "--domain", d, "--listen", d, "--data", s.Data, "--nats-leaf", leaf,
				"--federation-scheme", "http", "--federation-retry-max", tn.retryMax.String(),
				"--admin-token", tn.adminToken, "--log-level", tn.logLevel},
		}
		tn.net.Servers = append(tn.net.Servers, s)
		tn.procs = append(tn.procs, p)
		tn.printf("starting hs%d %s (data %s, log %s)", i+1, d, s.Data, p.log)
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// freeLoopbackAddr picks a free loopback port for a homeserver process.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// table prints the homeservers.
func (tn *testnetRun) table(w io.Writer) {
	fmt.Fprintf(w, "hub: %s (NATS leaf nodes)\n", tn.net.Hub.Addr())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if tn.processes {
		fmt.Fprintln(tw, "HS\tDOMAIN\tURL\tDATA\tPID\tLOG")
	} else {
		fmt.Fprintln(tw, "HS\tDOMAIN\tURL\tDATA\tSTATE")
	}
	for i, s := range tn.net.Servers {
		if tn.processes {
			pid := "stopped"
			if p := tn.procs[i].pid(); p != 0 {
				pid = strconv.Itoa(p)
			}
			fmt.Fprintf(tw, "hs%d\t%s\t%s\t%s\t%s\t%s\n", i+1, s.Domain, s.URL, s.Data, pid, tn.procs[i].log)
		} else {
			state := "running"
			if s.Node == nil {
				state = "stopped"
			}
			fmt.Fprintf(tw, "hs%d\t%s\t%s\t%s\t%s\n", i+1, s.Domain, s.URL, s.Data, state)
		}
	}
	tw.Flush()
}

// startControl serves the control API on a loopback port and writes the
// state file that tells the control commands where it is.
func (tn *testnetRun) startControl() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var tok [16]byte
	rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+token {
				http.Error(w, "testnet: bad control token", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /status", auth(func(w http.ResponseWriter, r *http.Request) {
		tn.mu.Lock()
		defer tn.mu.Unlock()
		tn.table(w)
	}))
	mux.HandleFunc("POST /servers/{n}/{action}", auth(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil {
			http.Error(w, "testnet: bad homeserver number", http.StatusBadRequest)
			return
		}
		msg, err := tn.control(r.Context(), n, r.PathValue("action"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprintln(w, msg)
	}))
	tn.ctl = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go tn.ctl.Serve(ln)
	tn.state = testnetState{Running: &testnetRunning{
		PID: os.Getpid(), Control: ln.Addr().String(), Token: token, Hub: tn.net.Hub.Addr(), Processes: tn.processes,
	}}
	return tn.saveState()
}

// saveState writes DIR/testnet.json with the current addresses and PIDs.
func (tn *testnetRun) saveState() error {
	tn.state.Servers = nil
	for _, s := range tn.net.Servers {
		tn.state.Servers = append(tn.state.Servers, s.Domain)
	}
	if r := tn.state.Running; r != nil && tn.processes {
		r.PIDs = nil
		for _, p := range tn.procs {
			r.PIDs = append(r.PIDs, p.pid())
		}
	}
	b, err := json.MarshalIndent(tn.state, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(tn.dir, testnetStateFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readTestnetState(dir string) (testnetState, error) {
	var st testnetState
	b, err := os.ReadFile(filepath.Join(dir, testnetStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(dir, testnetStateFile), err)
	}
	return st, nil
}

// control carries out one control action on homeserver n (1-based).
func (tn *testnetRun) control(ctx context.Context, n int, action string) (string, error) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.net == nil {
		return "", errors.New("testnet: shutting down")
	}
	if n < 1 || n > len(tn.net.Servers) {
		return "", fmt.Errorf("testnet: no homeserver %d (there are %d)", n, len(tn.net.Servers))
	}
	s := tn.net.Servers[n-1]
	name := fmt.Sprintf("hs%d %s", n, s.Domain)
	var err error
	switch action {
	case "stop", "kill":
		if tn.processes && tn.procs[n-1].pid() == 0 {
			err = errors.New("testnet: " + name + " is not running")
		} else if tn.processes {
			err = tn.procs[n-1].stop(action == "kill")
		} else if action == "kill" {
			err = errors.New("testnet: kill needs --processes; in-process homeservers can only be stopped")
		} else if s.Node == nil {
			err = errors.New("testnet: " + name + " is not running")
		} else {
			err = s.Stop()
		}
	case "restart":
		if tn.processes {
			p := tn.procs[n-1]
			if err = p.stop(false); err == nil {
				err = p.start(ctx)
			}
		} else {
			if s.Node != nil {
				err = s.Stop()
			}
			if err == nil {
				err = s.Restart()
			}
		}
	default:
		return "", fmt.Errorf("testnet: unknown action %q", action)
	}
	if err != nil {
		return "", err
	}
	if err := tn.saveState(); err != nil {
		return "", err
	}
	past := map[string]string{"stop": "stopped", "kill": "killed", "restart": "restarted"}[action]
	msg := fmt.Sprintf("%s %s", name, past)
	if tn.processes && action == "restart" {
		msg += fmt.Sprintf(" (pid %d)", tn.procs[n-1].pid())
	}
	tn.printf("%s (control command)", msg)
	return msg, nil
}

// shutdown stops the control API, every homeserver and the hub, and
// records that the testnet no longer runs.
func (tn *testnetRun) shutdown() error {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.ctl != nil {
		tn.ctl.Close()
	}
	var errs []error
	for _, p := range tn.procs {
		errs = append(errs, p.stop(false))
	}
	if tn.net != nil {
		errs = append(errs, tn.net.Close())
		tn.state.Running = nil
		errs = append(errs, tn.saveState())
		tn.net = nil
	}
	if tn.logFile != nil {
		tn.logFile.Close()
	}
	return errors.Join(errs...)
}

// hsProcess is a homeserver running as a child process.
type hsProcess struct {
	name string
	srv  *testnet.Server
	exe  string
	args []string
	log  string
	out  io.Writer

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has exited
	stopping bool          // the exit was asked for
}

// homeserverGrace is how long a homeserver process may take to stop
// after SIGTERM before it is killed.
const homeserverGrace = 15 * time.Second

// start starts the process and waits until it answers /readyz.
func (p *hsProcess) start(ctx context.Context) error {
	lf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.exe, p.args...)
	cmd.Env = serveEnvFree(os.Environ())
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("testnet: start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.stopping = cmd, exited, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		lf.Close()
		p.mu.Lock()
		unexpected := !p.stopping
		p.mu.Unlock()
		if unexpected {
			fmt.Fprintf(p.out, "testnet: %s exited unexpectedly: %v (log %s)\n", p.name, err, p.log)
		}
		close(exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := hc.Get(p.srv.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("testnet: %s exited while starting; its log %s ends:\n%s", p.name, p.log, tail(p.log, 10))
		case <-ctx.Done():
			p.stop(true)
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop(true)
			return fmt.Errorf("testnet: %s not ready after 60s (log %s)", p.name, p.log)
		}
	}
}

// serveEnvFree drops the variables that would configure `serve` (its
// HOMESERVER_<FLAG> variables and HOMESERVER_CONFIG) from env: the
// testnet alone decides how its homeservers run.
func serveEnvFree(env []string) []string {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	bindServeFlags(fs, &serveConfig{})
	drop := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		drop["HOMESERVER_"+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))] = true
	})
	var out []string
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			out = append(out, kv)
		}
	}
	return out
}

// stop ends the process: SIGKILL if kill, else SIGTERM and, after
// homeserverGrace, SIGKILL. Stopping a stopped process does nothing.
func (p *hsProcess) stop(kill bool) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	if cmd == nil {
		p.mu.Unlock()
		return nil
	}
	p.stopping = true
	p.mu.Unlock()
	select {
	case <-exited:
	default:
		if kill {
			cmd.Process.Kill()
		} else {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-exited:
		case <-time.After(homeserverGrace):
			cmd.Process.Kill()
			<-exited
		}
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return nil
}

// pid is the process id, or 0 if the homeserver is not running.
func (p *hsProcess) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// controlAnswers reports whether a running testnet answers on its
// control address.
func controlAnswers(r *testnetRunning) bool {
	_, err := controlRequest(r, http.MethodGet, "/status")
	return err == nil
}

func controlRequest(r *testnetRunning, method, path string) (string, error) {
	req, err := http.NewRequest(method, "http://"+r.Control+path, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+r.Token)
	// Restarting a homeserver may take as long as its start.
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// testnetControl runs `homeserver testnet status|stop|kill|restart`.
func testnetControl(action string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("testnet "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), testnetUsage)
		fs.PrintDefaults()
	}
	dir := fs.String("dir", "./testnet-data", "directory of the running testnet")
	// Accept the homeserver number before or after the flags.
	var pos []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	pos = append(pos, fs.Args()...)
	want := 1
	if action == "status" {
		want = 0
	}
	if len(pos) != want {
		fmt.Fprintf(stderr, "testnet %s: want %d argument(s), got %q\n", action, want, pos)
		return errUsage
	}
	st, err := readTestnetState(*dir)
	if err != nil {
		return err
	}
	if st.Running == nil {
		return fmt.Errorf("testnet: no testnet running in %s", *dir)
	}
	var out string
	if action == "status" {
		out, err = controlRequest(st.Running, http.MethodGet, "/status")
	} else {
		if _, err := strconv.Atoi(pos[0]); err != nil {
			return fmt.Errorf("testnet %s: homeserver number %q: want 1..%d", action, pos[0], len(st.Servers))
		}
		out, err = controlRequest(st.Running, http.MethodPost, "/servers/"+pos[0]+"/"+action)
	}
	if err != nil {
		if !controlAnswers(st.Running) {
			return fmt.Errorf("testnet: the testnet in %s (pid %d) does not answer: %w", *dir, st.Running.PID, err)
		}
		return err
	}
	_, err = io.Copy(stdout, bytes.NewBufferString(out))
	return err
}
