// Package audit checks a homeserver's event log the way an outside auditor
// would (LOG-3, LOG-4): it needs the store and the log's public verifier key,
// never a running homeserver.
//
// What each check proves, and what it does not:
//
//   - [Run] recomputes the Merkle tree from the stored event bytes
//     ([eventlog.Log.Verify]) and checks its root against the latest signed
//     checkpoint. A match proves that the first checkpoint-size events are the
//     bytes the log's key signed; events appended after that checkpoint are
//     covered only by their stored leaf hashes, not by a signature.
//   - [Run] then replays every event in order into a scratch store and
//     re-runs the validation that admitted it ([validation.Validator.Revalidate])
//     against the projected state just before it. A rejection means the event
//     would not be accepted today: a bug fixed since, or a writer that
//     appended what it should have refused. Each event is applied as stored,
//     rejected or not, so every later event is judged against the state the
//     homeserver really served, and one bad event does not cascade.
//   - [Export] writes a range of events with inclusion proofs against one
//     signed checkpoint; [VerifyExport] checks such a file offline with only
//     the verifier key. It proves the events are in the signed log at the
//     sequence numbers they claim; it says nothing about their validity.
//
// The store is opened read-only. Pebble still takes its directory lock, so
// the homeserver must be stopped, or the auditor works on a copy.
package audit
