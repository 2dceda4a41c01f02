package tokens

import (
	"errors"
	"fmt"
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

// Error is the error type of this package for everything a peer can cause.
// Code is one of the Code* constants and is stable; Msg is for humans. Use
// [errors.As], [CodeOf], or errors.Is(err, &Error{Code: CodeInvalidToken}).
type Error struct {
	// Code is the stable machine code.
	Code string
	// Msg explains the failure to a human; it is not stable.
	Msg string
}

// Error implements the error interface as "code: message".
func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Code
	}
	return e.Code + ": " + e.Msg
}

// Is reports whether target is an *Error with the same Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// CodeOf returns the code of the first *Error in err's chain, or "".
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}
