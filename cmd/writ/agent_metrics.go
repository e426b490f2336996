package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// agentMetrics exports, per entitlement, the seconds until the credential
// on disk expires (negative once it has), computed at scrape time, and how
// many refreshes failed.
type agentMetrics struct {
	now      func() time.Time
	expiry   *prometheus.Desc
	failures *prometheus.CounterVec

	mu      sync.Mutex
	expires map[string]time.Time
}

func newAgentMetrics(reg prometheus.Registerer, now func() time.Time) (*agentMetrics, error) {
	m := &agentMetrics{
		now: now,
		expiry: prometheus.NewDesc("writ_agent_credential_expiry_seconds",
			"Seconds until the credential written for the entitlement expires; negative once it has.",
			[]string{"entitlement"}, nil),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "writ_agent_refresh_failures_total",
			Help: "Failed attempts to obtain or write a credential, by entitlement.",
		}, []string{"entitlement"}),
		expires: map[string]time.Time{},
	}
	if err := errors.Join(reg.Register(m), reg.Register(m.failures)); err != nil {
		return nil, fmt.Errorf("register agent metrics: %w", err)
	}
	return m, nil
}

// written records that the credential for entitlement now expires at exp.
func (m *agentMetrics) written(entitlement string, exp time.Time) {
	m.mu.Lock()
	m.expires[entitlement] = exp
	m.mu.Unlock()
}

func (m *agentMetrics) failed(entitlement string) { m.failures.WithLabelValues(entitlement).Inc() }

// Describe implements prometheus.Collector.
func (m *agentMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.expiry }

// Collect implements prometheus.Collector.
func (m *agentMetrics) Collect(ch chan<- prometheus.Metric) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for ent, exp := range m.expires {
		metric, err := prometheus.NewConstMetric(m.expiry, prometheus.GaugeValue, exp.Sub(now).Seconds(), ent)
		if err != nil {
			metric = prometheus.NewInvalidMetric(m.expiry, err)
		}
		ch <- metric
	}
}
