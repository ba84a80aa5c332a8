//! Measures the memory one queued waiter costs in this process (docs/contract.md, Performance
//! rules): N sessions each wait behind one holder, and the resident set size grows by about
//! N × the per-waiter cost. Sessions are opened, and each used once, before the first
//! measurement, so only the waiting itself is counted.
//!
//! ```text
//! cargo run --release -p tenure-examples --example waiter_memory -- etcd://127.0.0.1:2379 1000
//! ```

use tenure::Tenure;

/// Resident set size in bytes, from /proc/self/statm (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[tokio::main]
async fn main() -> tenure::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "mem://".into());
    let waiters: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let tenure = Tenure::connect(&url).await?;
    let name = format!("waiter-memory-{}", std::process::id());
    let holder = tenure.session().await?;
    let guard = holder.mutex(&name)?.lock().await?;
    let mut sessions = Vec::with_capacity(waiters);
    for i in 0..waiters {
        let session = tenure.session().await?;
        // Used once, as a session in use is: what its first requests cost (the ZooKeeper
        // client's tables are first written then) counts with the session, as in
        // `tenure bench --waiters`.
        let own = format!("{name}-warm-{i}");
        session.mutex(&own)?.lock().await?.unlock().await?;
        sessions.push(session);
    }
    let before = rss_bytes().unwrap_or(0);
    let mut tasks = Vec::with_capacity(waiters);
    for s in &sessions {
        let m = s.mutex(&name)?;
        tasks.push(tokio::spawn(async move { m.lock().await.map(drop) }));
    }
    while tenure.status(&name).await?.first().map_or(0, |s| s.waiters) < waiters {
        tokio::task::yield_now().await;
    }
    let after = rss_bytes().unwrap_or(0);
    let per = after.saturating_sub(before) as f64 / waiters as f64;
    println!(
        "{url}: {waiters} queued waiters: +{:.1} KiB RSS in all, {per:.0} bytes per waiter",
        after.saturating_sub(before) as f64 / 1024.0
    );
    drop(guard);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
