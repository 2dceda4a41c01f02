package mlsx

import "fmt"

// Stable error codes. They are part of the API: the Delivery Service returns
// them to clients and records them in audit reports, so they never change
// meaning once released.
const (
	// CodeStaleEpoch: the message is for an epoch other than the one the
	// observer accepts (a handshake not in the current epoch, a second
	// commit for an epoch that has already advanced, or an application
	// message outside the window).
	CodeStaleEpoch = "stale_epoch"
	// CodeNotAMember: the sender leaf is blank, out of range, or the sender
	// type is not "member".
	CodeNotAMember = "not_a_member"
	// CodeBadSignature: a signature did not verify with the claimed key.
	CodeBadSignature = "bad_signature"
	// CodeInvalidProposal: a proposal is well-formed but not valid for the
	// group (RFC 9420 §12.1, §12.2).
	CodeInvalidProposal = "invalid_proposal"
	// CodeInvalidKeyPackage: a KeyPackage fails RFC 9420 §10.1 validation
	// or the local policy.
	CodeInvalidKeyPackage = "invalid_key_package"
	// CodeMalformed: the bytes do not decode as the expected MLS structure.
	CodeMalformed = "malformed"
	// CodeWrongGroup: the message names another group.
	CodeWrongGroup = "wrong_group"
	// CodeUnsupported: valid MLS that this Delivery Service does not accept
	// (cipher suite, credential type, wire format, proposal type, sender
	// type...).
	CodeUnsupported = "unsupported"
	// CodeInvalidCommit: the commit as a whole is invalid (proposal list
	// rules, missing path, unknown proposal reference, ...).
	CodeInvalidCommit = "invalid_commit"
	// CodeInvalidPath: the UpdatePath is invalid (node count, leaf node,
	// parent hash, duplicate keys).
	CodeInvalidPath = "invalid_path"
	// CodeInvalidLeafNode: a LeafNode fails RFC 9420 §7.3 validation.
	CodeInvalidLeafNode = "invalid_leaf_node"
	// CodeInvalidTree: a ratchet tree fails validation (tree hash, parent
	// hashes, unmerged leaves, duplicate keys).
	CodeInvalidTree = "invalid_tree"
	// CodeInvalidGroupInfo: a GroupInfo is inconsistent (signer, tree hash,
	// epoch for group creation).
	CodeInvalidGroupInfo = "invalid_group_info"
	// CodeInvalidState: serialized observer state is corrupt.
	CodeInvalidState = "invalid_state"
)

// Error is the typed error returned by every check in this package. Code is
// one of the Code* constants; Msg is a human-readable detail that may change
// between versions. Use errors.As to extract it.
type Error struct {
	Code string
	Msg  string
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Msg == "" {
		return "mlsx: " + e.Code
	}
	return "mlsx: " + e.Code + ": " + e.Msg
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, &Error{Code: CodeStaleEpoch}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func errf(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}
