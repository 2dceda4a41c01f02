// Package eventlog is the homeserver's append-only event log on Pebble.
//
// The log is the only source of truth. Every accepted input becomes one or
// more events with dense sequence numbers starting at 1; everything else in
// the store (the projections) is derived from them and can be rebuilt.
//
// # Invariants
//
//   - One writer goroutine per log. It takes commands, lets the caller's
//     Handler decide each one against the current state (which includes the
//     effects of earlier commands in the same batch), and commits the events,
//     their projection mutations, their Merkle hashes, the idempotency index
//     and (at most once a second) a signed checkpoint in ONE Pebble batch
//     with pebble.Sync. A caller is answered only after that batch is
//     durable (LOG-1).
//   - Group commit: commands are decided into an open batch while earlier
//     batches wait for their fsync (one while requests are announced with
//     Expect, two otherwise), so a batch's size follows the load.
//   - Reads through Log.Reader and the writer serve the configured cache
//     prefixes from memory; the writer keeps that cache exact around every
//     apply, so no reader sees a value older than one it saw before.
//   - A rejected command writes nothing.
//   - Sequence numbers are dense: after a commit the log holds events
//     1..Size() and no others. The Merkle tree (RFC 6962 hashing, as in
//     golang.org/x/mod/sumdb/tlog) over those events has size Size(), so the
//     tree head after any sequence s is the tree hash of size s (LOG-3).
//   - Time comes from the writer: each batch gets one timestamp, never
//     earlier than the previous batch's, and it is recorded in every event of
//     the batch. Handlers must use it instead of reading the clock, so replay
//     and audit see exactly what the writer saw.
//
// # Key layout
//
// The log owns every key under "log/". Projections own "p/<name>/" keys and
// are written only through a Handler's Apply, called by the writer.
//
//	log/meta             size (8 bytes BE) | last batch time (8 bytes BE)
//	log/ev/<seq BE>      encoded Event
//	log/h/<record BE>    the Merkle hashes stored with record n = seq-1: its leaf
//	                     hash, then the roots of the subtrees it completed
//	log/idem/<key>       first seq | event count | reply, for idempotent appends
//	log/ckpt             the latest signed checkpoint (a note)
package eventlog
