//! Tenure's metrics served for Prometheus by `metrics-exporter-prometheus`, while a workload
//! takes, contends for, times out on, cancels and loses locks, leads an election, fills a
//! semaphore and shares a read/write lock, once per round.
//!
//! ```text
//! cargo run -p tenure-examples --example metrics                        # mem://, a free port
//! cargo run -p tenure-examples --example metrics -- --url etcd://127.0.0.1:2379 --listen 127.0.0.1:9464
//! curl -s http://127.0.0.1:9464/metrics | grep '^tenure_'
//! ```
//!
//! The library only records through the `metrics` facade (cargo feature `metrics`); the
//! program picks the exporter — here Prometheus's text format on an HTTP listener. The README's
//! "Metrics" section lists every metric and its labels.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use clap::Parser;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tenure::{Error, Session, Tenure};

#[derive(Parser)]
struct Args {
    /// Store URL.
    #[arg(long, env = "TENURE_URL", default_value = "mem://metrics-example")]
    url: String,
    /// Where the exporter's HTTP listener binds; port 0 picks a free port (printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Rounds of the workload (default: until stopped).
    #[arg(long)]
    rounds: Option<u64>,
    /// Pause between rounds.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// TTL of the session that crashes each round: how long until its lock counts as lost.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    crash_ttl: Duration,
    /// Label per-lock metrics with the lock's name too (`Builder::metrics_name_label`).
    #[arg(long)]
    name_label: bool,
}

/// Bucket bounds (seconds) for every `_seconds` histogram: from a local hand-off to a wait
/// for a crashed holder's TTL.
const BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `addr`, or with port 0 a free port on its host: the exporter binds the address it is
/// given and cannot report the port it picked.
fn listen_address(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    TcpListener::bind(addr)?.local_addr()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let listen = listen_address(args.listen)?;
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install()?;
    tenure::describe_metrics();
    println!("metrics at http://{listen}/metrics");

    let tenure = Tenure::builder(&args.url)
        .metrics_name_label(args.name_label)
        .connect()
        .await?;
    // Long-lived sessions, whose lease renewals show in tenure_lease_renewals_total.
    let (a, b) = (tenure.session().await?, tenure.session().await?);
    let mut round = 0;
    while !matches!(args.rounds, Some(n) if round >= n) {
        workload(&tenure, &a, &b, args.crash_ttl).await?;
        round += 1;
        println!("round {round} done");
        tokio::select! {
            () = tokio::time::sleep(args.every) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    a.close().await?;
    b.close().await?;
    Ok(())
}

/// One round: every outcome of an acquisition, a hand-off, a loss, and each primitive.
async fn workload(
    tenure: &Tenure,
    a: &Session,
    b: &Session,
    crash_ttl: Duration,
) -> tenure::Result<()> {
    // Held, then a bounded wait that times out, a wait that is given up (cancelled), and a
    // waiter that is handed the lock when the holder unlocks.
    let held = a.mutex("jobs/nightly")?.lock().await?;
    let late = b.mutex("jobs/nightly")?;
    if let Err(e) = late.lock_timeout(Duration::from_millis(20)).await {
        debug_assert!(matches!(e, Error::Timeout { .. }), "{e}");
    }
    tokio::select! {
        _ = late.lock() => {}
        () = tokio::time::sleep(Duration::from_millis(20)) => {} // dropped: cancelled
    }
    let waiter = tokio::spawn(async move { late.lock().await });
    while tenure
        .status("jobs/nightly")
        .await?
        .first()
        .map_or(0, |s| s.waiters)
        == 0
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    held.unlock().await?;
    if let Ok(Ok(handed)) = waiter.await {
        handed.unlock().await?;
    }

    // A try that finds the lock taken (outcome="busy").
    let held = a.mutex("jobs/hourly")?.lock().await?;
    let _ = b.mutex("jobs/hourly")?.try_lock().await;
    held.unlock().await?;

    // Leadership (tenure_leader_held is 1 meanwhile), a semaphore, a read/write lock.
    let leading = a.election("primary")?.campaign("example").await?;
    let permits = b.semaphore("pools/db", 2)?;
    let (p1, p2) = (permits.acquire().await?, permits.acquire().await?);
    let _ = permits.try_acquire().await;
    let read = a.rwlock("config")?.read().await?;
    let _ = b
        .rwlock("config")?
        .write_timeout(Duration::from_millis(20))
        .await;
    read.unlock().await?;
    p1.release().await?;
    p2.release().await?;
    leading.resign().await?;

    // A holder whose process "crashes": its lock is lost when the TTL runs out, in the
    // background, counted in tenure_lost_total{reason="renewal_deadline"}.
    let doomed = tenure.session_with_ttl(crash_ttl).await?;
    let guard = doomed.mutex("jobs/crashy")?.lock().await?;
    doomed.simulate_crash();
    tokio::spawn(async move { guard.lost().await });
    Ok(())
}
