package identity_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"time"

	"github.com/mlshome/homeserver/identity"
)

// A client signs a directory request; the homeserver verifies it and
// refuses a replay of the same bytes.
func ExampleVerifyRequest() {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	lookup := func(clientID string) (ed25519.PublicKey, error) {
		if clientID == "laptop" {
			return pub, nil
		}
		return nil, identity.ErrUnknownClient
	}
	now := time.UnixMilli(1_700_000_000_000)
	body := []byte(`{"users":["bob@hs2.test"]}`)

	req, _ := http.NewRequest("POST", "https://hs1.test/v1/lookup", bytes.NewReader(body))
	_ = identity.SignRequest(req, body, "laptop", priv, now)

	replays := identity.NewReplayCache(30*time.Second, 100_000)
	for range 2 {
		// On the server: r.Method, r.RequestURI, the body read in full, r.Header.
		client, err := identity.VerifyRequest("POST", "/v1/lookup", body, req.Header, lookup, now, 30*time.Second)
		if err == nil {
			err = replays.Check(req.Header, now)
		}
		fmt.Printf("client=%s code=%q\n", client, identity.CodeOf(err))
	}
	// Output:
	// client=laptop code=""
	// client=laptop code="replayed"
}

// A client seals its queue config into a KeyPackage; a group's Delivery
// Service reads only the domain; the client's homeserver opens it.
func ExampleSealQueueConfig() {
	hs1, _ := identity.GenerateKeySet("hs1.test", rand.Reader)
	queueID := bytes.Repeat([]byte{0x42}, 16)

	sealed, _ := identity.SealQueueConfig(identity.QueueConfig{Domain: "hs1.test", QueueID: queueID}, hs1.PublicKeys().QueueKey, rand.Reader)
	again, _ := identity.SealQueueConfig(identity.QueueConfig{Domain: "hs1.test", QueueID: queueID}, hs1.PublicKeys().QueueKey, rand.Reader)
	fmt.Println("seals equal:", bytes.Equal(sealed, again))

	domain, _ := identity.SealedQueueConfigDomain(sealed)
	fmt.Println("route to:", domain)

	qc, _ := hs1.OpenQueueConfig(sealed)
	fmt.Println("queue:", bytes.Equal(qc.QueueID, queueID))

	hs2, _ := identity.GenerateKeySet("hs2.test", rand.Reader)
	_, err := hs2.OpenQueueConfig(sealed)
	fmt.Println(identity.CodeOf(err))
	// Output:
	// seals equal: false
	// route to: hs1.test
	// queue: true
	// wrong_homeserver
}
