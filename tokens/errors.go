package tokens

import (
	"fmt"

	"github.com/mlshome/homeserver/identity"
)

// Stable machine codes carried by [Error]. They never change meaning.
const (
	// CodeMalformed: an encoding could not be decoded, or a field has the
	// wrong size or is not a valid group element.
	CodeMalformed = "malformed"
	// CodeUnsupportedVersion: an encoding names an unknown version.
	CodeUnsupportedVersion = "unsupported_version"
	// CodeBadBatch: an issue request asks for no tokens or more than
	// [MaxBatch].
	CodeBadBatch = "bad_batch"
	// CodeUnknownKey: the key id is not one the issuer accepts for the
	// operation: for Evaluate, not the current key; for Redeem, neither the
	// current key nor the previous key within its grace period. The client
	// should fetch the issuer's keys again.
	CodeUnknownKey = "unknown_key"
	// CodeInvalidToken: the token's output is not the PRF of its nonce under
	// its key: tampered or forged.
	CodeInvalidToken = "invalid_token"
	// CodeInvalidProof: the issuer's DLEQ proof does not verify against its
	// public key, or the response does not match the request. The client
	// must discard the response: the issuer may be tagging it.
	CodeInvalidProof = "invalid_proof"
)

// Error is the error type of this package for everything a peer can cause:
// the same stable-code error as package identity's. Code is one of the
// Code* constants; Msg is for humans. Use [errors.As], [CodeOf], or
// errors.Is(err, &Error{Code: CodeInvalidToken}).
type Error = identity.Error

// CodeOf returns the code of the first *Error in err's chain, or "".
func CodeOf(err error) string { return identity.CodeOf(err) }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}
