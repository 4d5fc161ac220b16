//! `/metrics` in Prometheus' text format.

use std::fmt::Display;

use crate::engine::MetricsSnapshot;

/// The engine's counters in Prometheus' text format.
pub(super) fn render_metrics(m: &MetricsSnapshot) -> String {
    let (gauge, counter) = ("gauge", "counter");
    let float = |v: f64| PromFloat(v).to_string();
    // name, type, value, help: kept as a table, which rustfmt would spread over 80 lines
    #[rustfmt::skip]
    let metrics = [
        ("requests_running", gauge, m.running.to_string(),
            "Sequences in the running batch."),
        ("requests_waiting", gauge, m.waiting.to_string(),
            "Requests waiting to run."),
        ("kv_blocks_used", gauge, m.kv_blocks_used.to_string(),
            "KV blocks in use."),
        ("kv_blocks_capacity", gauge, m.kv_blocks_total.to_string(),
            "KV blocks in the pool."),
        ("kv_blocks_cached", gauge, m.kv_blocks_cached.to_string(),
            "Free KV blocks holding a reusable prefix."),
        ("kv_block_size_tokens", gauge, m.kv_block_size.to_string(),
            "Tokens per KV block."),
        ("kv_bytes_per_token", gauge, m.kv_bytes_per_token.to_string(),
            "KV bytes per token."),
        ("requests_total", counter, m.requests_total.to_string(),
            "Requests accepted."),
        ("requests_finished_total", counter, m.requests_finished.to_string(),
            "Requests finished."),
        ("requests_preempted_total", counter, m.requests_preempted.to_string(),
            "Running requests preempted."),
        ("prompt_tokens_total", counter, m.prompt_tokens_total.to_string(),
            "Prompt tokens accepted."),
        ("prompt_tokens_cached_total", counter, m.prompt_tokens_cached.to_string(),
            "Prompt tokens from the prefix cache."),
        ("generated_tokens_total", counter, m.generated_tokens_total.to_string(),
            "Tokens generated."),
        ("steps_total", counter, m.steps_total.to_string(),
            "Forward passes run."),
        ("draft_tokens_total", counter, m.draft_tokens_total.to_string(),
            "Speculative draft tokens verified."),
        ("draft_accepted_tokens_total", counter, m.draft_accepted_total.to_string(),
            "Speculative draft tokens the model confirmed."),
        ("decode_tokens_per_second", gauge, float(m.decode_tokens_per_s),
            "Tokens generated per second, recently."),
        ("prefix_cache_hit_rate", gauge, float(m.prefix_hit_rate()),
            "Share of prompt tokens from the cache."),
    ];
    let mut out = String::new();
    for (name, kind, value, help) in metrics {
        let name = format!("headroom_{name}");
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    }
    out
}

/// A float as Prometheus writes it (`NaN`, `+Inf`, `-Inf` where Rust writes `NaN`, `inf`).
pub(super) struct PromFloat(f64);

impl Display for PromFloat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}
