//! Measures leader fail-over: resign → new leader, and a crashed leader (renewals stop, as
//! with `kill -9`) → new leader, for a few TTLs.
//!
//! ```text
//! cargo run -p tenure-examples --example failover_times -- etcd://127.0.0.1:2379
//! ```

use std::time::{Duration, Instant};

use tenure::{Session, Tenure};

async fn standby_leads_after(
    tenure: &Tenure,
    name: &str,
    ttl: Duration,
    crash: bool,
) -> tenure::Result<Duration> {
    let leader_session: Session = tenure.session_with_ttl(ttl).await?;
    let leader = leader_session.election(name)?.campaign("old").await?;
    let standby = tenure.session().await?.election(name)?;
    let campaign = tokio::spawn(async move { standby.campaign("new").await });
    // The standby's entry must be queued before the clock starts.
    while tenure.status(name).await?.first().map_or(0, |s| s.waiters) == 0 {
        tokio::task::yield_now().await;
    }
    let start = Instant::now();
    if crash {
        std::mem::forget(leader);
        leader_session.simulate_crash();
    } else {
        leader.resign().await?;
    }
    let new = campaign.await.map_err(|e| tenure::Error::Store {
        op: "join",
        message: e.to_string(),
        source: None,
    })??;
    let took = start.elapsed();
    new.resign().await?;
    Ok(took)
}

#[tokio::main]
async fn main() -> tenure::Result<()> {
    let url = std::env::args().nth(1).unwrap_or_else(|| "mem://".into());
    let tenure = Tenure::connect(&url).await?;
    let run = std::process::id();
    let mut resigns = Vec::new();
    for i in 0..20 {
        let name = format!("failover-times-{run}-resign-{i}");
        resigns.push(standby_leads_after(&tenure, &name, Duration::from_secs(5), false).await?);
    }
    resigns.sort();
    println!(
        "{url}: resign -> new leader: p50 {:.2} ms, max {:.2} ms (20 runs)",
        resigns[10].as_secs_f64() * 1e3,
        resigns[19].as_secs_f64() * 1e3
    );
    for ttl in [2, 5] {
        let name = format!("failover-times-{run}-crash-{ttl}");
        let took = standby_leads_after(&tenure, &name, Duration::from_secs(ttl), true).await?;
        println!(
            "{url}: crash (renewals stop) -> new leader with TTL {ttl} s: {:.2} s",
            took.as_secs_f64()
        );
    }
    Ok(())
}
