// Package federation carries deliveries and relayed operations between
// homeservers over NATS.
//
// # Bus
//
// [OpenBus] runs an embedded NATS server with JetStream (optionally a leaf
// node of a hub, [StartHub]) or connects to an external cluster
// ([ClusterConfig] renders its configuration).
//
// # Subjects and permissions
//
// A domain's subject token is the domain with '.' replaced by '_' ([Token]).
//
//	hs.<origin>.<dest>.req      request/reply: relayed operations, lookups
//	hs.<origin>.<dest>.cursor   request/reply: the destination's delivery cursor
//	hs.<origin>.<dest>.deliver  durable deliveries, captured by the
//	                            destination's stream FED_IN_<dest>
//	hs.<dest>.<origin>.rep.<t>  the reply to one request (and the stream's
//	                            acknowledgement of one delivery)
//
// The origin is in the subject so that bus permissions let a homeserver
// publish only as itself: publish "hs.<self>.>", subscribe "hs.*.<self>.>",
// nothing else ([HubPermissions]). On a shared external cluster a
// homeserver also uses the JetStream API of its own stream and its own
// inboxes "_I.<self>.>" ([ClusterConfig]).
//
// # Envelopes
//
// Every message is an [Envelope] signed with the origin's Ed25519
// federation key over a canonical, labelled encoding. An [Opener] accepts
// an envelope only if it is well-formed, addressed to this homeserver,
// arrived on a subject naming the same origin and destination, comes from
// an origin the [Policy] allows, verifies under the origin's key
// ([KeyStore]), and, for requests and replies, is fresh (±window) and not
// replayed. Deliveries are exempt from the window; their replay protection
// is the per-(origin, destination) counter the receiver's log keeps.
// Refusals are [*Error] values with stable codes.
//
// # Durable deliveries
//
// The sender's log is the truth: a [Publisher] reads its outbox ([Outbox])
// and publishes each entry into the destination's JetStream stream with
// Nats-Msg-Id = "<origin>/<counter>"; the destination's [Receiver] commits
// each one through its [Inbox] before acking. Outbox entries are trimmed
// only after the destination's cursor passed them, so a stream can be lost
// and rebuilt from the outbox: deliveries arrive once, in order (FED-4,
// MD-7).
package federation
