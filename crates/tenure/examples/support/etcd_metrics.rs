//! etcd's own request counters, read from its Prometheus `/metrics` with `curl`, for the
//! examples that count what a workload cost the server.

use std::collections::BTreeMap;

/// Sums the samples of each of `metrics` (`grpc_server_handled_total` for unary calls,
/// `grpc_server_msg_received_total` / `_sent_total` for stream messages) per gRPC method:
/// keys are `"<metric> <method>"`.
pub fn scrape(metrics_url: &str, metrics: &[&str]) -> BTreeMap<String, f64> {
    let out = std::process::Command::new("curl")
        .args(["-s", metrics_url])
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let metric = metrics.iter().find(|m| line.starts_with(**m));
        let (Some(metric), Some(start)) = (metric, line.find("grpc_method=\"")) else {
            continue;
        };
        let method: String = line[start + 13..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *counts.entry(format!("{metric} {method}")).or_insert(0.0) += value;
    }
    counts
}
