package federation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/mlshome/homeserver/identity"
)

// Policy modes.
const (
	// PolicyOpen accepts every origin except those in Block.
	PolicyOpen = "open"
	// PolicyAllowlist accepts only origins in Allow, minus those in Block.
	PolicyAllowlist = "allowlist"
)

// Policy says which homeservers may federate with this one (FED-1, FED-5):
// open with a blocklist, or an allowlist. Block always wins.
//
// A Policy is a value; [Transport.SetPolicy] swaps the one in force
// atomically. Its JSON encoding ([Policy.Marshal]) is deterministic: mode
// spelled out, lists sorted and free of duplicates, so it can be stored in
// an event and compared byte for byte.
type Policy struct {
	// Mode is [PolicyOpen] or [PolicyAllowlist]; empty means open.
	Mode string `json:"mode"`
	// Allow lists the origins accepted in allowlist mode.
	Allow []string `json:"allow"`
	// Block lists origins refused in every mode.
	Block []string `json:"block"`
}

// OpenPolicy accepts every homeserver.
func OpenPolicy() Policy { return Policy{Mode: PolicyOpen} }

// Allowed reports whether origin may federate with this homeserver.
func (p Policy) Allowed(origin string) bool {
	if slices.Contains(p.Block, origin) {
		return false
	}
	if p.Mode == PolicyAllowlist {
		return slices.Contains(p.Allow, origin)
	}
	return true
}

// Normalize returns p with the mode spelled out and both lists sorted and
// deduplicated, after checking the mode and every domain.
func (p Policy) Normalize() (Policy, error) {
	switch p.Mode {
	case "":
		p.Mode = PolicyOpen
	case PolicyOpen, PolicyAllowlist:
	default:
		return Policy{}, Errorf(CodeMalformed, "policy mode %q is not %q or %q", p.Mode, PolicyOpen, PolicyAllowlist)
	}
	norm := func(name string, in []string) ([]string, error) {
		out := make([]string, 0, len(in))
		for _, d := range in {
			if err := identity.ValidateDomain(d); err != nil {
				return nil, Errorf(CodeMalformed, "policy %s: %v", name, err)
			}
			out = append(out, d)
		}
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	var err error
	if p.Allow, err = norm("allow", p.Allow); err != nil {
		return Policy{}, err
	}
	if p.Block, err = norm("block", p.Block); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Marshal returns the canonical JSON encoding of the normalized policy.
func (p Policy) Marshal() ([]byte, error) {
	n, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	return b, nil
}

// ParsePolicy decodes a policy from JSON (unknown fields refused) and
// normalizes it.
func ParsePolicy(data []byte) (Policy, error) {
	var p Policy
	if err := strictUnmarshal(data, &p); err != nil {
		return Policy{}, Errorf(CodeMalformed, "policy: %v", err)
	}
	return p.Normalize()
}

// strictUnmarshal decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON value")
	}
	return nil
}
