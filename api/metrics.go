package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the homeserver's Prometheus metrics. They live in a registry
// of their own (no global state), served at /metrics.
type Metrics struct {
	Registry     *prometheus.Registry
	EventsTotal  prometheus.Counter
	BatchSize    prometheus.Histogram
	BatchEvents  prometheus.Histogram
	CommitTime   prometheus.Histogram
	Requests     *prometheus.CounterVec
	Rejections   *prometheus.CounterVec
	RequestTimes *prometheus.HistogramVec
	// FederationDropped counts inbound federation messages refused, by code.
	FederationDropped *prometheus.CounterVec
	// FederationLimited counts inbound deliveries held back by the
	// per-origin limit (FED-6), by origin.
	FederationLimited *prometheus.CounterVec
}

// NewMetrics creates the metrics in a new registry, with Go and process
// collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		EventsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "homeserver_events_appended_total", Help: "Events appended to the log.",
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "homeserver_append_batch_commands", Help: "Commands committed per log batch (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		BatchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "homeserver_append_batch_events", Help: "Events appended per log batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		CommitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "homeserver_append_commit_seconds", Help: "Time to commit and fsync one log batch.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "homeserver_http_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		Rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "homeserver_rejections_total", Help: "Rejected requests by stable error code.",
		}, []string{"code"}),
		RequestTimes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "homeserver_http_request_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"route"}),
		FederationDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "homeserver_federation_dropped_total", Help: "Inbound federation envelopes dropped, by stable code.",
		}, []string{"code"}),
	}
	m.FederationLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "homeserver_federation_limited_total", Help: "Inbound deliveries held back by the per-origin limit.",
	}, []string{"origin"})
	reg.MustRegister(m.FederationDropped, m.FederationLimited, m.EventsTotal, m.BatchSize, m.BatchEvents, m.CommitTime, m.Requests, m.Rejections, m.RequestTimes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveBatch implements eventlog.Metrics.
func (m *Metrics) ObserveBatch(commands, events int, commit time.Duration) {
	m.BatchSize.Observe(float64(commands))
	m.BatchEvents.Observe(float64(events))
	m.CommitTime.Observe(commit.Seconds())
	m.EventsTotal.Add(float64(events))
}
