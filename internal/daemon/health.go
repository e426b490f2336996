package daemon

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// readiness answers /healthz (liveness: the process serves HTTP) and
// /readyz (readiness: the daemon should receive traffic). Not ready while
// starting, while shutting down, while the ledger cannot be written, when
// the broker's own X.509-SVID has expired, or when Vault is configured and
// its client cannot serve (every check is a read of in-memory state).
type readiness struct {
	started  atomic.Bool
	stopping atomic.Bool
	// svid is the broker's SVID source; set before the HTTP listener opens.
	svid x509svid.Source
	// ledger reports why the ledger cannot be written, or nil; set before
	// the HTTP listener opens.
	ledger func() error
	// vault reports whether the broker's Vault client can serve requests
	// (circuit breaker closed, own token live); nil without a vault block.
	vault func() bool
	// now is the clock; nil means time.Now.
	now func() time.Time
}

func (r *readiness) setStarted()  { r.started.Store(true) }
func (r *readiness) setStopping() { r.stopping.Store(true) }

// problems lists why the daemon is not ready; empty means ready.
func (r *readiness) problems() []string {
	var out []string
	switch {
	case r.stopping.Load():
		out = append(out, "shutting down")
	case !r.started.Load():
		out = append(out, "starting")
	}
	if r.ledger != nil {
		if err := r.ledger(); err != nil {
			out = append(out, "ledger not writable: "+err.Error())
		}
	}
	if r.vault != nil && !r.vault() {
		out = append(out, "vault unreachable (circuit breaker open or the broker's own token lost)")
	}
	if r.svid != nil {
		now := time.Now
		if r.now != nil {
			now = r.now
		}
		svid, err := r.svid.GetX509SVID()
		switch {
		case err != nil:
			out = append(out, "no X.509-SVID: "+err.Error())
		case len(svid.Certificates) == 0:
			out = append(out, "no X.509-SVID")
		case !now().Before(svid.Certificates[0].NotAfter):
			out = append(out, fmt.Sprintf("X.509-SVID expired at %s", svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	return out
}

// liveness serves /healthz: the process is up and serving HTTP. A
// supervisor restarts the daemon when it fails; readiness is /readyz.
func (r *readiness) liveness(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// readiness serves /readyz: 200 "ready", or 503 with one reason a line.
func (r *readiness) readiness(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	p := r.problems()
	if len(p) == 0 {
		_, _ = io.WriteString(w, "ready\n")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, "not ready: "+strings.Join(p, "\nnot ready: ")+"\n")
}
