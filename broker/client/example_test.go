package client_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/writ-dev/writ/broker/client"
)

// A workload obtains its SVID from the SPIRE agent named by
// SPIFFE_ENDPOINT_SOCKET and asks the broker for a credential whenever it
// calls the API it protects; the Client serves it from its cache and renews
// it before it expires. (Compile-only: it needs a broker and an agent.)
func Example() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{
		BrokerAddr: "writ.example.org:8443",
		BrokerID:   spiffeid.RequireFromString("spiffe://example.org/writd"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	cred, err := c.Credential(ctx, "orders-db-readonly")
	if err != nil {
		log.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://orders.example.org/report", nil)
	req.Header.Set("Authorization", "Bearer "+cred.Secret.Reveal())
	log.Printf("using %v", cred) // prints the reference and expiry, never the secret
}

// An entitlement that needs approval: ask for it, wait for people to
// decide, then obtain credentials under the approval.
func ExampleClient_Credential() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{
		BrokerAddr: "writ.example.org:8443",
		BrokerID:   spiffeid.RequireFromString("spiffe://example.org/writd"),
		Socket:     "unix:///run/spire/agent.sock",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	cred, err := c.Credential(ctx, "orders-db-admin")
	if errors.Is(err, client.ErrNeedsApproval) {
		r, err := c.RequestAccess(ctx, "orders-db-admin", 2*time.Hour, "schema migration", "CHG-42")
		if err != nil {
			log.Fatal(err)
		}
		if r, err = c.Watch(ctx, r.ID); err != nil {
			log.Fatal(err)
		}
		if r.State != client.StateApproved {
			log.Fatalf("request %s was %s: %s", r.ID, r.State, r.ResolutionNote)
		}
		cred, err = c.Credential(ctx, "orders-db-admin")
	}
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("credential %s expires at %s", cred.Reference, cred.ExpiresAt)
}
