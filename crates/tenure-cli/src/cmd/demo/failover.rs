//! The failover scenario: a primary leads an election and heartbeats through guarded writes; a
//! standby campaigns behind it. The primary freezes (its session stops renewing, exactly as a
//! stopped or killed process), its own `lost()` fires at the local deadline, the standby takes
//! over when the lease expires, and the old primary's late write is refused by the store.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tenure::{FencingToken, Tenure, Write};

use super::timeline::Timeline;
use crate::progress::Progress;

/// Heartbeats the primary commits before it freezes.
const HEARTBEATS: u32 = 3;

/// As in the expiry demo: short enough to watch, long enough for the store.
fn default_ttl(backend: &str) -> Duration {
    match backend {
        "mem" => Duration::from_millis(500),
        _ => Duration::from_secs(2),
    }
}

pub async fn run(tenure: &Tenure, ttl: Option<Duration>, json: bool, prefix: &str) -> Result<()> {
    let name = format!("{prefix}/failover");
    let heartbeat_key = format!("{prefix}/failover-heartbeat");
    let ttl = ttl.unwrap_or_else(|| default_ttl(tenure.backend()));
    let tl = Timeline::start("failover", json);
    tl.heading(&format!(
        "a primary with a {} lease freezes; the standby takes over",
        humantime::format_duration(ttl)
    ))?;
    let primary_session = tenure.session_with_ttl(ttl).await?;
    let primary = primary_session.election(&name)?.campaign("primary").await?;
    let first_token = primary.token();
    tl.event(
        "primary_leads",
        &format!("primary P leads {name:?} (fencing token {first_token})"),
    )?;
    let standby = spawn_standby(tenure, &name, tl.now()).await?;
    tl.event("standby_waiting", "standby S campaigns and waits behind P")?;
    for n in 1..=HEARTBEATS {
        primary
            .write([Write::put(&heartbeat_key, format!("primary heartbeat {n}"))])
            .await
            .context("primary heartbeat")?;
        tl.event(
            "primary_heartbeat",
            &format!("P heartbeats: guarded write {n} commits (P still leads)"),
        )?;
        tokio::time::sleep(ttl / 4).await;
    }
    primary_session.simulate_crash();
    tl.event(
        "primary_frozen",
        "P freezes: no more heartbeats, and its lease is no longer renewed",
    )?;
    let progress = Progress::start("waiting for P's renewals to be overdue", 0);
    let reason = primary.lost().await;
    progress.finish();
    tl.event(
        "primary_lost",
        &format!("P's lost() fires ({reason}): P stops acting as primary"),
    )?;
    let progress = Progress::start("waiting for the store to expire P's lease", 0);
    let waited = standby.await;
    progress.finish();
    let (at, token) = waited.context("standby task")??;
    tl.event_at(
        at,
        "standby_leads",
        &format!(
            "standby S takes over when P's lease expires (fencing token {token} > {first_token})"
        ),
    )?;
    let late = Write::put(&heartbeat_key, "primary heartbeat after freezing");
    match primary.write([late]).await {
        Err(e) => tl.event(
            "stale_write_refused",
            &format!("P's late heartbeat is refused: {e}"),
        )?,
        Ok(()) => bail!("the frozen primary's write committed after S took over: fencing broke"),
    }
    // Resigning a lost leadership touches nothing; dropping it is enough.
    drop(primary);
    tl.event("primary_stopped", "P has stopped; S is the primary now")?;
    tenure.write([Write::delete(&heartbeat_key)]).await?;
    Ok(())
}

/// Starts S campaigning; resolves to when (since the start) S led, and its token.
async fn spawn_standby(
    tenure: &Tenure,
    name: &str,
    started: Duration,
) -> Result<tokio::task::JoinHandle<Result<(Duration, FencingToken)>>> {
    let session = tenure.session().await?;
    let election = session.election(name)?;
    let origin = tokio::time::Instant::now() - started;
    Ok(tokio::spawn(async move {
        let leadership = election.campaign("standby").await?;
        let at = origin.elapsed();
        let token = leadership.token();
        leadership.resign().await?;
        session.close().await?;
        Ok((at, token))
    }))
}
