package testnet

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mlshome/homeserver/client"
	"github.com/mlshome/homeserver/node"
)

// TestDemoScenario runs the demo on three homeservers with default rate
// limits, as `homeserver testnet --scenario demo` does, twice on the same
// testnet (fresh users each time).
func TestDemoScenario(t *testing.T) {
	net, err := Start(Config{Servers: 3, Dir: t.TempDir(), Node: func(i int, c *node.Config) {
		c.Federation.RetryMax = 2 * time.Second
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	for run := 1; run <= 2; run++ {
		var out bytes.Buffer
		res, err := Demo(context.Background(), net, &out)
		t.Logf("run %d:\n%s", run, out.String())
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		// 8 clients send 8 messages each, 7 after the removal; every
		// other member decrypts each.
		if res.Users != 5 || res.Clients != 8 || res.MessagesSent != 120 || res.Decrypted != 64*7+56*6 {
			t.Fatalf("run %d: %+v", run, res)
		}
		if !strings.Contains(out.String(), "demo: PASS — 3 homeservers, 5 users, 8 clients, 120 messages sent, 784 deliveries decrypted") {
			t.Fatalf("run %d: no summary line", run)
		}
	}
}

// TestDemoNeedsTwoHomeservers: one homeserver is no federation demo.
func TestDemoNeedsTwoHomeservers(t *testing.T) {
	net, err := Start(Config{Servers: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	var out bytes.Buffer
	res, err := Demo(context.Background(), net, &out)
	if err == nil || res.Passed() || !strings.Contains(out.String(), "demo: FAIL") {
		t.Fatalf("demo on one homeserver: %v\n%s", err, out.String())
	}
}

// TestDemoCheckCatchesWrongDeliveries: a message out of order, a
// decryption failure and a delivery nobody expected each fail the demo.
func TestDemoCheckCatchesWrongDeliveries(t *testing.T) {
	for name, tc := range map[string]struct {
		want []expectation
		got  []client.Incoming
		fail string
	}{
		"in order": {
			[]expectation{{kind: expectMessage, text: "a"}, {kind: expectMessage, text: "b"}},
			[]client.Incoming{{Plaintext: []byte("a")}, {Plaintext: []byte("b")}}, "",
		},
		"out of order": {
			[]expectation{{kind: expectMessage, text: "a"}, {kind: expectMessage, text: "b"}},
			[]client.Incoming{{Plaintext: []byte("b")}, {Plaintext: []byte("a")}}, `got message "b", want message "a"`,
		},
		"undecryptable": {
			[]expectation{{kind: expectMessage, text: "a"}},
			[]client.Incoming{{Seq: 7, Err: errors.New("bad MAC")}}, "could not process seq 7",
		},
		"unexpected": {
			nil, []client.Incoming{{Plaintext: []byte("x")}}, `unexpected message "x"`,
		},
		"commit instead of a message": {
			[]expectation{{kind: expectMessage, text: "a"}},
			[]client.Incoming{{Type: "CommitAccepted"}}, `got CommitAccepted, want message "a"`,
		},
	} {
		var out bytes.Buffer
		d := &demo{out: &out, res: &DemoResult{}}
		c := &demoClient{label: "bob/1", want: tc.want}
		for _, m := range tc.got {
			if !c.failed {
				d.check("round 1", c, m)
			}
		}
		switch {
		case tc.fail == "" && !d.res.Passed():
			t.Errorf("%s: failed: %v", name, d.res.Errors)
		case tc.fail != "" && (d.res.Passed() || !strings.Contains(d.res.Errors[0], tc.fail)):
			t.Errorf("%s: errors %q, want one mentioning %q", name, d.res.Errors, tc.fail)
		}
	}
}
