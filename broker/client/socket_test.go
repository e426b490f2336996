package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/writ-dev/writ/broker/client"
	"github.com/writ-dev/writ/internal/spiffe/spiffetest"
)

// The SVID comes from a Workload API, as from a SPIRE agent.
func TestNew_WorkloadAPISocket(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	api := spiffetest.NewWorkloadAPI(t)
	api.SetX509SVID(b.svid(app), b.ca.Bundle())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{BrokerAddr: b.addr, BrokerID: brokerID, Socket: api.Addr(), Now: b.clock.Now})
	if err != nil {
		t.Fatalf("New() err = %v", err)
	}
	defer c.Close()
	got, err := c.Credential(ctx, "orders")
	if err != nil {
		t.Fatalf("Credential() err = %v", err)
	}
	if got.Entitlement != "orders" || got.Secret.Reveal() == "" {
		t.Errorf("Credential() = %v, want one for orders", got)
	}
}

// With neither Socket nor Source, New reads SPIFFE_ENDPOINT_SOCKET.
func TestNew_SocketFromEnvironment(t *testing.T) {
	b := startBroker(t)
	api := spiffetest.NewWorkloadAPI(t)
	api.SetX509SVID(b.svid(app), b.ca.Bundle())
	t.Setenv(client.SocketEnv, api.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{BrokerAddr: b.addr, BrokerID: brokerID, Now: b.clock.Now})
	if err != nil {
		t.Fatalf("New() err = %v", err)
	}
	defer c.Close()
	if _, err := c.Credential(ctx, "orders"); err != nil {
		t.Fatalf("Credential() err = %v", err)
	}
}

// A Workload API that never answers fails New when ctx ends.
func TestNew_WorkloadAPIWithoutSVID(t *testing.T) {
	t.Parallel()
	api := spiffetest.NewWorkloadAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	c, err := client.New(ctx, client.Config{BrokerAddr: "127.0.0.1:1", BrokerID: brokerID, Socket: api.Addr()})
	if err == nil {
		_ = c.Close()
		t.Fatal("New() with no SVID to fetch err = nil, want an error")
	}
}
