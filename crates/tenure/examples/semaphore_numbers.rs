//! The semaphore's numbers for docs/contract.md (issue 13): requests per uncontended
//! acquire+release on etcd (from etcd's `/metrics`), acquisitions per second at 1, 5 and 50
//! contenders with 3 permits on any backend, and the store work per release with N queued
//! waiters (etcd: `/metrics` deltas; ZooKeeper: `mntr`'s watchers fired per deleted node).
//!
//! ```text
//! cargo run --release -p tenure --example semaphore_numbers -- requests etcd://127.0.0.1:2379 http://127.0.0.1:2379/metrics
//! cargo run --release -p tenure --example semaphore_numbers -- throughput zk://127.0.0.1:2181
//! cargo run --release -p tenure --example semaphore_numbers -- herd etcd://127.0.0.1:2379 http://127.0.0.1:2379/metrics 100
//! cargo run --release -p tenure --example semaphore_numbers -- herd zk://127.0.0.1:2181 mntr 100
//! TENURE_PASSWORD=… cargo run --release -p tenure --example semaphore_numbers -- throughput postgres://tenure@127.0.0.1:5432/tenure
//! ```

#[path = "support/etcd_metrics.rs"]
mod etcd_metrics;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use tenure::{Permit, Tenure};

const PERMITS: u32 = 3;

fn usage() -> ! {
    eprintln!(
        "usage: semaphore_numbers requests ETCD_URL METRICS_URL\n       \
         semaphore_numbers throughput URL\n       \
         semaphore_numbers herd URL (METRICS_URL | mntr) WAITERS"
    );
    std::process::exit(2)
}

/// etcd: gRPC calls handled and stream messages received and sent, per method, via `curl`.
/// ZooKeeper (`mntr`): the server's monitoring counters, over its four-letter-word port.
fn scrape(url: &str, source: &str) -> BTreeMap<String, f64> {
    if source == "mntr" {
        return mntr(url);
    }
    let metrics = [
        "grpc_server_handled_total",
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
    ];
    etcd_metrics::scrape(source, &metrics)
}

fn mntr(url: &str) -> BTreeMap<String, f64> {
    let addr = url
        .trim_start_matches("zk://")
        .split(['/', ','])
        .next()
        .unwrap_or_default();
    let mut conn = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    conn.write_all(b"mntr").expect("send mntr");
    let mut text = String::new();
    conn.read_to_string(&mut text).expect("read mntr");
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('\t')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn print_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, per: f64) {
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        if d != 0.0 {
            println!("  {k}: {:.2}", d / per);
        }
    }
}

/// Connects with the password of `TENURE_PASSWORD`, if set (`postgres://` takes none in
/// the URL).
async fn connect(url: &str) -> tenure::Result<Tenure> {
    match std::env::var("TENURE_PASSWORD") {
        Ok(password) => {
            Tenure::builder(url)
                .password(password.as_str())
                .connect()
                .await
        }
        Err(_) => Tenure::connect(url).await,
    }
}

async fn requests(url: &str, metrics: &str) -> tenure::Result<()> {
    let tenure = connect(url).await?;
    let session = tenure.session().await?;
    let pool = session.semaphore(&format!("sem-requests-{}", std::process::id()), PERMITS)?;
    let cycles = 100;
    let before = scrape(url, metrics);
    for _ in 0..cycles {
        pool.acquire().await?.release().await?;
    }
    let after = scrape(url, metrics);
    println!("per uncontended acquire+release ({cycles} cycles, {PERMITS} permits):");
    print_delta(&before, &after, f64::from(cycles));
    session.close().await
}

async fn throughput(url: &str) -> tenure::Result<()> {
    let tenure = connect(url).await?;
    for contenders in [1usize, 5, 50] {
        let name = format!("sem-throughput-{}-{contenders}", std::process::id());
        let window = Duration::from_secs(3);
        let mut tasks = Vec::new();
        let started = Instant::now();
        for _ in 0..contenders {
            let (tenure, name) = (tenure.clone(), name.clone());
            tasks.push(tokio::spawn(async move {
                let session = tenure.session().await?;
                let pool = session.semaphore(&name, PERMITS)?;
                let mut n = 0u64;
                while started.elapsed() < window {
                    pool.acquire().await?.release().await?;
                    n += 1;
                }
                session.close().await?;
                tenure::Result::Ok(n)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("contender")?;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{url}: {contenders:>2} contenders, {PERMITS} permits: {:.0} acquisitions/s ({total} in {secs:.1}s)",
            total as f64 / secs
        );
    }
    Ok(())
}

async fn herd(url: &str, source: &str, waiters: usize) -> tenure::Result<()> {
    let tenure = connect(url).await?;
    let name = format!("sem-herd-{}", std::process::id());
    let holder = tenure.session().await?;
    let pool = holder.semaphore(&name, PERMITS)?;
    let mut held: Vec<Permit> = Vec::new();
    for _ in 0..PERMITS {
        held.push(pool.acquire().await?);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sessions = Vec::new();
    for _ in 0..waiters {
        let session = tenure.session().await?;
        let pool = session.semaphore(&name, PERMITS)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            // Granted permits stay held: each release below frees exactly one place.
            if let Ok(p) = pool.acquire().await {
                let _ = tx.send(p);
            }
        });
        sessions.push(session);
    }
    // Let every waiter reach the line (the recipe's queue; no timing is measured here).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let releases = PERMITS as usize;
    let before = scrape(url, source);
    let mut granted = Vec::new();
    for p in held.drain(..) {
        p.release().await?;
        granted.push(rx.recv().await.expect("a waiter granted"));
    }
    let after = scrape(url, source);
    println!("per release with {waiters} queued waiters ({releases} releases):");
    print_delta(&before, &after, releases as f64);
    drop(granted);
    for s in sessions {
        s.close().await?;
    }
    holder.close().await
}

#[tokio::main]
async fn main() -> tenure::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["requests", url, metrics] => requests(url, metrics).await,
        ["throughput", url] => throughput(url).await,
        ["herd", url, source, waiters] => {
            herd(url, source, waiters.parse().unwrap_or_else(|_| usage())).await
        }
        _ => usage(),
    }
}
