package mlsx

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/thomas-vilte/mls-go/ciphersuite"
	"github.com/thomas-vilte/mls-go/credentials"
	mlsext "github.com/thomas-vilte/mls-go/extensions"
	"github.com/thomas-vilte/mls-go/framing"
	"github.com/thomas-vilte/mls-go/group"
	"github.com/thomas-vilte/mls-go/keypackages"
	"github.com/thomas-vilte/mls-go/treesync"
)

// This file is the client side: a thin wrapper over mls-go's group package
// for the project's Go client library, tests, testnet and benchmarks. State
// lives in memory. Every handshake it produces is a PublicMessage, so the
// Delivery Service's Observer can check it; application messages are
// PrivateMessages sent with a request signature (AppRequestTBS).
//
// mls-go specifics this wrapper works around:
//   - keypackages.Generate cannot add KeyPackage extensions, so the
//     KeyPackage is re-signed here after adding the sealed queue config and
//     last_resort extensions (and listing them in the capabilities).
//   - group.Group cannot discard a staged commit and changes its state while
//     creating one; commits are made on a copy of the state (see commit).
//   - mls-go's own SelfUpdate puts the committer's Update proposal in its
//     commit, which RFC 9420 §12.2 forbids; SelfUpdate here is a commit with
//     a path and no proposals of its own.
//   - mls-go has no SelfRemove proposal: a member leaves by proposing its
//     own Remove, which another member commits.

// Lifetime is the validity period written into a KeyPackage's leaf node. The
// caller provides it; this package never reads the clock.
type Lifetime struct {
	NotBefore time.Time
	NotAfter  time.Time
}

func (lt Lifetime) option() (keypackages.GenerateOption, error) {
	if lt.NotAfter.IsZero() || lt.NotAfter.Before(lt.NotBefore) || lt.NotBefore.Before(time.Unix(0, 0)) {
		return nil, errors.New("mlsx: a lifetime with NotBefore <= NotAfter is required")
	}
	return keypackages.WithLifetime(uint64(lt.NotBefore.Unix()), uint64(lt.NotAfter.Unix())), nil
}

// KeyPackageOptions configures NewKeyPackage.
type KeyPackageOptions struct {
	Lifetime Lifetime
	// SealedQueueConfig, if non-nil, is put in the
	// SealedQueueConfigExtensionType KeyPackage extension.
	SealedQueueConfig []byte
	// LastResort marks the KeyPackage with the last_resort extension; its
	// private keys are kept after a join so it can be used again.
	LastResort bool
}

type pendingKeyPackage struct {
	kp         *keypackages.KeyPackage
	priv       *keypackages.KeyPackagePrivateKeys
	ref        []byte
	lastResort bool
}

// Identity is a client's MLS identity: a signature key pair with a basic
// credential holding an opaque pseudonym, cipher suite 1. It creates
// KeyPackages, groups, and joins groups. Not safe for concurrent use.
type Identity struct {
	cs       ciphersuite.CipherSuite
	cred     *credentials.CredentialWithKey
	sigKey   *ciphersuite.SignaturePrivateKey
	pending  []pendingKeyPackage
	identity []byte
}

// NewIdentity creates a fresh identity whose basic credential carries
// pseudonym (opaque bytes; the real identity never reaches the Delivery
// Service).
func NewIdentity(pseudonym []byte) (*Identity, error) {
	if len(pseudonym) == 0 {
		return nil, errors.New("mlsx: empty pseudonym")
	}
	cs := ciphersuite.MLS128DHKEMX25519
	cred, sigKey, err := credentials.GenerateCredentialWithKeyForCS(bytes.Clone(pseudonym), cs)
	if err != nil {
		return nil, fmt.Errorf("mlsx: generating credential: %w", err)
	}
	return &Identity{cs: cs, cred: cred, sigKey: sigKey, identity: bytes.Clone(pseudonym)}, nil
}

// Pseudonym returns the credential identity.
func (id *Identity) Pseudonym() []byte { return bytes.Clone(id.identity) }

// SignatureKey returns the public signature key of the identity.
func (id *Identity) SignatureKey() []byte { return bytes.Clone(id.sigKey.PublicKey().AsSlice()) }

// NewKeyPackage returns a fresh TLS-encoded KeyPackage (not wrapped in an
// MLSMessage) and keeps its private keys for Join.
func (id *Identity) NewKeyPackage(opts KeyPackageOptions) ([]byte, error) {
	lt, err := opts.Lifetime.option()
	if err != nil {
		return nil, err
	}
	kp, priv, err := keypackages.Generate(id.cred, id.cs, lt)
	if err != nil {
		return nil, fmt.Errorf("mlsx: generating key package: %w", err)
	}
	var exts []keypackages.Extension
	var listed []uint16
	if opts.LastResort {
		exts = append(exts, keypackages.Extension{Type: mlsext.ExtensionTypeLastResort, Data: []byte{}})
		listed = append(listed, ExtensionTypeLastResort)
	}
	if opts.SealedQueueConfig != nil {
		exts = append(exts, keypackages.Extension{Type: mlsext.ExtensionType(SealedQueueConfigExtensionType), Data: bytes.Clone(opts.SealedQueueConfig)})
		listed = append(listed, SealedQueueConfigExtensionType)
	}
	if len(exts) > 0 {
		// RFC 9420 §10: KeyPackage extensions must be listed in the leaf's
		// capabilities, so the leaf node is re-signed too. Marshal with an
		// empty signature is TBS || 0x00.
		kp.LeafNode.Capabilities.Extensions = append(kp.LeafNode.Capabilities.Extensions, listed...)
		kp.LeafNode.Signature = nil
		lnTBS := kp.LeafNode.Marshal()
		sig, err := ciphersuite.SignWithLabel(id.sigKey, "LeafNodeTBS", lnTBS[:len(lnTBS)-1])
		if err != nil {
			return nil, fmt.Errorf("mlsx: signing leaf node: %w", err)
		}
		kp.LeafNode.Signature = sig.AsSlice()
		kp.Extensions = exts
		kp.Signature = nil
		kpTBS := kp.Marshal()
		sig, err = ciphersuite.SignWithLabel(id.sigKey, "KeyPackageTBS", kpTBS[:len(kpTBS)-1])
		if err != nil {
			return nil, fmt.Errorf("mlsx: signing key package: %w", err)
		}
		kp.Signature = sig.AsSlice()
	}
	raw := kp.Marshal()
	parsed, err := keypackages.UnmarshalKeyPackage(raw)
	if err != nil {
		return nil, fmt.Errorf("mlsx: re-reading key package: %w", err)
	}
	info, err := ValidateKeyPackage(raw, time.Time{}, Policy{})
	if err != nil {
		return nil, fmt.Errorf("mlsx: generated key package is invalid: %w", err)
	}
	id.pending = append(id.pending, pendingKeyPackage{kp: parsed, priv: priv, ref: info.Ref, lastResort: opts.LastResort})
	return raw, nil
}

// CreateGroup creates a one-member group with the given group id (any bytes;
// this homeserver uses "<owning domain>/<random>"). mls-go lets the creator
// choose the group id. The creator's leaf gets lifetime lt.
func (id *Identity) CreateGroup(groupID []byte, lt Lifetime) (*Member, error) {
	opt, err := lt.option()
	if err != nil {
		return nil, err
	}
	kp, priv, err := keypackages.Generate(id.cred, id.cs, opt)
	if err != nil {
		return nil, fmt.Errorf("mlsx: generating creator key package: %w", err)
	}
	g, err := group.NewGroup(group.NewGroupID(bytes.Clone(groupID)), id.cs, kp, priv)
	if err != nil {
		return nil, fmt.Errorf("mlsx: creating group: %w", err)
	}
	return &Member{id: id, g: g}, nil
}

// Join joins a group from a Welcome (an MLSMessage with wire format
// Welcome) addressed to one of this identity's KeyPackages. mls-go puts the
// ratchet tree in the GroupInfo's ratchet_tree extension, so no separate tree
// is needed. The KeyPackage's private keys are then forgotten, unless it is a
// last-resort KeyPackage.
func (id *Identity) Join(welcome []byte) (*Member, error) {
	wi, err := ParseWelcome(welcome)
	if err != nil {
		return nil, err
	}
	for i, pk := range id.pending {
		addressed := false
		for _, ref := range wi.NewMembers {
			if bytes.Equal(ref, pk.ref) {
				addressed = true
			}
		}
		if !addressed {
			continue
		}
		msg, err := framing.UnmarshalMLSMessage(welcome)
		if err != nil {
			return nil, fmt.Errorf("mlsx: parsing welcome: %w", err)
		}
		w, err := group.UnmarshalWelcome(msg.Welcome)
		if err != nil {
			return nil, fmt.Errorf("mlsx: parsing welcome: %w", err)
		}
		g, err := group.JoinFromWelcome(w, pk.kp, pk.priv, nil)
		if err != nil {
			return nil, fmt.Errorf("mlsx: joining: %w", err)
		}
		if !pk.lastResort {
			id.pending = append(id.pending[:i:i], id.pending[i+1:]...)
		}
		return &Member{id: id, g: g}, nil
	}
	return nil, errors.New("mlsx: welcome is not for any of this identity's key packages")
}

// Member is one identity's state in one group. Not safe for concurrent use.
type Member struct {
	id *Identity
	g  *group.Group
	// pending is the state after a commit that the Delivery Service has not
	// yet accepted (nil when none is pending).
	pending *group.Group
}

// CommitResult is what a commit produces: the commit (MLSMessage,
// PublicMessage) and, when members are added, the Welcome (MLSMessage).
type CommitResult struct {
	Commit  []byte
	Welcome []byte
}

// GroupID returns the group id.
func (m *Member) GroupID() []byte { return bytes.Clone(m.g.GroupID().AsSlice()) }

// Epoch returns the member's current epoch.
func (m *Member) Epoch() uint64 { return m.g.Epoch().AsUint64() }

// LeafIndex returns the member's own leaf index.
func (m *Member) LeafIndex() uint32 { return uint32(m.g.OwnLeafIndex()) }

// TreeHash returns GroupContext.tree_hash as the member sees it, to compare
// with Observer.TreeHash.
func (m *Member) TreeHash() []byte { return bytes.Clone(m.g.GroupContext().TreeHash) }

// Identity returns the member's identity.
func (m *Member) Identity() *Identity { return m.id }

// GroupInfo returns a signed GroupInfo (with the ratchet_tree extension) and
// the ratchet tree on its own, as the group-creation request carries them.
func (m *Member) GroupInfo() (groupInfo, ratchetTree []byte, err error) {
	gi, err := m.g.GetGroupInfo(m.id.sigKey)
	if err != nil {
		return nil, nil, fmt.Errorf("mlsx: group info: %w", err)
	}
	return gi.Marshal(), m.g.MarshalRatchetTreeRFC(), nil
}

// SignWithLeafKey signs content as SignWithLabel(label, content) with the
// member's leaf signature key; Observer.VerifyLeafSignature checks it.
func (m *Member) SignWithLeafKey(label string, content []byte) ([]byte, error) {
	sig, err := ciphersuite.SignWithLabel(m.id.sigKey, label, content)
	if err != nil {
		return nil, err
	}
	return sig.AsSlice(), nil
}

// Add commits Add proposals for the given KeyPackages (plus any proposals
// received in this epoch) and returns the commit and the Welcome.
func (m *Member) Add(keyPackages ...[]byte) (*CommitResult, error) {
	if err := m.notPending(); err != nil {
		return nil, err
	}
	return m.commit(func(c *group.Group) error {
		for _, raw := range keyPackages {
			kp, err := keypackages.UnmarshalKeyPackage(raw)
			if err != nil {
				return fmt.Errorf("mlsx: parsing key package: %w", err)
			}
			if _, err := c.AddMember(kp); err != nil {
				return fmt.Errorf("mlsx: add: %w", err)
			}
		}
		return nil
	})
}

// Remove commits the removal of the given leaves (plus pending proposals).
func (m *Member) Remove(leaves ...uint32) (*CommitResult, error) {
	if err := m.notPending(); err != nil {
		return nil, err
	}
	return m.commit(func(c *group.Group) error {
		for _, l := range leaves {
			if _, err := c.RemoveMember(group.LeafNodeIndex(l)); err != nil {
				return fmt.Errorf("mlsx: remove: %w", err)
			}
		}
		return nil
	})
}

// SelfUpdate commits a fresh path for the member's own leaf, together with
// any proposals received in this epoch.
func (m *Member) SelfUpdate() (*CommitResult, error) {
	if err := m.notPending(); err != nil {
		return nil, err
	}
	return m.commit(nil)
}

// CommitPending commits the proposals received in this epoch (an empty
// commit is a self-update).
func (m *Member) CommitPending() (*CommitResult, error) {
	if err := m.notPending(); err != nil {
		return nil, err
	}
	return m.commit(nil)
}

// ProposeAdd returns an Add proposal (MLSMessage, PublicMessage).
func (m *Member) ProposeAdd(keyPackage []byte) ([]byte, error) {
	kp, err := keypackages.UnmarshalKeyPackage(keyPackage)
	if err != nil {
		return nil, fmt.Errorf("mlsx: parsing key package: %w", err)
	}
	p, err := m.g.AddMember(kp)
	if err != nil {
		return nil, fmt.Errorf("mlsx: add proposal: %w", err)
	}
	return m.signProposal(p)
}

// ProposeRemove returns a Remove proposal for leaf (its own leaf to leave
// the group: mls-go has no SelfRemove proposal).
func (m *Member) ProposeRemove(leaf uint32) ([]byte, error) {
	p, err := m.g.RemoveMember(group.LeafNodeIndex(leaf))
	if err != nil {
		return nil, fmt.Errorf("mlsx: remove proposal: %w", err)
	}
	return m.signProposal(p)
}

// ProposeUpdate returns an Update proposal with a fresh encryption key for
// the member's leaf. Another member must commit it.
func (m *Member) ProposeUpdate() ([]byte, error) {
	p, err := m.g.SelfUpdate(m.id.sigKey)
	if err != nil {
		return nil, fmt.Errorf("mlsx: update proposal: %w", err)
	}
	return m.signProposal(p)
}

func (m *Member) signProposal(p *group.Proposal) ([]byte, error) {
	if err := m.notPending(); err != nil {
		return nil, err
	}
	msg, err := m.g.SignProposalAsPublicMessage(p, m.id.sigKey)
	if err != nil {
		return nil, fmt.Errorf("mlsx: signing proposal: %w", err)
	}
	// Register the ProposalRef so commits by others that reference this
	// proposal resolve.
	ref, err := publicProposalRef(m.g.CipherSuite(), msg)
	if err != nil {
		return nil, err
	}
	m.g.RegisterProposalRef(p, ref)
	return msg, nil
}

// publicProposalRef computes the ProposalRef of a proposal PublicMessage.
func publicProposalRef(cs ciphersuite.CipherSuite, msg []byte) ([]byte, error) {
	r := newReader(msg)
	if _, err := parseMLSMessageHeader(r); err != nil {
		return nil, err
	}
	pm, err := parsePublicMessage(r)
	if err != nil {
		return nil, err
	}
	var ac writer
	ac.u16(wireFormatPublicMessage)
	ac.raw(pm.content.raw)
	ac.raw(pm.authRaw)
	return suite{id: cs}.proposalRef(ac.b), nil
}

func (m *Member) notPending() error {
	if m.pending != nil {
		return errors.New("mlsx: a commit is pending; confirm or discard it first")
	}
	return nil
}

// commit creates a PublicMessage commit of everything pending. mls-go
// mutates a group while creating a commit (it installs the new path's private
// keys before the merge) and cannot discard a staged commit, so the commit is
// made and merged on a copy of the state, which also builds the Welcome. The
// copy replaces the state on ConfirmCommit and is dropped on
// DiscardPendingCommit, leaving the original untouched.
//
// The copy comes from mls-go's MarshalState, which keeps neither the private
// keys of parent nodes nor old-epoch secrets. After merging its own commit
// the committer holds fresh keys for every non-blank node of its direct path
// (the only parent keys it can ever know), so nothing needed is lost;
// application messages of epochs before the commit can no longer be
// decrypted by the committer.
//
// addProposals, if non-nil, adds the committer's own by-value proposals to
// the copy, so that a discarded commit leaves no trace in the member.
func (m *Member) commit(addProposals func(*group.Group) error) (*CommitResult, error) {
	snap, err := m.g.MarshalState()
	if err != nil {
		return nil, fmt.Errorf("mlsx: snapshot: %w", err)
	}
	c, err := restoreGroup(snap)
	if err != nil {
		return nil, fmt.Errorf("mlsx: copying state: %w", err)
	}
	c.SetPaddingSize(m.g.PaddingSize())
	if addProposals != nil {
		if err := addProposals(c); err != nil {
			return nil, err
		}
	}
	// RFC 9420 §12.2: a commit must not contain the committer's own Update
	// (its path replaces it) nor a Remove of the committer.
	own := c.OwnLeafIndex()
	for _, sp := range c.StoredProposals() {
		p := sp.Proposal
		if p == nil || sp.Ref == nil {
			continue
		}
		if (p.Type == group.ProposalTypeUpdate && sp.Sender == own) ||
			(p.Type == group.ProposalTypeRemove && p.Remove != nil && p.Remove.Removed == own) {
			c.RevokeProposal(sp.Ref)
		}
	}
	staged, err := c.CommitWithFormat(m.id.sigKey, m.id.sigKey.PublicKey(), nil, framing.WireFormatPublicMessage)
	if err != nil {
		return nil, fmt.Errorf("mlsx: commit: %w", err)
	}
	var added []*keypackages.KeyPackage
	for _, p := range staged.Proposals() {
		if p.Type == group.ProposalTypeAdd && p.Add != nil {
			added = append(added, p.Add.KeyPackage)
		}
	}
	joinerSecret := staged.JoinerSecret()
	if err := c.MergeCommit(staged); err != nil {
		return nil, fmt.Errorf("mlsx: merging own commit: %w", err)
	}
	ac := staged.AuthenticatedContent()
	res := &CommitResult{Commit: framing.NewMLSMessagePublic(&framing.PublicMessage{
		Content:       ac.Content,
		Auth:          ac.Auth,
		MembershipTag: staged.MembershipTag(),
	}).Marshal()}
	if len(added) > 0 {
		w, err := c.CreateWelcomeWithOptions(added, group.CreateWelcomeOptions{
			JoinerSecret:  joinerSecret,
			SignerPrivKey: m.id.sigKey,
			PskIDs:        staged.PskIDs(),
			PskSecret:     staged.RawPskSecret(),
			StagedCommit:  staged,
		})
		if err != nil {
			return nil, fmt.Errorf("mlsx: welcome: %w", err)
		}
		res.Welcome = (&framing.MLSMessage{Welcome: w.Marshal()}).Marshal()
	}
	m.pending = c
	return res, nil
}

// restoreGroup undoes MarshalState. mls-go's UnmarshalGroupState does not
// rebuild its ProposalRef index, so it is rebuilt here.
func restoreGroup(snap []byte) (*group.Group, error) {
	g, err := group.UnmarshalGroupState(snap)
	if err != nil {
		return nil, err
	}
	for _, sp := range g.StoredProposals() {
		if sp.Ref != nil {
			g.RegisterProposalRef(sp.Proposal, sp.Ref)
		}
	}
	return g, nil
}

// HasPendingCommit reports whether a commit awaits the Delivery Service's
// verdict.
func (m *Member) HasPendingCommit() bool { return m.pending != nil }

// ConfirmCommit adopts the pending commit: the Delivery Service accepted it.
func (m *Member) ConfirmCommit() {
	if m.pending != nil {
		m.g = m.pending
		m.pending = nil
	}
}

// DiscardPendingCommit drops the pending commit: the Delivery Service
// rejected it (e.g. another commit won the epoch). The member is back in the
// state before the commit, its proposals included.
func (m *Member) DiscardPendingCommit() error {
	m.pending = nil
	return nil
}

// Send encrypts an application message (MLSMessage, PrivateMessage) and
// returns it with the request signature over AppRequestTBS that the Delivery
// Service checks with Observer.CheckApplication.
func (m *Member) Send(plaintext []byte) (msg, reqSig []byte, err error) {
	pm, err := m.g.SendApplicationMessage(plaintext, nil, m.id.sigKey)
	if err != nil {
		return nil, nil, fmt.Errorf("mlsx: encrypting: %w", err)
	}
	msg = framing.NewMLSMessagePrivate(pm).Marshal()
	tbs := AppRequestTBS(m.g.GroupID().AsSlice(), m.Epoch(), m.LeafIndex(), AppRequestDigest(msg))
	reqSig, err = m.SignWithLeafKey(AppRequestLabel, tbs)
	if err != nil {
		return nil, nil, err
	}
	return msg, reqSig, nil
}

// Received is the result of Member.Process.
type Received struct {
	// Kind is ReceivedApplication, ReceivedProposal or ReceivedCommit.
	Kind   ReceivedKind
	Sender uint32
	// Epoch is the member's epoch after processing.
	Epoch     uint64
	Plaintext []byte
}

// ReceivedKind says what Member.Process handled.
type ReceivedKind uint8

// Kinds of received messages.
const (
	ReceivedApplication ReceivedKind = 1
	ReceivedProposal    ReceivedKind = 2
	ReceivedCommit      ReceivedKind = 3
)

// Process handles a message from the group: a proposal or commit
// (PublicMessage) or an application message (PrivateMessage), returning the
// plaintext and sender leaf of an application message. A pending commit of
// this member is discarded first when a commit of someone else arrives: the
// Delivery Service orders one commit per epoch.
func (m *Member) Process(msg []byte) (*Received, error) {
	mm, err := framing.UnmarshalMLSMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("mlsx: parsing message: %w", err)
	}
	if pm, ok := mm.AsPrivate(); ok {
		pt, _, sender, err := m.g.ReceiveApplicationMessage(pm)
		if err != nil {
			return nil, fmt.Errorf("mlsx: decrypting: %w", err)
		}
		return &Received{Kind: ReceivedApplication, Sender: uint32(sender), Epoch: m.Epoch(), Plaintext: pt}, nil
	}
	pub, ok := mm.AsPublic()
	if !ok {
		return nil, errors.New("mlsx: not a group message")
	}
	sender := pub.Content.Sender.LeafIndex
	switch pub.Content.ContentType() {
	case framing.ContentTypeProposal:
		if err := m.g.ProcessPublicMessage(pub); err != nil {
			return nil, fmt.Errorf("mlsx: proposal: %w", err)
		}
		return &Received{Kind: ReceivedProposal, Sender: sender, Epoch: m.Epoch()}, nil
	case framing.ContentTypeCommit:
		if err := m.DiscardPendingCommit(); err != nil {
			return nil, err
		}
		gc := m.g.GroupContext().Marshal()
		if es := m.g.EpochSecrets(); es != nil && es.MembershipKey != nil {
			if err := pub.VerifyMembershipTagWithContext(m.g.CipherSuite(), es.MembershipKey, gc); err != nil {
				return nil, fmt.Errorf("mlsx: membership tag: %w", err)
			}
		}
		ac := &framing.AuthenticatedContent{WireFormat: framing.WireFormatPublicMessage, Content: pub.Content, Auth: pub.Auth, GroupContext: gc}
		if err := m.g.ProcessReceivedCommit(ac, treesync.LeafIndex(sender), m.g.MyLeafEncryptionKey()); err != nil {
			return nil, fmt.Errorf("mlsx: commit: %w", err)
		}
		return &Received{Kind: ReceivedCommit, Sender: sender, Epoch: m.Epoch()}, nil
	default:
		return nil, errors.New("mlsx: application data in a PublicMessage")
	}
}
