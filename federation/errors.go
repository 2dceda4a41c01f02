package federation

import (
	"errors"
	"fmt"
)

// Stable machine codes carried by [Error]. They are part of the API: a
// homeserver passes them to its peers in error replies and to its clients,
// so they never change meaning.
const (
	// CodeMalformed: an envelope or payload could not be decoded (truncated,
	// trailing bytes, bad field syntax).
	CodeMalformed = "malformed"
	// CodeUnsupportedVersion: an envelope names a version this code does not
	// implement.
	CodeUnsupportedVersion = "unsupported_version"
	// CodeTooLarge: an envelope is larger than [MaxEnvelopeSize].
	CodeTooLarge = "too_large"
	// CodeWrongDestination: an envelope is addressed to another homeserver.
	CodeWrongDestination = "wrong_destination"
	// CodeOriginMismatch: the origin or destination named by the NATS
	// subject (which bus permissions vouch for) differs from the envelope's.
	CodeOriginMismatch = "origin_mismatch"
	// CodeWrongKind: the envelope kind is not valid on the subject it
	// arrived on (a delivery sent as a request, a request as a reply, ...).
	CodeWrongKind = "wrong_kind"
	// CodeBlocked: the origin is not allowed by this homeserver's federation
	// policy (FED-1, FED-5).
	CodeBlocked = "blocked"
	// CodeUnknownOrigin: no federation key is configured, pinned or
	// fetchable for the origin.
	CodeUnknownOrigin = "unknown_origin"
	// CodeKeyChanged: the origin now publishes a federation key different
	// from the pinned one; refused until the operator clears the pin
	// ([KeyStore.Unpin]).
	CodeKeyChanged = "key_changed"
	// CodeBadSignature: the envelope signature does not verify under the
	// origin's federation key.
	CodeBadSignature = "bad_signature"
	// CodeExpired: a request or reply timestamp lies outside the accepted
	// window.
	CodeExpired = "expired"
	// CodeReplayed: a request or reply with this (origin, id) was already
	// accepted within the window.
	CodeReplayed = "replayed"
	// CodeOverloaded: the replay cache is full of unexpired entries; the
	// envelope is refused rather than risk accepting a replay.
	CodeOverloaded = "overloaded"
	// CodeUnreachable: nobody answers on the destination's subject (the
	// homeserver is down, not connected to the bus, or not serving).
	CodeUnreachable = "unreachable"
	// CodeTimeout: the destination did not answer in time.
	CodeTimeout = "timeout"
	// CodeInternal: the remote handler failed for a reason it does not
	// disclose.
	CodeInternal = "internal"
)

// Error is the error type of this package for everything a peer can cause,
// and for failures reported by a peer. Code is one of the Code* constants
// (or, for a remote error, the code the remote handler chose) and is stable;
// Msg is for humans and may change. Use [errors.As] to get at it, [CodeOf]
// to read the code, or errors.Is(err, &Error{Code: CodeExpired}) to test for
// one code.
type Error struct {
	// Code is the stable machine code.
	Code string
	// Msg explains the failure to a human; it is not stable.
	Msg string
	// Remote is the domain of the homeserver that reported the error in a
	// signed error reply; empty when this homeserver detected it.
	Remote string
	// Err is an underlying cause (a NATS or network error), if any.
	Err error
}

// Error implements the error interface as "code: message".
func (e *Error) Error() string {
	s := e.Code
	if e.Remote != "" {
		s = e.Remote + ": " + s
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

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

// Errorf returns an *Error with code and a formatted message. Request
// handlers return it to send a coded error reply.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}
