package node

import (
	"fmt"
	"net/http"
	httppprof "net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tchsm/tchsm/internal/modexp"
)

// metrics are a node's Prometheus metrics, on a registry of its own (several nodes may run in
// one test process).
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec // type, result
	control     *prometheus.CounterVec // type, result
	keyErrors   *prometheus.CounterVec // key, code
	signatures  *prometheus.CounterVec // key, input, policy
	refusals    *prometheus.CounterVec // key, reason
	signSeconds prometheus.Histogram
	keys        prometheus.Gauge
	inFlight    prometheus.Gauge
}

func newMetrics(extra prometheus.Registerer) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tchsm_node_requests_total",
			Help: "RPC requests by body type and result (ok, an Error code, or rejected when the envelope did not open). Each request of a sign_batch also counts as a sign_request.",
		}, []string{"type", "result"}),
		control: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tchsm_node_control_messages_total",
			Help: "Control-queue messages by type and result (ok, deleted, refused, retry).",
		}, []string{"type", "result"}),
		keyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tchsm_node_key_errors_total",
			Help: "Failed requests per key (keys the node does not hold are counted as \"unknown\").",
		}, []string{"key", "code"}),
		signatures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tchsm_node_signatures_total",
			Help: "Signature shares computed, by key, input (message or digest) and policy (none, enforced, advisory).",
		}, []string{"key", "input", "policy"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tchsm_node_policy_refusals_total",
			Help: "Signature requests the node's signing policy refused, by key and reason.",
		}, []string{"key", "reason"}),
		signSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tchsm_node_sign_seconds",
			Help:    "Time to compute one signature share (and its proof when asked).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tchsm_node_keys",
			Help: "Keys whose share the node holds.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tchsm_node_requests_in_flight",
			Help: "RPC requests being served.",
		}),
	}
	cs := []prometheus.Collector{m.requests, m.control, m.keyErrors, m.signatures, m.refusals, m.signSeconds, m.keys, m.inFlight}
	m.reg.MustRegister(cs...)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Process-wide, like process_cpu_seconds_total, so only on the node's own registry.
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tchsm_process_modexp_cpu_seconds_total",
		Help: "CPU time of this process's constant-time share exponentiations (each timed on its own thread; 0 where no thread CPU clock exists). process_cpu_seconds_total minus this is the CPU spent outside the share arithmetic.",
	}, func() float64 { return modexp.CPUTime().Seconds() }))
	if extra != nil {
		for _, c := range cs {
			_ = extra.Register(c)
		}
	}
	return m
}

// metricsHandler serves /metrics and /healthz (200 while connected to the broker, 503 otherwise),
// and with pprof Go's profiler under /debug/pprof/.
func (n *node) metricsHandler(pprof bool) http.Handler {
	mux := http.NewServeMux()
	if pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !n.conn.Connected() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "broker unreachable\n")
			return
		}
		fmt.Fprintf(w, "ok %s keys=%d\n", n.id.ID, n.store.Len())
	})
	return mux
}
