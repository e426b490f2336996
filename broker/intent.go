package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/writ-dev/writ/approval"
)

// IntentStore durably records the credentials being minted at an external
// system, so that a broker restarted after a crash finds those whose
// grant never reached the ledger (reliability cases T1 and T8).
type IntentStore interface {
	// BeginIntent records in durably; it returns once it is fsynced.
	BeginIntent(ctx context.Context, in approval.Intent) error
	// ClearIntent removes the intent of grantID, if any.
	ClearIntent(ctx context.Context, grantID string) error
	// Intents returns every intent not cleared, oldest first.
	Intents(ctx context.Context) ([]approval.Intent, error)
	// RecordedRefsSince returns the credential references the ledger
	// recorded at or after since (with slack for clock steps).
	RecordedRefsSince(ctx context.Context, since time.Time, slack time.Duration) (map[string]bool, error)
}

// OrphanFinder is implemented by issuers whose credentials live at an
// external system and can be found there without their reference: Vault
// tokens by the grant_id in their metadata, dynamic-secret leases by path
// and issue time. The broker writes an intent before every Issue of such
// an issuer.
type OrphanFinder interface {
	// FindOrphans returns, by grant ID, the live credentials minted for
	// intents. recorded reports references the ledger already holds,
	// which are never orphans. An issuer that cannot search (its Vault
	// policy lacks the list capability) returns an error; the intents
	// then stay until their NotAfter, which bounds what they minted.
	FindOrphans(ctx context.Context, intents []approval.Intent, recorded func(ref string) bool) (map[string][]approval.CredentialRef, error)
}

// inflight is this process's set of grants between BeginIntent and the end
// of their pipeline. bbolt holds an exclusive lock on its file, so an
// intent not in this set belongs to a pipeline that has ended: in a
// process that crashed, or in this one without a ledger record.
type inflight struct {
	mu sync.Mutex
	m  map[string]approval.Intent
}

func (f *inflight) add(in approval.Intent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]approval.Intent{}
	}
	f.m[in.GrantID] = in
}

func (f *inflight) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, id)
}

func (f *inflight) snapshot() map[string]approval.Intent {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]approval.Intent, len(f.m))
	for k, v := range f.m {
		out[k] = v
	}
	return out
}

// errCrashed is returned by a pipeline stopped by the test crash hook.
var errCrashed = errors.New("pipeline stopped by the crash hook (test only)")

// minting is one credential being minted under an intent.
type minting struct {
	s       *Server
	grantID string
	durable bool // an intent was written
}

// beginMint writes the intent for g before its issuer is asked, if the
// issuer's credentials live at an external system (OrphanFinder). If the
// intent cannot be written nothing is minted (fail closed). The caller
// must call end when its pipeline ends.
func (s *Server) beginMint(ctx context.Context, issuer Issuer, g approval.Grant) (*minting, error) {
	m := &minting{s: s, grantID: g.ID}
	if _, ok := issuer.(OrphanFinder); !ok || s.intents == nil {
		return m, nil
	}
	in := approval.Intent{GrantID: g.ID, Recipe: g.Recipe, Principal: g.Principal, Entitlement: g.Entitlement,
		RequestID: g.RequestID, CreatedAt: s.now(), NotAfter: g.Expires}
	s.inflight.add(in)
	if err := s.intents.BeginIntent(context.WithoutCancel(ctx), in); err != nil {
		s.inflight.remove(g.ID)
		return nil, fmt.Errorf("record intent for grant %s: %w: %w", g.ID, errLedger, err)
	}
	m.durable = true
	return m, nil
}

// crashed reports whether the test crash hook stops the pipeline right
// after the issuer minted, before anything is recorded.
func (m *minting) crashed(g approval.Grant) bool {
	return m.s.afterMint != nil && m.s.afterMint(g)
}

// settle clears the intent: the grant's outcome is in the ledger, or the
// credential was revoked. A failure leaves the intent for the reconciler,
// which finds the ledger record or the revoked credential.
func (m *minting) settle(ctx context.Context) {
	if !m.durable {
		return
	}
	if err := m.s.intents.ClearIntent(context.WithoutCancel(ctx), m.grantID); err != nil {
		m.s.log.WarnContext(ctx, "intent not cleared; the reconciler will", slog.String("grant_id", m.grantID), slog.Any("error", err))
		return
	}
	m.durable = false
}

// end takes the grant out of the in-flight set. An intent not settled
// stays for the reconciler (an issuer error may hide a credential Vault
// minted after the broker gave up, T8).
func (m *minting) end() {
	if m != nil {
		m.s.inflight.remove(m.grantID)
	}
}
