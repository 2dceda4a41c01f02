package mlsx

import (
	"bytes"
	"crypto/sha256"
)

// AppRequestLabel is the SignWithLabel label of the request signature that
// accompanies an application message (the signed content is AppRequestTBS).
// With the RFC 9420 prefix the label on the wire is "MLS 1.0 homeserver app
// request", which no MLS structure uses.
const AppRequestLabel = "homeserver app request"

// AppInfo describes an accepted application message.
type AppInfo struct {
	GroupID []byte
	Epoch   uint64 // the epoch in the PrivateMessage header
	Sender  uint32
	// Digest is SHA-256 of the whole MLSMessage, as signed in the request.
	Digest []byte
}

// AppRequestDigest returns the digest of an MLSMessage that the request
// signature covers: SHA-256 of the message bytes.
func AppRequestDigest(msg []byte) []byte {
	d := sha256.Sum256(msg)
	return d[:]
}

// AppRequestTBS returns the content signed by the sender of an application
// message:
//
//	struct {
//	    opaque group_id<V>;
//	    uint64 epoch;
//	    uint32 leaf_index;
//	    opaque message_digest<V>;   /* SHA-256 of the MLSMessage */
//	} AppRequestTBS;
//
// The signature is SignWithLabel(leaf signature key, AppRequestLabel,
// AppRequestTBS) (RFC 9420 §5.1.2). Binding group, epoch and leaf makes a
// signature useless for any other group, epoch or claimed sender.
func AppRequestTBS(groupID []byte, epoch uint64, leaf uint32, msgDigest []byte) []byte {
	var w writer
	w.vec(groupID)
	w.u64(epoch)
	w.u32(leaf)
	w.vec(msgDigest)
	return w.b
}

// CheckApplication checks an application message: msg is an MLSMessage with
// wire format PrivateMessage and content type application, for this group,
// with an epoch in [current-epochWindow, current]. sender must be a member
// leaf of the current tree, and reqSig must be its signature over
// AppRequestTBS(group id, message epoch, sender, SHA-256(msg)).
//
// The sender's leaf index is encrypted inside the PrivateMessage, so the
// observer cannot tie the ciphertext to a sender; the request signature is
// the sender's proof (requirement MD-3). Membership and the signature key are
// taken from the current tree even for a message of an older epoch in the
// window: a member removed in the current epoch is rejected from that epoch
// on (MD-2), and a member that rotated its signature key signs requests with
// its current key.
//
// The content is never decrypted: the observer holds no secrets.
func (o *Observer) CheckApplication(msg []byte, sender uint32, reqSig []byte, epochWindow uint64) (*AppInfo, error) {
	ln := o.tree.leaf(sender)
	var sigKey []byte
	if ln != nil {
		sigKey = ln.sigKey
	}
	return CheckApplicationWith(AppContext{
		GroupID: o.groupID, Epoch: o.epoch, CipherSuite: uint16(o.s.id), EpochWindow: epochWindow,
	}, msg, sender, sigKey, reqSig)
}

// AppContext is what checking an application message needs of its group:
// the Delivery Service keeps it (and each member leaf's signature key)
// apart from the full observer state, so the check costs one signature
// verification and no tree decoding.
type AppContext struct {
	GroupID     []byte
	Epoch       uint64 // the group's current epoch
	CipherSuite uint16
	EpochWindow uint64
}

// CheckApplicationWith is CheckApplication with the group given by its
// context and the sender by its current signature key (nil if the sender
// is not a member leaf).
func CheckApplicationWith(g AppContext, msg []byte, sender uint32, sigKey, reqSig []byte) (*AppInfo, error) {
	s, ok := suiteFor(g.CipherSuite)
	if !ok {
		return nil, errf(CodeUnsupported, "cipher suite %d", g.CipherSuite)
	}
	r := newReader(msg)
	wf, err := parseMLSMessageHeader(r)
	if err != nil {
		return nil, decodeErr("message", err)
	}
	if wf != wireFormatPrivateMessage {
		return nil, errf(CodeUnsupported, "application messages must be PrivateMessage (wire format %d)", wf)
	}
	h, err := parsePrivateMessage(r)
	if err != nil {
		return nil, decodeErr("private message", err)
	}
	if !bytes.Equal(h.groupID, g.GroupID) {
		return nil, errf(CodeWrongGroup, "message for another group")
	}
	if h.contentType != contentApplication {
		return nil, errf(CodeUnsupported, "handshake messages must be PublicMessage")
	}
	if h.epoch > g.Epoch || g.Epoch-h.epoch > g.EpochWindow {
		return nil, errf(CodeStaleEpoch, "message epoch %d, group epoch %d, window %d", h.epoch, g.Epoch, g.EpochWindow)
	}
	if sigKey == nil {
		return nil, errf(CodeNotAMember, "leaf %d is not a member", sender)
	}
	digest := AppRequestDigest(msg)
	if !s.verify(sigKey, AppRequestLabel, AppRequestTBS(g.GroupID, h.epoch, sender, digest), reqSig) {
		return nil, errf(CodeBadSignature, "request signature by leaf %d does not verify", sender)
	}
	return &AppInfo{GroupID: bytes.Clone(g.GroupID), Epoch: h.epoch, Sender: sender, Digest: digest}, nil
}

// WelcomeInfo is the cleartext of a Welcome message.
type WelcomeInfo struct {
	CipherSuite uint16
	// NewMembers are the KeyPackageRefs the Welcome is encrypted to.
	NewMembers [][]byte
}

// ParseWelcome decodes an MLSMessage with wire format Welcome and returns
// the KeyPackageRefs it addresses, so the Delivery Service can accept a
// Welcome only for KeyPackages added by the commit it accepted (MD-4).
func ParseWelcome(msg []byte) (*WelcomeInfo, error) {
	msg = bytes.Clone(msg)
	r := newReader(msg)
	wf, err := parseMLSMessageHeader(r)
	if err != nil {
		return nil, decodeErr("message", err)
	}
	if wf != wireFormatWelcome {
		return nil, errf(CodeUnsupported, "wire format %d is not a Welcome", wf)
	}
	wi := &WelcomeInfo{}
	if wi.CipherSuite, err = r.u16(); err != nil {
		return nil, decodeErr("welcome", err)
	}
	secrets, err := r.sub()
	if err != nil {
		return nil, decodeErr("welcome", err)
	}
	for !secrets.empty() {
		ref, err := secrets.vec()
		if err == nil {
			_, err = secrets.vec() // kem_output
		}
		if err == nil {
			_, err = secrets.vec() // ciphertext
		}
		if err != nil {
			return nil, decodeErr("welcome", err)
		}
		wi.NewMembers = append(wi.NewMembers, ref)
	}
	if _, err := r.vec(); err != nil { // encrypted_group_info
		return nil, decodeErr("welcome", err)
	}
	if err := r.done(); err != nil {
		return nil, decodeErr("welcome", err)
	}
	return wi, nil
}
