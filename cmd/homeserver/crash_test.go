package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/projections"
)

// The test binary doubles as the homeserver: with HOMESERVER_TEST_MAIN set
// it runs main's run() with the remaining arguments, so crash tests kill a
// real `homeserver serve` process.
func TestMain(m *testing.M) {
	if os.Getenv("HOMESERVER_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(m.Run())
}

var urlLine = regexp.MustCompile(`url=(http://[0-9.:]+)`)

// startServe runs `homeserver serve` in a child process and returns it with
// its base URL once it answers /readyz.
func startServe(t *testing.T, data string, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd, stderr := launchServe(t, "crash.test", data, extra...)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := urlLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case u := <-found:
		waitReady(t, u)
		return cmd, u
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("homeserver did not start")
	}
	return nil, ""
}

// launchServe starts this test binary as `homeserver serve` for domain
// on data, listening on a free loopback port, and returns it with its
// standard error.
func launchServe(t *testing.T, domain, data string, extra ...string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	args := append([]string{"serve", "--domain", domain, "--data", data, "--listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HOMESERVER_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stderr
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", base)
}

func registerUser(c *http.Client, base, name string) (bool, error) {
	pub, _, _ := ed25519.GenerateKey(nil)
	body, _ := json.Marshal(map[string]any{"user_id": name, "signature_key": pub})
	resp, err := c.Post(base+"/v1/users", "application/json", bytes.NewReader(body))
	if err != nil {
		return false, nil // killed mid-request: not acknowledged
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusCreated {
		return true, nil
	}
	if resp.StatusCode >= 500 {
		return false, nil
	}
	return false, fmt.Errorf("register %s: %d %s", name, resp.StatusCode, b)
}

// TestLOG_1_CrashLosesNoAcknowledgedEvent kills `homeserver serve` with
// SIGKILL at random moments while 32 goroutines register users, restarts
// it, and checks after every kill that every acknowledged registration is
// in the log and the directory, that the Merkle tree matches the signed
// checkpoint stored with the last batch, and that the projections equal a
// rebuild from the log.
func TestLOG_1_CrashLosesNoAcknowledgedEvent(t *testing.T) {
	rounds := 8
	if testing.Short() {
		rounds = 2
	}
	if v := os.Getenv("CRASH_ROUNDS"); v != "" {
		fmt.Sscan(v, &rounds)
	}
	data := t.TempDir()
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	var acked []string
	for round := 0; round < rounds; round++ {
		cmd, base := startServe(t, data)
		hc := &http.Client{Timeout: 5 * time.Second}
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("r%dg%di%d", round, g, i)
					ok, err := registerUser(hc, base, name)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						mu.Lock()
						acked = append(acked, name+"@crash.test")
						mu.Unlock()
					}
				}
			}(g)
		}
		time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		close(stop)
		wg.Wait()
		checkStore(t, data, acked)
	}
	if len(acked) < rounds*10 {
		t.Fatalf("only %d registrations acknowledged in %d rounds: the test did not load the server", len(acked), rounds)
	}
	t.Logf("%d rounds, %d acknowledged registrations, all present", rounds, len(acked))
}

// checkStore opens the killed homeserver's store and checks LOG-1's promises.
func checkStore(t *testing.T, data string, acked []string) {
	t.Helper()
	keys, err := identity.LoadOrCreateKeySet(node.KeysDir(data), "crash.test")
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Open(node.StoreDir(data), eventlog.Options{Origin: "crash.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := projections.DirectoryView{R: eventlog.NewReader(l.DB())}
	for _, u := range acked {
		if _, err := dir.User(u); err != nil {
			t.Fatalf("acknowledged user %s lost: %v", u, err)
		}
	}
	if l.Size() == 0 {
		return
	}
	ckpt, err := l.LatestCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	v, err := l.Verify(ckpt, keys.LogVerifierKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The last signed checkpoint may predate the last batches (it is
	// signed at most once a second, and again at start-up); every event
	// must still match its stored leaf hash, and the stored tree must equal
	// the one recomputed from the events.
	if !v.OK() || v.Checkpoint.Size > l.Size() || v.Events != l.Size() {
		t.Fatalf("after crash: verification %+v, log size %d", v, l.Size())
	}
	if th, err := l.TreeHead(l.Size()); err != nil || th != v.Root {
		t.Fatalf("after crash: stored tree head %x differs from the recomputed root %x (%v)", th, v.Root, err)
	}
	fresh, err := pebble.Open(filepath.Join(t.TempDir(), "rebuild"), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	set, _, _, err := node.ForAudit(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Rebuild(eventlog.NewReader(l.DB()), fresh, l.Size(), nil); err != nil {
		t.Fatal(err)
	}
	d, err := projections.Compare(l.DB(), fresh)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Equals {
		t.Fatalf("after crash: projections differ from a rebuild at %q", d.Key)
	}
}

// A stop signal that arrives as soon as serve reports its address, before
// any request, still means a graceful shutdown: the handler is installed
// before the homeserver starts answering. (It used to be installed after
// the address was logged, and a SIGTERM in between killed the process.)
func TestServeStopsGracefullyRightAfterStart(t *testing.T) {
	for i := range 5 {
		cmd, stderr := launchServe(t, "stop.test", t.TempDir())
		var log bytes.Buffer
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if urlLine.MatchString(sc.Text()) {
				cmd.Process.Signal(syscall.SIGTERM)
				break
			}
		}
		io.Copy(&log, stderr)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("run %d: serve stopped right after start: %v\n%s", i, err, log.String())
		}
		if !bytes.Contains(log.Bytes(), []byte("stopped")) {
			t.Fatalf("run %d: no graceful stop logged\n%s", i, log.String())
		}
	}
}
