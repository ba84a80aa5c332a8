//! Counts the etcd requests one uncontended lock+unlock cycle costs, from etcd's own
//! `/metrics` (gRPC calls handled per method), to check the "exactly two" of
//! docs/contract.md's performance rules.
//!
//! ```text
//! cargo run -p tenure --example count_requests -- etcd://127.0.0.1:2379 http://127.0.0.1:2379/metrics
//! ```

use std::collections::BTreeMap;

fn usage() -> ! {
    eprintln!("usage: count_requests ETCD_URL METRICS_URL");
    std::process::exit(2)
}

/// Scrapes `grpc_server_handled_total` (unary calls) and `grpc_server_msg_received_total`
/// (stream messages) per gRPC method, via `curl`.
fn scrape(metrics_url: &str) -> BTreeMap<String, f64> {
    let out = std::process::Command::new("curl")
        .args(["-s", metrics_url])
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let metric = [
            "grpc_server_handled_total",
            "grpc_server_msg_received_total",
        ]
        .into_iter()
        .find(|m| line.starts_with(m));
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> tenure::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(metrics)) = (args.next(), args.next()) else {
        usage()
    };
    let tenure = tenure::Tenure::connect(&url).await?;
    let session = tenure.session().await?;
    let mutex = session.mutex(&format!("count-requests-{}", std::process::id()))?;
    let cycles = 100;
    let before = scrape(&metrics);
    for _ in 0..cycles {
        mutex.lock().await?.unlock().await?;
    }
    let after = scrape(&metrics);
    println!("per uncontended lock+unlock cycle ({cycles} cycles):");
    for (k, v) in &after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            println!("  {k}: {:.2}", d / cycles as f64);
        }
    }
    session.close().await
}
