package mlsx

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/thomas-vilte/mls-go/schedule"
)

// The official MLS interop test vectors shipped in the mls-go module
// (testdata/mls-interop-testvectors/test-vectors). The observer runs the
// parts a public observer can check.
//
// Skipped, and why:
//   - cipher suites 4-7 in every file: mls-go (and thus this package)
//     implements only suites 1-3;
//   - messages.json: not present in mls-go v1.0.0's copy of the vectors;
//   - tree-operations: proposals are applied without validation, because
//     the vectors carry no group_id, which the LeafNodeTBS of an Update
//     needs; the tree after and its hash are checked;
//   - message-protection: *_priv messages are encrypted, the observer only
//     checks their cleartext header; "application" exists only as a
//     PrivateMessage;
//   - transcript-hashes: confirmation_tag verification needs the
//     confirmation_key, which an observer never has; it is checked here
//     with mls-go's schedule only to show the vector was read correctly;
//   - treekem: path secrets and commit secrets (HPKE decryption) need
//     private keys; the observer checks node counts, the leaf, parent
//     hashes and the tree hash after merging each UpdatePath;
//   - crypto-basics, key-schedule, secret-tree, psk_secret, welcome,
//     passive-client-*: all need group secrets or private keys;
//   - tree-math: the observer's tree math is exercised by every other
//     vector (tree hashes, resolutions, paths).

var (
	vectorDirOnce sync.Once
	vectorDir     string
)

func vectorPath(t *testing.T, name string) string {
	t.Helper()
	vectorDirOnce.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/thomas-vilte/mls-go").Output()
		if err == nil {
			vectorDir = filepath.Join(strings.TrimSpace(string(out)), "testdata", "mls-interop-testvectors", "test-vectors")
		}
	})
	p := filepath.Join(vectorDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("test vector %s not available: %v", name, err)
	}
	return p
}

func loadVectors(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(vectorPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// hexBytes decodes JSON hex strings.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

func vectorSuite(t *testing.T, id uint16) (suite, bool) {
	s, ok := suiteFor(id)
	return s, ok
}

// vectorPolicy accepts every credential type the decoder knows: the vectors
// use basic and x509 credentials.
var vectorPolicy = Policy{CredentialTypes: []uint16{CredentialTypeBasic, CredentialTypeX509}}

func TestVectorsTreeValidation(t *testing.T) {
	var cases []struct {
		CipherSuite uint16     `json:"cipher_suite"`
		Tree        hexBytes   `json:"tree"`
		GroupID     hexBytes   `json:"group_id"`
		TreeHashes  []hexBytes `json:"tree_hashes"`
		Resolutions [][]uint32 `json:"resolutions"`
	}
	loadVectors(t, "tree-validation.json", &cases)
	ran := 0
	for i, c := range cases {
		s, ok := vectorSuite(t, c.CipherSuite)
		if !ok {
			continue
		}
		entries, err := parseRatchetTree(c.Tree)
		if err != nil {
			t.Fatalf("case %d: parse: %v", i, err)
		}
		tr, err := treeFromEntries(s, entries)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(tr.nodes) != len(c.TreeHashes) {
			t.Fatalf("case %d: %d nodes, vector has %d", i, len(tr.nodes), len(c.TreeHashes))
		}
		for x := range tr.nodes {
			if got := tr.hash(uint32(x)); !bytes.Equal(got, c.TreeHashes[x]) {
				t.Fatalf("case %d: tree hash of node %d mismatch", i, x)
			}
			got := tr.resolution(uint32(x), nil)
			if len(got) != len(c.Resolutions[x]) {
				t.Fatalf("case %d: resolution of %d = %v, want %v", i, x, got, c.Resolutions[x])
			}
			for j := range got {
				if got[j] != c.Resolutions[x][j] {
					t.Fatalf("case %d: resolution of %d = %v, want %v", i, x, got, c.Resolutions[x])
				}
			}
		}
		// The observer's own join-time validation: structure, parent
		// hashes, every leaf (signature with group id and leaf index).
		o := &Observer{s: s, groupID: c.GroupID, tree: tr}
		if err := o.validateTree(vectorPolicy); err != nil {
			t.Fatalf("case %d: validateTree: %v", i, err)
		}
		// The tree must re-encode to the exact bytes received.
		if !bytes.Equal(tr.marshal(), c.Tree) {
			t.Fatalf("case %d: re-encoded tree differs", i)
		}
		ran++
	}
	t.Logf("ran %d of %d cases (others use suites mls-go lacks)", ran, len(cases))
	if ran == 0 {
		t.Fatal("no case ran")
	}
}

func TestVectorsTreeOperations(t *testing.T) {
	var cases []struct {
		CipherSuite    uint16   `json:"cipher_suite"`
		TreeBefore     hexBytes `json:"tree_before"`
		Proposal       hexBytes `json:"proposal"`
		ProposalSender uint32   `json:"proposal_sender"`
		TreeAfter      hexBytes `json:"tree_after"`
		TreeHashBefore hexBytes `json:"tree_hash_before"`
		TreeHashAfter  hexBytes `json:"tree_hash_after"`
	}
	loadVectors(t, "tree-operations.json", &cases)
	for i, c := range cases {
		s, ok := vectorSuite(t, c.CipherSuite)
		if !ok {
			continue
		}
		entries, err := parseRatchetTree(c.TreeBefore)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		tr, err := treeFromEntries(s, entries)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tr.treeHash(), c.TreeHashBefore) {
			t.Fatalf("case %d: tree hash before mismatch", i)
		}
		r := newReader(c.Proposal)
		p, err := parseProposal(r)
		if err != nil || r.done() != nil {
			t.Fatalf("case %d: proposal: %v", i, err)
		}
		switch p.typ {
		case proposalAdd:
			tr.addLeaf(p.add.leaf)
		case proposalUpdate:
			applyUpdate(tr, c.ProposalSender, p.update)
		case proposalRemove:
			applyRemove(tr, p.remove)
		default:
			t.Fatalf("case %d: proposal type %d", i, p.typ)
		}
		if !bytes.Equal(tr.treeHash(), c.TreeHashAfter) {
			t.Fatalf("case %d (proposal type %d): tree hash after mismatch", i, p.typ)
		}
		if !bytes.Equal(tr.marshal(), c.TreeAfter) {
			t.Fatalf("case %d: tree after differs", i)
		}
	}
}

func TestVectorsTranscriptHashes(t *testing.T) {
	var cases []struct {
		CipherSuite                 uint16   `json:"cipher_suite"`
		ConfirmationKey             hexBytes `json:"confirmation_key"`
		AuthenticatedContent        hexBytes `json:"authenticated_content"`
		InterimTranscriptHashBefore hexBytes `json:"interim_transcript_hash_before"`
		ConfirmedTranscriptHash     hexBytes `json:"confirmed_transcript_hash_after"`
		InterimTranscriptHashAfter  hexBytes `json:"interim_transcript_hash_after"`
	}
	loadVectors(t, "transcript-hashes.json", &cases)
	ran := 0
	for i, c := range cases {
		s, ok := vectorSuite(t, c.CipherSuite)
		if !ok {
			continue
		}
		r := newReader(c.AuthenticatedContent)
		wf, err := r.u16()
		if err != nil {
			t.Fatal(err)
		}
		fc, err := parseFramedContent(r)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		sig, err := r.vec()
		if err != nil {
			t.Fatal(err)
		}
		tag, err := r.vec()
		if err != nil || r.done() != nil {
			t.Fatalf("case %d: auth: %v", i, err)
		}
		if fc.contentType != contentCommit {
			t.Fatalf("case %d: content type %d", i, fc.contentType)
		}
		cth := confirmedTranscriptHash(s, c.InterimTranscriptHashBefore, wf, fc.raw, sig)
		if !bytes.Equal(cth, c.ConfirmedTranscriptHash) {
			t.Fatalf("case %d: confirmed transcript hash mismatch", i)
		}
		if ith := interimTranscriptHash(s, cth, tag); !bytes.Equal(ith, c.InterimTranscriptHashAfter) {
			t.Fatalf("case %d: interim transcript hash mismatch", i)
		}
		// Not an observer check (needs confirmation_key): shows the tag
		// was decoded from the right bytes.
		if want := schedule.ComputeConfirmationTag(s.id, c.ConfirmationKey, cth); !bytes.Equal(want, tag) {
			t.Fatalf("case %d: confirmation tag mismatch", i)
		}
		ran++
	}
	if ran == 0 {
		t.Fatal("no case ran")
	}
}

func TestVectorsMessageProtection(t *testing.T) {
	var cases []struct {
		CipherSuite             uint16   `json:"cipher_suite"`
		GroupID                 hexBytes `json:"group_id"`
		Epoch                   uint64   `json:"epoch"`
		TreeHash                hexBytes `json:"tree_hash"`
		ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
		SignaturePub            hexBytes `json:"signature_pub"`
		MembershipKey           hexBytes `json:"membership_key"`
		Proposal                hexBytes `json:"proposal"`
		ProposalPub             hexBytes `json:"proposal_pub"`
		ProposalPriv            hexBytes `json:"proposal_priv"`
		Commit                  hexBytes `json:"commit"`
		CommitPub               hexBytes `json:"commit_pub"`
		CommitPriv              hexBytes `json:"commit_priv"`
		ApplicationPriv         hexBytes `json:"application_priv"`
	}
	loadVectors(t, "message-protection.json", &cases)
	ran := 0
	for i, c := range cases {
		s, ok := vectorSuite(t, c.CipherSuite)
		if !ok {
			continue
		}
		gc := groupContext{version: 1, suite: c.CipherSuite, groupID: c.GroupID, epoch: c.Epoch, treeHash: c.TreeHash, cth: c.ConfirmedTranscriptHash}
		for _, m := range []struct {
			name string
			msg  []byte
			body []byte
			ct   uint8
		}{{"proposal", c.ProposalPub, c.Proposal, contentProposal}, {"commit", c.CommitPub, c.Commit, contentCommit}} {
			r := newReader(m.msg)
			wf, err := parseMLSMessageHeader(r)
			if err != nil || wf != wireFormatPublicMessage {
				t.Fatalf("case %d %s: header %d %v", i, m.name, wf, err)
			}
			pm, err := parsePublicMessage(r)
			if err != nil {
				t.Fatalf("case %d %s: %v", i, m.name, err)
			}
			fc := pm.content
			if !bytes.Equal(fc.groupID, c.GroupID) || fc.epoch != c.Epoch || fc.contentType != m.ct {
				t.Fatalf("case %d %s: wrong content header", i, m.name)
			}
			if !bytes.HasSuffix(fc.raw, m.body) {
				t.Fatalf("case %d %s: body mismatch", i, m.name)
			}
			// The observer's signature check (ProcessPublicMessage).
			var tbs writer
			tbs.u16(1)
			tbs.u16(wireFormatPublicMessage)
			tbs.raw(fc.raw)
			tbs.raw(gc.marshal())
			if !s.verify(c.SignaturePub, "FramedContentTBS", tbs.b, pm.sig) {
				t.Fatalf("case %d %s: signature does not verify", i, m.name)
			}
			if s.verify(c.SignaturePub, "FramedContentTBS", append(tbs.b, 0), pm.sig) {
				t.Fatalf("case %d %s: signature verifies over wrong content", i, m.name)
			}
			// Not an observer check (needs membership_key): shows the
			// auth bytes were delimited exactly.
			var tbm writer
			tbm.raw(tbs.b)
			tbm.raw(pm.authRaw)
			if !schedule.VerifyMembershipTag(s.id, c.MembershipKey, tbm.b, pm.membershipTag) {
				t.Fatalf("case %d %s: membership tag mismatch", i, m.name)
			}
		}
		for _, m := range []struct {
			name string
			msg  []byte
			ct   uint8
		}{{"proposal_priv", c.ProposalPriv, contentProposal}, {"commit_priv", c.CommitPriv, contentCommit}, {"application_priv", c.ApplicationPriv, contentApplication}} {
			r := newReader(m.msg)
			wf, err := parseMLSMessageHeader(r)
			if err != nil || wf != wireFormatPrivateMessage {
				t.Fatalf("case %d %s: header", i, m.name)
			}
			h, err := parsePrivateMessage(r)
			if err != nil {
				t.Fatalf("case %d %s: %v", i, m.name, err)
			}
			if !bytes.Equal(h.groupID, c.GroupID) || h.epoch != c.Epoch || h.contentType != m.ct {
				t.Fatalf("case %d %s: wrong header", i, m.name)
			}
		}
		ran++
	}
	if ran == 0 {
		t.Fatal("no case ran")
	}
}

func TestVectorsTreeKEM(t *testing.T) {
	var cases []struct {
		CipherSuite uint16   `json:"cipher_suite"`
		GroupID     hexBytes `json:"group_id"`
		Epoch       uint64   `json:"epoch"`
		RatchetTree hexBytes `json:"ratchet_tree"`
		UpdatePaths []struct {
			Sender        uint32   `json:"sender"`
			UpdatePath    hexBytes `json:"update_path"`
			TreeHashAfter hexBytes `json:"tree_hash_after"`
		} `json:"update_paths"`
	}
	loadVectors(t, "treekem.json", &cases)
	ran, paths := 0, 0
	for i, c := range cases {
		s, ok := vectorSuite(t, c.CipherSuite)
		if !ok {
			continue
		}
		entries, err := parseRatchetTree(c.RatchetTree)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		base, err := treeFromEntries(s, entries)
		if err != nil {
			t.Fatal(err)
		}
		o := &Observer{s: s, groupID: c.GroupID, epoch: c.Epoch, tree: base}
		if err := o.validateTree(vectorPolicy); err != nil {
			t.Fatalf("case %d: tree before: %v", i, err)
		}
		for j, u := range c.UpdatePaths {
			// An UpdatePath on the wire is the optional path of a Commit
			// without its presence octet.
			var w writer
			w.varint(0) // no proposals
			w.u8(1)
			w.raw(u.UpdatePath)
			r := newReader(w.b)
			cm, err := parseCommit(r)
			if err != nil || r.done() != nil {
				t.Fatalf("case %d path %d: decode: %v", i, j, err)
			}
			tr := base.clone()
			if err := o.mergePath(tr, cm.path, u.Sender, nil, vectorPolicy); err != nil {
				t.Fatalf("case %d path %d: merge: %v", i, j, err)
			}
			if !bytes.Equal(tr.treeHash(), u.TreeHashAfter) {
				t.Fatalf("case %d path %d: tree hash after mismatch", i, j)
			}
			if err := tr.verifyParentHashes(); err != nil {
				t.Fatalf("case %d path %d: parent hashes after merge: %v", i, j, err)
			}
			// Tampering with any path key must be caught.
			bad := *cm.path
			bad.nodes = append([]updatePathNode(nil), cm.path.nodes...)
			if len(bad.nodes) > 0 {
				k := bytes.Clone(bad.nodes[0].encKey)
				k[len(k)-1] ^= 1
				bad.nodes[0].encKey = k
				if err := o.mergePath(base.clone(), &bad, u.Sender, nil, vectorPolicy); err == nil {
					t.Fatalf("case %d path %d: tampered path accepted", i, j)
				}
			}
			paths++
		}
		ran++
	}
	t.Logf("ran %d of %d cases, %d update paths", ran, len(cases), paths)
	if ran == 0 {
		t.Fatal("no case ran")
	}
}

func TestVectorsDeserialization(t *testing.T) {
	var cases []struct {
		Header hexBytes `json:"vlbytes_header"`
		Length int      `json:"length"`
	}
	loadVectors(t, "deserialization.json", &cases)
	for _, c := range cases {
		n, err := newReader(c.Header).varint()
		if err != nil || n != c.Length {
			t.Fatalf("header %x: got %d, %v; want %d", []byte(c.Header), n, err, c.Length)
		}
		var w writer
		w.varint(c.Length)
		if !bytes.Equal(w.b, c.Header) {
			t.Fatalf("length %d encodes as %x, want %x", c.Length, w.b, []byte(c.Header))
		}
	}
}

func TestVectorsMessagesAbsent(t *testing.T) {
	// messages.json of the interop suite is not shipped with mls-go
	// v1.0.0; if a later version ships it, this test reminds us to run it.
	p := filepath.Join(filepath.Dir(vectorPath(t, "deserialization.json")), "messages.json")
	if _, err := os.Stat(p); err == nil {
		t.Errorf("messages.json is now present in mls-go's vectors: add a test for it")
	}
}
