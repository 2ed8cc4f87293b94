//! Prometheus metrics of the node, in the text exposition format.
//!
//! Names follow Prometheus conventions: `delta_` prefix, base units
//! (`_seconds`, `_bytes`), `_total` for counters. Gauges that mirror state
//! elsewhere (queue depths, live instances, outbox backlog) are set at scrape
//! time from their source, so they cannot drift.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    /// Runs ended, by tenant and outcome.
    pub runs: IntCounterVec,
    /// Runs refused at admission, by reason.
    pub runs_rejected: IntCounterVec,
    /// Wall time of runs, by outcome.
    pub run_duration: HistogramVec,
    /// Fuel burnt, by tenant.
    pub fuel_used: IntCounterVec,
    /// Peak linear memory of runs.
    pub peak_memory: Histogram,
    /// Runs executing now.
    pub runs_running: IntGauge,
    /// Guest instances alive now.
    pub instances_live: IntGauge,
    /// Runs waiting for a slot, by tenant.
    pub queue_depth: IntGaugeVec,
    /// LLM tokens, by model and kind (`input`/`output`).
    pub llm_tokens: IntCounterVec,
    /// LLM calls, by outcome (`ok` or the error code).
    pub llm_calls: IntCounterVec,
    /// Messages, by channel and outcome (`sent` or the refusal).
    pub messages: IntCounterVec,
    /// Key-value calls, by operation (`read`, `write`, `delete`) and
    /// outcome (`ok` or the WIT error).
    pub kv_calls: IntCounterVec,
    /// Agents' outbound HTTP requests, by outcome (`ok` or the WIT error).
    pub http_requests_out: IntCounterVec,
    /// Messages agents sent to other agents, by outcome (`sent` or the WIT
    /// error).
    pub agent_messages: IntCounterVec,
    /// Usage records not yet accepted by the control plane.
    pub usage_backlog: IntGauge,
    /// Age of the oldest unsent usage record.
    pub usage_lag: prometheus::Gauge,
    /// Usage batches sent, by result.
    pub usage_batches: IntCounterVec,
    /// HTTP requests, by route template and status code.
    pub http_requests: IntCounterVec,
    /// HTTP request latency, by route template.
    pub http_duration: HistogramVec,
    /// Requests refused for a missing or wrong token.
    pub auth_failures: IntCounter,
    /// Finished runs' outputs deleted by the expiry sweep.
    pub runs_expired: IntCounter,
    /// Budget lease events (`granted`, `refused`, `returned`, ...; see
    /// `leases::LeaseLedger::count_into`).
    pub budget_leases: IntCounterVec,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(registry, metric)
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
    // Names are constants of this file: a failure is a programming error
    // caught by every test that builds a node.
    registry
        .register(Box::new(m.clone()))
        .unwrap_or_else(|e| panic!("registering a metric: {e}"));
    m
}

/// Buckets for run wall time: 100 µs to 60 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

impl Metrics {
    /// Build and register everything.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let metric = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            register(r, metric)
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
            register(r, metric)
        };
        Self {
            runs: counter_vec(
                r,
                "delta_runs_total",
                "Runs ended, by tenant and outcome.",
                &["tenant", "outcome"],
            ),
            runs_rejected: counter_vec(
                r,
                "delta_runs_rejected_total",
                "Runs refused at admission, by reason.",
                &["reason"],
            ),
            run_duration: histogram_vec(
                "delta_run_duration_seconds",
                "Wall time of runs, by outcome.",
                &["outcome"],
                DURATION_BUCKETS,
            ),
            fuel_used: counter_vec(
                r,
                "delta_fuel_used_total",
                "Fuel consumed by runs, by tenant.",
                &["tenant"],
            ),
            peak_memory: {
                let metric = Histogram::with_opts(
                    HistogramOpts::new(
                        "delta_run_peak_memory_bytes",
                        "Peak linear memory of runs.",
                    )
                    .buckets(
                        prometheus::exponential_buckets(65_536.0, 4.0, 8)
                            .unwrap_or_else(|e| panic!("buckets: {e}")),
                    ),
                )
                .unwrap_or_else(|e| panic!("metric: {e}"));
                register(r, metric)
            },
            runs_running: gauge("delta_runs_running", "Runs executing now."),
            instances_live: gauge("delta_instances_live", "Guest instances alive now."),
            queue_depth: {
                let metric = IntGaugeVec::new(
                    Opts::new("delta_queue_depth", "Runs waiting for a slot, by tenant."),
                    &["tenant"],
                )
                .unwrap_or_else(|e| panic!("metric: {e}"));
                register(r, metric)
            },
            llm_tokens: counter_vec(
                r,
                "delta_llm_tokens_total",
                "LLM tokens reported by providers, by model and kind.",
                &["model", "kind"],
            ),
            llm_calls: counter_vec(
                r,
                "delta_llm_calls_total",
                "LLM calls, by outcome.",
                &["outcome"],
            ),
            kv_calls: counter_vec(
                r,
                "delta_kv_calls_total",
                "Key-value state calls, by operation and outcome.",
                &["op", "outcome"],
            ),
            http_requests_out: counter_vec(
                r,
                "delta_agent_http_requests_total",
                "Agents' outbound HTTP requests, by outcome.",
                &["outcome"],
            ),
            agent_messages: counter_vec(
                r,
                "delta_agent_messages_total",
                "Messages agents sent to other agents, by outcome.",
                &["outcome"],
            ),
            messages: counter_vec(
                r,
                "delta_messages_total",
                "Messages, by channel and outcome.",
                &["channel", "outcome"],
            ),
            usage_backlog: gauge(
                "delta_usage_report_backlog",
                "Usage records not yet accepted by the control plane.",
            ),
            usage_lag: {
                let metric = prometheus::Gauge::new(
                    "delta_usage_report_lag_seconds",
                    "Age of the oldest usage record not yet accepted by the control plane.",
                )
                .unwrap_or_else(|e| panic!("metric: {e}"));
                register(r, metric)
            },
            usage_batches: counter_vec(
                r,
                "delta_usage_report_batches_total",
                "Usage batches sent to the control plane, by result.",
                &["result"],
            ),
            http_requests: counter_vec(
                r,
                "delta_http_requests_total",
                "HTTP requests, by route and status code.",
                &["route", "status"],
            ),
            http_duration: histogram_vec(
                "delta_http_request_duration_seconds",
                "HTTP request latency, by route.",
                &["route"],
                DURATION_BUCKETS,
            ),
            auth_failures: {
                let metric = IntCounter::new(
                    "delta_auth_failures_total",
                    "Requests refused for a missing or wrong token.",
                )
                .unwrap_or_else(|e| panic!("metric: {e}"));
                register(r, metric)
            },
            runs_expired: {
                let metric = IntCounter::new(
                    "delta_runs_expired_total",
                    "Finished runs deleted by the expiry sweep.",
                )
                .unwrap_or_else(|e| panic!("metric: {e}"));
                register(r, metric)
            },
            budget_leases: counter_vec(
                r,
                "delta_budget_leases_total",
                "Budget leases from the control plane, by event.",
                &["event"],
            ),
            registry,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_conventions_and_render() {
        let m = Metrics::new();
        m.runs.with_label_values(&["t1", "completed"]).inc();
        m.run_duration
            .with_label_values(&["completed"])
            .observe(0.002);
        m.http_requests
            .with_label_values(&["/healthz", "200"])
            .inc();
        let text = m.render();
        assert!(
            text.contains(r#"delta_runs_total{outcome="completed",tenant="t1"} 1"#),
            "{text}"
        );
        assert!(text.contains("delta_run_duration_seconds_bucket"), "{text}");
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(name.starts_with("delta_"), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{line}");
            }
        }
    }
}
