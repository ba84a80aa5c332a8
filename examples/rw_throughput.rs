//! Read/write lock throughput: R reader sessions and W writer sessions cycle on one name
//! (lock, unlock) for a while, and the reads/s and writes/s are printed; with `uncontended N`
//! one session runs N read cycles, then N write cycles, alone, and prints the time of each.
//! The password of a `postgres://` URL comes from `TENURE_PASSWORD`.
//!
//! ```text
//! TENURE_PASSWORD=… cargo run --release -p tenure-examples --example rw_throughput -- postgres://u@127.0.0.1:5432/db 10 2 10s
//! TENURE_PASSWORD=… cargo run --release -p tenure-examples --example rw_throughput -- postgres://u@127.0.0.1:5432/db uncontended 1000
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenure::Tenure;

async fn connect(url: &str) -> tenure::Result<Tenure> {
    let mut builder = Tenure::builder(url);
    if let Ok(password) = std::env::var("TENURE_PASSWORD") {
        builder = builder.password(password.as_str());
    }
    builder.connect().await
}

#[tokio::main]
async fn main() -> tenure::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args.first().cloned().unwrap_or_else(|| "mem://".into());
    let tenure = connect(&url).await?;
    let name = format!("rw-throughput-{}", std::process::id());
    if args.get(1).map(String::as_str) == Some("uncontended") {
        let n: u32 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
        let lock = tenure.session().await?.rwlock(&name)?;
        // The first cycle records the name (once per name and process): not measured.
        lock.read().await?.unlock().await?;
        let start = Instant::now();
        for _ in 0..n {
            lock.read().await?.unlock().await?;
        }
        let read = start.elapsed() / n;
        let start = Instant::now();
        for _ in 0..n {
            lock.write().await?.unlock().await?;
        }
        let write = start.elapsed() / n;
        println!("uncontended: read cycle {read:?}, write cycle {write:?} (mean of {n})");
        return Ok(());
    }
    let readers: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10);
    let writers: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(2);
    let secs: u64 = args
        .get(3)
        .and_then(|d| d.trim_end_matches('s').parse().ok())
        .unwrap_or(10);
    let (reads, writes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks: Vec<tokio::task::JoinHandle<tenure::Result<()>>> = Vec::new();
    for i in 0..readers + writers {
        let lock = tenure.session().await?.rwlock(&name)?;
        let count = if i < readers { &reads } else { &writes }.clone();
        let writer = i >= readers;
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if writer {
                    lock.write().await?.unlock().await?;
                } else {
                    lock.read().await?.unlock().await?;
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let start = Instant::now();
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            eprintln!("cycle failed: {e}");
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "{readers} readers + {writers} writers for {took:.1}s: {:.0} reads/s, {:.0} writes/s",
        reads.load(Ordering::Relaxed) as f64 / took,
        writes.load(Ordering::Relaxed) as f64 / took
    );
    Ok(())
}
