package identity

import (
	"errors"
	"fmt"
)

// Stable machine codes carried by [Error]. They are part of the API: the HTTP
// and federation layers pass them to clients unchanged, so they never change
// meaning.
const (
	// CodeMalformed: an encoding could not be decoded (truncated, trailing
	// bytes, wrong label, field out of range).
	CodeMalformed = "malformed"
	// CodeUnsupportedVersion: an encoding names a version this code does not
	// implement.
	CodeUnsupportedVersion = "unsupported_version"
	// CodeBadUserID: a user id is not "name@domain" with a valid name and
	// domain.
	CodeBadUserID = "bad_user_id"
	// CodeBadDomain: a domain is not a lowercase DNS name with an optional
	// ":port".
	CodeBadDomain = "bad_domain"
	// CodeBadClientID: a client id is empty, too long or uses characters
	// outside [A-Za-z0-9._~-].
	CodeBadClientID = "bad_client_id"
	// CodeBadKey: a public key has the wrong size or type.
	CodeBadKey = "bad_key"
	// CodeBadSignature: a signature does not verify.
	CodeBadSignature = "bad_signature"
	// CodeDomainMismatch: a domain field disagrees with the domain of the
	// user id it accompanies or with the expected homeserver.
	CodeDomainMismatch = "domain_mismatch"
	// CodeUserMismatch: a bundle or credential names another user than
	// expected.
	CodeUserMismatch = "user_mismatch"
	// CodeMissingAuth: a request carries none or only some of the
	// X-MLS-Client, X-MLS-Timestamp and X-MLS-Signature headers.
	CodeMissingAuth = "missing_auth"
	// CodeUnknownClient: the client id of a signed request is not
	// registered.
	CodeUnknownClient = "unknown_client"
	// CodeExpired: a timestamp lies outside the accepted window, or a signed
	// object is older than the caller accepts.
	CodeExpired = "expired"
	// CodeReplayed: a signed request was already accepted once.
	CodeReplayed = "replayed"
	// CodeOverloaded: the replay cache is full of unexpired entries; the
	// request is refused rather than risk accepting a replay. Retry later.
	CodeOverloaded = "overloaded"
	// CodeWrongHomeserver: a sealed queue config names another homeserver's
	// domain.
	CodeWrongHomeserver = "wrong_homeserver"
	// CodeOpenFailed: a sealed queue config names this homeserver but cannot
	// be decrypted with its queue key (sealed to another key, or tampered).
	CodeOpenFailed = "open_failed"
	// CodeBadQueueID: a queue id is shorter than [MinQueueIDLen] or longer
	// than [MaxQueueIDLen].
	CodeBadQueueID = "bad_queue_id"
)

// Error is the error type of this package for everything a peer can cause.
// Code is one of the Code* constants and is stable; Msg is for humans and may
// change. Use [errors.As] to get at it, [CodeOf] to read the code, or
// errors.Is(err, &Error{Code: CodeExpired}) to test for one code.
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

// Is reports whether target is an *Error with the same Code, so that
// errors.Is matches on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// CodeOf returns the code of the first *Error in err's chain, or "" if there
// is none (an internal error).
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
