package mlsx

import (
	"bytes"
	"math/bits"

	"github.com/thomas-vilte/mls-go/treesync"
)

// tree is the public ratchet tree of RFC 9420 §7 in the array representation
// of Appendix C. The tree is always full: it has 2^d leaves and 2^(d+1)-1
// nodes, leaves at even indices. Leaf and parent values are treated as
// immutable once in the tree: changes replace the pointer, so clone is a
// shallow copy of the node array.
//
// mls-go's treesync.RatchetTree is not used as the state: it pads and trims
// trees in its own way (TreeHashMinimal, ExpandToPowerOf2) and its
// VerifyParentHashes is not the RFC 9420 §7.9.2 check. Hashing primitives
// (ComputeParentHash) come from mls-go.
type tree struct {
	s     suite
	nodes []treeEntry
	// hashes caches tree hashes per node (nil: not computed). It is derived
	// state, never serialized; every mutation invalidates the node and its
	// ancestors.
	hashes [][]byte
}

func newTree(s suite, nodes []treeEntry) *tree {
	return &tree{s: s, nodes: nodes, hashes: make([][]byte, len(nodes))}
}

func (t *tree) clone() *tree {
	c := &tree{s: t.s, nodes: make([]treeEntry, len(t.nodes)), hashes: make([][]byte, len(t.hashes))}
	copy(c.nodes, t.nodes)
	copy(c.hashes, t.hashes)
	return c
}

func (t *tree) leafCount() uint32 { return uint32(len(t.nodes)+1) / 2 }

// Tree math for full trees (RFC 9420 Appendix C).

func level(x uint32) int { return bits.TrailingZeros32(^x) }

func (t *tree) root() uint32 { return t.leafCount() - 1 }

func left(x uint32) uint32 {
	k := level(x)
	return x ^ (1 << (k - 1))
}

func right(x uint32) uint32 {
	k := level(x)
	return x ^ (3 << (k - 1))
}

func parentOf(x uint32) uint32 {
	k := level(x)
	b := (x >> (k + 1)) & 1
	return (x | (1 << k)) ^ (b << (k + 1))
}

func siblingOf(x uint32) uint32 {
	p := parentOf(x)
	if x < p {
		return right(p)
	}
	return left(p)
}

// inSubtree reports whether node x is in the subtree rooted at r.
func inSubtree(x, r uint32) bool {
	k := level(r)
	lo := r - (1 << k) + 1
	hi := r + (1 << k) - 1
	return x >= lo && x <= hi
}

// directPath returns the ancestors of node x, from its parent to the root.
func (t *tree) directPath(x uint32) []uint32 {
	r := t.root()
	var path []uint32
	for x != r {
		x = parentOf(x)
		path = append(path, x)
	}
	return path
}

func (t *tree) blank(x uint32) bool {
	n := t.nodes[x]
	return n.leaf == nil && n.parent == nil
}

func (t *tree) leaf(l uint32) *leafNode {
	if l >= t.leafCount() {
		return nil
	}
	return t.nodes[2*l].leaf
}

// resolution returns the RFC 9420 §4.1.1 resolution of node x, leaving out
// the leaves in exclude (new members of the commit being processed).
func (t *tree) resolution(x uint32, exclude map[uint32]bool) []uint32 {
	n := t.nodes[x]
	switch {
	case n.leaf != nil:
		if exclude[x/2] {
			return nil
		}
		return []uint32{x}
	case n.parent != nil:
		res := []uint32{x}
		for _, u := range n.parent.unmerged {
			if !exclude[u] {
				res = append(res, 2*u)
			}
		}
		return res
	case x%2 == 0:
		return nil
	default:
		return append(t.resolution(left(x), exclude), t.resolution(right(x), exclude)...)
	}
}

// resolutionSize returns len(t.resolution(x, exclude)) without allocating.
func (t *tree) resolutionSize(x uint32, exclude map[uint32]bool) int {
	n := t.nodes[x]
	switch {
	case n.leaf != nil:
		if exclude[x/2] {
			return 0
		}
		return 1
	case n.parent != nil:
		size := 1
		for _, u := range n.parent.unmerged {
			if !exclude[u] {
				size++
			}
		}
		return size
	case x%2 == 0:
		return 0
	default:
		return t.resolutionSize(left(x), exclude) + t.resolutionSize(right(x), exclude)
	}
}

// hasNonBlank reports whether the subtree at x has a non-blank node, i.e.
// a non-empty resolution.
func (t *tree) hasNonBlank(x uint32) bool {
	n := t.nodes[x]
	switch {
	case n.leaf != nil || n.parent != nil:
		return true
	case x%2 == 0:
		return false
	default:
		return t.hasNonBlank(left(x)) || t.hasNonBlank(right(x))
	}
}

// filteredDirectPath returns the RFC 9420 §4.1.2 filtered direct path of
// leaf l together with the copath child of each of its nodes.
func (t *tree) filteredDirectPath(l uint32) (path, copath []uint32) {
	x := 2 * l
	for _, p := range t.directPath(x) {
		s := siblingOf(x)
		if t.hasNonBlank(s) {
			path = append(path, p)
			copath = append(copath, s)
		}
		x = p
	}
	return path, copath
}

// invalidate drops cached hashes of x and its ancestors.
func (t *tree) invalidate(x uint32) {
	r := t.root()
	for {
		t.hashes[x] = nil
		if x == r {
			return
		}
		x = parentOf(x)
	}
}

func (t *tree) setLeaf(l uint32, ln *leafNode) {
	t.nodes[2*l] = treeEntry{leaf: ln}
	t.invalidate(2 * l)
}

func (t *tree) setParent(x uint32, p *parentNode) {
	t.nodes[x] = treeEntry{parent: p}
	t.invalidate(x)
}

func (t *tree) blankNode(x uint32) {
	t.nodes[x] = treeEntry{}
	t.invalidate(x)
}

func (t *tree) blankDirectPath(l uint32) {
	for _, p := range t.directPath(2 * l) {
		if !t.blank(p) {
			t.blankNode(p)
		}
	}
}

// extend doubles the tree (RFC 9420 §7.7).
func (t *tree) extend() {
	n := len(t.nodes)
	nodes := make([]treeEntry, 2*n+1)
	copy(nodes, t.nodes)
	t.nodes = nodes
	t.hashes = make([][]byte, len(nodes))
}

// truncate halves the tree while its right subtree has no non-blank leaf
// (RFC 9420 §12.1.3).
func (t *tree) truncate() {
	for t.leafCount() > 1 {
		n := t.leafCount()
		empty := true
		for l := n / 2; l < n; l++ {
			if t.nodes[2*l].leaf != nil {
				empty = false
				break
			}
		}
		if !empty {
			return
		}
		t.nodes = t.nodes[: n-1 : n-1]
		t.hashes = make([][]byte, len(t.nodes))
	}
}

// addLeaf places ln in the leftmost blank leaf, extending the tree when
// needed, and records it as unmerged in its non-blank ancestors (RFC 9420
// §12.1.1).
func (t *tree) addLeaf(ln *leafNode) uint32 {
	l := uint32(0)
	for ; l < t.leafCount(); l++ {
		if t.nodes[2*l].leaf == nil {
			break
		}
	}
	if l == t.leafCount() {
		t.extend()
	}
	for _, p := range t.directPath(2 * l) {
		if pn := t.nodes[p].parent; pn != nil {
			np := *pn
			np.unmerged = append(append([]uint32(nil), pn.unmerged...), l)
			t.setParent(p, &np)
		}
	}
	t.setLeaf(l, ln)
	return l
}

// Tree hashes (RFC 9420 §7.8).

func (t *tree) treeHash() []byte { return t.hash(t.root()) }

func (t *tree) hash(x uint32) []byte {
	if h := t.hashes[x]; h != nil {
		return h
	}
	var h []byte
	if x%2 == 0 {
		h = t.leafHash(x/2, t.nodes[x].leaf)
	} else {
		h = t.parentHashInput(t.nodes[x].parent, t.hash(left(x)), t.hash(right(x)))
	}
	t.hashes[x] = h
	return h
}

func (t *tree) leafHash(l uint32, ln *leafNode) []byte {
	var w writer
	w.u8(1)
	w.u32(l)
	if ln == nil {
		w.u8(0)
	} else {
		w.u8(1)
		w.raw(ln.raw)
	}
	return t.s.hash(w.b)
}

func (t *tree) parentHashInput(p *parentNode, lh, rh []byte) []byte {
	var w writer
	w.u8(2)
	if p == nil {
		w.u8(0)
	} else {
		w.u8(1)
		p.marshal(&w)
	}
	w.vec(lh)
	w.vec(rh)
	return t.s.hash(w.b)
}

// originalTreeHash is the tree hash of node x with the leaves in excl
// blanked and removed from unmerged lists (RFC 9420 §7.9,
// original_sibling_tree_hash).
func (t *tree) originalTreeHash(x uint32, excl []uint32) []byte {
	relevant := false
	for _, u := range excl {
		if inSubtree(2*u, x) {
			relevant = true
			break
		}
	}
	if !relevant {
		return t.hash(x)
	}
	if x%2 == 0 {
		return t.leafHash(x/2, nil)
	}
	p := t.nodes[x].parent
	if p != nil {
		np := *p
		np.unmerged = nil
		for _, u := range p.unmerged {
			if !containsU32(excl, u) {
				np.unmerged = append(np.unmerged, u)
			}
		}
		p = &np
	}
	return t.parentHashInput(p, t.originalTreeHash(left(x), excl), t.originalTreeHash(right(x), excl))
}

func containsU32(list []uint32, v uint32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// parentHashOf computes the parent hash of parent node p with copath child s
// (RFC 9420 §7.9) using mls-go's ParentHashInput encoding.
func (t *tree) parentHashOf(p, s uint32) []byte {
	pn := t.nodes[p].parent
	return treesync.ComputeParentHash(pn.encKey, pn.parentHash, t.originalTreeHash(s, pn.unmerged), t.s.hashFn())
}

func (t *tree) nodeParentHash(x uint32) []byte {
	n := t.nodes[x]
	switch {
	case n.leaf != nil:
		if n.leaf.source != sourceCommit {
			return nil
		}
		return n.leaf.parentHash
	case n.parent != nil:
		return n.parent.parentHash
	}
	return nil
}

// verifyParentHashes checks that every non-blank parent node is parent-hash
// valid (RFC 9420 §7.9.2, "top down"): exactly one node D in the resolution
// of one of its children carries its parent hash, and P's unmerged leaves
// below that child are exactly the rest of that resolution.
func (t *tree) verifyParentHashes() error {
	for x := uint32(1); x < uint32(len(t.nodes)); x += 2 {
		p := t.nodes[x].parent
		if p == nil {
			continue
		}
		found := 0
		for _, c := range []uint32{left(x), right(x)} {
			s := siblingOf(c)
			res := t.resolution(c, nil)
			var below []uint32
			for _, u := range p.unmerged {
				if inSubtree(2*u, c) {
					below = append(below, 2*u)
				}
			}
			if len(res) != len(below)+1 {
				continue
			}
			ph := t.parentHashOf(x, s)
			for _, d := range res {
				if !bytes.Equal(t.nodeParentHash(d), ph) {
					continue
				}
				if sameSetWithout(res, d, below) {
					found++
				}
			}
		}
		if found != 1 {
			return errf(CodeInvalidTree, "parent node %d is not parent-hash valid", x)
		}
	}
	return nil
}

// sameSetWithout reports whether res minus d equals want as a set.
func sameSetWithout(res []uint32, d uint32, want []uint32) bool {
	n := 0
	for _, r := range res {
		if r == d {
			continue
		}
		if !containsU32(want, r) {
			return false
		}
		n++
	}
	return n == len(want)
}

// verifyStructure checks the unmerged_leaves rules of RFC 9420 §12.4.3.1 and
// the uniqueness of encryption keys (all nodes) and signature keys (leaves).
func (t *tree) verifyStructure() error {
	enc := make(map[string]bool)
	sig := make(map[string]bool)
	for x := uint32(0); x < uint32(len(t.nodes)); x++ {
		n := t.nodes[x]
		switch {
		case n.leaf != nil:
			if enc[string(n.leaf.encKey)] {
				return errf(CodeInvalidTree, "duplicate encryption key at node %d", x)
			}
			enc[string(n.leaf.encKey)] = true
			if sig[string(n.leaf.sigKey)] {
				return errf(CodeInvalidTree, "duplicate signature key at leaf %d", x/2)
			}
			sig[string(n.leaf.sigKey)] = true
		case n.parent != nil:
			if enc[string(n.parent.encKey)] {
				return errf(CodeInvalidTree, "duplicate encryption key at node %d", x)
			}
			enc[string(n.parent.encKey)] = true
			if !t.s.validHPKEKey(n.parent.encKey) {
				return errf(CodeInvalidTree, "invalid encryption key at node %d", x)
			}
			for i, u := range n.parent.unmerged {
				if u >= t.leafCount() || t.nodes[2*u].leaf == nil || !inSubtree(2*u, x) {
					return errf(CodeInvalidTree, "node %d: unmerged leaf %d is not a non-blank descendant", x, u)
				}
				if containsU32(n.parent.unmerged[:i], u) {
					return errf(CodeInvalidTree, "node %d: duplicate unmerged leaf %d", x, u)
				}
				for y := parentOf(2 * u); y != x; y = parentOf(y) {
					if q := t.nodes[y].parent; q != nil && !containsU32(q.unmerged, u) {
						return errf(CodeInvalidTree, "node %d: unmerged leaf %d missing below", x, u)
					}
				}
			}
		}
	}
	return nil
}

// findSignatureKey returns the leaf holding signature key key.
func (t *tree) findSignatureKey(key []byte) (uint32, bool) {
	for l := uint32(0); l < t.leafCount(); l++ {
		if ln := t.nodes[2*l].leaf; ln != nil && bytes.Equal(ln.sigKey, key) {
			return l, true
		}
	}
	return 0, false
}

// marshal writes the tree as optional<Node> ratchet_tree<V> without
// trailing blank nodes (RFC 9420 §12.4.3.3).
func (t *tree) marshal() []byte {
	end := len(t.nodes)
	for end > 0 && t.blank(uint32(end-1)) {
		end--
	}
	var w writer
	w.vecFunc(func(w *writer) {
		for _, n := range t.nodes[:end] {
			switch {
			case n.leaf != nil:
				w.u8(1)
				w.u8(1)
				w.raw(n.leaf.raw)
			case n.parent != nil:
				w.u8(1)
				w.u8(2)
				n.parent.marshal(w)
			default:
				w.u8(0)
			}
		}
	})
	return w.b
}

// treeFromEntries extends a decoded ratchet tree to full size. The last
// entry must be non-blank.
func treeFromEntries(s suite, entries []treeEntry) (*tree, error) {
	if len(entries) == 0 {
		return nil, errf(CodeInvalidTree, "empty ratchet tree")
	}
	last := entries[len(entries)-1]
	if last.leaf == nil && last.parent == nil {
		return nil, errf(CodeInvalidTree, "last node of ratchet tree is blank")
	}
	if len(entries) > 1<<30 {
		return nil, errf(CodeInvalidTree, "ratchet tree too large")
	}
	leaves := 1
	for 2*leaves-1 < len(entries) {
		leaves *= 2
	}
	nodes := make([]treeEntry, 2*leaves-1)
	copy(nodes, entries)
	return newTree(s, nodes), nil
}
