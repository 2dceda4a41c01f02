// Package tokens implements anonymous group-creation tokens (GC-1, GC-4,
// GC-6): a verifiable oblivious PRF, RFC 9497 VOPRF mode with the
// ristretto255-SHA512 suite, through github.com/cloudflare/circl/oprf.
//
// The flow:
//
//  1. An authenticated client asks for n tokens. It picks n random 32-byte
//     nonces, blinds them ([Blind]) and sends the blinded elements in an
//     [IssueRequest]. The request has no field for who the client is: the
//     caller authenticates and rate-limits the HTTP request around it.
//  2. The homeserver evaluates the blinded elements with its current key
//     ([Issuer.Evaluate]) and returns them with a batch DLEQ proof in an
//     [IssueResponse]. It sees only blinded elements, which are uniformly
//     random and independent of the nonces.
//  3. The client checks the proof against the issuer's published key and
//     unblinds ([Finalize]), getting one [Token] (key id, nonce, PRF output)
//     per nonce.
//  4. Later, anonymously, the client spends a token to create a group.
//     [Issuer.Redeem] recomputes the PRF on the nonce with the private key
//     and compares. Because the issuer never saw the nonce or the output
//     during issuance, it cannot link the redemption to the issuance.
//
// Redeem does not detect double spending: it returns the nonce, and the
// caller records spent nonces in the event log and refuses a second use
// (token_spent).
//
// Keys rotate: an [Issuer] evaluates with its current key only and redeems
// with the current key or, for a grace period after a rotation, the previous
// one. Time is always a parameter. Key generation and blinding read their
// randomness from an io.Reader; the DLEQ proof inside Evaluate uses
// crypto/rand (circl draws it internally), which does not affect any output
// that must be reproducible.
//
// Errors a peer can cause are [*Error] values with a stable Code.
package tokens
