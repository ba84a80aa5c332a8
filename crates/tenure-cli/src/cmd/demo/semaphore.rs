//! The semaphore scenario: a pool of 3 permits shared by 10 workers, each with its own
//! session, taking turns; the occupancy (holders at once) never goes above 3.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tenure::Tenure;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinSet;

use super::timeline::Timeline;

const WORKERS: usize = 10;
const PERMITS: u32 = 3;
const ROUNDS: usize = 2;
/// How long a worker holds its permit: the work the pool bounds.
const WORK: Duration = Duration::from_millis(60);

pub async fn run(tenure: &Tenure, json: bool, prefix: &str) -> Result<()> {
    let name = format!("{prefix}/pool");
    let tl = Arc::new(AsyncMutex::new(Timeline::start("semaphore", json)));
    tl.lock().await.heading(&format!(
        "{WORKERS} workers, each with its own session, share a pool of {PERMITS} permits ({ROUNDS} turns each)"
    ))?;
    let sessions = crate::cmd::open_sessions(tenure, WORKERS).await?;
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let (session, name, tl) = (session.clone(), name.clone(), tl.clone());
        let (inside, most) = (inside.clone(), most.clone());
        set.spawn(async move {
            let pool = session
                .semaphore(&name, PERMITS)?
                .with_value(format!("worker-{i}"));
            for _ in 0..ROUNDS {
                let permit = pool.acquire().await?;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tl.lock().await.event(
                    "acquired",
                    &format!(
                        "worker {i} got a permit (token {}): {now} of {PERMITS} in use",
                        permit.token()
                    ),
                )?;
                tokio::time::sleep(WORK).await;
                let left = inside.fetch_sub(1, Ordering::SeqCst) - 1;
                permit.release().await?;
                tl.lock().await.event(
                    "released",
                    &format!("worker {i} gave its permit back: {left} of {PERMITS} in use"),
                )?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.context("worker task")??;
    }
    crate::cmd::close_sessions(sessions, Duration::from_secs(5)).await;
    let most = most.load(Ordering::SeqCst);
    if most > PERMITS as usize {
        bail!("{most} workers held a permit at once, more than the {PERMITS} permits");
    }
    let done = format!(
        "{} turns taken; at most {most} of {PERMITS} permits in use at once",
        WORKERS * ROUNDS
    );
    let tl = tl.lock().await;
    tl.event("done", &done)
}
