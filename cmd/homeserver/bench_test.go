package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyBench are counts that make every part of `homeserver bench` finish
// in seconds.
var tinyBench = []string{
	"--verify-time", "100ms", "--nats-time", "100ms",
	"--eventlog-events", "300", "--raw-events", "300", "--event-size", "256",
	"--delivery-groups", "4", "--delivery-messages", "200",
	"--delivery-rounds", "2", "--delivery-verify-time", "100ms",
	"--fanout-members", "20", "--fanout-messages", "5",
	"--commit-members", "10", "--commits", "10",
	"--fed-groups", "2", "--fed-messages", "40",
	"--memory-events", "600", "--memory-groups", "10",
}

// `homeserver bench --json` runs every part and reports every figure,
// each positive, each ratio with its baseline; --cpuprofile writes a
// profile per timed part. (Tests never assert speed.)
func TestBenchReportsEveryFigure(t *testing.T) {
	dir := t.TempDir()
	profiles := filepath.Join(dir, "profiles")
	var stdout, stderr bytes.Buffer
	args := append([]string{"bench", "--json", "--dir", dir, "--cpuprofile", profiles}, tinyBench...)
	if code := run(args, &stdout, &stderr, os.Getenv); code != 0 {
		t.Fatalf("bench exited %d: %s", code, stderr.String())
	}
	var rep benchReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, stdout.String())
	}
	if len(rep.Parts) != len(benchParts) {
		t.Fatalf("parts %v, want all of %v", rep.Parts, benchParts)
	}
	got := map[string]figure{}
	for _, f := range rep.Figures {
		got[f.Name] = f
		if !(f.Value > 0) {
			t.Errorf("%s = %v %s, want > 0", f.Name, f.Value, f.Unit)
		}
		if f.Baseline != "" && !(f.Ratio > 0) {
			t.Errorf("%s: ratio to %s = %v, want > 0", f.Name, f.Baseline, f.Ratio)
		}
	}
	want := map[string]string{ // figure → the baseline it must be a ratio of
		figVerify:                            "",
		figRawPebble:                         "",
		"NATS request/reply round trips":     "",
		"JetStream acked publishes":          "",
		figEventLog:                          figRawPebble,
		"event log mean batch":               "",
		figRoundVerify:                       "",
		figDelivery:                          figRoundVerify,
		"delivery: latency p50":              "",
		"delivery: latency p99":              "",
		"delivery: WAL fsync mean":           "",
		"fan-out: recipient deliveries":      "",
		"fan-out: messages":                  "",
		"commits":                            "",
		"commits: latency p50":               "",
		"commits: latency p99":               "",
		"federation: messages, full load":    figDelivery,
		"federation: latency p50, full load": "",
		"federation: latency p99, full load": "",
		"federation: messages, half load":    "",
		"federation: latency p50, half load": "",
		"federation: latency p99, half load": "",
		"replay: rebuild, no validation":     "",
		"replay: audit, full re-validation":  figVerify,
		"memory: peak RSS":                   "",
		"memory: disk per event":             "",
		"memory: load into the child":        "",
	}
	for name, base := range want {
		f, ok := got[name]
		if !ok {
			t.Errorf("figure %q missing", name)
			continue
		}
		if f.Baseline != base {
			t.Errorf("%s: baseline %q, want %q", name, f.Baseline, base)
		}
	}
	if r := rep.Results.Delivery; r == nil || len(r.Rounds) != 2 || r.Rate.Count != 200 {
		t.Errorf("delivery: %+v, want 2 rounds of 200 messages", r)
	}
	if r := rep.Results.Replay; r == nil || !r.AuditOK {
		t.Errorf("the audit of the delivery run's log failed: %+v", r)
	}
	if r := rep.Results.Memory; r == nil || r.Events < 600 {
		t.Errorf("memory run: %+v, want at least 600 events", r)
	}
	for _, p := range []string{"verify", "eventlog", "rawpebble", "nats", "delivery", "rebuild", "audit", "fanout", "commits", "federation"} {
		if fi, err := os.Stat(filepath.Join(profiles, p+".pprof")); err != nil || fi.Size() == 0 {
			t.Errorf("profile of %s: %v", p, err)
		}
	}
	if !strings.Contains(stderr.String(), "bench: ") {
		t.Errorf("no progress on stderr")
	}
}

// --only runs the named parts and what their ratios need, and the table
// prints each ratio next to its baseline.
func TestBenchOnlyTable(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := append([]string{"bench", "--only", "commits,delivery", "--dir", t.TempDir()}, tinyBench...)
	if code := run(args, &stdout, &stderr, os.Getenv); code != 0 {
		t.Fatalf("bench exited %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, s := range []string{"DELIVERY", "COMMITS", figVerify, "× " + figRoundVerify, "median of 2 rounds: "} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	for _, s := range []string{"FANOUT", "FEDERATION", "MEMORY", "EVENTLOG"} {
		if strings.Contains(out, s) {
			t.Errorf("--only commits,delivery ran %s:\n%s", s, out)
		}
	}
	var buf bytes.Buffer
	if code := run([]string{"bench", "--only", "nonsense"}, &buf, &buf, os.Getenv); code == 0 {
		t.Errorf("--only nonsense accepted")
	}
}
