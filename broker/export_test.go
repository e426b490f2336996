package broker

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/writ-dev/writ/approval"
)

// SetCrashAfterMint installs the crash hook: when f returns true the
// pipeline stops right after the issuer minted, recording nothing and
// revoking nothing, as a kill -9 at that moment would.
func SetCrashAfterMint(s *Server, f func(approval.Grant) bool) { s.afterMint = f }

// AsWorkload returns ctx as the authentication interceptor leaves it for a
// workload with SPIFFE ID id, so tests can call handlers in-process.
func AsWorkload(ctx context.Context, id spiffeid.ID) context.Context {
	return withCaller(ctx, caller{workload: id})
}

// AsPerson returns ctx as the admin interceptor leaves it for p.
func AsPerson(ctx context.Context, p Person) context.Context {
	return withCaller(ctx, caller{person: &p})
}
