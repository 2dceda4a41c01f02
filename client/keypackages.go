package client

import (
	"crypto/rand"
	"time"

	"github.com/mlshome/homeserver/mlsx"
)

// KeyPackageLifetime is the lifetime of KeyPackages the library makes.
const KeyPackageLifetime = 90 * 24 * time.Hour

// MLS returns the client's MLS identity (a fresh per-client pseudonym
// credential and signature key), creating it on first use. The pseudonym
// is random: the Delivery Service never learns the user behind a leaf.
func (c *Client) MLS() (*mlsx.Identity, error) {
	if c.mls != nil {
		return c.mls, nil
	}
	p := make([]byte, 16)
	if _, err := rand.Read(p); err != nil {
		return nil, err
	}
	id, err := mlsx.NewIdentity(p)
	if err != nil {
		return nil, err
	}
	c.mls = id
	return id, nil
}

// MakeKeyPackages returns n ordinary KeyPackages and, if lastResort, one
// last-resort KeyPackage, each carrying a freshly sealed queue config.
func (c *Client) MakeKeyPackages(n int, lastResort bool) ([][]byte, error) {
	id, err := c.MLS()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	lt := mlsx.Lifetime{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(KeyPackageLifetime)}
	var out [][]byte
	for i := 0; i < n+1; i++ {
		lr := i == n
		if lr && !lastResort {
			break
		}
		sealed, err := c.SealedQueueConfig()
		if err != nil {
			return nil, err
		}
		kp, err := id.NewKeyPackage(mlsx.KeyPackageOptions{Lifetime: lt, SealedQueueConfig: sealed, LastResort: lr})
		if err != nil {
			return nil, err
		}
		out = append(out, kp)
	}
	return out, nil
}
