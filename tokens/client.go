package tokens

import (
	"crypto/rand"
	"fmt"
	"io"

	"github.com/cloudflare/circl/oprf"
	"github.com/cloudflare/circl/zk/dleq"
)

// blindDST separates our derivation of blinding scalars from random bytes.
const blindDST = "mlshome token blind v1"

// BlindState is what a client keeps between [Blind] and [Finalize]: the
// nonces, the blinds and the issuer key. It is secret: whoever holds it can
// link the blinded request to the tokens.
type BlindState struct {
	keyID   KeyID
	client  oprf.VerifiableClient
	fin     *oprf.FinalizeData
	nonces  [][]byte
	blinded []oprf.Blinded
}

// KeyID returns the issuer key the state was blinded for.
func (s *BlindState) KeyID() KeyID { return s.keyID }

// Blind prepares a request for n tokens (1 to [MaxBatch]) from the issuer
// with public key pub: it draws n random nonces and n blinding scalars from
// rnd and returns the state to keep and the blinded elements to send (in an
// [IssueRequest] with KeyID = KeyIDOf(pub)). The client must take pub from
// the same public source as every other client (the homeserver's published
// keys), or the issuer could tell clients apart by key. A nil rnd means
// crypto/rand.Reader.
func Blind(n int, pub []byte, rnd io.Reader) (*BlindState, [][]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if n < 1 || n > MaxBatch {
		return nil, nil, errorf(CodeBadBatch, "batch of %d tokens, want 1 to %d", n, MaxBatch)
	}
	pk := new(oprf.PublicKey)
	if len(pub) != PublicKeySize || pk.UnmarshalBinary(suite, pub) != nil {
		return nil, nil, errorf(CodeMalformed, "issuer public key is not a valid %d-byte element", PublicKeySize)
	}
	client := oprf.NewVerifiableClient(suite, pk)
	g := suite.Group()
	nonces := make([][]byte, n)
	blinds := make([]oprf.Blind, n)
	wide := make([]byte, 64)
	for i := range n {
		nonces[i] = make([]byte, NonceSize)
		if _, err := io.ReadFull(rnd, nonces[i]); err != nil {
			return nil, nil, fmt.Errorf("blind: %w", err)
		}
		// circl's ristretto255 RandomScalar ignores its reader; reduce 64
		// random bytes instead, which is uniform and honours rnd.
		if _, err := io.ReadFull(rnd, wide); err != nil {
			return nil, nil, fmt.Errorf("blind: %w", err)
		}
		blinds[i] = g.HashToScalar(wide, []byte(blindDST))
	}
	fin, req, err := client.DeterministicBlind(nonces, blinds)
	if err != nil {
		return nil, nil, fmt.Errorf("blind: %w", err)
	}
	out := make([][]byte, n)
	for i, e := range req.Elements {
		if out[i], err = e.MarshalBinaryCompress(); err != nil {
			return nil, nil, fmt.Errorf("blind: %w", err)
		}
	}
	return &BlindState{keyID: KeyIDOf(pub), client: client, fin: fin, nonces: nonces, blinded: req.Elements}, out, nil
}

// Request returns the [IssueRequest] for the blinded elements.
func (s *BlindState) Request() IssueRequest {
	out := make([][]byte, len(s.blinded))
	for i, e := range s.blinded {
		out[i], _ = e.MarshalBinaryCompress()
	}
	return IssueRequest{KeyID: s.keyID, Blinded: out}
}

// Finalize checks the issuer's batch DLEQ proof over the blinded and
// evaluated elements against the issuer public key given to [Blind], and
// unblinds, returning one token per nonce in order. It fails with
// [CodeInvalidProof] if the proof does not verify (the evaluation was not
// made with the published key) or the batch size differs from the
// request, and [CodeMalformed] for elements or proof of the wrong shape.
func Finalize(state *BlindState, evaluated [][]byte, proof []byte) ([]Token, error) {
	if len(evaluated) != len(state.nonces) {
		return nil, errorf(CodeInvalidProof, "got %d evaluated elements for %d blinded", len(evaluated), len(state.nonces))
	}
	g := suite.Group()
	ev := &oprf.Evaluation{Elements: make([]oprf.Evaluated, len(evaluated)), Proof: new(dleq.Proof)}
	for i, b := range evaluated {
		e := g.NewElement()
		if len(b) != ElementSize || e.UnmarshalBinary(b) != nil || e.IsIdentity() {
			return nil, errorf(CodeMalformed, "evaluated element %d is not a valid group element", i)
		}
		ev.Elements[i] = e
	}
	if len(proof) != ProofSize || ev.Proof.UnmarshalBinary(g, proof) != nil {
		return nil, errorf(CodeMalformed, "proof is not %d bytes of two scalars", ProofSize)
	}
	outputs, err := state.client.Finalize(state.fin, ev)
	if err != nil {
		return nil, errorf(CodeInvalidProof, "issuer evaluation does not verify: %v", err)
	}
	toks := make([]Token, len(outputs))
	for i := range outputs {
		toks[i] = Token{KeyID: state.keyID, Nonce: append([]byte(nil), state.nonces[i]...), Output: outputs[i]}
	}
	return toks, nil
}

// FinalizeResponse is [Finalize] on an [IssueResponse], which must name the
// key the state was blinded for ([CodeInvalidProof] otherwise).
func FinalizeResponse(state *BlindState, resp IssueResponse) ([]Token, error) {
	if resp.KeyID != state.keyID {
		return nil, errorf(CodeInvalidProof, "response is for key %s, request was for %s", resp.KeyID, state.keyID)
	}
	return Finalize(state, resp.Evaluated, resp.Proof)
}
