package mlsx

import (
	"errors"
	"fmt"
)

// Decoded RFC 9420 wire structures. Every decoded value keeps the exact bytes
// it came from (raw, tbs) so that signatures and hashes are computed over
// what the sender sent, never over a re-encoding.

// Wire formats (RFC 9420 §6).
const (
	wireFormatPublicMessage  uint16 = 1
	wireFormatPrivateMessage uint16 = 2
	wireFormatWelcome        uint16 = 3
	wireFormatGroupInfo      uint16 = 4
	wireFormatKeyPackage     uint16 = 5
)

// Sender types (RFC 9420 §6).
const (
	senderMember            uint8 = 1
	senderExternal          uint8 = 2
	senderNewMemberProposal uint8 = 3
	senderNewMemberCommit   uint8 = 4
)

// Content types (RFC 9420 §6).
const (
	contentApplication uint8 = 1
	contentProposal    uint8 = 2
	contentCommit      uint8 = 3
)

// Leaf node sources (RFC 9420 §7.2).
const (
	sourceKeyPackage uint8 = 1
	sourceUpdate     uint8 = 2
	sourceCommit     uint8 = 3
)

// Proposal types (RFC 9420 §12.1).
const (
	proposalAdd                    uint16 = 1
	proposalUpdate                 uint16 = 2
	proposalRemove                 uint16 = 3
	proposalPSK                    uint16 = 4
	proposalReInit                 uint16 = 5
	proposalExternalInit           uint16 = 6
	proposalGroupContextExtensions uint16 = 7
)

// errUnsupportedEncoding marks values that are well-formed MLS but whose
// length this decoder cannot know (unknown credential or proposal types).
var errUnsupportedEncoding = errors.New("unsupported type")

// decodeErr turns a decoding error into a typed *Error.
func decodeErr(what string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, errUnsupportedEncoding) {
		return errf(CodeUnsupported, "%s: %v", what, err)
	}
	return errf(CodeMalformed, "%s: %v", what, err)
}

type extension struct {
	typ  uint16
	data []byte
}

// parseExtensions reads Extension extensions<V>. Duplicate types are an
// error (RFC 9420 §13.4).
func parseExtensions(r *reader) ([]extension, []byte, error) {
	content, err := r.vec()
	if err != nil {
		return nil, nil, err
	}
	er := newReader(content)
	var exts []extension
	for !er.empty() {
		t, err := er.u16()
		if err != nil {
			return nil, nil, err
		}
		d, err := er.vec()
		if err != nil {
			return nil, nil, err
		}
		for _, e := range exts {
			if e.typ == t {
				return nil, nil, fmt.Errorf("duplicate extension type 0x%04x", t)
			}
		}
		exts = append(exts, extension{typ: t, data: d})
	}
	return exts, content, nil
}

func findExtension(exts []extension, t uint16) (extension, bool) {
	for _, e := range exts {
		if e.typ == t {
			return e, true
		}
	}
	return extension{}, false
}

func parseU16List(r *reader) ([]uint16, error) {
	content, err := r.vec()
	if err != nil {
		return nil, err
	}
	if len(content)%2 != 0 {
		return nil, errors.New("odd-length uint16 vector")
	}
	out := make([]uint16, len(content)/2)
	for i := range out {
		out[i] = uint16(content[2*i])<<8 | uint16(content[2*i+1])
	}
	return out, nil
}

func containsU16(list []uint16, v uint16) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

type capabilities struct {
	versions    []uint16
	suites      []uint16
	extensions  []uint16
	proposals   []uint16
	credentials []uint16
}

func parseCapabilities(r *reader) (capabilities, error) {
	var c capabilities
	var err error
	for _, dst := range []*[]uint16{&c.versions, &c.suites, &c.extensions, &c.proposals, &c.credentials} {
		if *dst, err = parseU16List(r); err != nil {
			return c, err
		}
	}
	return c, nil
}

type credential struct {
	typ      uint16
	identity []byte // basic credential identity; nil for x509
	raw      []byte
}

func parseCredential(r *reader) (credential, error) {
	start := r.off
	t, err := r.u16()
	if err != nil {
		return credential{}, err
	}
	c := credential{typ: t}
	switch t {
	case CredentialTypeBasic:
		if c.identity, err = r.vec(); err != nil {
			return c, err
		}
	case CredentialTypeX509:
		certs, err := r.sub()
		if err != nil {
			return c, err
		}
		for !certs.empty() {
			if _, err := certs.vec(); err != nil {
				return c, err
			}
		}
	default:
		return c, fmt.Errorf("%w: credential type 0x%04x", errUnsupportedEncoding, t)
	}
	c.raw = r.since(start)
	return c, nil
}

// leafNode is a decoded RFC 9420 §7.2 LeafNode.
type leafNode struct {
	raw        []byte // whole LeafNode, signature included
	body       []byte // every field before the signature
	encKey     []byte
	sigKey     []byte
	cred       credential
	caps       capabilities
	source     uint8
	notBefore  uint64
	notAfter   uint64
	parentHash []byte
	exts       []extension
	sig        []byte
}

func parseLeafNode(r *reader) (*leafNode, error) {
	start := r.off
	ln := &leafNode{}
	var err error
	if ln.encKey, err = r.vec(); err != nil {
		return nil, err
	}
	if ln.sigKey, err = r.vec(); err != nil {
		return nil, err
	}
	if ln.cred, err = parseCredential(r); err != nil {
		return nil, err
	}
	if ln.caps, err = parseCapabilities(r); err != nil {
		return nil, err
	}
	if ln.source, err = r.u8(); err != nil {
		return nil, err
	}
	switch ln.source {
	case sourceKeyPackage:
		if ln.notBefore, err = r.u64(); err != nil {
			return nil, err
		}
		if ln.notAfter, err = r.u64(); err != nil {
			return nil, err
		}
	case sourceUpdate:
	case sourceCommit:
		if ln.parentHash, err = r.vec(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("invalid leaf_node_source %d", ln.source)
	}
	if ln.exts, _, err = parseExtensions(r); err != nil {
		return nil, err
	}
	ln.body = r.since(start)
	if ln.sig, err = r.vec(); err != nil {
		return nil, err
	}
	ln.raw = r.since(start)
	return ln, nil
}

// tbs returns LeafNodeTBS (RFC 9420 §7.2): the body, followed by group_id and
// leaf_index for the update and commit sources.
func (ln *leafNode) tbs(groupID []byte, leaf uint32) []byte {
	w := writer{b: make([]byte, 0, len(ln.body)+len(groupID)+8)}
	w.raw(ln.body)
	if ln.source == sourceUpdate || ln.source == sourceCommit {
		w.vec(groupID)
		w.u32(leaf)
	}
	return w.b
}

// keyPackage is a decoded RFC 9420 §10 KeyPackage.
type keyPackage struct {
	raw     []byte
	tbs     []byte
	version uint16
	suite   uint16
	initKey []byte
	leaf    *leafNode
	exts    []extension
	sig     []byte
}

func parseKeyPackage(r *reader) (*keyPackage, error) {
	start := r.off
	kp := &keyPackage{}
	var err error
	if kp.version, err = r.u16(); err != nil {
		return nil, err
	}
	if kp.suite, err = r.u16(); err != nil {
		return nil, err
	}
	if kp.initKey, err = r.vec(); err != nil {
		return nil, err
	}
	if kp.leaf, err = parseLeafNode(r); err != nil {
		return nil, err
	}
	if kp.exts, _, err = parseExtensions(r); err != nil {
		return nil, err
	}
	kp.tbs = r.since(start)
	if kp.sig, err = r.vec(); err != nil {
		return nil, err
	}
	kp.raw = r.since(start)
	return kp, nil
}

// parentNode is an RFC 9420 §7.1 ParentNode.
type parentNode struct {
	encKey     []byte
	parentHash []byte
	unmerged   []uint32
}

func parseParentNode(r *reader) (*parentNode, error) {
	p := &parentNode{}
	var err error
	if p.encKey, err = r.vec(); err != nil {
		return nil, err
	}
	if p.parentHash, err = r.vec(); err != nil {
		return nil, err
	}
	ul, err := r.vec()
	if err != nil {
		return nil, err
	}
	if len(ul)%4 != 0 {
		return nil, errors.New("unmerged_leaves length not a multiple of 4")
	}
	p.unmerged = make([]uint32, len(ul)/4)
	for i := range p.unmerged {
		p.unmerged[i] = uint32(ul[4*i])<<24 | uint32(ul[4*i+1])<<16 | uint32(ul[4*i+2])<<8 | uint32(ul[4*i+3])
	}
	return p, nil
}

func (p *parentNode) marshal(w *writer) {
	w.vec(p.encKey)
	w.vec(p.parentHash)
	w.varint(4 * len(p.unmerged))
	for _, u := range p.unmerged {
		w.u32(u)
	}
}

// groupContext is the RFC 9420 §8.1 GroupContext.
type groupContext struct {
	version  uint16
	suite    uint16
	groupID  []byte
	epoch    uint64
	treeHash []byte
	cth      []byte // confirmed transcript hash
	extsRaw  []byte // content of the extensions vector
	exts     []extension
}

func parseGroupContext(r *reader) (*groupContext, error) {
	gc := &groupContext{}
	var err error
	if gc.version, err = r.u16(); err != nil {
		return nil, err
	}
	if gc.suite, err = r.u16(); err != nil {
		return nil, err
	}
	if gc.groupID, err = r.vec(); err != nil {
		return nil, err
	}
	if gc.epoch, err = r.u64(); err != nil {
		return nil, err
	}
	if gc.treeHash, err = r.vec(); err != nil {
		return nil, err
	}
	if gc.cth, err = r.vec(); err != nil {
		return nil, err
	}
	if gc.exts, gc.extsRaw, err = parseExtensions(r); err != nil {
		return nil, err
	}
	return gc, nil
}

func (gc *groupContext) marshal() []byte {
	var w writer
	w.u16(gc.version)
	w.u16(gc.suite)
	w.vec(gc.groupID)
	w.u64(gc.epoch)
	w.vec(gc.treeHash)
	w.vec(gc.cth)
	w.vec(gc.extsRaw)
	return w.b
}

// groupInfo is the RFC 9420 §12.4.3 GroupInfo.
type groupInfo struct {
	gc      *groupContext
	exts    []extension
	confTag []byte
	signer  uint32
	tbs     []byte
	sig     []byte
}

func parseGroupInfo(b []byte) (*groupInfo, error) {
	r := newReader(b)
	gi := &groupInfo{}
	var err error
	if gi.gc, err = parseGroupContext(r); err != nil {
		return nil, err
	}
	if gi.exts, _, err = parseExtensions(r); err != nil {
		return nil, err
	}
	if gi.confTag, err = r.vec(); err != nil {
		return nil, err
	}
	if gi.signer, err = r.u32(); err != nil {
		return nil, err
	}
	gi.tbs = r.since(0)
	if gi.sig, err = r.vec(); err != nil {
		return nil, err
	}
	return gi, r.done()
}

// treeEntry is one optional<Node> of a serialized ratchet tree.
type treeEntry struct {
	leaf   *leafNode
	parent *parentNode
}

// parseRatchetTree decodes optional<Node> ratchet_tree<V> (RFC 9420
// §12.4.3.3). The returned slice has the length that was sent; node types
// must match their position (leaves at even indices).
func parseRatchetTree(b []byte) ([]treeEntry, error) {
	r := newReader(b)
	content, err := r.sub()
	if err != nil {
		return nil, err
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	var nodes []treeEntry
	for i := 0; !content.empty(); i++ {
		present, err := content.optional()
		if err != nil {
			return nil, err
		}
		if !present {
			nodes = append(nodes, treeEntry{})
			continue
		}
		t, err := content.u8()
		if err != nil {
			return nil, err
		}
		switch {
		case t == 1 && i%2 == 0:
			ln, err := parseLeafNode(content)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, treeEntry{leaf: ln})
		case t == 2 && i%2 == 1:
			p, err := parseParentNode(content)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, treeEntry{parent: p})
		default:
			return nil, fmt.Errorf("node %d: node type %d at wrong position", i, t)
		}
	}
	return nodes, nil
}

// Proposals and commits.

type pskID struct {
	pskType uint8
	raw     []byte // the PreSharedKeyID bytes, for duplicate detection
}

type proposal struct {
	typ    uint16
	raw    []byte // whole Proposal including its type
	add    *keyPackage
	update *leafNode
	remove uint32
	psk    *pskID
	gceRaw []byte
}

func parseProposal(r *reader) (*proposal, error) {
	start := r.off
	t, err := r.u16()
	if err != nil {
		return nil, err
	}
	p := &proposal{typ: t}
	switch t {
	case proposalAdd:
		if p.add, err = parseKeyPackage(r); err != nil {
			return nil, err
		}
	case proposalUpdate:
		if p.update, err = parseLeafNode(r); err != nil {
			return nil, err
		}
	case proposalRemove:
		if p.remove, err = r.u32(); err != nil {
			return nil, err
		}
	case proposalPSK:
		if p.psk, err = parsePSKID(r); err != nil {
			return nil, err
		}
	case proposalReInit:
		if _, err = r.vec(); err != nil { // group_id
			return nil, err
		}
		if _, err = r.u16(); err != nil { // version
			return nil, err
		}
		if _, err = r.u16(); err != nil { // cipher_suite
			return nil, err
		}
		if _, _, err = parseExtensions(r); err != nil {
			return nil, err
		}
	case proposalExternalInit:
		if _, err = r.vec(); err != nil { // kem_output
			return nil, err
		}
	case proposalGroupContextExtensions:
		if _, p.gceRaw, err = parseExtensions(r); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: proposal type 0x%04x", errUnsupportedEncoding, t)
	}
	p.raw = r.since(start)
	return p, nil
}

func parsePSKID(r *reader) (*pskID, error) {
	start := r.off
	t, err := r.u8()
	if err != nil {
		return nil, err
	}
	switch t {
	case 1: // external
		if _, err := r.vec(); err != nil {
			return nil, err
		}
	case 2: // resumption
		if _, err := r.u8(); err != nil {
			return nil, err
		}
		if _, err := r.vec(); err != nil {
			return nil, err
		}
		if _, err := r.u64(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("invalid psktype %d", t)
	}
	if _, err := r.vec(); err != nil { // psk_nonce
		return nil, err
	}
	return &pskID{pskType: t, raw: r.since(start)}, nil
}

type proposalOrRef struct {
	prop *proposal
	ref  []byte
}

type updatePathNode struct {
	encKey      []byte
	ciphertexts int
}

type updatePath struct {
	leaf  *leafNode
	nodes []updatePathNode
}

type commit struct {
	proposals []proposalOrRef
	path      *updatePath
}

func parseCommit(r *reader) (*commit, error) {
	c := &commit{}
	pr, err := r.sub()
	if err != nil {
		return nil, err
	}
	for !pr.empty() {
		t, err := pr.u8()
		if err != nil {
			return nil, err
		}
		switch t {
		case 1:
			p, err := parseProposal(pr)
			if err != nil {
				return nil, err
			}
			c.proposals = append(c.proposals, proposalOrRef{prop: p})
		case 2:
			ref, err := pr.vec()
			if err != nil {
				return nil, err
			}
			c.proposals = append(c.proposals, proposalOrRef{ref: ref})
		default:
			return nil, fmt.Errorf("invalid ProposalOrRefType %d", t)
		}
	}
	present, err := r.optional()
	if err != nil {
		return nil, err
	}
	if !present {
		return c, nil
	}
	up := &updatePath{}
	if up.leaf, err = parseLeafNode(r); err != nil {
		return nil, err
	}
	nr, err := r.sub()
	if err != nil {
		return nil, err
	}
	for !nr.empty() {
		var n updatePathNode
		if n.encKey, err = nr.vec(); err != nil {
			return nil, err
		}
		cts, err := nr.sub()
		if err != nil {
			return nil, err
		}
		for !cts.empty() {
			if _, err := cts.vec(); err != nil { // kem_output
				return nil, err
			}
			if _, err := cts.vec(); err != nil { // ciphertext
				return nil, err
			}
			n.ciphertexts++
		}
		up.nodes = append(up.nodes, n)
	}
	c.path = up
	return c, nil
}

// framedContent is RFC 9420 §6 FramedContent.
type framedContent struct {
	raw         []byte
	groupID     []byte
	epoch       uint64
	senderType  uint8
	senderIndex uint32
	contentType uint8
	proposal    *proposal
	commit      *commit
}

func parseFramedContent(r *reader) (*framedContent, error) {
	start := r.off
	fc := &framedContent{}
	var err error
	if fc.groupID, err = r.vec(); err != nil {
		return nil, err
	}
	if fc.epoch, err = r.u64(); err != nil {
		return nil, err
	}
	if fc.senderType, err = r.u8(); err != nil {
		return nil, err
	}
	switch fc.senderType {
	case senderMember, senderExternal:
		if fc.senderIndex, err = r.u32(); err != nil {
			return nil, err
		}
	case senderNewMemberProposal, senderNewMemberCommit:
	default:
		return nil, fmt.Errorf("invalid sender type %d", fc.senderType)
	}
	if _, err = r.vec(); err != nil { // authenticated_data
		return nil, err
	}
	if fc.contentType, err = r.u8(); err != nil {
		return nil, err
	}
	switch fc.contentType {
	case contentApplication:
		if _, err = r.vec(); err != nil {
			return nil, err
		}
	case contentProposal:
		if fc.proposal, err = parseProposal(r); err != nil {
			return nil, err
		}
	case contentCommit:
		if fc.commit, err = parseCommit(r); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("invalid content type %d", fc.contentType)
	}
	fc.raw = r.since(start)
	return fc, nil
}

// publicMessage is RFC 9420 §6.2 PublicMessage.
type publicMessage struct {
	content       *framedContent
	authRaw       []byte // FramedContentAuthData
	sig           []byte
	confTag       []byte
	membershipTag []byte
}

// parseMLSMessageHeader reads version and wire_format of an MLSMessage.
func parseMLSMessageHeader(r *reader) (uint16, error) {
	v, err := r.u16()
	if err != nil {
		return 0, err
	}
	if v != ProtocolVersionMLS10 {
		return 0, errf(CodeUnsupported, "protocol version %d", v)
	}
	return r.u16()
}

func parsePublicMessage(r *reader) (*publicMessage, error) {
	pm := &publicMessage{}
	var err error
	if pm.content, err = parseFramedContent(r); err != nil {
		return nil, err
	}
	start := r.off
	if pm.sig, err = r.vec(); err != nil {
		return nil, err
	}
	if pm.content.contentType == contentCommit {
		if pm.confTag, err = r.vec(); err != nil {
			return nil, err
		}
	}
	pm.authRaw = r.since(start)
	if pm.content.senderType == senderMember {
		if pm.membershipTag, err = r.vec(); err != nil {
			return nil, err
		}
	}
	return pm, r.done()
}

// privateMessageHeader is the cleartext part of RFC 9420 §6.3 PrivateMessage.
type privateMessageHeader struct {
	groupID     []byte
	epoch       uint64
	contentType uint8
}

func parsePrivateMessage(r *reader) (*privateMessageHeader, error) {
	h := &privateMessageHeader{}
	var err error
	if h.groupID, err = r.vec(); err != nil {
		return nil, err
	}
	if h.epoch, err = r.u64(); err != nil {
		return nil, err
	}
	if h.contentType, err = r.u8(); err != nil {
		return nil, err
	}
	if h.contentType < contentApplication || h.contentType > contentCommit {
		return nil, fmt.Errorf("invalid content type %d", h.contentType)
	}
	for i := 0; i < 3; i++ { // authenticated_data, encrypted_sender_data, ciphertext
		if _, err = r.vec(); err != nil {
			return nil, err
		}
	}
	return h, r.done()
}
