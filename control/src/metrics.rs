//! Prometheus metrics of the control plane.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the control plane exports.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests, by route and status.
    pub http_requests: IntCounterVec,
    /// HTTP latency, by route.
    pub http_duration: HistogramVec,
    /// Authentication outcomes (`ok`, `bad_credentials`, `expired`, ...).
    pub auth: IntCounterVec,
    /// Calls to nodes, by operation and result.
    pub node_calls: IntCounterVec,
    /// Nodes up.
    pub nodes_up: IntGauge,
}

impl Metrics {
    /// Build and register everything.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let registry = Registry::new();
        // Names are constants of this file: a failure is a programming
        // error that every test building the app would show.
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            registry
                .register(Box::new(m.clone()))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            m
        };
        let http_requests = counter(
            "delta_control_http_requests_total",
            "HTTP requests, by route and status code.",
            &["route", "status"],
        );
        let auth = counter(
            "delta_control_auth_total",
            "Authentication attempts, by result.",
            &["result"],
        );
        let node_calls = counter(
            "delta_control_node_calls_total",
            "Calls to nodes, by operation and result.",
            &["op", "result"],
        );
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "delta_control_http_request_duration_seconds",
                "HTTP request latency, by route.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        registry
            .register(Box::new(http_duration.clone()))
            .unwrap_or_else(|e| panic!("metric: {e}"));
        let nodes_up = IntGauge::new("delta_control_nodes_up", "Nodes up.")
            .unwrap_or_else(|e| panic!("metric: {e}"));
        registry
            .register(Box::new(nodes_up.clone()))
            .unwrap_or_else(|e| panic!("metric: {e}"));
        Self {
            registry,
            http_requests,
            http_duration,
            auth,
            node_calls,
            nodes_up,
        }
    }

    /// The registry, for modules that own their metrics (rate limits).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Text exposition.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}
