package federation

import (
	"strings"

	"github.com/mlshome/homeserver/identity"
)

// Subjects. A domain's subject token is the domain with '.' replaced by
// '_' (domains never contain '_', so the mapping is reversible); ':' of a
// testnet port stays. The origin comes first so that bus permissions can let
// a homeserver publish only subjects naming itself ("hs.<self>.>") and
// subscribe only to subjects naming it as destination ("hs.*.<self>.>").
const (
	subjectPrefix = "hs"
	// SuffixRequest is the subject suffix of relayed operations and lookups
	// (request/reply).
	SuffixRequest = "req"
	// SuffixDeliver is the subject suffix of durable deliveries (JetStream).
	SuffixDeliver = "deliver"
	// SuffixCursor is the subject suffix of delivery cursor queries
	// (request/reply).
	SuffixCursor = "cursor"
)

// Token returns the NATS subject token of a domain.
func Token(domain string) string { return strings.ReplaceAll(domain, ".", "_") }

// domainOfToken inverts [Token].
func domainOfToken(tok string) string { return strings.ReplaceAll(tok, "_", ".") }

// Subject returns "hs.<origin>.<dest>.<suffix>".
func Subject(origin, dest, suffix string) string {
	return subjectPrefix + "." + Token(origin) + "." + Token(dest) + "." + suffix
}

// parseSubject splits "hs.<origin>.<dest>.<suffix>" into domains and suffix.
func parseSubject(subject string) (origin, dest, suffix string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[0] != subjectPrefix {
		return "", "", "", false
	}
	origin, dest = domainOfToken(parts[1]), domainOfToken(parts[2])
	if identity.ValidateDomain(origin) != nil || identity.ValidateDomain(dest) != nil {
		return "", "", "", false
	}
	return origin, dest, parts[3], true
}

// InboxPrefix is the NATS inbox prefix of a homeserver's connection,
// "_I.<token>" ([OpenBus] sets it). Federation replies do not use inboxes
// (see replySubject); the JetStream API does, and on a shared external
// server the homeserver may subscribe only to its own inboxes
// ([ClusterPermissions]), so no homeserver can read another's API answers
// or pulled deliveries.
func InboxPrefix(domain string) string { return "_I." + Token(domain) }

// fileToken is [Token] with ':' replaced by "__", for names that become
// file or directory names (JetStream stream names). Domains contain no '_',
// so "a.b:1" ("a_b__1") and "a.b.1" ("a_b_1") stay distinct.
func fileToken(domain string) string { return strings.ReplaceAll(Token(domain), ":", "__") }

// StreamName is the JetStream stream holding deliveries to domain,
// "FED_IN_<token>" with '.' replaced by '_' and ':' by "__".
func StreamName(domain string) string { return "FED_IN_" + fileToken(domain) }

// ConsumerName is the durable consumer of [StreamName] that feeds the
// homeserver's log.
const ConsumerName = "FED_IN"
