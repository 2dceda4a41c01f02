package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Headers of a signed client request.
const (
	// HeaderClient carries the client id.
	HeaderClient = "X-MLS-Client"
	// HeaderTimestamp carries the signing time in unix milliseconds, decimal.
	HeaderTimestamp = "X-MLS-Timestamp"
	// HeaderSignature carries the Ed25519 signature, unpadded base64url.
	HeaderSignature = "X-MLS-Signature"
)

// requestLabel is the first line of the string to sign.
const requestLabel = "mlshome request v1"

// maxRequestTarget bounds the path-and-query a signed request may carry.
const maxRequestTarget = 8 << 10

// ErrUnknownClient is what a lookupKey function passed to [VerifyRequest]
// returns for a client id that is not registered.
var ErrUnknownClient = &Error{Code: CodeUnknownClient, Msg: "client is not registered"}

// RequestAuth is the parsed authentication headers of a signed request.
type RequestAuth struct {
	// ClientID is the X-MLS-Client header.
	ClientID string
	// Timestamp is the X-MLS-Timestamp header, unix milliseconds.
	Timestamp int64
	// Signature is the decoded X-MLS-Signature header.
	Signature []byte
}

// RequestSigningInput returns the bytes a client signs for a request:
//
//	"mlshome request v1" LF
//	method LF
//	path-and-query LF
//	lowercase hex SHA-256 of the body LF
//	timestamp (unix ms, decimal) LF
//	client id
//
// method is the HTTP method in upper case; path is the request target as
// sent on the wire (origin form, "/path?query", as in http.Request.RequestURI
// on the server and URL.RequestURI() on the client). It fails with
// [CodeMalformed] if method or path could smuggle a line break.
func RequestSigningInput(method, path string, body []byte, timestampMs int64, clientID string) ([]byte, error) {
	if method == "" {
		return nil, errorf(CodeMalformed, "empty method")
	}
	for i := 0; i < len(method); i++ {
		if c := method[i]; c < 'A' || c > 'Z' {
			return nil, errorf(CodeMalformed, "method %q is not upper-case letters", method)
		}
	}
	if len(path) == 0 || path[0] != '/' || len(path) > maxRequestTarget {
		return nil, errorf(CodeMalformed, "request target must start with '/' and be at most %d bytes", maxRequestTarget)
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c == 0x7f {
			return nil, errorf(CodeMalformed, "request target contains a control character or space")
		}
	}
	if err := ValidateClientID(clientID); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	b := make([]byte, 0, len(requestLabel)+len(method)+len(path)+len(clientID)+100)
	b = append(b, requestLabel...)
	b = append(b, '\n')
	b = append(b, method...)
	b = append(b, '\n')
	b = append(b, path...)
	b = append(b, '\n')
	b = hex.AppendEncode(b, sum[:])
	b = append(b, '\n')
	b = strconv.AppendInt(b, timestampMs, 10)
	b = append(b, '\n')
	b = append(b, clientID...)
	return b, nil
}

// SignRequest signs req for clientID with key at time now and sets the
// X-MLS-Client, X-MLS-Timestamp and X-MLS-Signature headers. body must be
// exactly the body the caller sends (nil for none); SignRequest does not
// touch req.Body. The request target signed is req.URL.RequestURI().
func SignRequest(req *http.Request, body []byte, clientID string, key ed25519.PrivateKey, now time.Time) error {
	if len(key) != ed25519.PrivateKeySize {
		return errorf(CodeBadKey, "signing key must be %d bytes", ed25519.PrivateKeySize)
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	ts := now.UnixMilli()
	msg, err := RequestSigningInput(method, req.URL.RequestURI(), body, ts, clientID)
	if err != nil {
		return err
	}
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	req.Header.Set(HeaderClient, clientID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, msg)))
	return nil
}

// ParseRequestAuth reads the authentication headers. Each must appear exactly
// once. It fails with [CodeMissingAuth] if any is absent, and with
// [CodeMalformed] or [CodeBadClientID] if one does not parse.
func ParseRequestAuth(h http.Header) (RequestAuth, error) {
	client, cok := h[http.CanonicalHeaderKey(HeaderClient)]
	ts, tok := h[http.CanonicalHeaderKey(HeaderTimestamp)]
	sig, sok := h[http.CanonicalHeaderKey(HeaderSignature)]
	if !cok && !tok && !sok {
		return RequestAuth{}, errorf(CodeMissingAuth, "request is not signed")
	}
	if !cok || !tok || !sok {
		return RequestAuth{}, errorf(CodeMissingAuth, "need all of %s, %s and %s", HeaderClient, HeaderTimestamp, HeaderSignature)
	}
	if len(client) != 1 || len(ts) != 1 || len(sig) != 1 {
		return RequestAuth{}, errorf(CodeMalformed, "authentication headers must appear once each")
	}
	if err := ValidateClientID(client[0]); err != nil {
		return RequestAuth{}, err
	}
	t, e := parseTimestamp(ts[0])
	if e != nil {
		return RequestAuth{}, e
	}
	if len(sig[0]) != base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize) {
		return RequestAuth{}, errorf(CodeMalformed, "%s must be %d base64url characters", HeaderSignature, base64.RawURLEncoding.EncodedLen(ed25519.SignatureSize))
	}
	s, err := base64.RawURLEncoding.Strict().DecodeString(sig[0])
	if err != nil {
		return RequestAuth{}, errorf(CodeMalformed, "%s: %v", HeaderSignature, err)
	}
	return RequestAuth{ClientID: client[0], Timestamp: t, Signature: s}, nil
}

// parseTimestamp accepts 1 to 15 decimal digits without sign or leading zero
// (unix milliseconds until the year 33658), one spelling per value.
func parseTimestamp(s string) (int64, *Error) {
	if len(s) == 0 || len(s) > 15 || (s[0] == '0' && len(s) > 1) {
		return 0, errorf(CodeMalformed, "%s must be unix milliseconds", HeaderTimestamp)
	}
	var t int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errorf(CodeMalformed, "%s must be unix milliseconds", HeaderTimestamp)
		}
		t = t*10 + int64(c-'0')
	}
	return t, nil
}

// checkWindow reports [CodeExpired] unless ts is within ±window of now.
func checkWindow(ts int64, now time.Time, window time.Duration) *Error {
	d := now.UnixMilli() - ts
	w := window.Milliseconds()
	if d > w || d < -w {
		return errorf(CodeExpired, "request time is %v from now, outside ±%v", time.Duration(d)*time.Millisecond, window)
	}
	return nil
}

// VerifyRequest authenticates a signed client request: it parses the
// headers ([ParseRequestAuth]), checks that the timestamp is within ±window
// of now ([CodeExpired]), looks up the client's registered key and verifies
// the signature over [RequestSigningInput] ([CodeBadSignature]). path is
// the request target as received (http.Request.RequestURI). It returns the
// authenticated client id.
//
// lookupKey should return [ErrUnknownClient] (or any *Error) for a client it
// does not know; that error is returned as is. Any other lookup error is an
// internal failure and is returned wrapped.
//
// VerifyRequest does not detect replays within the window: pass the header
// to a [ReplayCache] after it succeeds.
func VerifyRequest(method, path string, body []byte, header http.Header,
	lookupKey func(clientID string) (ed25519.PublicKey, error), now time.Time, window time.Duration) (string, error) {
	auth, err := ParseRequestAuth(header)
	if err != nil {
		return "", err
	}
	if e := checkWindow(auth.Timestamp, now, window); e != nil {
		return "", e
	}
	msg, err := RequestSigningInput(method, path, body, auth.Timestamp, auth.ClientID)
	if err != nil {
		return "", err
	}
	pub, err := lookupKey(auth.ClientID)
	if err != nil {
		if CodeOf(err) != "" {
			return "", err
		}
		return "", fmt.Errorf("look up key of client %q: %w", auth.ClientID, err)
	}
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("key of client %q has %d bytes", auth.ClientID, len(pub))
	}
	if !ed25519.Verify(pub, msg, auth.Signature) {
		return "", errorf(CodeBadSignature, "request signature does not verify")
	}
	return auth.ClientID, nil
}
