package mlsx

import (
	"bytes"
	"time"
)

// Observer is the public view of one MLS group held by the Delivery Service
// that owns it, the equivalent of OpenMLS's PublicGroup or mls-rs's
// ExternalGroup: the ratchet tree (public keys and leaf nodes only), the
// GroupContext fields, the confirmed and interim transcript hashes, and the
// proposals received in the current epoch.
//
// An Observer is not safe for concurrent use (the tree hash is cached
// lazily); the homeserver's writer goroutine owns it. The exceptions are
// CheckApplication, VerifyLeafSignature, IsMember and LeafSignatureKey, which
// only read leaves and may run concurrently with each other, e.g. on the
// request goroutines against a snapshot.
type Observer struct {
	s         suite
	groupID   []byte
	epoch     uint64
	extsRaw   []byte // GroupContext extensions vector content
	exts      []extension
	cth       []byte // confirmed transcript hash
	ith       []byte // interim transcript hash
	tree      *tree
	proposals []storedProposal
}

// storedProposal is a proposal accepted in the current epoch, waiting for a
// commit that references it.
type storedProposal struct {
	ref    []byte
	sender uint32
	prop   *proposal
}

// NewObserverFromGroupInfo creates an observer from a TLS-encoded GroupInfo
// (RFC 9420 §12.4.3, not wrapped in an MLSMessage) and the group's ratchet
// tree (optional<Node> ratchet_tree<V>, RFC 9420 §12.4.3.3).
//
// ratchetTree may be nil, in which case the GroupInfo's ratchet_tree
// extension is used. If both are present they must be byte-identical.
//
// It verifies what a new member verifies on joining, except for anything
// needing group secrets: an accepted cipher suite and version; the tree's
// hash equals GroupContext.tree_hash; every non-blank parent is parent-hash
// valid; unmerged_leaves are consistent; encryption and signature keys are
// unique; every leaf node is valid (signature with group id and leaf index,
// capabilities, credential type; lifetimes are not checked for existing
// leaves); and the GroupInfo signature by the signer leaf. The interim
// transcript hash is derived from the GroupInfo's confirmation_tag, which the
// observer cannot verify.
func NewObserverFromGroupInfo(groupInfo, ratchetTree []byte, p Policy) (*Observer, error) {
	groupInfo = bytes.Clone(groupInfo)
	ratchetTree = bytes.Clone(ratchetTree)
	gi, err := parseGroupInfo(groupInfo)
	if err != nil {
		return nil, decodeErr("group info", err)
	}
	gc := gi.gc
	if gc.version != ProtocolVersionMLS10 {
		return nil, errf(CodeUnsupported, "protocol version %d", gc.version)
	}
	if !p.suiteAllowed(gc.suite) {
		return nil, errf(CodeUnsupported, "cipher suite 0x%04x not accepted", gc.suite)
	}
	s, _ := suiteFor(gc.suite)
	if ext, ok := findExtension(gi.exts, extTypeRatchetTree); ok {
		if ratchetTree == nil {
			ratchetTree = ext.data
		} else if !bytes.Equal(ratchetTree, ext.data) {
			return nil, errf(CodeInvalidGroupInfo, "ratchet tree differs from the ratchet_tree extension")
		}
	}
	if ratchetTree == nil {
		return nil, errf(CodeInvalidGroupInfo, "no ratchet tree")
	}
	entries, err := parseRatchetTree(ratchetTree)
	if err != nil {
		return nil, decodeErr("ratchet tree", err)
	}
	t, err := treeFromEntries(s, entries)
	if err != nil {
		return nil, err
	}
	if t.leafCount() > p.maxLeaves() {
		return nil, errf(CodeInvalidTree, "tree has %d leaves, limit %d", t.leafCount(), p.maxLeaves())
	}
	if _, err := parseRequiredCapabilities(gc.exts); err != nil {
		return nil, decodeErr("required_capabilities", err)
	}
	o := &Observer{
		s:       s,
		groupID: gc.groupID,
		epoch:   gc.epoch,
		extsRaw: gc.extsRaw,
		exts:    gc.exts,
		cth:     gc.cth,
		tree:    t,
	}
	if err := o.validateTree(p); err != nil {
		return nil, err
	}
	if !bytes.Equal(t.treeHash(), gc.treeHash) {
		return nil, errf(CodeInvalidTree, "tree hash does not match GroupContext.tree_hash")
	}
	signer := t.leaf(gi.signer)
	if signer == nil {
		return nil, errf(CodeInvalidGroupInfo, "signer leaf %d is blank", gi.signer)
	}
	if !s.verify(signer.sigKey, "GroupInfoTBS", gi.tbs, gi.sig) {
		return nil, errf(CodeBadSignature, "bad GroupInfo signature")
	}
	// mls-go v1.0.0 creates epoch-0 groups with an empty confirmation_tag
	// (RFC 9420 §11 computes one from the confirmation_key); the observer
	// cannot verify the tag either way, so it accepts that deviation at
	// epoch 0 and derives the interim transcript hash from what was sent.
	if len(gi.confTag) != s.id.HashLength() && !(gc.epoch == 0 && len(gi.confTag) == 0) {
		return nil, errf(CodeMalformed, "confirmation_tag has length %d", len(gi.confTag))
	}
	o.ith = interimTranscriptHash(s, o.cth, gi.confTag)
	return o, nil
}

// validateTree runs the RFC 9420 §12.4.3.1 ratchet tree checks.
func (o *Observer) validateTree(p Policy) error {
	t := o.tree
	if err := t.verifyStructure(); err != nil {
		return err
	}
	if err := t.verifyParentHashes(); err != nil {
		return err
	}
	rc, _ := parseRequiredCapabilities(o.exts)
	for l := uint32(0); l < t.leafCount(); l++ {
		ln := t.leaf(l)
		if ln == nil {
			continue
		}
		if e := checkLeafSelf(o.s, ln, o.groupID, l, p); e != nil {
			return errf(CodeInvalidTree, "leaf %d: %s", l, e.Msg)
		}
		if !rc.satisfiedBy(ln.caps) {
			return errf(CodeInvalidTree, "leaf %d lacks required capabilities", l)
		}
		if e := o.checkCredentialCompat(t, ln, l); e != nil {
			return errf(CodeInvalidTree, "leaf %d: %s", l, e.Msg)
		}
	}
	return nil
}

// checkCredentialCompat checks RFC 9420 §7.3: ln's credential type is
// supported by every other member and ln supports every type in use.
func (o *Observer) checkCredentialCompat(t *tree, ln *leafNode, self uint32) *Error {
	for l := uint32(0); l < t.leafCount(); l++ {
		m := t.leaf(l)
		if m == nil || l == self {
			continue
		}
		if !containsU16(m.caps.credentials, ln.cred.typ) || !containsU16(ln.caps.credentials, m.cred.typ) {
			return errf(CodeInvalidLeafNode, "credential types incompatible with leaf %d", l)
		}
	}
	return nil
}

// CheckInitialGroup checks that the observer describes a group as its
// creator must submit it (RFC 9420 §11, requirement GC-3): epoch 0, an empty
// confirmed transcript hash, exactly one leaf, and that leaf valid at now
// (lifetime checked when its source is key_package). The signature and tree
// checks were done by NewObserverFromGroupInfo.
func (o *Observer) CheckInitialGroup(now time.Time) error {
	if o.epoch != 0 {
		return errf(CodeInvalidGroupInfo, "epoch %d, want 0", o.epoch)
	}
	if len(o.cth) != 0 {
		return errf(CodeInvalidGroupInfo, "non-empty confirmed transcript hash")
	}
	if o.tree.leafCount() != 1 {
		return errf(CodeInvalidGroupInfo, "tree has %d leaves, want 1", o.tree.leafCount())
	}
	ln := o.tree.leaf(0)
	if ln == nil {
		return errf(CodeInvalidGroupInfo, "creator leaf is blank")
	}
	if ln.source == sourceKeyPackage && !lifetimeContains(ln, now) {
		return errf(CodeInvalidLeafNode, "creator leaf lifetime [%d, %d] does not contain %d", ln.notBefore, ln.notAfter, now.Unix())
	}
	return nil
}

// VerifyLeafSignature verifies sig as SignWithLabel(label, content) (RFC 9420
// §5.1.2) by the signature key of member leaf. It returns CodeNotAMember if
// the leaf is blank or out of range and CodeBadSignature if the signature
// does not verify. It is used, e.g., for the creator's signature over the
// group-creation request.
func (o *Observer) VerifyLeafSignature(leaf uint32, label string, content, sig []byte) error {
	ln := o.tree.leaf(leaf)
	if ln == nil {
		return errf(CodeNotAMember, "leaf %d is not a member", leaf)
	}
	if !o.s.verify(ln.sigKey, label, content, sig) {
		return errf(CodeBadSignature, "signature by leaf %d does not verify", leaf)
	}
	return nil
}

// GroupID returns the group id.
func (o *Observer) GroupID() []byte { return bytes.Clone(o.groupID) }

// Epoch returns the current epoch.
func (o *Observer) Epoch() uint64 { return o.epoch }

// CipherSuite returns the group's cipher suite.
func (o *Observer) CipherSuite() uint16 { return uint16(o.s.id) }

// TreeHash returns the tree hash of the current ratchet tree, equal to
// GroupContext.tree_hash.
func (o *Observer) TreeHash() []byte { return bytes.Clone(o.tree.treeHash()) }

// ConfirmedTranscriptHash returns the current confirmed transcript hash.
func (o *Observer) ConfirmedTranscriptHash() []byte { return bytes.Clone(o.cth) }

// InterimTranscriptHash returns the current interim transcript hash.
func (o *Observer) InterimTranscriptHash() []byte { return bytes.Clone(o.ith) }

// GroupContext returns the TLS-encoded GroupContext of the current epoch.
func (o *Observer) GroupContext() []byte { return o.groupContext() }

// RatchetTree returns the current ratchet tree in the RFC 9420 §12.4.3.3
// encoding, as new members need it next to a Welcome.
func (o *Observer) RatchetTree() []byte { return o.tree.marshal() }

// LeafCount returns the number of leaves of the (full) tree, blank ones
// included.
func (o *Observer) LeafCount() uint32 { return o.tree.leafCount() }

// Members returns the indices of the non-blank leaves, in increasing order.
func (o *Observer) Members() []uint32 {
	var out []uint32
	for l := uint32(0); l < o.tree.leafCount(); l++ {
		if o.tree.leaf(l) != nil {
			out = append(out, l)
		}
	}
	return out
}

// IsMember reports whether leaf is a non-blank leaf of the current tree.
func (o *Observer) IsMember(leaf uint32) bool { return o.tree.leaf(leaf) != nil }

// LeafSignatureKey returns the signature key of member leaf, or nil.
func (o *Observer) LeafSignatureKey(leaf uint32) []byte {
	if ln := o.tree.leaf(leaf); ln != nil {
		return bytes.Clone(ln.sigKey)
	}
	return nil
}

// PendingProposals returns the ProposalRefs stored in the current epoch, in
// arrival order.
func (o *Observer) PendingProposals() [][]byte {
	out := make([][]byte, len(o.proposals))
	for i, sp := range o.proposals {
		out[i] = bytes.Clone(sp.ref)
	}
	return out
}

func (o *Observer) groupContext() []byte {
	gc := groupContext{
		version:  ProtocolVersionMLS10,
		suite:    uint16(o.s.id),
		groupID:  o.groupID,
		epoch:    o.epoch,
		treeHash: o.tree.treeHash(),
		cth:      o.cth,
		extsRaw:  o.extsRaw,
	}
	return gc.marshal()
}

// interimTranscriptHash is Hash(confirmed || InterimTranscriptHashInput)
// (RFC 9420 §8.2).
func interimTranscriptHash(s suite, cth, confTag []byte) []byte {
	var w writer
	w.raw(cth)
	w.vec(confTag)
	return s.hash(w.b)
}

// confirmedTranscriptHash is Hash(interim || ConfirmedTranscriptHashInput)
// with ConfirmedTranscriptHashInput = wire_format || FramedContent ||
// signature<V> (RFC 9420 §8.2).
func confirmedTranscriptHash(s suite, ith []byte, wireFormat uint16, content, sig []byte) []byte {
	// Streamed: a commit's content can be large (one ciphertext per
	// member in the resolution of the path).
	h := s.hashFn()()
	var w writer
	w.raw(ith)
	w.u16(wireFormat)
	h.Write(w.b)
	h.Write(content)
	w.b = w.b[:0]
	w.vec(sig)
	h.Write(w.b)
	return h.Sum(nil)
}

// clone returns an independent copy (values inside the tree are immutable
// and shared).
func (o *Observer) clone() *Observer {
	c := *o
	c.tree = o.tree.clone()
	c.proposals = append([]storedProposal(nil), o.proposals...)
	return &c
}
