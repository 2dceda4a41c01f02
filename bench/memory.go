package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mlshome/homeserver/client"
)

// MemoryOptions configure the memory benchmark.
type MemoryOptions struct {
	Events int // log size to reach (default 100,000)
	Groups int // 2-member groups the application messages go to (default 1,000)
	// Command runs a homeserver: the binary and any arguments before
	// "serve" is appended (e.g. the running homeserver executable).
	Command []string
	// Env is added to the child's environment.
	Env []string
	// Dir holds the child's data directory ("" for the system temp dir).
	Dir string
	// Senders is how many groups are loaded at once (default 32).
	Senders int
}

// MemoryResult is the memory benchmark's outcome.
type MemoryResult struct {
	Options MemoryOptions `json:"options"`
	// Events is the child's log size when the load ended.
	Events uint64 `json:"events"`
	// PeakRSS is the child's VmHWM (peak resident set) in bytes.
	PeakRSS int64 `json:"peak_rss_bytes"`
	// DiskBytes is the disk usage of the data directory (du: allocated
	// blocks) after a graceful stop; BytesPerEvent divides it by Events.
	DiskBytes     int64   `json:"disk_bytes"`
	BytesPerEvent float64 `json:"disk_bytes_per_event"`
	// ApparentBytes is the files' total length (du --apparent-size):
	// unlike DiskBytes it leaves out space preallocated for the WAL.
	ApparentBytes         int64   `json:"apparent_bytes"`
	ApparentBytesPerEvent float64 `json:"apparent_bytes_per_event"`
	// Load is the rate at which the child took the application messages
	// (informational: sealing runs in this process on the same cores).
	Load Rate `json:"load"`
}

var serveURL = regexp.MustCompile(`url=(http://[0-9.:]+)`)

// memoryDomain is the domain of the child homeserver.
const memoryDomain = "memory.bench"

// Memory runs `homeserver serve` as a child process with its default
// configuration (default rate limits included: the load stays within
// them and waits out a 429 if it does not), fills its log to o.Events
// events across o.Groups groups of two over HTTP (registrations,
// KeyPackages, tokens, group creations and Welcomes first, the rest
// application messages), then reads the child's peak RSS, stops it
// gracefully and measures its data directory.
func Memory(ctx context.Context, o MemoryOptions, progress func(string)) (*MemoryResult, error) {
	if len(o.Command) == 0 {
		return nil, errors.New("bench: MemoryOptions.Command is required")
	}
	if o.Events <= 0 {
		o.Events = 100000
	}
	if o.Groups <= 0 {
		o.Groups = 1000
	}
	if o.Senders <= 0 {
		o.Senders = 32
	}
	say := func(s string) {
		if progress != nil {
			progress("memory: " + s)
		}
	}
	dir, err := os.MkdirTemp(o.Dir, "bench-memory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "data")
	child, err := startServe(ctx, o, data)
	if err != nil {
		return nil, err
	}
	defer child.kill()
	conn, err := client.Dial(ctx, child.url, memoryDomain)
	if err != nil {
		return nil, err
	}

	groups := make([]*client.Group, o.Groups)
	var made atomic.Int64
	err = parallel(o.Senders, o.Groups, func(i int) error {
		g, err := memoryGroup(ctx, conn, i)
		if err != nil {
			return fmt.Errorf("group %d: %w", i, err)
		}
		groups[i] = g
		if n := made.Add(1); n%500 == 0 {
			say(fmt.Sprintf("%d/%d groups created", n, o.Groups))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	setup, err := logSize(ctx, child.url)
	if err != nil {
		return nil, err
	}
	messages := max(0, o.Events-int(setup))
	say(fmt.Sprintf("%d groups in %d events; sending %d messages", o.Groups, setup, messages))
	var sent atomic.Int64
	start := time.Now()
	err = parallel(o.Senders, o.Groups, func(i int) error {
		n := messages / o.Groups
		if i < messages%o.Groups {
			n++
		}
		pt := make([]byte, 200)
		for j := 0; j < n; j++ {
			m, err := groups[i].Seal(pt)
			if err != nil {
				return err
			}
			if err := sendPatiently(ctx, groups[i], m); err != nil {
				return err
			}
			if s := sent.Add(1); s%20000 == 0 {
				say(fmt.Sprintf("%d/%d messages sent", s, messages))
			}
		}
		return nil
	})
	took := time.Since(start)
	if err != nil {
		return nil, err
	}
	size, err := logSize(ctx, child.url)
	if err != nil {
		return nil, err
	}
	res := &MemoryResult{Options: o, Events: size, Load: rate(int(sent.Load()), took, nil)}
	if res.PeakRSS, err = peakRSS(child.cmd.Process.Pid); err != nil {
		return nil, err
	}
	if err := child.stop(); err != nil {
		return nil, err
	}
	if res.DiskBytes, res.ApparentBytes, err = diskUsage(data); err != nil {
		return nil, err
	}
	if size > 0 {
		res.BytesPerEvent = float64(res.DiskBytes) / float64(size)
		res.ApparentBytesPerEvent = float64(res.ApparentBytes) / float64(size)
	}
	return res, nil
}

// memoryGroup registers two users on conn and makes a group of them: the
// first creates it and adds the second by its published KeyPackage.
func memoryGroup(ctx context.Context, conn *client.Conn, i int) (*client.Group, error) {
	a, err := conn.Register(ctx, fmt.Sprintf("ma%d", i))
	if err != nil {
		return nil, err
	}
	b, err := conn.Register(ctx, fmt.Sprintf("mb%d", i))
	if err != nil {
		return nil, err
	}
	kps, err := b.MakeKeyPackages(0, true)
	if err != nil {
		return nil, err
	}
	if err := b.PublishKeyPackages(ctx, kps); err != nil {
		return nil, err
	}
	if err := a.GetTokens(ctx, 1); err != nil {
		return nil, err
	}
	g, err := a.CreateGroup(ctx)
	if err != nil {
		return nil, err
	}
	return g, g.AddKeyPackages(ctx, kps[0])
}

// sendPatiently sends m, waiting out rate limiting (429 with Retry-After).
func sendPatiently(ctx context.Context, g *client.Group, m *client.Sealed) error {
	for {
		err := g.SendSealed(ctx, m)
		var e *client.Error
		if !errors.As(err, &e) || e.Status != http.StatusTooManyRequests {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(max(e.RetryAfter, 100*time.Millisecond)):
		}
	}
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first
// error (the remaining work is then skipped).
func parallel(workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var failed atomic.Bool
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// serveChild is a running `homeserver serve` child process.
type serveChild struct {
	cmd    *exec.Cmd
	url    string
	done   chan struct{} // closed when the process exited
	err    error         // its exit status, once done
	mu     sync.Mutex
	stderr []string // its last lines of log
}

func startServe(ctx context.Context, o MemoryOptions, data string) (*serveChild, error) {
	args := append(append([]string{}, o.Command[1:]...), "serve", "--domain", memoryDomain, "--data", data, "--listen", "127.0.0.1:0")
	cmd := exec.Command(o.Command[0], args...)
	cmd.Env = append(os.Environ(), o.Env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &serveChild{cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			if m := serveURL.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
			c.mu.Lock()
			c.stderr = append(c.stderr, line)
			if len(c.stderr) > 20 {
				c.stderr = c.stderr[1:]
			}
			c.mu.Unlock()
		}
		c.err = cmd.Wait()
		close(c.done)
	}()
	select {
	case c.url = <-found:
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("homeserver serve exited (%v): %s", c.err, c.log())
	case <-time.After(time.Minute):
	case <-ctx.Done():
	}
	c.kill()
	return nil, fmt.Errorf("homeserver serve did not start: %s", c.log())
}

func (c *serveChild) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.stderr, "\n")
}

// stop sends SIGTERM and waits for a clean exit.
func (c *serveChild) stop() error {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		c.kill()
		return errors.New("homeserver serve did not stop within a minute of SIGTERM")
	}
	if c.err != nil {
		return fmt.Errorf("homeserver serve: %v: %s", c.err, c.log())
	}
	return nil
}

// kill ends the child if it still runs.
func (c *serveChild) kill() {
	select {
	case <-c.done:
	default:
		c.cmd.Process.Kill()
		<-c.done
	}
}

// logSize asks a homeserver's /readyz for its log size.
func logSize(ctx context.Context, base string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		LogSize uint64 `json:"log_size"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("readyz: %w", err)
	}
	return r.LogSize, nil
}

// peakRSS reads VmHWM, the peak resident set, of process pid in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS (Linux /proc only): %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// diskUsage sums the blocks allocated to the files under dir, like du,
// and their lengths, like du --apparent-size.
func diskUsage(dir string) (disk, apparent int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		apparent += fi.Size()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			disk += st.Blocks * 512
		} else {
			disk += fi.Size()
		}
		return nil
	})
	return disk, apparent, err
}
