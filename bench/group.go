package bench

import (
	"context"
	"fmt"

	"github.com/mlshome/homeserver/client"
)

// bigGroup creates a group of members members on h: its owner (a new user
// named prefix-owner) adds members−1 freshly registered clients, one
// KeyPackage each, in a single commit. The other members never fetch:
// their homeserver fans out to their queues all the same.
func bigGroup(ctx context.Context, h *Homeserver, prefix string, members int, progress func(string)) (*client.Group, error) {
	owner, err := h.NewUser(ctx, prefix+"-owner", 1)
	if err != nil {
		return nil, err
	}
	if err := owner.GetTokens(ctx, 1); err != nil {
		return nil, err
	}
	g, err := owner.CreateGroup(ctx)
	if err != nil {
		return nil, err
	}
	var kps [][]byte
	for i := 1; i < members; i++ {
		c, err := h.Conn.Register(ctx, fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			return nil, err
		}
		kp, err := c.MakeKeyPackages(0, true)
		if err != nil {
			return nil, err
		}
		if err := c.PublishKeyPackages(ctx, kp); err != nil {
			return nil, err
		}
		kps = append(kps, kp[0])
		if progress != nil && i%50 == 0 {
			progress(fmt.Sprintf("%d/%d members registered", i, members-1))
		}
	}
	if len(kps) > 0 {
		if err := g.AddKeyPackages(ctx, kps...); err != nil {
			return nil, fmt.Errorf("add %d members: %w", len(kps), err)
		}
	}
	return g, nil
}
