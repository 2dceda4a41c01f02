package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mlshome/homeserver/audit"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/validation"
)

// auditedServer runs `homeserver serve`, registers users and clients
// through the HTTP API, stops it with SIGTERM and returns its data dir.
// While it runs, it checks that audit refuses the locked store.
func auditedServer(t *testing.T, users int) string {
	t.Helper()
	data := t.TempDir()
	cmd, base := startServe(t, data)
	defer cmd.Process.Kill()
	runWorkload(t, base, "user", users)
	if _, errOut, code := runHomeserver(t, "audit", "--data", data); code != 1 || !strings.Contains(errOut, "locked") || !strings.Contains(errOut, "copy") {
		t.Fatalf("audit of a running homeserver: exit %d %s", code, errOut)
	}
	stopServe(t, cmd)
	return data
}

// runAuditJSON runs `homeserver audit --json` and decodes the report.
func runAuditJSON(t *testing.T, args ...string) (*audit.Report, string, int) {
	t.Helper()
	out, errOut, code := runHomeserver(t, append([]string{"audit", "--json"}, args...)...)
	var r audit.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("audit %v: exit %d, no JSON report (%v)\n%s%s", args, code, err, out, errOut)
	}
	return &r, errOut, code
}

// namedSeqs returns every sequence number a report names.
func namedSeqs(r *audit.Report) map[uint64]bool {
	s := map[uint64]bool{}
	for _, x := range r.Merkle.BadEvents {
		s[x] = true
	}
	for _, x := range r.Merkle.Missing {
		s[x] = true
	}
	for _, f := range r.Validation.Rejected {
		s[f.Seq] = true
	}
	return s
}

func evKey(seq uint64) []byte { return binary.BigEndian.AppendUint64([]byte("log/ev/"), seq) }

// LOG-3, LOG-4: in a copy of a log written through the HTTP API, one byte
// of one stored event is flipped; `homeserver audit` exits 1 and names
// exactly that event, while the untouched original audits clean.
func TestLOG_4_AuditNamesTamperedEvent(t *testing.T) {
	data := auditedServer(t, 8) // 24 events
	before := listFiles(t, data)

	r, errOut, code := runAuditJSON(t, "--data", data)
	if code != 0 || !r.OK || r.LogSize != 24 || r.Validation.Replayed != 24 || len(namedSeqs(r)) != 0 {
		t.Fatalf("original: exit %d ok=%v %+v\n%s", code, r.OK, r, errOut)
	}
	if !strings.Contains(errOut, "audit [") {
		t.Errorf("no progress bar on stderr: %q", errOut)
	}

	tampered := t.TempDir()
	copyDir(t, data, tampered)
	const seq = 14 // the second client of the fifth user
	db, err := pebble.Open(node.StoreDir(tampered), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	raw, closer, err := db.Get(evKey(seq))
	if err != nil {
		t.Fatal(err)
	}
	raw = append([]byte(nil), raw...)
	closer.Close()
	if ev, err := eventlog.DecodeEvent(raw); err != nil || ev.Type != events.TypeClientRegistered {
		t.Fatalf("event %d: %v %v", seq, ev, err)
	}
	raw[len(raw)/2] ^= 0x01
	if err := db.Set(evKey(seq), raw, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()

	r, errOut, code = runAuditJSON(t, "--data", tampered)
	named := namedSeqs(r)
	if code != 1 || r.OK || len(named) != 1 || !named[seq] {
		t.Fatalf("tampered: exit %d, named %v, want exactly {%d}\n%+v\n%s", code, named, seq, r, errOut)
	}
	if fmt.Sprint(r.Merkle.BadEvents) != fmt.Sprint([]uint64{seq}) || r.Merkle.RootMatches {
		t.Fatalf("tampered: merkle %+v", r.Merkle)
	}
	out, _, code := runHomeserver(t, "audit", "--data", tampered)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("event %d: BAD", seq)) || !strings.Contains(out, "FAIL") {
		t.Fatalf("tampered, text report: exit %d\n%s", code, out)
	}
	t.Logf("audit of the tampered copy:\n%s", out)

	// The original is still clean, and auditing created or changed no file.
	if _, _, code := runHomeserver(t, "audit", "--data", data); code != 0 {
		t.Fatalf("original after the audits: exit %d", code)
	}
	if after := listFiles(t, data); after != before {
		t.Fatalf("audit changed the data dir:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// listFiles describes every file under dir by name and size.
func listFiles(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d\n", p, info.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// acceptAll is a compromised writer: it appends whatever it is handed.
type acceptAll struct{}

func (acceptAll) Decide(_ eventlog.Reader, _ int64, cmd any) (eventlog.Decision, error) {
	return cmd.(eventlog.Decision), nil
}
func (acceptAll) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error {
	return node.PublicProjections("").Apply(rw, ev)
}

// LOG-4: a second UserRegistered for an existing user, appended with its
// Merkle hashes and a signed checkpoint by a writer that skips validation,
// is reported by `homeserver audit` with its sequence number and the code
// user_exists; the Merkle checks hold.
func TestLOG_4_AuditRevalidationUserExists(t *testing.T) {
	data := auditedServer(t, 3) // 9 events
	keys, err := audit.LoadKeySet(node.KeysDir(data))
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Open(node.StoreDir(data), eventlog.Options{Origin: keys.Domain(), Signer: keys.LogSigner(), Handler: acceptAll{}})
	if err != nil {
		t.Fatal(err)
	}
	dup := eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeUserRegistered, events.UserRegistered{UserID: "user1@" + keys.Domain()})}}
	out, err := l.Append(context.Background(), eventlog.Command{Body: dup})
	if err != nil || out.FirstSeq != 10 {
		t.Fatalf("append: %+v %v", out, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	r, errOut, code := runAuditJSON(t, "--data", data)
	got := r.Validation.Rejected
	if code != 1 || !r.Merkle.OK() || r.Merkle.CheckpointSize != 10 || len(got) != 1 ||
		got[0].Seq != 10 || got[0].Code != validation.CodeUserExists {
		t.Fatalf("exit %d, merkle ok %v, rejected %+v\n%s", code, r.Merkle.OK(), got, errOut)
	}
	text, _, _ := runHomeserver(t, "audit", "--data", data)
	if !strings.Contains(text, "event 10 (UserRegistered): REJECTED user_exists") {
		t.Fatalf("text report:\n%s", text)
	}
}

// An auditor with only the store and the public keys: without keys and
// without --key, audit refuses (and creates no keys); with --key or the
// public keys document it audits, saying which checks were partial.
func TestAuditWithoutPrivateKeys(t *testing.T) {
	data := auditedServer(t, 2)
	keys, err := audit.LoadKeySet(node.KeysDir(data))
	if err != nil {
		t.Fatal(err)
	}
	storeOnly := t.TempDir()
	copyDir(t, node.StoreDir(data), node.StoreDir(storeOnly))

	_, errOut, code := runHomeserver(t, "audit", "--data", storeOnly)
	if code != 1 || !strings.Contains(errOut, "--key") {
		t.Fatalf("no keys: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(node.KeysDir(storeOnly)); !os.IsNotExist(err) {
		t.Fatal("audit created a keys directory")
	}

	r, errOut, code := runAuditJSON(t, "--data", storeOnly, "--key", keys.LogVerifierKey())
	if code != 0 || !r.OK || len(r.Validation.Partial) != 3 {
		t.Fatalf("--key only: exit %d %+v\n%s", code, r, errOut)
	}
	pk := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(pk, keys.PublicKeys().Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, errOut, code = runAuditJSON(t, "--data", storeOnly, "--public-keys", pk)
	if code != 0 || !r.OK || len(r.Validation.Partial) != 2 {
		t.Fatalf("--public-keys: exit %d %+v\n%s", code, r, errOut)
	}
	other, _ := identity.GenerateKeySet(keys.Domain(), nil)
	r, _, code = runAuditJSON(t, "--data", storeOnly, "--key", other.LogVerifierKey())
	if code != 1 || r.Merkle.CheckpointError == "" {
		t.Fatalf("wrong key: exit %d %+v", code, r.Merkle)
	}
}

// LOG-3: `audit export` writes events with inclusion proofs that `audit
// verify` accepts offline with only the public key; one byte changed in an
// event, or in a proof, makes it exit 1 naming that line.
func TestLOG_3_AuditExportVerify(t *testing.T) {
	data := auditedServer(t, 4) // 12 events
	keys, err := audit.LoadKeySet(node.KeysDir(data))
	if err != nil {
		t.Fatal(err)
	}
	key := keys.LogVerifierKey()
	file := filepath.Join(t.TempDir(), "export.ndjson")
	if _, errOut, code := runHomeserver(t, "audit", "export", "--data", data, "--from", "3", "--to", "9", "--out", file); code != 0 {
		t.Fatalf("export: exit %d %s", code, errOut)
	}
	if out, errOut, code := runHomeserver(t, "audit", "verify", file, "--key", key); code != 0 || !strings.Contains(out, "OK: events 3..9") {
		t.Fatalf("verify fresh export: exit %d %s%s", code, out, errOut)
	}
	fresh, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(fresh), "\n")
	for _, field := range []string{`"event":"`, `"proof":["`} {
		bad := append([]string(nil), lines...)
		i := strings.Index(bad[4], field) + len(field) + 7
		c := byte('A')
		if bad[4][i] == 'A' {
			c = 'B'
		}
		bad[4] = bad[4][:i] + string(c) + bad[4][i+1:]
		badFile := filepath.Join(t.TempDir(), "bad.ndjson")
		os.WriteFile(badFile, []byte(strings.Join(bad, "\n")), 0o644)
		_, errOut, code := runHomeserver(t, "audit", "verify", badFile, "--key", key)
		if code != 1 || !strings.Contains(errOut, "line 5:") || !strings.Contains(errOut, "event 6") {
			t.Fatalf("one byte changed in %s: exit %d %s", field, code, errOut)
		}
	}

	if _, errOut, code := runHomeserver(t, "audit", "export", "--data", data, "--to", "13", "--out", file); code != 1 || !strings.Contains(errOut, "holds only 12") {
		t.Fatalf("export beyond the log: exit %d %s", code, errOut)
	}

	// A log that grew after its last signed checkpoint (as after a crash):
	// an export beyond the checkpoint is refused with advice, or signed on
	// demand with --size after checking the new tree extends the signed one.
	l, err := eventlog.Open(node.StoreDir(data), eventlog.Options{Origin: keys.Domain(), Handler: acceptAll{}})
	if err != nil {
		t.Fatal(err)
	}
	late := eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeUserRegistered, events.UserRegistered{UserID: "late@" + keys.Domain()})}}
	if _, err := l.Append(context.Background(), eventlog.Command{Body: late}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, errOut, code := runHomeserver(t, "audit", "export", "--data", data, "--to", "13", "--out", file); code != 1 || !strings.Contains(errOut, "beyond the signed checkpoint of size 12") || !strings.Contains(errOut, "--size 13") {
		t.Fatalf("export beyond the checkpoint: exit %d %s", code, errOut)
	}
	if _, errOut, code := runHomeserver(t, "audit", "export", "--data", data, "--from", "11", "--to", "13", "--size", "13", "--out", file); code != 0 {
		t.Fatalf("export --size 13: exit %d %s", code, errOut)
	}
	if out, errOut, code := runHomeserver(t, "audit", "verify", file, "--key", key); code != 0 || !strings.Contains(out, "events 11..13") || !strings.Contains(out, "signed at size 13") {
		t.Fatalf("verify --size export: exit %d %s%s", code, out, errOut)
	}
	// The audit sees the unsigned tail and still holds.
	r, errOut, code := runAuditJSON(t, "--data", data)
	if code != 0 || r.Merkle.CheckpointSize != 12 || r.Merkle.Unsigned != 1 {
		t.Fatalf("audit with an unsigned tail: exit %d %+v\n%s", code, r.Merkle, errOut)
	}
}

// LOG-3: `audit prove` and `audit consistency` print proofs that verify.
func TestLOG_3_AuditProveAndConsistency(t *testing.T) {
	data := auditedServer(t, 3) // 9 events
	keys, err := audit.LoadKeySet(node.KeysDir(data))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runHomeserver(t, "audit", "prove", "--data", data, "4")
	var p audit.InclusionProof
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.Seq != 4 || p.TreeSize != 9 || p.Verify(keys.LogVerifierKey()) != nil {
		t.Fatalf("prove: exit %d %s%s", code, out, errOut)
	}
	out, errOut, code = runHomeserver(t, "audit", "prove", "--data", data, "4", "--size", "6")
	if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.TreeSize != 6 || p.Verify(keys.LogVerifierKey()) != nil {
		t.Fatalf("prove --size 6: exit %d %s%s", code, out, errOut)
	}
	out, errOut, code = runHomeserver(t, "audit", "consistency", "--data", data, "--old", "3", "--new", "9")
	var c audit.ConsistencyProof
	if code != 0 || json.Unmarshal([]byte(out), &c) != nil || c.Verify() != nil || c.Checkpoint == "" {
		t.Fatalf("consistency: exit %d %s%s", code, out, errOut)
	}
	ck, err := eventlog.OpenCheckpoint([]byte(c.Checkpoint), keys.LogVerifierKey())
	if root, herr := audit.Hash(c.NewRoot); err != nil || herr != nil || root != ck.Root {
		t.Fatalf("consistency checkpoint: %v %v", err, herr)
	}
}
