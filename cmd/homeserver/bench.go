package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mlshome/homeserver/bench"
)

const benchUsage = `usage: homeserver bench [flags]

Measures this machine's homeserver against the machine's own limits, all in
one run on the same cores: every figure is printed next to the baseline it
is a ratio of. It starts what it measures itself (homeservers in-process, a
two-homeserver testnet, a child 'homeserver serve' for memory) and builds
every MLS message with real clients before timing.

parts (--only takes a comma-separated list; default all):
  limits      Ed25519 verifies/s, raw Pebble synced appends/s in batches of
              the event log's mean batch, NATS request/reply and JetStream
              publish rates
  eventlog    durable appends/s from concurrent appenders, mean batch
  delivery    application messages/s into 2-member groups over HTTP: the
              median of --delivery-rounds rounds, each against an Ed25519
              verify rate measured right before it
  fanout      recipient deliveries/s into one large group
  commits     self-update commits/s in a group, observer cost included
  federation  cross-homeserver messages/s and latency, at full and half load
  replay      events/s rebuilding the delivery run's projections, and
              re-validating its log (audit)
  memory      peak RSS and disk per event of a 'homeserver serve' child
A part runs what its figures are ratios of: limits and eventlog go
together, delivery and replay add the Ed25519 rate, federation and replay
add the delivery run.

flags:
`

// benchParts are the parts of `homeserver bench`, in the order they run.
var benchParts = []string{"limits", "eventlog", "delivery", "replay", "fanout", "commits", "federation", "memory"}

// benchFlags are the counts and durations of every figure.
type benchFlags struct {
	asJSON     bool
	only       string
	cpuprofile string
	dir        string

	verifyTime, natsTime time.Duration
	eventSize            int
	eventlogEvents       int
	eventlogAppenders    int
	rawEvents            int

	deliveryGroups, deliveryMessages, messageSize int
	deliveryRounds                                int
	deliveryVerifyTime                            time.Duration
	deliveryLibrary                               bool
	fanoutMembers, fanoutMessages                 int
	commitMembers, commits                        int
	fedGroups, fedMessages                        int
	memoryEvents, memoryGroups                    int
}

func bindBenchFlags(fs *flag.FlagSet) *benchFlags {
	f := &benchFlags{}
	fs.BoolVar(&f.asJSON, "json", false, "print the results as JSON on stdout instead of a table")
	fs.StringVar(&f.only, "only", "", "comma-separated parts to run (default all): "+strings.Join(benchParts, ","))
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "directory for a CPU profile of each timed part (<part>.pprof; memory's load runs in the child and is not profiled)")
	fs.StringVar(&f.dir, "dir", "", "directory for the benchmarks' data (default: the system temporary directory)")
	fs.DurationVar(&f.verifyTime, "verify-time", 2*time.Second, "limits: how long to measure Ed25519 verifies")
	fs.DurationVar(&f.natsTime, "nats-time", 2*time.Second, "limits: how long to measure each NATS rate")
	fs.IntVar(&f.eventSize, "event-size", 512, "limits, eventlog: event payload bytes")
	fs.IntVar(&f.rawEvents, "raw-events", 20000, "limits: raw Pebble appends")
	fs.IntVar(&f.eventlogEvents, "eventlog-events", 20000, "eventlog: appends")
	fs.IntVar(&f.eventlogAppenders, "eventlog-appenders", 64, "eventlog: concurrent appenders")
	fs.IntVar(&f.deliveryGroups, "delivery-groups", 64, "delivery: 2-member groups, one concurrent sender each")
	fs.IntVar(&f.deliveryMessages, "delivery-messages", 20000, "delivery: messages per round (replay replays this run's log)")
	fs.IntVar(&f.deliveryRounds, "delivery-rounds", 3, "delivery: timed rounds, each after its own Ed25519 verify rate; the median round is reported")
	fs.DurationVar(&f.deliveryVerifyTime, "delivery-verify-time", time.Second, "delivery: how long to measure each round's Ed25519 verify rate")
	fs.BoolVar(&f.deliveryLibrary, "delivery-library", false, "delivery: send through the Go client library (net/http, retries) instead of the lean load generator")
	fs.IntVar(&f.messageSize, "message-size", 200, "delivery, federation: plaintext bytes per message")
	fs.IntVar(&f.fanoutMembers, "fanout-members", 1000, "fanout: group size")
	fs.IntVar(&f.fanoutMessages, "fanout-messages", 100, "fanout: messages into the group")
	fs.IntVar(&f.commitMembers, "commit-members", 100, "commits: group size")
	fs.IntVar(&f.commits, "commits", 500, "commits: self-update commits sent")
	fs.IntVar(&f.fedGroups, "fed-groups", 16, "federation: groups, each with one member on the other homeserver")
	fs.IntVar(&f.fedMessages, "fed-messages", 2000, "federation: messages at full load (half as many at half load)")
	fs.IntVar(&f.memoryEvents, "memory-events", 100000, "memory: events in the child's log")
	fs.IntVar(&f.memoryGroups, "memory-groups", 1000, "memory: 2-member groups the messages go to")
	return f
}

// figure is one number of the report. Ratio, when Baseline names another
// figure, is Value divided by that figure's value.
type figure struct {
	Part     string  `json:"part"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Detail   string  `json:"detail,omitempty"`
	Baseline string  `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
}

// benchReport is the outcome of `homeserver bench`: the figures, and the
// benchmarks' own results with their options.
type benchReport struct {
	Machine struct {
		CPUs       int    `json:"cpus"`
		GOMAXPROCS int    `json:"gomaxprocs"`
		Go         string `json:"go"`
		OS         string `json:"os"`
	} `json:"machine"`
	Parts   []string `json:"parts"`
	Figures []figure `json:"figures"`
	Results struct {
		Ed25519Verify *bench.Rate             `json:"ed25519_verify,omitempty"`
		RawPebble     *bench.Rate             `json:"raw_pebble,omitempty"`
		RawBatch      int                     `json:"raw_pebble_batch,omitempty"`
		NATS          *bench.NATSResult       `json:"nats,omitempty"`
		EventLog      *bench.EventLogResult   `json:"eventlog,omitempty"`
		Delivery      *bench.DeliveryResult   `json:"delivery,omitempty"`
		Replay        *bench.ReplayResult     `json:"replay,omitempty"`
		FanOut        *bench.FanOutResult     `json:"fanout,omitempty"`
		Commits       *bench.CommitsResult    `json:"commits,omitempty"`
		Federation    *bench.FederationResult `json:"federation,omitempty"`
		Memory        *bench.MemoryResult     `json:"memory,omitempty"`
	} `json:"results"`
	Took time.Duration `json:"took_ns"`
}

func (r *benchReport) add(f figure) { r.Figures = append(r.Figures, f) }

// value returns the value of the figure named name, or 0.
func (r *benchReport) value(name string) float64 {
	for _, f := range r.Figures {
		if f.Name == name {
			return f.Value
		}
	}
	return 0
}

// ratio adds f as a ratio to the figure named baseline, if that was
// measured.
func (r *benchReport) ratio(f figure, baseline string) {
	if b := r.value(baseline); b > 0 {
		f.Baseline, f.Ratio = baseline, f.Value/b
	}
	r.add(f)
}

// Names of the figures other figures are ratios of.
const (
	figVerify    = "Ed25519 verifies"
	figRawPebble = "raw Pebble synced appends"
	figEventLog  = "event log durable appends"
	figDelivery  = "delivery: messages"
	// figRoundVerify is the Ed25519 verify rate measured right before the
	// delivery round reported.
	figRoundVerify = "delivery: Ed25519 verifies"
)

// roundRatios lists the delivery rounds' ratios, in the order they ran.
func roundRatios(rounds []bench.DeliveryRound) string {
	var s []string
	for _, r := range rounds {
		s = append(s, fmt.Sprintf("%.3f", r.Ratio))
	}
	return fmt.Sprintf("%d rounds: %s", len(rounds), strings.Join(s, ", "))
}

// selectParts resolves --only into the parts to run, adding what their
// ratios need.
func selectParts(only string) (map[string]bool, error) {
	sel := map[string]bool{}
	if strings.TrimSpace(only) == "" {
		for _, p := range benchParts {
			sel[p] = true
		}
		return sel, nil
	}
	for _, p := range strings.Split(only, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(benchParts, p) {
			return nil, fmt.Errorf("--only: unknown part %q (parts: %s)", p, strings.Join(benchParts, ","))
		}
		sel[p] = true
	}
	if sel["limits"] || sel["eventlog"] {
		sel["limits"], sel["eventlog"] = true, true
	}
	if sel["replay"] || sel["federation"] {
		sel["delivery"] = true
	}
	return sel, nil
}

// benchCmd runs `homeserver bench`.
func benchCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	f := bindBenchFlags(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	sel, err := selectParts(f.only)
	if err != nil {
		return err
	}
	if f.cpuprofile != "" {
		if err := os.MkdirAll(f.cpuprofile, 0o755); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := runBench(ctx, f, sel, func(s string) { fmt.Fprintf(stderr, "bench: %s\n", s) })
	if err != nil {
		return err
	}
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printBench(stdout, rep)
	return nil
}

// runBench runs the selected parts in order and collects their figures.
func runBench(ctx context.Context, f *benchFlags, sel map[string]bool, say func(string)) (*benchReport, error) {
	rep := &benchReport{}
	rep.Machine.CPUs, rep.Machine.GOMAXPROCS = runtime.NumCPU(), runtime.GOMAXPROCS(0)
	rep.Machine.Go, rep.Machine.OS = runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH
	for _, p := range benchParts {
		if sel[p] {
			rep.Parts = append(rep.Parts, p)
		}
	}
	say("parts: " + strings.Join(rep.Parts, ", "))
	began := time.Now()
	prof := func(part string) string {
		if f.cpuprofile == "" {
			return ""
		}
		return filepath.Join(f.cpuprofile, part+".pprof")
	}
	// profiled runs fn under a CPU profile of the part.
	profiled := func(part string, fn func() error) error {
		stop, err := bench.Profile(prof(part))
		if err != nil {
			return err
		}
		defer stop()
		return fn()
	}
	cores := fmt.Sprintf("%d goroutines", runtime.GOMAXPROCS(0))

	if sel["limits"] || sel["delivery"] || sel["replay"] {
		say(fmt.Sprintf("limits: Ed25519 verifies for %s", f.verifyTime))
		var v bench.Rate
		profiled("verify", func() error { v = bench.Ed25519Verify(f.verifyTime); return nil })
		rep.Results.Ed25519Verify = &v
		rep.add(figure{Part: "limits", Name: figVerify, Value: v.PerSec, Unit: "/s", Detail: cores})
	}
	if sel["eventlog"] {
		say(fmt.Sprintf("eventlog: %d appends of %d B from %d appenders", f.eventlogEvents, f.eventSize, f.eventlogAppenders))
		dir, err := os.MkdirTemp(f.dir, "bench-eventlog-")
		if err != nil {
			return nil, err
		}
		var r *bench.EventLogResult
		err = profiled("eventlog", func() (err error) {
			r, err = bench.EventLog(ctx, dir, f.eventlogAppenders, f.eventlogEvents, f.eventSize)
			return err
		})
		os.RemoveAll(dir)
		if err != nil {
			return nil, fmt.Errorf("eventlog: %w", err)
		}
		rep.Results.EventLog = r
		batch := max(1, int(r.MeanBatch+0.5))
		say(fmt.Sprintf("limits: %d raw Pebble appends of %d B in synced batches of %d", f.rawEvents, f.eventSize, batch))
		if dir, err = os.MkdirTemp(f.dir, "bench-pebble-"); err != nil {
			return nil, err
		}
		var raw bench.Rate
		err = profiled("rawpebble", func() (err error) {
			raw, err = bench.RawPebble(dir, f.rawEvents, batch, f.eventSize)
			return err
		})
		os.RemoveAll(dir)
		if err != nil {
			return nil, fmt.Errorf("raw pebble: %w", err)
		}
		rep.Results.RawPebble, rep.Results.RawBatch = &raw, batch
		rep.add(figure{Part: "limits", Name: figRawPebble, Value: raw.PerSec, Unit: "/s", Detail: fmt.Sprintf("%d B, batches of %d", f.eventSize, batch)})
	}
	if sel["limits"] {
		say(fmt.Sprintf("limits: NATS request/reply and JetStream publish, %s each", f.natsTime))
		var r *bench.NATSResult
		err := profiled("nats", func() (err error) {
			r, err = bench.NATS(ctx, f.dir, f.natsTime)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		rep.Results.NATS = r
		rep.add(figure{Part: "limits", Name: "NATS request/reply round trips", Value: r.RequestReply.PerSec, Unit: "/s", Detail: "64 requesters"})
		rep.add(figure{Part: "limits", Name: "JetStream acked publishes", Value: r.JetStreamPublish.PerSec, Unit: "/s", Detail: "64 in flight, file storage"})
	}
	if r := rep.Results.EventLog; r != nil {
		rep.ratio(figure{Part: "eventlog", Name: figEventLog, Value: r.Rate.PerSec, Unit: "/s", Detail: fmt.Sprintf("%d appenders, %d B", r.Appenders, r.Size)}, figRawPebble)
		rep.add(figure{Part: "eventlog", Name: "event log mean batch", Value: r.MeanBatch, Unit: "events/fsync"})
	}

	if sel["delivery"] {
		h, err := bench.StartHomeserver(ctx, f.dir, "delivery.bench")
		if err != nil {
			return nil, err
		}
		say(fmt.Sprintf("delivery: %d groups, %d rounds of %d messages of %d B", f.deliveryGroups, f.deliveryRounds, f.deliveryMessages, f.messageSize))
		r, err := bench.Delivery(ctx, h, bench.DeliveryOptions{Groups: f.deliveryGroups, Messages: f.deliveryMessages, Size: f.messageSize, Rounds: f.deliveryRounds, VerifyTime: f.deliveryVerifyTime, Library: f.deliveryLibrary, CPUProfile: prof("delivery")}, say)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("delivery: %w", err)
		}
		rep.Results.Delivery = r
		rep.add(figure{Part: "delivery", Name: figRoundVerify, Value: r.Verify.PerSec, Unit: "/s", Detail: "measured right before the median round"})
		rep.add(figure{Part: "delivery", Name: figDelivery, Value: r.Rate.PerSec, Unit: "/s", Baseline: figRoundVerify, Ratio: r.Ratio,
			Detail: fmt.Sprintf("%d groups of 2, HTTP, %s; median of %s", r.Options.Groups, map[bool]string{false: "lean load generator", true: "client library"}[r.Options.Library], roundRatios(r.Rounds))})
		rep.add(figure{Part: "delivery", Name: "delivery: latency p50", Value: ms(r.Rate.P50), Unit: "ms", Detail: "send → durable"})
		rep.add(figure{Part: "delivery", Name: "delivery: latency p99", Value: ms(r.Rate.P99), Unit: "ms"})
		rep.add(figure{Part: "delivery", Name: "delivery: WAL fsync mean", Value: ms(r.FsyncMean), Unit: "ms", Detail: fmt.Sprintf("%.1f messages per fsync", r.PerFsync)})
		if sel["replay"] {
			say("replay: rebuilding the delivery run's projections")
			rr, err := bench.Replay(ctx, h, bench.ReplayOptions{TempDir: f.dir, RebuildProfile: prof("rebuild"), AuditProfile: prof("audit")}, say)
			if err != nil {
				return nil, fmt.Errorf("replay: %w", err)
			}
			rep.Results.Replay = rr
			rep.add(figure{Part: "replay", Name: "replay: rebuild, no validation", Value: rr.Rebuild.PerSec, Unit: "events/s", Detail: number(float64(rr.Events)) + " events"})
			audited := figure{Part: "replay", Name: "replay: audit, full re-validation", Value: rr.Audit.PerSec, Unit: "events/s", Detail: "audit.Run"}
			if !rr.AuditOK {
				audited.Detail += fmt.Sprintf(", NOT OK: %d rejected", rr.Rejected)
			}
			rep.ratio(audited, figVerify)
		} else if err := h.Close(); err != nil {
			return nil, err
		}
	}

	if sel["fanout"] {
		h, err := bench.StartHomeserver(ctx, f.dir, "fanout.bench")
		if err != nil {
			return nil, err
		}
		say(fmt.Sprintf("fanout: %d members, %d messages", f.fanoutMembers, f.fanoutMessages))
		r, err := bench.FanOut(ctx, h, bench.FanOutOptions{Members: f.fanoutMembers, Messages: f.fanoutMessages, CPUProfile: prof("fanout")}, say)
		h.Close()
		if err != nil {
			return nil, fmt.Errorf("fanout: %w", err)
		}
		rep.Results.FanOut = r
		rep.add(figure{Part: "fanout", Name: "fan-out: recipient deliveries", Value: r.Deliveries.PerSec, Unit: "/s", Detail: fmt.Sprintf("%d-member group", r.Options.Members)})
		rep.add(figure{Part: "fanout", Name: "fan-out: messages", Value: r.Messages.PerSec, Unit: "/s", Detail: "one sender"})
	}

	if sel["commits"] {
		h, err := bench.StartHomeserver(ctx, f.dir, "commits.bench")
		if err != nil {
			return nil, err
		}
		say(fmt.Sprintf("commits: %d self-updates in a %d-member group", f.commits, f.commitMembers))
		r, err := bench.Commits(ctx, h, bench.CommitsOptions{Members: f.commitMembers, Commits: f.commits, CPUProfile: prof("commits")}, say)
		h.Close()
		if err != nil {
			return nil, fmt.Errorf("commits: %w", err)
		}
		rep.Results.Commits = r
		rep.add(figure{Part: "commits", Name: "commits", Value: r.Rate.PerSec, Unit: "/s", Detail: fmt.Sprintf("%d-member group, one committer", r.Options.Members)})
		rep.add(figure{Part: "commits", Name: "commits: latency p50", Value: ms(r.Rate.P50), Unit: "ms"})
		rep.add(figure{Part: "commits", Name: "commits: latency p99", Value: ms(r.Rate.P99), Unit: "ms"})
	}

	if sel["federation"] {
		say(fmt.Sprintf("federation: 2 homeservers, %d groups, %d messages", f.fedGroups, f.fedMessages))
		r, err := bench.Federation(ctx, bench.FederationOptions{Groups: f.fedGroups, Messages: f.fedMessages, Size: f.messageSize, Dir: f.dir, CPUProfile: prof("federation")}, say)
		if err != nil {
			return nil, fmt.Errorf("federation: %w", err)
		}
		rep.Results.Federation = r
		rep.ratio(figure{Part: "federation", Name: "federation: messages, full load", Value: r.Full.PerSec, Unit: "/s", Detail: fmt.Sprintf("%d groups", r.Options.Groups)}, figDelivery)
		rep.add(figure{Part: "federation", Name: "federation: latency p50, full load", Value: ms(r.Full.P50), Unit: "ms", Detail: "accepted → remote queue (QueueView)"})
		rep.add(figure{Part: "federation", Name: "federation: latency p99, full load", Value: ms(r.Full.P99), Unit: "ms"})
		rep.add(figure{Part: "federation", Name: "federation: messages, half load", Value: r.Half.PerSec, Unit: "/s", Detail: fmt.Sprintf("offered %.0f/s", r.HalfOffered)})
		rep.add(figure{Part: "federation", Name: "federation: latency p50, half load", Value: ms(r.Half.P50), Unit: "ms"})
		rep.add(figure{Part: "federation", Name: "federation: latency p99, half load", Value: ms(r.Half.P99), Unit: "ms"})
	}

	if sel["memory"] {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		say(fmt.Sprintf("memory: a homeserver serve child, %d events over %d groups", f.memoryEvents, f.memoryGroups))
		r, err := bench.Memory(ctx, bench.MemoryOptions{
			Events: f.memoryEvents, Groups: f.memoryGroups, Dir: f.dir,
			Command: []string{exe},
			// The test binary doubles as the homeserver with this set
			// (see TestMain); the homeserver itself ignores it.
			Env: []string{"HOMESERVER_TEST_MAIN=1"},
		}, say)
		if err != nil {
			return nil, fmt.Errorf("memory: %w", err)
		}
		rep.Results.Memory = r
		rep.add(figure{Part: "memory", Name: "memory: peak RSS", Value: float64(r.PeakRSS) / (1 << 20), Unit: "MiB", Detail: fmt.Sprintf("VmHWM after %d events, %d groups", r.Events, r.Options.Groups)})
		rep.add(figure{Part: "memory", Name: "memory: disk per event", Value: r.BytesPerEvent, Unit: "B", Detail: fmt.Sprintf("du %.1f MiB / %d events", float64(r.DiskBytes)/(1<<20), r.Events)})
		rep.add(figure{Part: "memory", Name: "memory: file bytes per event", Value: r.ApparentBytesPerEvent, Unit: "B", Detail: "apparent size: no preallocated WAL"})
		rep.add(figure{Part: "memory", Name: "memory: load into the child", Value: r.Load.PerSec, Unit: "msgs/s", Detail: "informational"})
	}
	rep.Took = time.Since(began)
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// printBench prints the report as a table, one section per part, each
// ratio next to the figure it divides by.
func printBench(w io.Writer, r *benchReport) {
	m := r.Machine
	fmt.Fprintf(w, "homeserver bench: %d CPUs (GOMAXPROCS %d), %s, %s, took %s\n", m.CPUs, m.GOMAXPROCS, m.Go, m.OS, r.Took.Round(time.Second))
	part := ""
	for _, f := range r.Figures {
		if f.Part != part {
			part = f.Part
			fmt.Fprintf(w, "\n%s\n", strings.ToUpper(part))
		}
		ratio := ""
		if f.Baseline != "" {
			ratio = fmt.Sprintf("%.3g × %s", f.Ratio, f.Baseline)
		}
		line := fmt.Sprintf("  %-38s %12s %-12s %-36s %s", f.Name, number(f.Value), f.Unit, ratio, f.Detail)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

// number formats v with thousands separators, or with decimals when small.
func number(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.2f", v)
	}
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
