//! Counts the etcd requests one uncontended lock+unlock cycle costs, from etcd's own
//! `/metrics` (gRPC calls handled per method), to check the "exactly two" of
//! docs/contract.md's performance rules.
//!
//! ```text
//! cargo run -p tenure --example count_requests -- etcd://127.0.0.1:2379 http://127.0.0.1:2379/metrics
//! ```

#[path = "support/etcd_metrics.rs"]
mod etcd_metrics;

fn usage() -> ! {
    eprintln!("usage: count_requests ETCD_URL METRICS_URL");
    std::process::exit(2)
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
    let before = etcd_metrics::scrape(
        &metrics,
        &[
            "grpc_server_handled_total",
            "grpc_server_msg_received_total",
        ],
    );
    for _ in 0..cycles {
        mutex.lock().await?.unlock().await?;
    }
    let after = etcd_metrics::scrape(
        &metrics,
        &[
            "grpc_server_handled_total",
            "grpc_server_msg_received_total",
        ],
    );
    println!("per uncontended lock+unlock cycle ({cycles} cycles):");
    for (k, v) in &after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            println!("  {k}: {:.2}", d / cycles as f64);
        }
    }
    session.close().await
}
