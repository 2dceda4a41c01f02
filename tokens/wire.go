package tokens

import (
	"encoding/binary"
)

// Wire encodings. Each starts with a version byte and a kind byte so that
// one kind of message is never parsed as another; all sizes are fixed except
// the element count, so decoding is strict and canonical.
//
//	IssueRequest:  0x01 0x01 key_id[8] uint16 n  blinded[n][32]
//	IssueResponse: 0x01 0x02 key_id[8] uint16 n  evaluated[n][32] proof[64]
//	Token:         0x01 0x03 key_id[8] nonce[32] output[64]
const (
	wireVersion   = 1
	kindRequest   = 1
	kindResponse  = 2
	kindToken     = 3
	wireHeaderLen = 2 + KeyIDSize
)

// MaxBatch is the most tokens one issue request may ask for.
const MaxBatch = 100

// TokenSize is the size of an encoded [Token].
const TokenSize = wireHeaderLen + NonceSize + OutputSize

// IssueRequest asks the issuer to evaluate blinded elements under key KeyID.
// It deliberately has no other field: nothing in it names or links to the
// client, so the issuance cannot be tied to a later redemption through it.
// Authenticating the client and counting its allowance happen around it,
// in the HTTP layer.
type IssueRequest struct {
	// KeyID is the issuer key the client blinded for.
	KeyID KeyID
	// Blinded are the blinded elements, [ElementSize] bytes each.
	Blinded [][]byte
}

// IssueResponse carries the evaluated elements, in request order, and the
// batch DLEQ proof that they were computed with the key KeyID.
type IssueResponse struct {
	// KeyID is the key used.
	KeyID KeyID
	// Evaluated are the evaluated elements, [ElementSize] bytes each.
	Evaluated [][]byte
	// Proof is the [ProofSize]-byte DLEQ proof.
	Proof []byte
}

// Token is a finalised group-creation token. The issuer sees it only at
// redemption.
type Token struct {
	// KeyID is the issuer key the token was issued under.
	KeyID KeyID
	// Nonce is the client's random PRF input, [NonceSize] bytes. It is what
	// the event log records as spent.
	Nonce []byte
	// Output is the PRF output, [OutputSize] bytes.
	Output []byte
}

func putHeader(b []byte, kind byte, id KeyID) []byte {
	b = append(b, wireVersion, kind)
	return append(b, id[:]...)
}

func readHeader(b []byte, kind byte, what string) (KeyID, []byte, *Error) {
	if len(b) < wireHeaderLen {
		return KeyID{}, nil, errorf(CodeMalformed, "%s truncated", what)
	}
	if b[0] != wireVersion {
		return KeyID{}, nil, errorf(CodeUnsupportedVersion, "%s version %d", what, b[0])
	}
	if b[1] != kind {
		return KeyID{}, nil, errorf(CodeMalformed, "not a %s", what)
	}
	return KeyID(b[2:wireHeaderLen]), b[wireHeaderLen:], nil
}

func putElements(b []byte, elems [][]byte) ([]byte, *Error) {
	if len(elems) == 0 || len(elems) > MaxBatch {
		return nil, errorf(CodeBadBatch, "batch of %d elements, want 1 to %d", len(elems), MaxBatch)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(elems)))
	for i, e := range elems {
		if len(e) != ElementSize {
			return nil, errorf(CodeMalformed, "element %d has %d bytes, want %d", i, len(e), ElementSize)
		}
		b = append(b, e...)
	}
	return b, nil
}

// readElements reads a count and that many elements, leaving trailing
// bytes for the caller. It only checks sizes; group membership is checked
// where the elements are used.
func readElements(b []byte, what string) ([][]byte, []byte, *Error) {
	if len(b) < 2 {
		return nil, nil, errorf(CodeMalformed, "%s truncated", what)
	}
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if n == 0 || n > MaxBatch {
		return nil, nil, errorf(CodeBadBatch, "%s has %d elements, want 1 to %d", what, n, MaxBatch)
	}
	if len(b) < n*ElementSize {
		return nil, nil, errorf(CodeMalformed, "%s truncated", what)
	}
	elems := make([][]byte, n)
	for i := range elems {
		elems[i] = append([]byte(nil), b[:ElementSize]...)
		b = b[ElementSize:]
	}
	return elems, b, nil
}

// MarshalBinary encodes r.
func (r IssueRequest) MarshalBinary() ([]byte, error) {
	b := putHeader(make([]byte, 0, wireHeaderLen+2+len(r.Blinded)*ElementSize), kindRequest, r.KeyID)
	b, err := putElements(b, r.Blinded)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// ParseIssueRequest decodes an [IssueRequest]. Errors have code
// [CodeMalformed], [CodeUnsupportedVersion] or [CodeBadBatch].
func ParseIssueRequest(b []byte) (IssueRequest, error) {
	id, rest, err := readHeader(b, kindRequest, "issue request")
	if err != nil {
		return IssueRequest{}, err
	}
	elems, rest, err := readElements(rest, "issue request")
	if err != nil {
		return IssueRequest{}, err
	}
	if len(rest) != 0 {
		return IssueRequest{}, errorf(CodeMalformed, "issue request has %d trailing bytes", len(rest))
	}
	return IssueRequest{KeyID: id, Blinded: elems}, nil
}

// MarshalBinary encodes r.
func (r IssueResponse) MarshalBinary() ([]byte, error) {
	b := putHeader(make([]byte, 0, wireHeaderLen+2+len(r.Evaluated)*ElementSize+ProofSize), kindResponse, r.KeyID)
	b, err := putElements(b, r.Evaluated)
	if err != nil {
		return nil, err
	}
	if len(r.Proof) != ProofSize {
		return nil, errorf(CodeMalformed, "proof has %d bytes, want %d", len(r.Proof), ProofSize)
	}
	return append(b, r.Proof...), nil
}

// ParseIssueResponse decodes an [IssueResponse]. Errors have code
// [CodeMalformed], [CodeUnsupportedVersion] or [CodeBadBatch].
func ParseIssueResponse(b []byte) (IssueResponse, error) {
	id, rest, err := readHeader(b, kindResponse, "issue response")
	if err != nil {
		return IssueResponse{}, err
	}
	elems, rest, err := readElements(rest, "issue response")
	if err != nil {
		return IssueResponse{}, err
	}
	if len(rest) != ProofSize {
		return IssueResponse{}, errorf(CodeMalformed, "issue response proof has %d bytes, want %d", len(rest), ProofSize)
	}
	return IssueResponse{KeyID: id, Evaluated: elems, Proof: append([]byte(nil), rest...)}, nil
}

// MarshalBinary encodes t in [TokenSize] bytes.
func (t Token) MarshalBinary() ([]byte, error) {
	if len(t.Nonce) != NonceSize || len(t.Output) != OutputSize {
		return nil, errorf(CodeMalformed, "token nonce must be %d bytes and output %d", NonceSize, OutputSize)
	}
	b := putHeader(make([]byte, 0, TokenSize), kindToken, t.KeyID)
	b = append(b, t.Nonce...)
	return append(b, t.Output...), nil
}

// ParseToken decodes a [Token]. It checks the shape only; [Issuer.Redeem]
// checks the token. Errors have code [CodeMalformed] or
// [CodeUnsupportedVersion].
func ParseToken(b []byte) (Token, error) {
	id, rest, err := readHeader(b, kindToken, "token")
	if err != nil {
		return Token{}, err
	}
	if len(rest) != NonceSize+OutputSize {
		return Token{}, errorf(CodeMalformed, "token must be %d bytes", TokenSize)
	}
	return Token{
		KeyID:  id,
		Nonce:  append([]byte(nil), rest[:NonceSize]...),
		Output: append([]byte(nil), rest[NonceSize:]...),
	}, nil
}
