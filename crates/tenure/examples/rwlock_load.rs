//! Read/write lock figures for docs/contract.md's performance rules: the etcd requests one
//! uncontended read cycle and one write cycle cost (from etcd's own `/metrics`, when its URL
//! is given), and reads/s and writes/s with 10 readers and 2 writers contending for 5 s, each
//! with a session of its own.
//!
//! ```text
//! cargo run -p tenure --example rwlock_load -- etcd://127.0.0.1:2379 http://127.0.0.1:2379/metrics
//! cargo run -p tenure --example rwlock_load -- zk://127.0.0.1:2181
//! ```

#[path = "support/etcd_metrics.rs"]
mod etcd_metrics;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn print_delta(
    what: &str,
    cycles: usize,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) {
    println!("per uncontended {what} cycle ({cycles} cycles):");
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            println!("  {k}: {:.2}", d / cycles as f64);
        }
    }
}

#[tokio::main]
async fn main() -> tenure::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: rwlock_load URL [ETCD_METRICS_URL]");
        std::process::exit(2)
    };
    let tenure = tenure::Tenure::connect(&url).await?;
    let name = format!("rwlock-load-{}", std::process::id());
    if let Some(metrics) = args.next() {
        let session = tenure.session().await?;
        let lock = session.rwlock(&format!("{name}-solo"))?;
        let cycles = 100;
        let before = etcd_metrics::scrape(
            &metrics,
            &[
                "grpc_server_handled_total",
                "grpc_server_msg_received_total",
            ],
        );
        for _ in 0..cycles {
            lock.read().await?.unlock().await?;
        }
        let middle = etcd_metrics::scrape(
            &metrics,
            &[
                "grpc_server_handled_total",
                "grpc_server_msg_received_total",
            ],
        );
        for _ in 0..cycles {
            lock.write().await?.unlock().await?;
        }
        let after = etcd_metrics::scrape(
            &metrics,
            &[
                "grpc_server_handled_total",
                "grpc_server_msg_received_total",
            ],
        );
        print_delta("read", cycles, &before, &middle);
        print_delta("write", cycles, &middle, &after);
        session.close().await?;
    }
    let (readers, writers, run) = (10, 2, Duration::from_secs(5));
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, writes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for i in 0..readers + writers {
        let session = tenure.session().await?;
        let lock = session.rwlock(&name)?;
        let (stop, count) = (
            stop.clone(),
            if i < readers {
                reads.clone()
            } else {
                writes.clone()
            },
        );
        let reader = i < readers;
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if reader {
                    lock.read().await?.unlock().await?;
                } else {
                    lock.write().await?.unlock().await?;
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            session.close().await
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await.expect("worker")?;
    }
    println!(
        "{readers} readers + {writers} writers contending on {}: {:.0} reads/s, {:.0} writes/s",
        tenure.backend(),
        reads.load(Ordering::Relaxed) as f64 / elapsed,
        writes.load(Ordering::Relaxed) as f64 / elapsed
    );
    Ok(())
}
