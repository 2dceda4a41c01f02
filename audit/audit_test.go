package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
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

const domain = "audit.test"

// anything is the Handler of a compromised writer: it appends whatever it
// is given (the command is the Decision) and applies it to the projections.
type anything struct{}

func (anything) Decide(_ eventlog.Reader, _ int64, cmd any) (eventlog.Decision, error) {
	return cmd.(eventlog.Decision), nil
}
func (anything) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error {
	return node.PublicProjections("").Apply(rw, ev)
}

// registration returns the events of a user registration as the writer
// produces them: UserRegistered, then ClientRegistered with a credential
// signed by keys.
func registration(t *testing.T, keys *identity.KeySet, name string, withUser bool) eventlog.Decision {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(nil)
	uid := name + "@" + domain
	cid := validation.ClientIDFor(pub)
	cred, err := keys.IssueCredential(identity.ClientCredential{UserID: uid, ClientID: cid, SignatureKey: pub, Domain: domain, IssuedAt: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var d eventlog.Decision
	if withUser {
		d.Events = append(d.Events, events.Draft(events.TypeUserRegistered, events.UserRegistered{UserID: uid}))
	}
	d.Events = append(d.Events, events.Draft(events.TypeClientRegistered, events.ClientRegistered{UserID: uid, ClientID: cid, SignatureKey: pub, Credential: cred}))
	return d
}

// buildStore appends the decisions to a fresh log in dir through a writer
// that accepts anything, signing checkpoints with keys, and closes it.
func buildStore(t *testing.T, dir string, keys *identity.KeySet, ds ...eventlog.Decision) {
	t.Helper()
	l, err := eventlog.Open(dir, eventlog.Options{Origin: domain, Signer: keys.LogSigner(), Handler: anything{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if _, err := l.Append(context.Background(), eventlog.Command{Body: d}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func runAudit(t *testing.T, dir string, keys *identity.KeySet) *audit.Report {
	t.Helper()
	l, err := audit.OpenLog(dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v, partial := audit.NewValidator(domain, keys.AuthPublicKey())
	r, err := audit.Run(context.Background(), l, audit.Options{
		VerifierKey: keys.LogVerifierKey(), Validator: v, Projections: node.PublicProjections(""),
		Partial: partial, TempDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// LOG-4: an event that is well-formed and correctly hashed and signed, but
// that today's validation refuses (a second registration of alice, as a
// compromised writer could append), is reported with its sequence number
// and reason; nothing else is.
func TestLOG_4_RevalidationReportsDuplicateUser(t *testing.T) {
	keys, _ := identity.GenerateKeySet(domain, nil)
	dir := filepath.Join(t.TempDir(), "store")
	buildStore(t, dir, keys,
		registration(t, keys, "alice", true), // 1, 2
		registration(t, keys, "bob", true),   // 3, 4
		eventlog.Decision{Events: []eventlog.Draft{events.Draft(events.TypeUserRegistered, events.UserRegistered{UserID: "alice@" + domain})}}, // 5
		registration(t, keys, "carol", true), // 6, 7
	)
	r := runAudit(t, dir, keys)
	if !r.Merkle.OK() || r.Merkle.CheckpointSize != 7 {
		t.Fatalf("merkle: %+v", r.Merkle)
	}
	got := r.Validation.Rejected
	if r.OK || r.Validation.RejectedCount != 1 || len(got) != 1 || got[0].Seq != 5 || got[0].Code != validation.CodeUserExists {
		t.Fatalf("want exactly event 5 rejected with %s, got ok=%v %+v", validation.CodeUserExists, r.OK, got)
	}
	if !r.Validation.ProjectionsMatch || r.Validation.Replayed != 7 {
		t.Fatalf("replay: %+v", r.Validation)
	}
}

// A clean log passes; a credential signed by another key is found by the
// replay (bad_credential), though the Merkle tree is intact.
func TestRunCleanAndForgedCredential(t *testing.T) {
	keys, _ := identity.GenerateKeySet(domain, nil)
	dir := filepath.Join(t.TempDir(), "store")
	buildStore(t, dir, keys, registration(t, keys, "alice", true), registration(t, keys, "alice", false))
	if r := runAudit(t, dir, keys); !r.OK || len(r.Problems()) != 0 {
		t.Fatalf("clean log: %+v", r.Problems())
	}

	other, _ := identity.GenerateKeySet(domain, nil)
	dir2 := filepath.Join(t.TempDir(), "store")
	buildStore(t, dir2, keys, registration(t, keys, "alice", true), registration(t, other, "alice", false))
	r := runAudit(t, dir2, keys)
	if r.OK || len(r.Validation.Rejected) != 1 || r.Validation.Rejected[0].Seq != 3 || r.Validation.Rejected[0].Code != validation.CodeBadCredential {
		t.Fatalf("forged credential: %+v", r.Validation.Rejected)
	}
}

// A checkpoint that does not verify with the auditor's key is a finding.
func TestRunWrongKey(t *testing.T) {
	keys, _ := identity.GenerateKeySet(domain, nil)
	other, _ := identity.GenerateKeySet(domain, nil)
	dir := filepath.Join(t.TempDir(), "store")
	buildStore(t, dir, keys, registration(t, keys, "alice", true))
	l, err := audit.OpenLog(dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	v, _ := audit.NewValidator(domain, keys.AuthPublicKey())
	r, err := audit.Run(context.Background(), l, audit.Options{VerifierKey: other.LogVerifierKey(), Validator: v, Projections: node.PublicProjections(""), TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || r.Merkle.CheckpointError == "" {
		t.Fatalf("wrong key accepted: %+v", r.Merkle)
	}
}

// LOG-3: an export verifies offline with the public key; changing one byte
// of an event or of a proof fails on that event's line.
func TestLOG_3_ExportVerify(t *testing.T) {
	keys, _ := identity.GenerateKeySet(domain, nil)
	dir := filepath.Join(t.TempDir(), "store")
	buildStore(t, dir, keys, registration(t, keys, "alice", true), registration(t, keys, "bob", true), registration(t, keys, "carol", true))
	l, err := audit.OpenLog(dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	h, err := audit.Export(&buf, l, audit.ExportOptions{From: 2, To: 5, VerifierKey: keys.LogVerifierKey()})
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	if h.TreeSize != 6 || h.From != 2 || h.To != 5 {
		t.Fatalf("header %+v", h)
	}
	if _, err := audit.VerifyExport(bytes.NewReader(buf.Bytes()), keys.LogVerifierKey()); err != nil {
		t.Fatalf("fresh export: %v", err)
	}
	lines := strings.Split(buf.String(), "\n")
	for _, field := range []string{`"event":"`, `"proof":["`} {
		bad := append([]string(nil), lines...)
		i := strings.Index(bad[2], field) + len(field) + 10
		bad[2] = bad[2][:i] + flipB64(bad[2][i]) + bad[2][i+1:]
		_, err := audit.VerifyExport(strings.NewReader(strings.Join(bad, "\n")), keys.LogVerifierKey())
		var le *audit.LineError
		if !errors.As(err, &le) || le.Line != 3 {
			t.Fatalf("one byte changed in %s: want an error on line 3, got %v", field, err)
		}
	}
	// Dropping the last event is caught too.
	short := strings.Join(lines[:len(lines)-2], "\n") + "\n"
	if _, err := audit.VerifyExport(strings.NewReader(short), keys.LogVerifierKey()); err == nil {
		t.Fatal("truncated export accepted")
	}
	other, _ := identity.GenerateKeySet(domain, nil)
	if _, err := audit.VerifyExport(bytes.NewReader(buf.Bytes()), other.LogVerifierKey()); err == nil {
		t.Fatal("export accepted with another key")
	}
}

func flipB64(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// Proofs for any event and between any sizes verify; a size beyond the
// stored checkpoint needs the signer.
func TestProveAndConsistency(t *testing.T) {
	keys, _ := identity.GenerateKeySet(domain, nil)
	dir := filepath.Join(t.TempDir(), "store")
	buildStore(t, dir, keys, registration(t, keys, "alice", true), registration(t, keys, "bob", true), registration(t, keys, "carol", true))
	l, err := audit.OpenLog(dir, domain, nil)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 6; seq++ {
		p, err := audit.Prove(l, seq, 0, keys.LogVerifierKey())
		if err != nil || p.Verify(keys.LogVerifierKey()) != nil {
			t.Fatalf("prove %d: %v", seq, err)
		}
	}
	if _, err := audit.Prove(l, 2, 4, keys.LogVerifierKey()); !errors.Is(err, audit.ErrNoSigner) {
		t.Fatalf("size 4 without signer: %v", err)
	}
	c, err := audit.Consistency(l, 2, 6, keys.LogVerifierKey())
	if err != nil || c.Verify() != nil || c.Checkpoint == "" {
		t.Fatalf("consistency: %+v %v", c, err)
	}
	l.Close()

	l, err = audit.OpenLog(dir, domain, keys.LogSigner())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p, err := audit.Prove(l, 2, 4, keys.LogVerifierKey())
	if err != nil || p.TreeSize != 4 || p.Verify(keys.LogVerifierKey()) != nil {
		t.Fatalf("prove 2 in 4 with signer: %+v %v", p, err)
	}
}

// The store of a running homeserver is locked; the error says what to do.
func TestOpenLogLocked(t *testing.T) {
	keys, _ := identity.GenerateKeySet(domain, nil)
	dir := filepath.Join(t.TempDir(), "store")
	l, err := eventlog.Open(dir, eventlog.Options{Origin: domain, Signer: keys.LogSigner(), Handler: anything{}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := audit.OpenLog(dir, "", nil); !errors.Is(err, audit.ErrLocked) || !strings.Contains(err.Error(), "copy") {
		t.Fatalf("want ErrLocked, got %v", err)
	}
}

// LoadKeySet never creates keys: an empty or missing directory stays so.
func TestLoadKeySetCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	if _, err := audit.LoadKeySet(dir); !errors.Is(err, audit.ErrNoKeys) {
		t.Fatalf("empty dir: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("LoadKeySet created %v", ents)
	}
	missing := filepath.Join(dir, "keys")
	if _, err := audit.LoadKeySet(missing); !errors.Is(err, audit.ErrNoKeys) {
		t.Fatalf("missing dir: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatal("LoadKeySet created the directory")
	}
	if _, err := identity.LoadOrCreateKeySet(missing, domain); err != nil {
		t.Fatal(err)
	}
	ks, err := audit.LoadKeySet(missing)
	if err != nil || ks.Domain() != domain {
		t.Fatalf("complete dir: %v", err)
	}
}

// An event deleted from the store is reported missing by its sequence
// number, and the root no longer matches.
func TestRunMissingEvent(t *testing.T) {
	keys, _ := identity.GenerateKeySet(domain, nil)
	dir := filepath.Join(t.TempDir(), "store")
	buildStore(t, dir, keys, registration(t, keys, "alice", true), registration(t, keys, "bob", true))
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Delete(binary.BigEndian.AppendUint64([]byte("log/ev/"), 3), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r := runAudit(t, dir, keys)
	if r.OK || fmt.Sprint(r.Merkle.Missing) != "[3]" || r.Merkle.RootMatches {
		t.Fatalf("missing event 3: %+v", r.Merkle)
	}
}
