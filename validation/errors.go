package validation

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a rejection: a stable machine code, the HTTP status it maps to,
// and a message for humans. Codes never change meaning once released.
type Error struct {
	Code   string
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Stable rejection codes.
const (
	CodeMalformed       = "malformed"
	CodeInvalidUserID   = "invalid_user_id"
	CodeUserExists      = "user_exists"
	CodeUnknownUser     = "unknown_user"
	CodeUnknownClient   = "unknown_client"
	CodeInvalidKey      = "invalid_key"
	CodeKeyInUse        = "key_in_use"
	CodeBadCredential   = "bad_credential"
	CodeBadSignature    = "bad_signature"
	CodeWrongDomain     = "wrong_domain"
	CodeTooManyClients  = "too_many_clients"
	CodeUnknownCommand  = "unknown_command"
	CodeRateLimited     = "rate_limited"
	CodeInternal        = "internal"
	CodeUnauthenticated = "unauthenticated"
	CodeReplayed        = "replayed"
)

var statusOf = map[string]int{
	CodeMalformed:       http.StatusBadRequest,
	CodeInvalidUserID:   http.StatusBadRequest,
	CodeUserExists:      http.StatusConflict,
	CodeUnknownUser:     http.StatusNotFound,
	CodeUnknownClient:   http.StatusNotFound,
	CodeInvalidKey:      http.StatusBadRequest,
	CodeKeyInUse:        http.StatusConflict,
	CodeBadCredential:   http.StatusBadRequest,
	CodeBadSignature:    http.StatusUnauthorized,
	CodeWrongDomain:     http.StatusBadRequest,
	CodeTooManyClients:  http.StatusConflict,
	CodeUnknownCommand:  http.StatusBadRequest,
	CodeRateLimited:     http.StatusTooManyRequests,
	CodeInternal:        http.StatusInternalServerError,
	CodeUnauthenticated: http.StatusUnauthorized,
	CodeReplayed:        http.StatusUnauthorized,
}

// Reject returns an *Error with code, its usual status and a message.
func Reject(code, format string, args ...any) *Error {
	st, ok := statusOf[code]
	if !ok {
		st = http.StatusBadRequest
	}
	return &Error{Code: code, Status: st, Msg: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error if it is (or wraps) one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
