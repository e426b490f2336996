package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/status"

	"github.com/writ-dev/writ/broker/client"
	"github.com/writ-dev/writ/internal/testenv"
)

// A workload asks, a person approves while the workload watches, and the
// workload then gets credentials under the approval.
func TestClient_RequestAccessWatch(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	c := b.client(app, client.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	r, err := c.RequestAccess(ctx, "db-admin", 30*time.Minute, "investigate orders lag", "INC-1")
	if err != nil {
		t.Fatalf("RequestAccess() err = %v", err)
	}
	if r.State != client.StatePending || r.State.Resolved() || !strings.HasPrefix(r.ID, "r_") || r.Entitlement != "db-admin" ||
		r.Beneficiary != app.String() || r.Duration != 30*time.Minute || r.Reason != "investigate orders lag" || r.Ticket != "INC-1" {
		t.Errorf("RequestAccess() = %+v, want a pending request for db-admin as asked", r)
	}
	if _, err := c.Credential(ctx, "db-admin"); !errors.Is(err, client.ErrNeedsApproval) || !strings.Contains(err.Error(), r.ID) {
		t.Errorf("Credential() before approval err = %v, want ErrNeedsApproval naming %s", err, r.ID)
	}

	type result struct {
		r   client.Request
		err error
	}
	watched := make(chan result, 1)
	go func() {
		got, err := c.Watch(ctx, r.ID)
		watched <- result{got, err}
	}()
	if err := b.approve("alice", r.ID); err != nil {
		t.Fatalf("approve: %v", err)
	}
	res := <-watched
	if res.err != nil {
		t.Fatalf("Watch() err = %v", res.err)
	}
	wantEnd := b.clock.Now().Add(30 * time.Minute)
	if res.r.State != client.StateApproved || !res.r.WindowEnd.Equal(wantEnd) || len(res.r.Reviews) != 1 || res.r.Reviews[0].Decision != "approve" {
		t.Errorf("Watch() = %+v, want approved with a window ending %v and alice's review", res.r, wantEnd)
	}
	if _, err := c.Credential(ctx, "db-admin"); err != nil {
		t.Errorf("Credential() after approval err = %v", err)
	}
	// Watching a resolved request returns at once.
	if got, err := c.Watch(ctx, r.ID); err != nil || got.State != client.StateApproved {
		t.Errorf("Watch() of a resolved request = %v, %v; want approved", got.State, err)
	}
}

func TestClient_RequestAccess_Errors(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	tests := []struct {
		name        string
		caller      spiffeid.ID
		entitlement string
		duration    time.Duration
		want        error
	}{
		{name: "no such entitlement", caller: app, entitlement: "nope", duration: time.Hour, want: client.ErrNotFound},
		{name: "not a requester", caller: stranger, entitlement: "db-admin", duration: time.Hour, want: client.ErrDenied},
		{name: "duration above the window", caller: app, entitlement: "db-admin", duration: 2 * time.Hour, want: client.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := b.client(tt.caller, client.Config{})
			_, err := c.RequestAccess(context.Background(), tt.entitlement, tt.duration, "because", "")
			if !errors.Is(err, tt.want) {
				t.Errorf("RequestAccess(%q, %v) err = %v, want %v", tt.entitlement, tt.duration, err, tt.want)
			}
		})
	}
}

func TestClient_Watch_Errors(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	owner := b.client(app, client.Config{})
	r, err := owner.RequestAccess(context.Background(), "db-admin", time.Hour, "because", "")
	if err != nil {
		t.Fatal(err)
	}
	other := b.client(stranger, client.Config{})
	tests := []struct {
		name string
		c    *client.Client
		id   string
	}{
		{name: "no such request", c: owner, id: "r_nope"},
		{name: "another workload's request", c: other, id: r.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := tt.c.Watch(ctx, tt.id); !errors.Is(err, client.ErrNotFound) {
				t.Errorf("Watch(%q) err = %v, want ErrNotFound", tt.id, err)
			}
		})
	}
	// A pending request: Watch blocks until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := owner.Watch(ctx, r.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Watch() of a pending request past ctx's deadline err = %v (code %v), want DeadlineExceeded", err, status.Code(err))
	}
}

// A broker restart while a request is pending does not end Watch: it
// reconnects and reports the approval.
func TestClient_Watch_ReconnectsAfterBrokerRestart(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	c := b.client(app, client.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.RequestAccess(ctx, "db-admin", time.Hour, "because", "")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   client.Request
		err error
	}
	watched := make(chan result, 1)
	go func() {
		got, err := c.Watch(ctx, r.ID)
		watched <- result{got, err}
	}()
	testenv.Eventually(t, 10*time.Second, "the first watch", func() bool { return b.watches.Load() == 1 })
	b.bounce()
	testenv.Eventually(t, 10*time.Second, "the watch to reconnect", func() bool { return b.watches.Load() == 2 })
	if err := b.approve("alice", r.ID); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if res := <-watched; res.err != nil || res.r.State != client.StateApproved {
		t.Errorf("Watch() across a restart = %v, %v; want approved", res.r.State, res.err)
	}
}
