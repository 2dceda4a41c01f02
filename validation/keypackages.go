package validation

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"github.com/mlshome/homeserver/eventlog"
	"github.com/mlshome/homeserver/events"
	"github.com/mlshome/homeserver/mlsx"
	"github.com/mlshome/homeserver/projections"
)

// Limits of a published KeyPackage set.
const (
	MaxKeyPackagesPerClient = 256
)

// Codes of the directory.
const (
	CodeInvalidKeyPackage = "invalid_key_package"
	CodeNoLastResort      = "no_last_resort"
	CodeNoQueueConfig     = "no_queue_config"
	CodeBadQueueConfig    = "bad_queue_config"
	CodeTooManyKeyPackage = "too_many_key_packages"
)

func init() {
	statusOf[CodeInvalidKeyPackage] = 400
	statusOf[CodeNoLastResort] = 400
	statusOf[CodeNoQueueConfig] = 400
	statusOf[CodeBadQueueConfig] = 400
	statusOf[CodeTooManyKeyPackage] = 400
}

// PublishKeyPackages replaces a client's KeyPackages. The KeyPackages have
// passed CheckKeyPackages on the request goroutine.
type PublishKeyPackages struct {
	UserID      string
	ClientID    string
	KeyPackages []events.PublishedKeyPackage
}

// ClaimKeyPackages hands out one KeyPackage per client of a local user.
// It carries nothing about the requester (GUC-4).
type ClaimKeyPackages struct {
	UserID string
}

// ClaimReply is the writer's reply to a claim; the API signs it into a
// bundle.
type ClaimReply struct {
	UserID  string          `json:"user_id"`
	Clients []ClaimedClient `json:"clients"`
}

// ClaimedClient is one client of a claim reply. KeyPackage is empty for a
// client that has none left (it had no valid last-resort KeyPackage).
type ClaimedClient struct {
	ClientID   string `json:"client_id"`
	Credential []byte `json:"credential"`
	KeyPackage []byte `json:"key_package,omitempty"`
}

// CheckKeyPackages validates a client's KeyPackage set at time now: each
// KeyPackage per RFC 9420 §10.1 (mlsx.ValidateKeyPackage), each carrying a
// sealed queue config this homeserver issued for that client, refs unique,
// at least one last resort. It needs no state, so the API runs it on the
// request goroutine and the audit re-runs it.
func (v *Validator) CheckKeyPackages(clientID string, raws [][]byte, now time.Time) ([]events.PublishedKeyPackage, error) {
	if len(raws) == 0 {
		return nil, Reject(CodeInvalidKeyPackage, "no KeyPackages")
	}
	if len(raws) > MaxKeyPackagesPerClient {
		return nil, Reject(CodeTooManyKeyPackage, "at most %d KeyPackages per client", MaxKeyPackagesPerClient)
	}
	out := make([]events.PublishedKeyPackage, 0, len(raws))
	seen := map[string]bool{}
	lastResort := false
	for i, raw := range raws {
		info, err := mlsx.ValidateKeyPackage(raw, now, mlsx.Policy{})
		if err != nil {
			return nil, Reject(CodeInvalidKeyPackage, "KeyPackage %d: %v", i, err)
		}
		if len(info.SealedQueueConfig) == 0 {
			return nil, Reject(CodeNoQueueConfig, "KeyPackage %d has no sealed queue config extension", i)
		}
		if err := v.Env.CheckQueueConfig(info.SealedQueueConfig, clientID); err != nil {
			return nil, Reject(CodeBadQueueConfig, "KeyPackage %d: %v", i, err)
		}
		if seen[string(info.Ref)] {
			return nil, Reject(CodeInvalidKeyPackage, "KeyPackage %d is a duplicate", i)
		}
		seen[string(info.Ref)] = true
		lastResort = lastResort || info.LastResort
		out = append(out, events.PublishedKeyPackage{
			Ref: info.Ref, LastResort: info.LastResort, NotBefore: info.NotBefore, NotAfter: info.NotAfter, Data: raw,
		})
	}
	if !lastResort {
		return nil, Reject(CodeNoLastResort, "the set needs at least one last-resort KeyPackage")
	}
	return out, nil
}

func (v *Validator) publishKeyPackages(r eventlog.Reader, now int64, c PublishKeyPackages) (eventlog.Decision, error) {
	if err := checkPublish(r, now, c.UserID, c.ClientID, c.KeyPackages); err != nil {
		return eventlog.Decision{}, err
	}
	reply, _ := json.Marshal(map[string]int{"published": len(c.KeyPackages)})
	return eventlog.Decision{
		Events: []eventlog.Draft{events.Draft(events.TypeKeyPackagesPublished, events.KeyPackagesPublished{
			UserID: c.UserID, ClientID: c.ClientID, KeyPackages: c.KeyPackages,
		})},
		Reply: reply,
	}, nil
}

// checkPublish holds the stateful checks of a publish: the client is the
// user's, and every KeyPackage is within its lifetime at batch time.
func checkPublish(r eventlog.Reader, now int64, userID, clientID string, kps []events.PublishedKeyPackage) error {
	c, err := (projections.DirectoryView{R: r}).Client(clientID)
	if errors.Is(err, eventlog.ErrNotFound) || (err == nil && c.UserID != userID) {
		return Reject(CodeUnknownClient, "no client %s of %s", clientID, userID)
	} else if err != nil {
		return err
	}
	secs := uint64(now / int64(time.Second))
	for i, kp := range kps {
		if secs < kp.NotBefore || secs > kp.NotAfter {
			return Reject(CodeInvalidKeyPackage, "KeyPackage %d is outside its lifetime", i)
		}
	}
	return nil
}

// claimable picks the KeyPackage a claim hands out for one client at time
// secs: the first ordinary one in ref order within its lifetime, else the
// first valid last-resort one (kept), else none. It stops reading at the
// first ordinary match.
func claimable(r eventlog.Reader, userID, clientID string, secs uint64) (kp *projections.KeyPackageRecord, consume bool, err error) {
	var lastResort *projections.KeyPackageRecord
	err = projections.KeyPackageView{R: r}.Each(userID, clientID, func(k projections.KeyPackageRecord) bool {
		if secs < k.NotBefore || secs > k.NotAfter {
			return true
		}
		if !k.LastResort {
			kp = &k
			return false
		}
		if lastResort == nil {
			lastResort = &k
		}
		return true
	})
	switch {
	case err != nil:
		return nil, false, err
	case kp != nil:
		return kp, true, nil
	}
	return lastResort, false, nil
}

func (v *Validator) claimKeyPackages(r eventlog.Reader, now int64, c ClaimKeyPackages) (eventlog.Decision, error) {
	dir := projections.DirectoryView{R: r}
	if _, err := dir.User(c.UserID); errors.Is(err, eventlog.ErrNotFound) {
		return eventlog.Decision{}, Reject(CodeUnknownUser, "no user %s", c.UserID)
	} else if err != nil {
		return eventlog.Decision{}, err
	}
	clients, err := dir.Clients(c.UserID)
	if err != nil {
		return eventlog.Decision{}, err
	}
	secs := uint64(now / int64(time.Second))
	reply := ClaimReply{UserID: c.UserID}
	var evs []eventlog.Draft
	for _, cl := range clients {
		kp, consume, err := claimable(r, c.UserID, cl.ClientID, secs)
		if err != nil {
			return eventlog.Decision{}, err
		}
		cc := ClaimedClient{ClientID: cl.ClientID, Credential: cl.Credential}
		if kp != nil {
			cc.KeyPackage = kp.Data
			if consume {
				evs = append(evs, events.Draft(events.TypeKeyPackageClaimed, events.KeyPackageClaimed{
					UserID: c.UserID, ClientID: cl.ClientID, Ref: kp.Ref,
				}))
			}
		}
		reply.Clients = append(reply.Clients, cc)
	}
	b, err := json.Marshal(reply)
	if err != nil {
		return eventlog.Decision{}, err
	}
	return eventlog.Decision{Events: evs, Reply: b}, nil
}

// revalidateClaim checks that a KeyPackageClaimed event took exactly what
// a claim at that time would have taken for that client.
func revalidateClaim(r eventlog.Reader, ev *eventlog.Event, e events.KeyPackageClaimed) error {
	kp, consume, err := claimable(r, e.UserID, e.ClientID, uint64(ev.Time/int64(time.Second)))
	if err != nil {
		return err
	}
	if kp == nil || !consume || !bytes.Equal(kp.Ref, e.Ref) {
		return Reject(CodeInvalidKeyPackage, "claim of %x is not what a claim would hand out", e.Ref)
	}
	return nil
}
