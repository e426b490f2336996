package daemon

import (
	"fmt"
	"math"
	"time"

	"github.com/writ-dev/writ/broker"
)

// LimitsConfig is the limits section of writ.yaml: what one caller can take
// from the broker. Every field has a default (DefaultConfig); a rate of 0
// turns that rate limit off, a cap of 0 turns that cap off.
type LimitsConfig struct {
	// Grants is a token bucket per principal over IssueCredential,
	// BreakGlass, TakeBreakGlass and RenewCredential.
	Grants RateConfig `yaml:"grants"`
	// Requests is a token bucket per principal over RequestAccess and
	// CreateRequest.
	Requests RateConfig `yaml:"requests"`
	// PendingPerRequester caps one requester's pending requests.
	PendingPerRequester int `yaml:"pending_per_requester"`
	// WatchesPerPrincipal and WatchesPerConnection cap concurrent
	// WatchRequest streams.
	WatchesPerPrincipal  int `yaml:"watches_per_principal"`
	WatchesPerConnection int `yaml:"watches_per_connection"`
	// WatchPoll is how often a watch re-reads its request without a change
	// notification.
	WatchPoll time.Duration `yaml:"watch_poll"`
	// MaxHeaderBytes bounds a call's headers (bearer tokens included).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxMessageBytes bounds one request message.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxConcurrentStreams bounds calls in flight per connection.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// HandshakeTimeout bounds a new connection's TLS handshake.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// KeepaliveMinTime is the fastest keepalive ping a client may send.
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time"`
	// MaxConnectionIdle closes idle connections.
	MaxConnectionIdle time.Duration `yaml:"max_connection_idle"`
}

// RateConfig is a token bucket: PerSecond calls on average, Burst at once.
type RateConfig struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

func defaultLimits() LimitsConfig {
	d := broker.DefaultLimits()
	return LimitsConfig{
		Grants:               RateConfig{PerSecond: d.GrantRate, Burst: d.GrantBurst},
		Requests:             RateConfig{PerSecond: d.SubmitRate, Burst: d.SubmitBurst},
		PendingPerRequester:  d.MaxPendingPerRequester,
		WatchesPerPrincipal:  d.MaxWatchesPerPrincipal,
		WatchesPerConnection: d.MaxWatchesPerConn,
		WatchPoll:            d.WatchPoll,
		MaxHeaderBytes:       int(d.MaxHeaderListSize),
		MaxMessageBytes:      d.MaxRecvMsgSize,
		MaxConcurrentStreams: int(d.MaxConcurrentStreams),
		HandshakeTimeout:     d.HandshakeTimeout,
		KeepaliveMinTime:     d.KeepaliveMinTime,
		MaxConnectionIdle:    d.MaxConnectionIdle,
	}
}

// broker returns the limits as the broker takes them.
func (l LimitsConfig) broker() broker.Limits {
	return broker.Limits{
		GrantRate:              l.Grants.PerSecond,
		GrantBurst:             l.Grants.Burst,
		SubmitRate:             l.Requests.PerSecond,
		SubmitBurst:            l.Requests.Burst,
		MaxPendingPerRequester: l.PendingPerRequester,
		MaxWatchesPerPrincipal: l.WatchesPerPrincipal,
		MaxWatchesPerConn:      l.WatchesPerConnection,
		WatchPoll:              l.WatchPoll,
		MaxHeaderListSize:      uint32(l.MaxHeaderBytes),
		MaxRecvMsgSize:         l.MaxMessageBytes,
		MaxConcurrentStreams:   uint32(l.MaxConcurrentStreams),
		HandshakeTimeout:       l.HandshakeTimeout,
		KeepaliveMinTime:       l.KeepaliveMinTime,
		MaxConnectionIdle:      l.MaxConnectionIdle,
	}
}

// validate checks the limits section; it reports every problem.
func (l LimitsConfig) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("limits.%s: "+format, append([]any{field}, args...)...))
	}
	for _, r := range []struct {
		name string
		r    RateConfig
	}{{"grants", l.Grants}, {"requests", l.Requests}} {
		switch {
		case r.r.PerSecond < 0 || math.IsNaN(r.r.PerSecond) || math.IsInf(r.r.PerSecond, 0):
			bad(r.name+".per_second", "must be a number ≥ 0 (0 turns the limit off)")
		case r.r.Burst < 0:
			bad(r.name+".burst", "must not be negative")
		case r.r.PerSecond > 0 && r.r.Burst == 0:
			bad(r.name+".burst", "must be at least 1 when per_second is set")
		}
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"pending_per_requester", l.PendingPerRequester}, {"watches_per_principal", l.WatchesPerPrincipal}, {"watches_per_connection", l.WatchesPerConnection}} {
		if c.v < 0 {
			bad(c.name, "must not be negative (0 turns the cap off)")
		}
	}
	// Transport limits are never off: gRPC's own defaults are far too big.
	if l.MaxHeaderBytes < 1<<10 || l.MaxHeaderBytes > 1<<20 {
		bad("max_header_bytes", "%d is outside 1024..1048576; bearer tokens are at most 8 KiB", l.MaxHeaderBytes)
	}
	if l.MaxMessageBytes < 1<<10 || l.MaxMessageBytes > 16<<20 {
		bad("max_message_bytes", "%d is outside 1024..16777216", l.MaxMessageBytes)
	}
	if l.MaxConcurrentStreams < 1 || l.MaxConcurrentStreams > 10_000 {
		bad("max_concurrent_streams", "%d is outside 1..10000", l.MaxConcurrentStreams)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"watch_poll", l.WatchPoll}, {"handshake_timeout", l.HandshakeTimeout}, {"keepalive_min_time", l.KeepaliveMinTime}, {"max_connection_idle", l.MaxConnectionIdle}} {
		if d.v <= 0 {
			bad(d.name, "must be positive")
		}
	}
	return errs
}
