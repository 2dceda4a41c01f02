package tokens_test

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/mlshome/homeserver/tokens"
)

// The whole token life: issue to an authenticated client, redeem
// anonymously, rotate.
func Example() {
	now := time.UnixMilli(1_700_000_000_000)
	key, _ := tokens.GenerateKey(rand.Reader)
	issuer := tokens.NewIssuer(key, now, 24*time.Hour)

	// Client: blind 3 nonces for the published key.
	state, _, _ := tokens.Blind(3, issuer.Current().PublicKey, rand.Reader)
	reqBytes, _ := state.Request().MarshalBinary()

	// Server (after authenticating the client and charging its allowance).
	req, _ := tokens.ParseIssueRequest(reqBytes)
	resp, _ := issuer.Issue(req)
	respBytes, _ := resp.MarshalBinary()

	// Client: verify the proof and unblind.
	resp, _ = tokens.ParseIssueResponse(respBytes)
	toks, _ := tokens.FinalizeResponse(state, resp)
	tokBytes, _ := toks[0].MarshalBinary()

	// Later, anonymously: the server redeems and records the nonce as spent.
	tok, _ := tokens.ParseToken(tokBytes)
	nonce, err := issuer.Redeem(tok, now.Add(time.Hour))
	fmt.Println(len(nonce), err)

	// After a rotation the old key redeems for the grace period only.
	next, _ := tokens.GenerateKey(rand.Reader)
	issuer.Rotate(next, now.Add(7*24*time.Hour))
	_, err = issuer.Redeem(toks[1], now.Add(8*24*time.Hour))
	fmt.Println(err)
	_, err = issuer.Redeem(toks[2], now.Add(8*24*time.Hour+time.Millisecond))
	fmt.Println(tokens.CodeOf(err))
	// Output:
	// 32 <nil>
	// <nil>
	// unknown_key
}
