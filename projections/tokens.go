package projections

import (
	"encoding/binary"
	"errors"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
)

// Tokens is the projection of group-creation token accounting: how many
// tokens each user got per allowance window (GC-6), and the nonces of
// spent tokens (double-spend detection, GC-6). The two halves share no
// key: nothing ties a spent nonce to the user who got the token (GC-4).
//
//	p/tok/issued/<user id>/<window BE>   count (8 bytes BE)
//	p/tok/spent/<hex nonce>              event seq (8 bytes BE)
type Tokens struct{}

const tokName = "tok"

func tokIssuedKey(userID string, window int64) []byte {
	return binary.BigEndian.AppendUint64(append(Prefix(tokName), "issued/"+userID+"/"...), uint64(window))
}

func tokSpentKey(nonce []byte) []byte {
	return hexKey(tokName+"/", "spent/", nonce, "", 0)
}

// Name implements Projection.
func (Tokens) Name() string { return tokName }

// Handles implements Projection.
func (Tokens) Handles() []string {
	return []string{events.TypeTokensIssued, events.TypeGroupCreated}
}

// Apply implements Projection.
func (Tokens) Apply(rw eventlog.ReadWriter, ev *eventlog.Event) error {
	switch ev.Type {
	case events.TypeTokensIssued:
		var e events.TokensIssued
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		n, err := TokenView{R: rw}.Issued(e.UserID, e.Window)
		if err != nil {
			return err
		}
		return setU64(rw, tokIssuedKey(e.UserID, e.Window), uint64(n+e.Count))
	case events.TypeGroupCreated:
		var e events.GroupCreated
		if err := events.Decode(ev, &e); err != nil {
			return err
		}
		return setU64(rw, tokSpentKey(e.TokenNonce), ev.Seq)
	}
	return nil
}

// TokenView reads the token projection.
type TokenView struct{ R eventlog.Reader }

// Issued returns how many tokens userID got in window.
func (v TokenView) Issued(userID string, window int64) (int, error) {
	b, err := v.R.Get(tokIssuedKey(userID, window))
	if errors.Is(err, eventlog.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return int(binary.BigEndian.Uint64(b)), nil
}

// Spent reports whether a token nonce was spent.
func (v TokenView) Spent(nonce []byte) (bool, error) {
	_, err := v.R.Get(tokSpentKey(nonce))
	if errors.Is(err, eventlog.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
