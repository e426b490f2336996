package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/writ-dev/writ/approval"
)

// Finding orphans (reliability cases T1 and T8). Vault lets no client choose
// a token's accessor or a lease's ID, so a broker that crashed between
// minting and recording does not know what it minted. It does know the
// grant: tokens carry it in their metadata (grant_id), and a lease is
// found under its path by its issue time.

// orphanSkew is the clock difference between Writ and Vault the lease
// search allows for, and orphanWindow how long after the intent a lease
// may be issued (a request Vault finished after Writ gave up, T8).
const (
	orphanSkew   = 30 * time.Second
	orphanWindow = 2 * time.Minute
)

// lookupConcurrency bounds parallel lookups during an orphan search.
const lookupConcurrency = 8

// ReconcilerPolicy returns the Vault policy (HCL) Writ's token needs to
// find credentials it minted but never recorded (a crash between the two):
// "list" and "sudo" on auth/token/accessors, and for each dynamic-secret
// path "list" and "sudo" on sys/leases/lookup/<path>/ and "update" on
// sys/leases/lookup. Without it, the reconciler cannot search; such a
// credential then lives until its TTL, which Issue bounds by the grant's.
// Listing accessors shows every token's accessor and metadata (not the
// tokens themselves); grant it where that is acceptable.
func ReconcilerPolicy(paths ...string) string {
	var b strings.Builder
	b.WriteString("path \"auth/token/accessors\" {\n  capabilities = [\"list\", \"sudo\"]\n}\n")
	if len(paths) > 0 {
		b.WriteString("\npath \"sys/leases/lookup\" {\n  capabilities = [\"update\"]\n}\n")
	}
	for _, p := range paths {
		fmt.Fprintf(&b, "\npath %q {\n  capabilities = [\"list\", \"sudo\"]\n}\n", "sys/leases/lookup/"+p+"/")
	}
	return b.String()
}

// FindOrphans returns, by grant ID, the live tokens whose metadata names
// the grant of one of intents. It lists every accessor (one request) and
// looks up each one not recorded (lookupConcurrency at a time), so it is
// for the rare intents a crash leaves behind, not for the request path.
// It returns ErrDenied if Writ's policy lacks ReconcilerPolicy.
func (i *TokenIssuer) FindOrphans(ctx context.Context, intents []approval.Intent, recorded func(string) bool) (map[string][]approval.CredentialRef, error) {
	want := make(map[string]bool, len(intents))
	for _, in := range intents {
		if in.Recipe.Kind == approval.KindVaultToken {
			want[in.GrantID] = true
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	const path = "auth/token/accessors"
	keys, err := i.c.list(ctx, "list token accessors", path)
	if err != nil {
		return nil, fmt.Errorf("find orphan vault tokens: %w", err)
	}
	out := map[string][]approval.CredentialRef{}
	var mu sync.Mutex
	err = forEach(ctx, keys, func(ctx context.Context, accessor string) error {
		if recorded != nil && recorded(accessor) {
			return nil
		}
		now := i.now()
		ttl, meta, err := i.LookupAccessor(ctx, accessor)
		switch {
		case isNotFound(err):
			return nil // revoked or expired since the list
		case err != nil:
			return err
		}
		if g := meta["grant_id"]; want[g] {
			mu.Lock()
			out[g] = append(out[g], approval.CredentialRef{Kind: approval.KindVaultToken, ID: accessor, Expires: now.Add(ttl)})
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find orphan vault tokens: %w", err)
	}
	return out, nil
}

// FindOrphans returns, by grant ID, the live leases under the path of one
// of intents that the ledger has not recorded and that Vault issued
// between orphanSkew before the intent and orphanWindow after it. When two
// intents on one path could claim a lease, the later one gets it (both are
// orphans). The path must be Writ's alone: a lease another Vault client
// read from it in that window would be taken for an orphan. It returns
// ErrDenied if Writ's policy lacks ReconcilerPolicy for the path.
func (s *SecretIssuer) FindOrphans(ctx context.Context, intents []approval.Intent, recorded func(string) bool) (map[string][]approval.CredentialRef, error) {
	byPath := map[string][]approval.Intent{}
	for _, in := range intents {
		if in.Recipe.Kind == approval.KindVaultSecret && checkPath(in.Recipe.Path) == nil {
			byPath[in.Recipe.Path] = append(byPath[in.Recipe.Path], in)
		}
	}
	out := map[string][]approval.CredentialRef{}
	var mu sync.Mutex
	for path, ins := range byPath {
		keys, err := s.c.list(ctx, "list leases", "sys/leases/lookup/"+path+"/")
		if err != nil {
			return nil, fmt.Errorf("find orphan vault leases under %s: %w", path, err)
		}
		err = forEach(ctx, keys, func(ctx context.Context, key string) error {
			if strings.HasSuffix(key, "/") {
				return nil // a deeper prefix, not a lease of this path
			}
			lease := path + "/" + key
			if recorded != nil && recorded(lease) {
				return nil
			}
			issued, expires, err := s.lookupLease(ctx, lease)
			switch {
			case isNotFound(err):
				return nil
			case err != nil:
				return err
			}
			var owner *approval.Intent
			for k := range ins {
				in := &ins[k]
				if issued.Before(in.CreatedAt.Add(-orphanSkew)) || issued.After(in.CreatedAt.Add(orphanWindow)) {
					continue
				}
				if owner == nil || in.CreatedAt.After(owner.CreatedAt) {
					owner = in
				}
			}
			if owner != nil {
				mu.Lock()
				out[owner.GrantID] = append(out[owner.GrantID], approval.CredentialRef{Kind: approval.KindVaultSecret, ID: lease, Expires: expires})
				mu.Unlock()
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find orphan vault leases under %s: %w", path, err)
		}
	}
	return out, nil
}

// lookupLease returns a lease's issue and expiry times (Vault's clock).
func (s *SecretIssuer) lookupLease(ctx context.Context, lease string) (issued, expires time.Time, err error) {
	const path = "sys/leases/lookup"
	var secret *api.Secret
	err = s.c.do(ctx, op{name: "look up lease", path: path, capability: "update", idempotent: true}, func(ctx context.Context) error {
		var err error
		secret, err = s.c.api.Logical().WriteWithContext(ctx, path, map[string]any{"lease_id": lease})
		return err
	})
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("look up lease %s: %w", lease, err)
	}
	if secret == nil || secret.Data == nil {
		return time.Time{}, time.Time{}, fmt.Errorf("look up lease %s: empty answer: %w", lease, ErrNotFound)
	}
	parse := func(field string) (time.Time, error) {
		str, _ := secret.Data[field].(string)
		if str == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			return time.Time{}, fmt.Errorf("look up lease %s: field %s: %w", lease, field, err)
		}
		return t, nil
	}
	if issued, err = parse("issue_time"); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if expires, err = parse("expire_time"); err != nil {
		return time.Time{}, time.Time{}, err
	}
	return issued, expires, nil
}

// list runs a LIST request and returns its keys; an empty list (Vault
// answers 404) is no keys.
func (c *Client) list(ctx context.Context, name, path string) ([]string, error) {
	var secret *api.Secret
	err := c.do(ctx, op{name: name, path: path, capability: "list", idempotent: true}, func(ctx context.Context) error {
		var err error
		secret, err = c.api.Logical().ListWithContext(ctx, path)
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if secret == nil || secret.Data == nil {
		return nil, nil
	}
	raw, _ := secret.Data["keys"].([]any)
	keys := make([]string, 0, len(raw))
	for _, k := range raw {
		if str, ok := k.(string); ok {
			keys = append(keys, str)
		}
	}
	return keys, nil
}

// forEach calls fn for every key, lookupConcurrency at a time, and returns
// the first error.
func forEach(parent context.Context, keys []string, fn func(context.Context, string) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	sem := make(chan struct{}, lookupConcurrency)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, k := range keys {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, k); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return parent.Err()
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, ErrNotFound) }
