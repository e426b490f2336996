package broker

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rejectLog logs refused credentials (ID tokens, JWT-SVIDs, missing SVIDs)
// at warn level, at most a few lines per second: anyone can send garbage,
// and the log must not become their amplifier. Lines dropped meanwhile are
// counted in the next one. The attacker-chosen error text is quoted and
// truncated.
type rejectLog struct {
	logger     *slog.Logger
	now        func() time.Time
	mu         sync.Mutex
	lim        *rate.Limiter
	suppressed int
}

func newRejectLog(log *slog.Logger, now func() time.Time) *rejectLog {
	return &rejectLog{logger: log, now: now, lim: rate.NewLimiter(1, 5)}
}

// log records one rejection of a call to method, or counts it if too many
// were logged lately.
func (r *rejectLog) log(ctx context.Context, msg, method string, err error) {
	r.mu.Lock()
	if !r.lim.AllowN(r.now(), 1) {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()
	attrs := []slog.Attr{slog.String("method", method), slog.Int("suppressed_since_last", suppressed)}
	if err != nil {
		attrs = append(attrs, slog.String("error", quoteUntrusted(err.Error(), 200)))
	}
	r.logger.LogAttrs(ctx, slog.LevelWarn, msg, attrs...)
}

// quoteUntrusted returns s cut to at most n bytes and quoted as a Go ASCII
// string: control characters, escape sequences and bidi marks become
// visible escapes instead of reaching a terminal.
func quoteUntrusted(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strconv.QuoteToASCII(s)
}
