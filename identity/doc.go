// Package identity holds the homeserver's long-term keys and the signed
// objects that clients and homeservers exchange about identities:
//
//   - [KeySet]: the authentication, federation, log and queue keys of one
//     homeserver, persisted in a key directory, with [PublicKeys] for the
//     well-known URL.
//   - [ClientCredential]: a homeserver's signed statement that a client
//     signature key belongs to a user of that homeserver.
//   - Signed client requests ([SignRequest], [VerifyRequest], [ReplayCache]):
//     how directory and queue requests are authenticated.
//   - [QueueConfig] sealed with HPKE ([SealQueueConfig],
//     [KeySet.OpenQueueConfig]): the routing capability a client places in
//     each KeyPackage.
//   - [Bundle]: a homeserver-signed answer to a directory lookup (GUC-3).
//
// Invariants:
//
//   - Every signed object has one canonical binary encoding that starts with a
//     label naming the object and its version, so a signature over one kind
//     of object is never valid as a signature over another kind.
//   - Verification is deterministic: verifiers take the current time as a
//     parameter and never read the clock; only key generation and sealing
//     consume randomness, and they take it as an [io.Reader].
//   - Every error that can reach a client is an [*Error] with a stable
//     machine code (the Code* constants).
package identity
