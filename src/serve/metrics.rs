//! What the server counts, served at `GET /metrics` in the text format Prometheus scrapes
//! (OpenMetrics, written by the `prometheus-client` crate). One `Metrics` per server, no globals,
//! so tests can run several servers in one process.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The labels of `gpt2_requests_total`: which endpoint, and the HTTP status answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    /// Requests answered, by endpoint and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Tokens generated, and prompt tokens read, over all requests.
    pub generated_tokens: Counter,
    pub prompt_tokens: Counter,
    /// Completion requests waiting for a place in the batch.
    pub queue_depth: Gauge,
    /// Sequences being generated right now.
    pub active_sequences: Gauge,
    /// Sequences that shared each forward pass.
    pub batch_size: Histogram,
    /// From a request's arrival to its first generated token, seconds.
    pub time_to_first_token: Histogram,
    /// Between two tokens of one sequence, seconds.
    pub time_per_token: Histogram,
    /// Whole completion requests, arrival to last token, seconds.
    pub request_duration: Histogram,
    /// Completions that ended because the client went away.
    pub cancelled: Counter,
    /// Connections refused because too many were open.
    pub refused_connections: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gpt2");
        let requests = Family::<RequestLabels, Counter>::default();
        let generated_tokens = Counter::default();
        let prompt_tokens = Counter::default();
        let queue_depth = Gauge::default();
        let active_sequences = Gauge::default();
        // 1, 2, 4, ... 128 sequences
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        // 1 ms to about 33 s
        let time_to_first_token = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let time_per_token = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let request_duration =
            Histogram::new(exponential_buckets(0.01, 2.0, 14).chain(linear_buckets(200.0, 200.0, 3)));
        let cancelled = Counter::default();
        let refused_connections = Counter::default();
        registry.register("requests", "HTTP requests answered, by endpoint and status", requests.clone());
        registry.register("generated_tokens", "Tokens generated", generated_tokens.clone());
        registry.register("prompt_tokens", "Prompt tokens read", prompt_tokens.clone());
        registry.register("queue_depth", "Completion requests waiting for a place in the batch", queue_depth.clone());
        registry.register("active_sequences", "Sequences being generated", active_sequences.clone());
        registry.register("batch_size", "Sequences sharing a forward pass", batch_size.clone());
        registry.register(
            "time_to_first_token_seconds",
            "Time from a request's arrival to its first token",
            time_to_first_token.clone(),
        );
        registry.register(
            "time_per_output_token_seconds",
            "Time between two tokens of a sequence",
            time_per_token.clone(),
        );
        registry.register("request_duration_seconds", "Completion requests, arrival to end", request_duration.clone());
        registry.register("cancelled", "Completions stopped because the client disconnected", cancelled.clone());
        registry.register("refused_connections", "Connections refused: too many open", refused_connections.clone());
        Metrics {
            registry,
            requests,
            generated_tokens,
            prompt_tokens,
            queue_depth,
            active_sequences,
            batch_size,
            time_to_first_token,
            time_per_token,
            request_duration,
            cancelled,
            refused_connections,
        }
    }

    /// Counts one answered request.
    pub fn count_request(&self, endpoint: &str, status: u16) {
        self.requests.get_or_create(&RequestLabels { endpoint: endpoint.to_string(), status }).inc();
    }

    /// Everything, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
