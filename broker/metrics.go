package broker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the broker's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	grants        *prometheus.CounterVec
	grantSeconds  *prometheus.HistogramVec
	ledgerSeconds prometheus.Histogram
	ledgerErrors  prometheus.Counter
	overdue       prometheus.Gauge
	limited       *prometheus.CounterVec
	panics        *prometheus.CounterVec
	known         func(entitlement string) bool
}

// NewMetrics creates the broker metrics and registers them with reg.
// Entitlement labels are limited to the names known reports true for; other
// names are counted as "_unknown", so callers cannot grow label cardinality.
func NewMetrics(reg prometheus.Registerer, known func(entitlement string) bool) *Metrics {
	m := &Metrics{
		grants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_grants_total",
			Help: "Credential requests by entitlement and outcome (granted, not_eligible, ttl_too_long, error, ...).",
		}, []string{"entitlement", "outcome"}),
		grantSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "writ_grant_duration_seconds",
			Help:    "Time to answer a credential request, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"outcome"}),
		ledgerSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "writ_ledger_append_duration_seconds",
			Help:    "Time to durably append one ledger record.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		ledgerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "writ_ledger_append_errors_total",
			Help: "Ledger appends that failed (each one failed a request closed).",
		}),
		overdue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "writ_breakglass_reviews_overdue",
			Help: "Break-glass uses whose review is past due and still open.",
		}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_limit_refusals_total",
			Help: "Calls refused by a limit (grants, requests, pending_per_requester, watches).",
		}, []string{"limit"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_panics_recovered_total",
			Help: "Panics recovered without stopping the broker, by where: handshake (that connection was closed) or rpc (that call failed with INTERNAL).",
		}, []string{"where"}),
		known: known,
	}
	reg.MustRegister(m.grants, m.grantSeconds, m.ledgerSeconds, m.ledgerErrors, m.overdue, m.limited, m.panics)
	return m
}

func (m *Metrics) observeGrant(entitlement, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	if m.known == nil || !m.known(entitlement) {
		entitlement = "_unknown"
	}
	m.grants.WithLabelValues(entitlement, outcome).Inc()
	m.grantSeconds.WithLabelValues(outcome).Observe(d.Seconds())
}

func (m *Metrics) observeLedger(err error, d time.Duration) {
	if m == nil {
		return
	}
	m.ledgerSeconds.Observe(d.Seconds())
	if err != nil {
		m.ledgerErrors.Inc()
	}
}

func (m *Metrics) setOverdue(n int) {
	if m == nil {
		return
	}
	m.overdue.Set(float64(n))
}

func (m *Metrics) observeLimit(limit string) {
	if m == nil {
		return
	}
	m.limited.WithLabelValues(limit).Inc()
}

func (m *Metrics) observePanic(where string) {
	if m == nil {
		return
	}
	m.panics.WithLabelValues(where).Inc()
}
