// Package mlsx is the homeserver's only contact with MLS (RFC 9420): the
// public-group Observer that lets the Delivery Service check the handshake
// messages of the groups it owns, KeyPackage validation for the directory,
// and a thin client-side Member wrapper over github.com/thomas-vilte/mls-go
// for the Go client library, tests, testnet and benchmarks.
//
// Everything exported uses plain Go types ([]byte, uint16, uint32, uint64 and
// this package's structs), so the MLS library can be replaced without
// touching callers. No other package of the project imports mls-go.
//
// # What the observer proves
//
// An Observer holds the public state of one group: the ratchet tree (leaf
// nodes and parent public keys), the GroupContext fields (group id, epoch,
// cipher suite, extensions, tree hash), the confirmed and interim transcript
// hashes, and the proposals accepted in the current epoch. Starting from a
// GroupInfo whose signature, tree hash, parent hashes and leaves it has
// verified (NewObserverFromGroupInfo), it accepts a handshake message
// (ProcessPublicMessage) only if:
//
//   - it is an MLSMessage with wire format PublicMessage, for this group and
//     the current epoch (so exactly one commit wins each epoch; later ones
//     get CodeStaleEpoch);
//   - its sender is a member leaf of the current tree, and the FramedContent
//     signature verifies with that leaf's signature key over the current
//     GroupContext (so no member can send as another leaf);
//   - for a proposal: Add carries a valid KeyPackage (RFC 9420 §10.1) of the
//     group's cipher suite, Update carries a valid leaf node for the
//     sender's leaf with the same credential, Remove names a member;
//   - for a commit: proposals resolve (by value or by ProposalRef from the
//     store), the list is valid (§12.2: no own Update, no removal of the
//     committer, one change per leaf, no duplicate clients or keys), the
//     path is present when required, its leaf node is valid and signed, its
//     node count and ciphertext counts match the filtered direct path and
//     resolutions, its keys are new, and the committer's parent_hash matches
//     the parent-hash chain of the merged path.
//
// After a commit the observer has the same tree, tree hash, epoch and
// transcript hashes as every honest member (the tests compare them with
// mls-go members after every epoch).
//
// # What it cannot check
//
// The Delivery Service has no group secrets. It cannot verify the
// membership_tag of a PublicMessage (only its length), nor the
// confirmation_tag of a commit (it enters the interim transcript hash
// unverified), nor the HPKE ciphertexts of an UpdatePath (only their number),
// nor anything inside a PrivateMessage: the sender of an application message
// is encrypted, so CheckApplication relies on a separate request signature
// by the sender's leaf key over (group id, epoch, leaf index, SHA-256 of the
// message), see AppRequestTBS. A member that holds the group secrets can
// still send well-signed garbage ciphertexts; recipients detect that, the
// server cannot. GroupContextExtensions, ReInit and ExternalInit proposals
// and external or new-member senders are refused (CodeUnsupported): the
// homeserver does not need them and the observer would have to trust what it
// cannot check.
//
// # Determinism
//
// Validation reads no clock and uses no randomness: times come from the
// caller (ValidateKeyPackage's now, Policy.Now), and MarshalBinary encodes
// the same state to the same bytes, so replaying the event log rebuilds
// byte-identical projections.
//
// # Errors
//
// Every rejection is an *Error with one of the Code* constants; use
// errors.As. On error the observer is unchanged.
package mlsx
