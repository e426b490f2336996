package broker

import (
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Limits bound what one caller can take from the broker (reliability case
// T39). The zero value of a rate or cap means "no limit": a library default.
// writd applies DefaultLimits, overridden by the limits section of
// writ.yaml.
type Limits struct {
	// GrantRate and GrantBurst are a token bucket per principal over the
	// RPCs that mint or extend credentials: IssueCredential, BreakGlass,
	// TakeBreakGlass and RenewCredential. All replicas of a workload share
	// one SPIFFE ID, so leave room for a fleet restarting at once.
	GrantRate  float64
	GrantBurst int
	// SubmitRate and SubmitBurst are a token bucket per principal over new
	// access requests (RequestAccess, CreateRequest): each one is an
	// fsynced record and a notification.
	SubmitRate  float64
	SubmitBurst int
	// MaxPendingPerRequester caps the pending requests one requester may
	// have at once.
	MaxPendingPerRequester int
	// MaxWatchesPerPrincipal and MaxWatchesPerConn cap concurrent
	// WatchRequest streams.
	MaxWatchesPerPrincipal int
	MaxWatchesPerConn      int
	// WatchPoll is how often a watch re-reads its request even without a
	// change notification, to see changes another replica made; zero means
	// 30s.
	WatchPoll time.Duration
	// MaxTrackedPrincipals bounds the rate limiters' memory: idle
	// principals are forgotten first. Zero means 100000.
	MaxTrackedPrincipals int

	// gRPC transport limits, applied by ServerOptions.

	// MaxHeaderListSize bounds a request's headers (a bearer token is a
	// header): larger ones are refused before they are decoded.
	MaxHeaderListSize uint32
	// MaxRecvMsgSize bounds one request message.
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds the calls in flight on one connection;
	// more are refused by HTTP/2 (and queued by well-behaved clients).
	MaxConcurrentStreams uint32
	// HandshakeTimeout bounds the TLS handshake of a new connection
	// (slowloris).
	HandshakeTimeout time.Duration
	// KeepaliveMinTime is the shortest keepalive ping interval a client may
	// use; faster pingers are disconnected.
	KeepaliveMinTime time.Duration
	// MaxConnectionIdle closes connections idle this long.
	MaxConnectionIdle time.Duration
}

// DefaultLimits returns the limits writd uses unless writ.yaml says
// otherwise.
func DefaultLimits() Limits {
	return Limits{
		GrantRate:              50,
		GrantBurst:             200,
		SubmitRate:             1,
		SubmitBurst:            20,
		MaxPendingPerRequester: 20,
		MaxWatchesPerPrincipal: 64,
		MaxWatchesPerConn:      16,
		WatchPoll:              30 * time.Second,
		MaxTrackedPrincipals:   100_000,
		MaxHeaderListSize:      16 << 10,
		MaxRecvMsgSize:         64 << 10,
		MaxConcurrentStreams:   256,
		HandshakeTimeout:       10 * time.Second,
		KeepaliveMinTime:       10 * time.Second,
		MaxConnectionIdle:      15 * time.Minute,
	}
}

// ServerOptions returns the gRPC server options enforcing the transport
// limits; zero fields leave gRPC's default. Use them on every listener.
func (l Limits) ServerOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if l.MaxHeaderListSize > 0 {
		opts = append(opts, grpc.MaxHeaderListSize(l.MaxHeaderListSize))
	}
	if l.MaxRecvMsgSize > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(l.MaxRecvMsgSize))
	}
	if l.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(l.MaxConcurrentStreams))
	}
	if l.HandshakeTimeout > 0 {
		opts = append(opts, grpc.ConnectionTimeout(l.HandshakeTimeout))
	}
	if l.KeepaliveMinTime > 0 {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime}))
	}
	if l.MaxConnectionIdle > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.MaxConnectionIdle}))
	}
	return opts
}

// limiters holds the broker's per-principal limits.
type limiters struct {
	grant, submit *buckets
	watchers      *counter
	submitLocks   [64]sync.Mutex
	seed          maphash.Seed
}

func newLimiters(l Limits, now func() time.Time) *limiters {
	keys := l.MaxTrackedPrincipals
	if keys <= 0 {
		keys = 100_000
	}
	return &limiters{
		grant:    newBuckets("grant", l.GrantRate, l.GrantBurst, keys, now),
		submit:   newBuckets("request", l.SubmitRate, l.SubmitBurst, keys, now),
		watchers: &counter{n: map[string]int{}},
		seed:     maphash.MakeSeed(),
	}
}

// allow counts one call by principal p against class c.
func (l *limiters) allow(c limitClass, p fmt.Stringer, m *Metrics) error {
	var b *buckets
	switch c {
	case limitGrant:
		b = l.grant
	case limitSubmit:
		b = l.submit
	default:
		return nil
	}
	if b.allow(p.String()) {
		return nil
	}
	m.observeLimit(b.name + "s")
	return fmt.Errorf("%s made more than %g %s calls per second (burst %d): slow down and retry (limits.%ss): %w",
		p, b.rate, b.name, b.burst, b.name, errLimit)
}

// lockSubmit serializes new requests by one requester, so the pending cap
// holds under concurrent calls; it returns the unlock function.
func (l *limiters) lockSubmit(p string) func() {
	mu := &l.submitLocks[maphash.String(l.seed, p)%uint64(len(l.submitLocks))]
	mu.Lock()
	return mu.Unlock
}

// buckets is a token bucket per key, with bounded memory: a bucket idle
// long enough to have refilled is the same as a new one, so it is
// forgotten; past max keys, arbitrary ones go too.
type buckets struct {
	name      string
	rate      float64
	burst     int
	max       int
	now       func() time.Time
	mu        sync.Mutex
	m         map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newBuckets(name string, r float64, burst, maxKeys int, now func() time.Time) *buckets {
	if burst <= 0 {
		burst = max(1, int(r))
	}
	return &buckets{name: name, rate: r, burst: burst, max: maxKeys, now: now, m: map[string]*bucket{}}
}

// allow reports whether key may make one more call now. A rate of zero
// allows everything.
func (b *buckets) allow(key string) bool {
	if b.rate <= 0 {
		return true
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.lastSweep) > b.refill() || len(b.m) >= b.max {
		b.sweep(now)
	}
	e := b.m[key]
	if e == nil {
		e = &bucket{lim: rate.NewLimiter(rate.Limit(b.rate), b.burst)}
		b.m[key] = e
	}
	e.last = now
	return e.lim.AllowN(now, 1)
}

// refill is how long an empty bucket takes to fill up.
func (b *buckets) refill() time.Duration {
	return time.Duration(float64(b.burst) / b.rate * float64(time.Second))
}

func (b *buckets) sweep(now time.Time) {
	b.lastSweep = now
	full := b.refill()
	for k, e := range b.m {
		if now.Sub(e.last) >= full {
			delete(b.m, k)
		}
	}
	for k := range b.m {
		if len(b.m) < b.max {
			break
		}
		delete(b.m, k)
	}
}

func (b *buckets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// counter counts concurrent holders per key; keys at zero are forgotten.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire takes one slot of each key whose cap is positive, or none if any
// is full; it returns the name of the full key's limit.
func (c *counter) acquire(keys []string, caps []int) (release func(), full int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range keys {
		if caps[i] > 0 && c.n[k] >= caps[i] {
			return nil, i, false
		}
	}
	for _, k := range keys {
		c.n[k]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, k := range keys {
				if c.n[k]--; c.n[k] <= 0 {
					delete(c.n, k)
				}
			}
		})
	}, 0, true
}
