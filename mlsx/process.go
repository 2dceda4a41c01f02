package mlsx

import (
	"bytes"
)

// ChangeKind says what an accepted handshake message did.
type ChangeKind uint8

const (
	// ChangeProposal: a proposal was stored for the current epoch.
	ChangeProposal ChangeKind = 1
	// ChangeCommit: a commit advanced the epoch.
	ChangeCommit ChangeKind = 2
)

// AddedLeaf describes a member added by a commit.
type AddedLeaf struct {
	Leaf uint32
	// KeyPackageRef names the KeyPackage in the Welcome for this member.
	KeyPackageRef []byte
	// SealedQueueConfig is the KeyPackage's sealed queue config extension
	// (nil if absent); the Delivery Service stores it per leaf to fan out.
	SealedQueueConfig []byte
}

// Change is the outcome of an accepted handshake message.
type Change struct {
	Kind ChangeKind
	// Epoch is the epoch after the message: unchanged for a proposal, the
	// new epoch for a commit.
	Epoch uint64
	// Sender is the leaf index of the sender.
	Sender uint32
	// ProposalRef is set for a proposal.
	ProposalRef []byte
	// AddedLeaves, RemovedLeaves and UpdatedLeaves are set for a commit.
	// UpdatedLeaves lists leaves replaced by Update proposals and the
	// committer's leaf when the commit has a path.
	AddedLeaves   []AddedLeaf
	RemovedLeaves []uint32
	UpdatedLeaves []uint32
	// TreeHash is the tree hash after the message.
	TreeHash []byte
}

// ProcessPublicMessage checks and applies a handshake message: msg is an
// MLSMessage with wire format PublicMessage. It verifies the group id, the
// epoch (the current one), that the sender is a member leaf, and the
// signature over FramedContentTBS with the current GroupContext. Application
// content is refused (it must be a PrivateMessage).
//
// A proposal is validated (RFC 9420 §12.1) and stored under its ProposalRef
// until the end of the epoch. A commit has its proposals resolved (by value,
// or by reference from the store), validated as a list (§12.2), applied in
// RFC order (§12.3); its UpdatePath is validated and merged, parent hashes
// verified, the tree hash and transcript hashes recomputed, the epoch
// advanced and the proposal store cleared (§12.4.2).
//
// The observer has no group secrets, so membership_tag and confirmation_tag
// are only checked for length, never for value, and the HPKE ciphertexts of
// the path are only counted.
//
// Processing is atomic: on error the observer is unchanged. p.Now is used for
// KeyPackage lifetimes in Add proposals.
func (o *Observer) ProcessPublicMessage(msg []byte, p Policy) (*Change, error) {
	msg = bytes.Clone(msg)
	r := newReader(msg)
	wf, err := parseMLSMessageHeader(r)
	if err != nil {
		return nil, decodeErr("message", err)
	}
	switch wf {
	case wireFormatPublicMessage:
	case wireFormatPrivateMessage:
		return nil, errf(CodeUnsupported, "handshake messages must be PublicMessage")
	default:
		return nil, errf(CodeUnsupported, "wire format %d is not a handshake message", wf)
	}
	pm, err := parsePublicMessage(r)
	if err != nil {
		return nil, decodeErr("public message", err)
	}
	fc := pm.content
	if !bytes.Equal(fc.groupID, o.groupID) {
		return nil, errf(CodeWrongGroup, "message for another group")
	}
	if fc.senderType != senderMember {
		return nil, errf(CodeNotAMember, "sender type %d is not member", fc.senderType)
	}
	if fc.contentType == contentApplication {
		return nil, errf(CodeUnsupported, "application messages must be PrivateMessage")
	}
	if fc.epoch != o.epoch {
		return nil, errf(CodeStaleEpoch, "message epoch %d, group epoch %d", fc.epoch, o.epoch)
	}
	sender := fc.senderIndex
	senderLeaf := o.tree.leaf(sender)
	if senderLeaf == nil {
		return nil, errf(CodeNotAMember, "leaf %d is not a member", sender)
	}
	nh := o.s.id.HashLength()
	if len(pm.membershipTag) != nh {
		return nil, errf(CodeMalformed, "membership_tag has length %d", len(pm.membershipTag))
	}
	if fc.contentType == contentCommit && len(pm.confTag) != nh {
		return nil, errf(CodeMalformed, "confirmation_tag has length %d", len(pm.confTag))
	}
	var tbs writer
	tbs.u16(ProtocolVersionMLS10)
	tbs.u16(wireFormatPublicMessage)
	tbs.raw(fc.raw)
	tbs.raw(o.groupContext())
	if !o.s.verify(senderLeaf.sigKey, "FramedContentTBS", tbs.b, pm.sig) {
		return nil, errf(CodeBadSignature, "FramedContent signature by leaf %d does not verify", sender)
	}

	if fc.contentType == contentProposal {
		return o.storeProposal(pm, sender, p)
	}
	return o.applyCommit(pm, sender, p)
}

func (o *Observer) storeProposal(pm *publicMessage, sender uint32, p Policy) (*Change, error) {
	prop := pm.content.proposal
	if err := o.checkProposal(o.tree, prop, sender, p); err != nil {
		return nil, err
	}
	var ac writer // AuthenticatedContent
	ac.u16(wireFormatPublicMessage)
	ac.raw(pm.content.raw)
	ac.raw(pm.authRaw)
	ref := o.s.proposalRef(ac.b)
	for _, sp := range o.proposals {
		if bytes.Equal(sp.ref, ref) {
			return nil, errf(CodeInvalidProposal, "proposal already received")
		}
	}
	o.proposals = append(o.proposals, storedProposal{ref: ref, sender: sender, prop: prop})
	return &Change{
		Kind:        ChangeProposal,
		Epoch:       o.epoch,
		Sender:      sender,
		ProposalRef: bytes.Clone(ref),
		TreeHash:    bytes.Clone(o.tree.treeHash()),
	}, nil
}

// checkProposal validates one proposal on its own against tree (RFC 9420
// §12.1). List-level rules are checked at commit time.
func (o *Observer) checkProposal(t *tree, prop *proposal, sender uint32, p Policy) error {
	switch prop.typ {
	case proposalAdd:
		kp := p
		kp.GroupCipherSuite = uint16(o.s.id)
		if _, err := checkKeyPackage(prop.add, p.Now, kp); err != nil {
			return err
		}
		rc, _ := parseRequiredCapabilities(o.exts)
		if !rc.satisfiedBy(prop.add.leaf.caps) {
			return errf(CodeInvalidKeyPackage, "KeyPackage lacks the group's required capabilities")
		}
		if e := o.checkCredentialCompat(t, prop.add.leaf, ^uint32(0)); e != nil {
			return errf(CodeInvalidKeyPackage, "%s", e.Msg)
		}
		return nil
	case proposalUpdate:
		return o.checkReplacementLeaf(t, prop.update, sender, sourceUpdate, p)
	case proposalRemove:
		if t.leaf(prop.remove) == nil {
			return errf(CodeInvalidProposal, "remove of blank leaf %d", prop.remove)
		}
		return nil
	case proposalPSK:
		return nil
	default:
		return errf(CodeUnsupported, "proposal type %d not accepted", prop.typ)
	}
}

// checkReplacementLeaf validates a leaf node that replaces leaf l's current
// one (Update proposal or commit path, RFC 9420 §7.3, §12.1.2): right source,
// valid signature and capabilities, a new encryption key, the same
// credential identity (this homeserver's policy: a member cannot change
// pseudonym), compatible credential types. Key uniqueness is checked when
// the leaf is placed.
func (o *Observer) checkReplacementLeaf(t *tree, ln *leafNode, l uint32, source uint8, p Policy) error {
	code := CodeInvalidProposal
	if source == sourceCommit {
		code = CodeInvalidPath
	}
	old := t.leaf(l)
	if old == nil {
		return errf(CodeNotAMember, "leaf %d is not a member", l)
	}
	if ln.source != source {
		return errf(code, "leaf_node_source %d, want %d", ln.source, source)
	}
	if e := checkLeafSelf(o.s, ln, o.groupID, l, p); e != nil {
		return errf(code, "%s", e.Msg)
	}
	rc, _ := parseRequiredCapabilities(o.exts)
	if !rc.satisfiedBy(ln.caps) {
		return errf(code, "leaf lacks the group's required capabilities")
	}
	if bytes.Equal(ln.encKey, old.encKey) {
		return errf(code, "encryption_key not changed")
	}
	if ln.cred.typ != old.cred.typ || !bytes.Equal(ln.cred.raw, old.cred.raw) {
		return errf(code, "credential changed")
	}
	if e := o.checkCredentialCompat(t, ln, l); e != nil {
		return errf(code, "%s", e.Msg)
	}
	return nil
}

type resolvedProposal struct {
	prop   *proposal
	sender uint32
}

func (o *Observer) applyCommit(pm *publicMessage, committer uint32, p Policy) (*Change, error) {
	c := pm.content.commit
	t := o.tree.clone()

	// Resolve proposals (RFC 9420 §12.4).
	var list []resolvedProposal
	var seenRefs [][]byte
	for _, por := range c.proposals {
		if por.prop != nil {
			if por.prop.typ == proposalUpdate {
				return nil, errf(CodeInvalidCommit, "update proposal by value (committer's own update)")
			}
			if err := o.checkProposal(t, por.prop, committer, p); err != nil {
				return nil, err
			}
			list = append(list, resolvedProposal{prop: por.prop, sender: committer})
			continue
		}
		for _, r := range seenRefs {
			if bytes.Equal(r, por.ref) {
				return nil, errf(CodeInvalidCommit, "proposal referenced twice")
			}
		}
		seenRefs = append(seenRefs, por.ref)
		sp, ok := o.findProposal(por.ref)
		if !ok {
			return nil, errf(CodeInvalidCommit, "unknown proposal reference")
		}
		list = append(list, resolvedProposal{prop: sp.prop, sender: sp.sender})
	}

	// Proposal list validation (RFC 9420 §12.2).
	touched := map[uint32]bool{}
	var removed []uint32
	var psks [][]byte
	needPath := len(list) == 0
	for _, rp := range list {
		switch rp.prop.typ {
		case proposalUpdate:
			needPath = true
			if rp.sender == committer {
				return nil, errf(CodeInvalidCommit, "commit contains the committer's own update")
			}
			if touched[rp.sender] {
				return nil, errf(CodeInvalidCommit, "several updates/removes for leaf %d", rp.sender)
			}
			touched[rp.sender] = true
		case proposalRemove:
			needPath = true
			if rp.prop.remove == committer {
				return nil, errf(CodeInvalidCommit, "commit removes the committer")
			}
			if touched[rp.prop.remove] {
				return nil, errf(CodeInvalidCommit, "several updates/removes for leaf %d", rp.prop.remove)
			}
			touched[rp.prop.remove] = true
			removed = append(removed, rp.prop.remove)
		case proposalPSK:
			for _, id := range psks {
				if bytes.Equal(id, rp.prop.psk.raw) {
					return nil, errf(CodeInvalidCommit, "duplicate PreSharedKey proposal")
				}
			}
			psks = append(psks, rp.prop.psk.raw)
		}
	}
	if needPath && c.path == nil {
		return nil, errf(CodeInvalidCommit, "commit requires a path")
	}

	ch := &Change{Kind: ChangeCommit, Sender: committer, RemovedLeaves: removed}

	// Apply in RFC 9420 §12.3 order: updates, removes, adds.
	for _, rp := range list {
		if rp.prop.typ != proposalUpdate {
			continue
		}
		// Re-check against the current tree: the leaf may have changed
		// since the proposal was received only through this commit.
		if err := o.checkReplacementLeaf(t, rp.prop.update, rp.sender, sourceUpdate, p); err != nil {
			return nil, err
		}
		if err := checkLeafKeysUnique(t, rp.prop.update, rp.sender); err != nil {
			return nil, err
		}
		applyUpdate(t, rp.sender, rp.prop.update)
		ch.UpdatedLeaves = append(ch.UpdatedLeaves, rp.sender)
	}
	for _, rp := range list {
		if rp.prop.typ != proposalRemove {
			continue
		}
		if t.leaf(rp.prop.remove) == nil {
			return nil, errf(CodeInvalidProposal, "remove of blank leaf %d", rp.prop.remove)
		}
		applyRemove(t, rp.prop.remove)
	}
	newLeaves := map[uint32]bool{}
	for _, rp := range list {
		if rp.prop.typ != proposalAdd {
			continue
		}
		kp := rp.prop.add
		if err := checkLeafKeysUnique(t, kp.leaf, ^uint32(0)); err != nil {
			return nil, errf(CodeInvalidProposal, "add: %s", err.(*Error).Msg)
		}
		l := t.addLeaf(kp.leaf)
		if t.leafCount() > p.maxLeaves() {
			return nil, errf(CodeInvalidCommit, "tree would exceed %d leaves", p.maxLeaves())
		}
		newLeaves[l] = true
		info := AddedLeaf{Leaf: l, KeyPackageRef: o.s.keyPackageRef(kp.raw)}
		if e, ok := findExtension(kp.exts, SealedQueueConfigExtensionType); ok {
			info.SealedQueueConfig = bytes.Clone(e.data)
		}
		ch.AddedLeaves = append(ch.AddedLeaves, info)
	}

	if c.path != nil {
		if err := o.mergePath(t, c.path, committer, newLeaves, p); err != nil {
			return nil, err
		}
		ch.UpdatedLeaves = append(ch.UpdatedLeaves, committer)
	}

	// Transcript hashes (RFC 9420 §8.2) and the new epoch.
	cth := confirmedTranscriptHash(o.s, o.ith, wireFormatPublicMessage, pm.content.raw, pm.sig)
	ith := interimTranscriptHash(o.s, cth, pm.confTag)

	o.tree = t
	o.epoch++
	o.cth = cth
	o.ith = ith
	o.proposals = nil
	ch.Epoch = o.epoch
	ch.TreeHash = bytes.Clone(t.treeHash())
	return ch, nil
}

// applyUpdate replaces leaf l and blanks its direct path (RFC 9420 §12.1.2).
func applyUpdate(t *tree, l uint32, ln *leafNode) {
	t.setLeaf(l, ln)
	t.blankDirectPath(l)
}

// applyRemove blanks leaf l and its direct path and truncates the tree
// (RFC 9420 §12.1.3).
func applyRemove(t *tree, l uint32) {
	t.blankNode(2 * l)
	t.blankDirectPath(l)
	t.truncate()
}

func (o *Observer) findProposal(ref []byte) (storedProposal, bool) {
	for _, sp := range o.proposals {
		if bytes.Equal(sp.ref, ref) {
			return sp, true
		}
	}
	return storedProposal{}, false
}

// checkLeafKeysUnique checks that ln's signature and encryption keys are not
// used by any node of t other than leaf self (RFC 9420 §7.3).
func checkLeafKeysUnique(t *tree, ln *leafNode, self uint32) error {
	if l, ok := t.findSignatureKey(ln.sigKey); ok && l != self {
		return errf(CodeInvalidProposal, "signature key already used by leaf %d", l)
	}
	for x, n := range t.nodes {
		if uint32(x) == 2*self {
			continue
		}
		if (n.leaf != nil && bytes.Equal(n.leaf.encKey, ln.encKey)) || (n.parent != nil && bytes.Equal(n.parent.encKey, ln.encKey)) {
			return errf(CodeInvalidProposal, "encryption key already used by node %d", x)
		}
	}
	return nil
}

// mergePath validates the committer's UpdatePath against the tree after
// proposals and merges it (RFC 9420 §7.5, §7.9, §12.4.2).
func (o *Observer) mergePath(t *tree, up *updatePath, committer uint32, newLeaves map[uint32]bool, p Policy) error {
	if err := o.checkReplacementLeaf(t, up.leaf, committer, sourceCommit, p); err != nil {
		return err
	}
	if l, ok := t.findSignatureKey(up.leaf.sigKey); ok && l != committer {
		return errf(CodeInvalidPath, "signature key already used by leaf %d", l)
	}
	path, copath := t.filteredDirectPath(committer)
	if len(up.nodes) != len(path) {
		return errf(CodeInvalidPath, "path has %d nodes, filtered direct path has %d", len(up.nodes), len(path))
	}
	keys := [][]byte{up.leaf.encKey}
	for i, n := range up.nodes {
		if want := t.resolutionSize(copath[i], newLeaves); n.ciphertexts != want {
			return errf(CodeInvalidPath, "path node %d has %d ciphertexts, resolution has %d", i, n.ciphertexts, want)
		}
		if !o.s.validHPKEKey(n.encKey) {
			return errf(CodeInvalidPath, "invalid encryption key in path node %d", i)
		}
		keys = append(keys, n.encKey)
	}
	fresh := make(map[string]bool, len(keys))
	for _, k := range keys {
		if fresh[string(k)] {
			return errf(CodeInvalidPath, "repeated public key in path")
		}
		fresh[string(k)] = true
	}
	for _, n := range t.nodes {
		if (n.leaf != nil && fresh[string(n.leaf.encKey)]) || (n.parent != nil && fresh[string(n.parent.encKey)]) {
			return errf(CodeInvalidPath, "path public key already in the tree")
		}
	}

	// Merge: blank the direct path, install the new keys with empty
	// unmerged lists, then compute parent hashes from the root down.
	t.blankDirectPath(committer)
	for i, x := range path {
		t.setParent(x, &parentNode{encKey: up.nodes[i].encKey})
	}
	for i := len(path) - 1; i >= 1; i-- {
		ph := t.parentHashOf(path[i], siblingOfOnPath(path[i], path[i-1]))
		pn := *t.nodes[path[i-1]].parent
		pn.parentHash = ph
		t.setParent(path[i-1], &pn)
	}
	var leafPH []byte
	if len(path) > 0 {
		leafPH = t.parentHashOf(path[0], copath[0])
	}
	if !bytes.Equal(up.leaf.parentHash, leafPH) {
		return errf(CodeInvalidPath, "leaf parent_hash does not match the path")
	}
	t.setLeaf(committer, up.leaf)
	return nil
}

// siblingOfOnPath returns the child of p that is not an ancestor-or-self of
// the lower path node below.
func siblingOfOnPath(p, below uint32) uint32 {
	l, r := left(p), right(p)
	if inSubtree(below, l) {
		return r
	}
	return l
}
