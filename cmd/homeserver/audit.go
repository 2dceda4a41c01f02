package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mlshome/homeserver/audit"
	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/identity"
	"github.com/mlshome/homeserver/node"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/validation"
	"golang.org/x/mod/sumdb/note"
)

const auditUsage = `usage:
  homeserver audit --data DIR [--key VERIFIERKEY] [--public-keys FILE] [--json]
      check the Merkle tree against the latest signed checkpoint and re-run
      validation for every event; exit 0 only if everything holds
  homeserver audit export --data DIR [--from A] [--to B] [--size N] --out FILE
      write events A..B with inclusion proofs against a signed checkpoint (NDJSON)
  homeserver audit verify FILE --key VERIFIERKEY
      check an export offline with only the log's public verifier key
  homeserver audit prove --data DIR SEQ [--size N]
      print the inclusion proof of one event and its signed checkpoint (JSON)
  homeserver audit consistency --data DIR --old N --new M
      print the consistency proof between two tree sizes (JSON)

The store is opened read-only, but Pebble locks it: stop the homeserver
first, or audit a copy of its data directory. Nothing is written to DIR.
The verifier key is --key, else the log key of --public-keys (the document
served at /.well-known/mls-homeserver), else the one in DIR/keys; a DIR
without keys needs --key or --public-keys. Client credential signatures are
checked with the authentication key from DIR/keys or --public-keys.
`

// auditCmd runs `homeserver audit` and its subcommands (LOG-3, LOG-4).
func auditCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "export":
			return auditExport(args[1:], stdout, stderr)
		case "verify":
			return auditVerify(args[1:], stdout, stderr)
		case "prove":
			return auditProve(args[1:], stdout, stderr)
		case "consistency":
			return auditConsistency(args[1:], stdout, stderr)
		case "help", "-h", "--help":
			fmt.Fprint(stdout, auditUsage)
			return nil
		}
	}
	fs := newAuditFlags("audit", stderr)
	kf := bindKeyFlags(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	tmp := fs.String("tmp", "", "directory for the scratch replay store (default: the system temporary directory)")
	if err := parseAll(fs, args, 0); err != nil {
		return err
	}
	keys, err := kf.resolve()
	if err != nil {
		return err
	}
	l, err := audit.OpenLog(node.StoreDir(kf.data), keys.domain, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	v, set, partial, err := keys.validator(kf.data)
	if err != nil {
		return err
	}
	bar := newProgress(stderr, "audit")
	rep, err := audit.Run(context.Background(), l, audit.Options{
		VerifierKey: keys.verifierKey,
		Validator:   v,
		Projections: set,
		Partial:     partial,
		TempDir:     *tmp,
		Progress:    bar.update,
	})
	bar.done()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(stdout, kf.data, rep)
	}
	if !rep.OK {
		return fmt.Errorf("audit of %s failed: %d problems", kf.data, len(rep.Problems()))
	}
	return nil
}

func printReport(w io.Writer, data string, r *audit.Report) {
	m, v := &r.Merkle, &r.Validation
	fmt.Fprintf(w, "audit of %s: %d events, origin %s\n", data, r.LogSize, r.Origin)
	fmt.Fprintf(w, "verifier key: %s\n", r.VerifierKey)
	if m.CheckpointError != "" {
		fmt.Fprintf(w, "merkle:      CHECKPOINT: %s\n", m.CheckpointError)
	} else {
		match := "DOES NOT MATCH"
		if m.RootMatches {
			match = "matches"
		}
		fmt.Fprintf(w, "merkle:      root over the first %d events %s the signed checkpoint; %d events read\n", m.CheckpointSize, match, m.Events)
		if m.Unsigned > 0 {
			fmt.Fprintf(w, "             %d events after the checkpoint are covered by their leaf hashes only\n", m.Unsigned)
		}
		if !m.StoredTreeMatches {
			fmt.Fprintln(w, "             stored Merkle hashes DIFFER from the tree recomputed from the events")
		}
	}
	for _, s := range m.BadEvents {
		fmt.Fprintf(w, "  event %d: BAD: stored bytes do not match the leaf hash\n", s)
	}
	for _, s := range m.Missing {
		fmt.Fprintf(w, "  event %d: MISSING\n", s)
	}
	fmt.Fprintf(w, "validation:  %d events re-validated, %d would be rejected today\n", v.Replayed, v.RejectedCount)
	for _, p := range v.Partial {
		fmt.Fprintf(w, "             checked only in part: %s\n", p)
	}
	for _, f := range v.Rejected {
		fmt.Fprintf(w, "  event %d (%s): REJECTED %s: %s\n", f.Seq, f.Type, f.Code, f.Reason)
	}
	if uint64(len(v.Rejected)) < v.RejectedCount {
		fmt.Fprintf(w, "  … %d more (see --json)\n", v.RejectedCount-uint64(len(v.Rejected)))
	}
	if v.ProjectionsMatch {
		fmt.Fprintf(w, "projections: rebuilt equal stored, digest %s\n", v.Digest)
	} else {
		fmt.Fprintf(w, "projections: rebuilt DIFFER from stored, first at key %s\n", v.ProjectionsDiff)
	}
	if r.OK {
		fmt.Fprintln(w, "OK: every check held")
		return
	}
	fmt.Fprintln(w, "FAIL:")
	for _, p := range r.Problems() {
		fmt.Fprintln(w, "  -", p)
	}
}

func auditExport(args []string, stdout, stderr io.Writer) error {
	fs := newAuditFlags("audit export", stderr)
	kf := bindKeyFlags(fs)
	from := fs.Uint64("from", 1, "first sequence number")
	to := fs.Uint64("to", 0, "last sequence number (0: the checkpoint's size)")
	size := fs.Uint64("size", 0, "tree size to prove against (0: the latest signed checkpoint; another size is signed with the log key in DIR/keys)")
	out := fs.String("out", "", "output file (- for stdout)")
	if err := parseAll(fs, args, 0); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "audit export: --out is required")
		return errUsage
	}
	keys, l, err := kf.openLog()
	if err != nil {
		return err
	}
	defer l.Close()
	opts := audit.ExportOptions{From: *from, To: *to, Size: *size, VerifierKey: keys.verifierKey}
	var h *audit.ExportHeader
	if *out == "-" {
		h, err = audit.Export(stdout, l, opts)
	} else {
		h, err = writeAtomically(*out, func(w io.Writer) (*audit.ExportHeader, error) { return audit.Export(w, l, opts) })
	}
	if errors.Is(err, audit.ErrBeyondCheckpoint) && *to > l.Size() {
		return fmt.Errorf("--to %d: the log holds only %d events", *to, l.Size())
	}
	if errors.Is(err, audit.ErrBeyondCheckpoint) {
		return fmt.Errorf("%w\nthe latest signed checkpoint is older than --to: export up to its size, or pass --size %d to sign a tree head of that size with the log key in %s", err, *to, node.KeysDir(kf.data))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported events %d..%d of %s with inclusion proofs against the signed checkpoint of size %d to %s\n", h.From, h.To, h.Origin, h.TreeSize, *out)
	return nil
}

// writeAtomically writes to a temporary file next to path and renames it
// into place only on success, so a failed export leaves no partial file.
func writeAtomically(path string, write func(io.Writer) (*audit.ExportHeader, error)) (*audit.ExportHeader, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	h, err := write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return h, os.Rename(f.Name(), path)
}

func auditVerify(args []string, stdout, stderr io.Writer) error {
	fs := newAuditFlags("audit verify", stderr)
	key := fs.String("key", "", "the log's public note verifier key (required)")
	if err := parseAll(fs, args, 1); err != nil {
		return err
	}
	if *key == "" {
		fmt.Fprintln(stderr, "audit verify: --key is required: verify with a key you trust, not one from the file")
		return errUsage
	}
	path := fs.Arg(0)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := audit.VerifyExport(f, *key)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(stdout, "OK: events %d..%d of %s are in the log signed at size %d\n", h.From, h.To, h.Origin, h.TreeSize)
	return nil
}

func auditProve(args []string, stdout, stderr io.Writer) error {
	fs := newAuditFlags("audit prove", stderr)
	kf := bindKeyFlags(fs)
	size := fs.Uint64("size", 0, "tree size to prove against (0: the latest signed checkpoint)")
	if err := parseAll(fs, args, 1); err != nil {
		return err
	}
	seq, err := strconv.ParseUint(fs.Arg(0), 10, 64)
	if err != nil {
		fmt.Fprintf(stderr, "audit prove: SEQ %q is not a number\n", fs.Arg(0))
		return errUsage
	}
	keys, l, err := kf.openLog()
	if err != nil {
		return err
	}
	defer l.Close()
	p, err := audit.Prove(l, seq, *size, keys.verifierKey)
	if err != nil {
		return err
	}
	return printJSON(stdout, p)
}

func auditConsistency(args []string, stdout, stderr io.Writer) error {
	fs := newAuditFlags("audit consistency", stderr)
	kf := bindKeyFlags(fs)
	oldSize := fs.Uint64("old", 0, "old tree size (required)")
	newSize := fs.Uint64("new", 0, "new tree size (default: the log size)")
	if err := parseAll(fs, args, 0); err != nil {
		return err
	}
	keys, l, err := kf.openLog()
	if err != nil {
		return err
	}
	defer l.Close()
	n := *newSize
	if n == 0 {
		n = l.Size()
	}
	p, err := audit.Consistency(l, *oldSize, n, keys.verifierKey)
	if err != nil {
		return err
	}
	return printJSON(stdout, p)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newAuditFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, auditUsage, "\nflags of ", name, ":\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseAll parses flags placed before, between or after exactly npos
// positional arguments (the flag package alone stops at the first one).
func parseAll(fs *flag.FlagSet, args []string, npos int) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != npos {
		fmt.Fprintf(fs.Output(), "%s: want %d positional arguments, got %q\n", fs.Name(), npos, pos)
		fs.Usage()
		return errUsage
	}
	// Re-parse the positionals only so fs.Arg(i) returns them.
	return fs.Parse(append([]string{"--"}, pos...))
}

// keyFlags are the flags that say where the store and the keys are.
type keyFlags struct {
	data, key, publicKeys string
}

func bindKeyFlags(fs *flag.FlagSet) *keyFlags {
	k := &keyFlags{}
	fs.StringVar(&k.data, "data", "./data", "data directory of a stopped homeserver, or a copy of one")
	fs.StringVar(&k.key, "key", "", "the log's public note verifier key (default: from --public-keys or DIR/keys)")
	fs.StringVar(&k.publicKeys, "public-keys", "", "the homeserver's public keys document (/.well-known/mls-homeserver)")
	return k
}

// auditKeys is what an audit knows about the homeserver's keys.
type auditKeys struct {
	domain      string
	verifierKey string
	keys        *identity.KeySet     // nil if DIR/keys is absent
	pub         *identity.PublicKeys // nil without --public-keys
}

// resolve finds the verifier key and whatever else of the keys is
// available, never creating any.
// openLog resolves the keys and opens the audited log read-only, able to
// sign checkpoints when the log key is at hand.
func (k *keyFlags) openLog() (*auditKeys, *eventlog.Log, error) {
	keys, err := k.resolve()
	if err != nil {
		return nil, nil, err
	}
	l, err := audit.OpenLog(node.StoreDir(k.data), keys.domain, keys.signer())
	if err != nil {
		return nil, nil, err
	}
	return keys, l, nil
}

func (k *keyFlags) resolve() (*auditKeys, error) {
	if ok, err := fileExists(node.StoreDir(k.data)); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%s has no store (%s): is it a homeserver data directory?", k.data, node.StoreDir(k.data))
	}
	out := &auditKeys{}
	if k.publicKeys != "" {
		b, err := os.ReadFile(k.publicKeys)
		if err != nil {
			return nil, err
		}
		p, err := identity.ParsePublicKeys(b, "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.publicKeys, err)
		}
		out.pub = &p
	}
	ks, err := audit.LoadKeySet(node.KeysDir(k.data))
	switch {
	case err == nil:
		out.keys = ks
	case errors.Is(err, audit.ErrNoKeys):
		if k.key == "" && out.pub == nil {
			return nil, fmt.Errorf("%w; refusing to create keys in the audited directory: give --key VERIFIERKEY (the log's public verifier key) or --public-keys FILE", err)
		}
	default:
		return nil, err
	}
	switch {
	case k.key != "":
		out.verifierKey = k.key
	case out.pub != nil:
		out.verifierKey = out.pub.LogKey
	default:
		out.verifierKey = out.keys.LogVerifierKey()
	}
	name, err := audit.VerifierName(out.verifierKey)
	if err != nil {
		return nil, err
	}
	switch {
	case out.keys != nil:
		out.domain = out.keys.Domain()
	case out.pub != nil:
		out.domain = out.pub.Domain
	default:
		out.domain = name
	}
	return out, nil
}

// validator returns the homeserver's own validator when all its private
// keys are here, else one built from the public keys, with the names of the
// checks that can then be done only in part.
func (a *auditKeys) validator(data string) (*validation.Validator, *projections.Set, []string, error) {
	if a.keys != nil {
		// node.ForAudit needs every private key (queue id secret, token
		// issuer); without them the checks that need them are partial.
		ok, err := fileExists(filepath.Join(node.KeysDir(data), queueIDSecretFile))
		if err != nil {
			return nil, nil, nil, err
		}
		if ok {
			set, v, _, err := node.ForAudit(data)
			return v, set, nil, err
		}
		v, partial := audit.NewValidator(a.domain, a.keys.AuthPublicKey())
		return v, node.PublicProjections(a.domain), partial, nil
	}
	var auth []byte
	if a.pub != nil {
		auth = a.pub.AuthKey
	}
	v, partial := audit.NewValidator(a.domain, auth)
	return v, node.PublicProjections(a.domain), partial, nil
}

// queueIDSecretFile is node's secret for queue ids in the keys directory.
const queueIDSecretFile = "queue-id-secret"

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// signer returns the log's checkpoint signer if its private key is here.
func (a *auditKeys) signer() note.Signer {
	if a.keys == nil {
		return nil
	}
	return a.keys.LogSigner()
}
