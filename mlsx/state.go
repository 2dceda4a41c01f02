package mlsx

import (
	"bytes"
	"errors"
)

// stateVersion is the first byte of MarshalBinary's output. Bump it when the
// layout changes; UnmarshalObserver rejects versions it does not know.
const stateVersion = 1

// MarshalBinary returns the observer state in a deterministic encoding: the
// same state always gives the same bytes, so a projection rebuilt by
// replaying the event log is byte-identical (LOG-2). Layout (TLS
// presentation language, RFC 9420 §2.1.2 vectors):
//
//	uint8  version = 1;
//	uint16 cipher_suite;
//	opaque group_id<V>;
//	uint64 epoch;
//	opaque group_context_extensions<V>;   /* content of the vector */
//	opaque confirmed_transcript_hash<V>;
//	opaque interim_transcript_hash<V>;
//	uint32 leaf_count;
//	optional<Node> ratchet_tree<V>;        /* RFC 9420 §12.4.3.3 */
//	struct {
//	    opaque proposal_ref<V>;
//	    uint32 sender;
//	    Proposal proposal;
//	} proposals<V>;                        /* arrival order */
//
// Cached tree hashes are not stored; they are recomputed on demand.
func (o *Observer) MarshalBinary() ([]byte, error) {
	var w writer
	w.u8(stateVersion)
	w.u16(uint16(o.s.id))
	w.vec(o.groupID)
	w.u64(o.epoch)
	w.vec(o.extsRaw)
	w.vec(o.cth)
	w.vec(o.ith)
	w.u32(o.tree.leafCount())
	w.raw(o.tree.marshal())
	w.vecFunc(func(w *writer) {
		for _, sp := range o.proposals {
			w.vec(sp.ref)
			w.u32(sp.sender)
			w.raw(sp.prop.raw)
		}
	})
	return w.b, nil
}

// UnmarshalObserver restores an observer from MarshalBinary's output. The
// state is trusted (it was produced by this package and stored by the
// homeserver), so signatures are not verified again, but the encoding and
// the tree structure are checked so that corrupt bytes give an error
// (CodeInvalidState), never a panic or an inconsistent observer.
func UnmarshalObserver(b []byte) (*Observer, error) {
	b = bytes.Clone(b)
	o, err := unmarshalObserver(b)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, errf(CodeInvalidState, "%s", e.Msg)
		}
		return nil, errf(CodeInvalidState, "%v", err)
	}
	return o, nil
}

func unmarshalObserver(b []byte) (*Observer, error) {
	r := newReader(b)
	v, err := r.u8()
	if err != nil {
		return nil, err
	}
	if v != stateVersion {
		return nil, errf(CodeInvalidState, "unknown state version %d", v)
	}
	sid, err := r.u16()
	if err != nil {
		return nil, err
	}
	s, ok := suiteFor(sid)
	if !ok {
		return nil, errf(CodeInvalidState, "cipher suite 0x%04x", sid)
	}
	o := &Observer{s: s}
	if o.groupID, err = r.vec(); err != nil {
		return nil, err
	}
	if o.epoch, err = r.u64(); err != nil {
		return nil, err
	}
	extsRaw, err := r.vec()
	if err != nil {
		return nil, err
	}
	var lw writer
	lw.vec(extsRaw)
	if o.exts, o.extsRaw, err = parseExtensions(newReader(lw.b)); err != nil {
		return nil, err
	}
	if _, err := parseRequiredCapabilities(o.exts); err != nil {
		return nil, err
	}
	if o.cth, err = r.vec(); err != nil {
		return nil, err
	}
	if o.ith, err = r.vec(); err != nil {
		return nil, err
	}
	leaves, err := r.u32()
	if err != nil {
		return nil, err
	}
	treeStart := r.off
	if _, err := r.vec(); err != nil {
		return nil, err
	}
	entries, err := parseRatchetTree(r.since(treeStart))
	if err != nil {
		return nil, err
	}
	// The tree is always as small as its rightmost non-blank node allows
	// (adds extend it only when full, removes truncate it), so the stored
	// leaf count must be the one the nodes imply. This also bounds memory
	// by the input size.
	if o.tree, err = treeFromEntries(s, entries); err != nil {
		return nil, err
	}
	if o.tree.leafCount() != leaves {
		return nil, errf(CodeInvalidState, "%d tree nodes for %d leaves", len(entries), leaves)
	}
	if err := o.tree.verifyStructure(); err != nil {
		return nil, err
	}
	pr, err := r.sub()
	if err != nil {
		return nil, err
	}
	for !pr.empty() {
		var sp storedProposal
		if sp.ref, err = pr.vec(); err != nil {
			return nil, err
		}
		if sp.sender, err = pr.u32(); err != nil {
			return nil, err
		}
		if sp.sender >= leaves {
			return nil, errf(CodeInvalidState, "proposal sender %d out of range", sp.sender)
		}
		if sp.prop, err = parseProposal(pr); err != nil {
			return nil, err
		}
		o.proposals = append(o.proposals, sp)
	}
	return o, r.done()
}
