// Package api holds the homeserver's HTTP handlers. Handlers decode and
// check what needs no state (syntax, signatures) on the request goroutine,
// then submit a command to the event log's writer, which runs the stateful
// checks; a request succeeds only once its events are durable.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/projections"
	"github.com/mlshome/homeserver/validation"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// ErrorBody is the JSON body of every error reply.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail carries the stable code and a message.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"encode reply"}}`, http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, status, b)
}

func writeRawJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(b)
	w.Write(newline)
}

var newline = []byte("\n")

// jsonContentType is the Content-Type header value of JSON replies, shared
// (net/http only reads it).
var jsonContentType = []string{"application/json"}

// writeError maps err to a status and stable code. Anything that is not a
// *validation.Error is internal: it is logged and its text is not shown.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := validation.AsError(err)
	if !ok {
		switch {
		case errors.Is(err, eventlog.ErrClosed):
			e = &validation.Error{Code: "shutting_down", Status: http.StatusServiceUnavailable, Msg: "the homeserver is shutting down"}
		default:
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			e = validation.Reject(validation.CodeInternal, "internal error")
		}
	}
	if s.metrics != nil {
		s.metrics.Rejections.WithLabelValues(e.Code).Inc()
	}
	writeJSON(w, e.Status, ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Msg}})
}

// readBody reads at most MaxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= MaxBodyBytes {
		// The usual case: read exactly the announced length.
		b := make([]byte, n)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, validation.Reject(validation.CodeMalformed, "read body: %v", err)
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, validation.Reject(validation.CodeMalformed, "read body: %v", err)
	}
	if len(b) > MaxBodyBytes {
		return nil, &validation.Error{Code: "too_large", Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)}
	}
	return b, nil
}

// decodeStrict parses exactly one JSON object into v, refusing unknown
// fields and trailing data.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return validation.Reject(validation.CodeMalformed, "body: %v", err)
	}
	if d.More() {
		return validation.Reject(validation.CodeMalformed, "body: trailing data after the JSON object")
	}
	if _, err := d.Token(); err != io.EOF {
		return validation.Reject(validation.CodeMalformed, "body: trailing data after the JSON object")
	}
	return nil
}

func contextWithDeadline(r *http.Request, d time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(r.Context(), d)
}

// jsonBody reads the request body into v (strict JSON). On failure it has
// written the error reply and returns false.
func (s *Server) jsonBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := readBody(r)
	if err == nil {
		err = decodeStrict(body, v)
	}
	if err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// signedBody authenticates a client-signed request and reads its body into
// v. On failure it has written the error reply and returns nil.
func (s *Server) signedBody(w http.ResponseWriter, r *http.Request, v any) *projections.ClientRecord {
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	client, err := s.authenticate(r, body)
	if err == nil {
		err = decodeStrict(body, v)
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil
	}
	return client
}
