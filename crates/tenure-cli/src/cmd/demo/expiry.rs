//! The expiry scenario: a holder crashes without unlocking. Its own guard reports the loss at
//! the local deadline, and a waiter gets the lock once the store expires the lease.

use std::time::Duration;

use anyhow::{Context, Result};
use tenure::{FencingToken, Tenure};

use super::timeline::Timeline;
use crate::progress::Progress;

/// Short enough to watch, long enough for the store: etcd leases are whole seconds and are
/// checked for expiry about every 500 ms.
fn default_ttl(backend: &str) -> Duration {
    match backend {
        "mem" => Duration::from_millis(500),
        _ => Duration::from_secs(2),
    }
}

pub async fn run(tenure: &Tenure, ttl: Option<Duration>, json: bool, prefix: &str) -> Result<()> {
    let name = format!("{prefix}/expiry");
    let ttl = ttl.unwrap_or_else(|| default_ttl(tenure.backend()));
    let tl = Timeline::start("expiry", json);
    tl.heading(&format!(
        "a holder with a {} lease crashes without unlocking",
        humantime::format_duration(ttl)
    ))?;
    let holder = tenure.session_with_ttl(ttl).await?;
    let guard = holder.mutex(&name)?.lock().await?;
    let held_token = guard.token();
    tl.event(
        "holder_locked",
        &format!("holder A locked {name:?} (fencing token {held_token})"),
    )?;
    let waiter = spawn_waiter(tenure, &name, tl.now()).await?;
    tl.event("waiter_waiting", "waiter B calls lock() and waits behind A")?;
    holder.simulate_crash();
    tl.event(
        "holder_crashed",
        "holder A crashes: its lease is no longer renewed and it never unlocks",
    )?;
    // Finish each progress line before printing, so events never land on it.
    let progress = Progress::start("waiting for A's renewals to be overdue", 0);
    let reason = guard.lost().await;
    progress.finish();
    tl.event(
        "holder_lost",
        &format!("A's guard fires lost() ({reason}): A must stop touching what the lock protects"),
    )?;
    let progress = Progress::start("waiting for the store to expire A's lease", 0);
    let waited = waiter.await;
    progress.finish();
    let (at, token) = waited.context("waiter task")??;
    tl.event_at(
        at,
        "waiter_locked",
        &format!(
            "waiter B gets the lock when A's lease expires (fencing token {token} > {held_token})"
        ),
    )?;
    // Only now drop A's guard: releasing it earlier would free the lock before the lease expired
    // and spoil the demonstration. Its release is conditional on ownership, so it touches nothing.
    drop(guard);
    Ok(())
}

/// Starts B waiting for the lock; resolves to when (since the start) B got it, and its token.
async fn spawn_waiter(
    tenure: &Tenure,
    name: &str,
    started: Duration,
) -> Result<tokio::task::JoinHandle<Result<(Duration, FencingToken)>>> {
    let session = tenure.session().await?;
    let mutex = session.mutex(name)?;
    let origin = tokio::time::Instant::now() - started;
    Ok(tokio::spawn(async move {
        let guard = mutex.lock().await?;
        let at = origin.elapsed();
        let token = guard.token();
        guard.unlock().await?;
        session.close().await?;
        Ok((at, token))
    }))
}
