//! W sessions taking turns on one lock: throughput, acquire latency and hand-off latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tenure::{Session, Tenure};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::progress::Progress;
use crate::stats::{self, Summary};

/// What to run at one worker count.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub workers: usize,
    pub cycles: usize,
    /// No new cycle starts after this; cycles already started finish.
    pub max_time: Duration,
}

/// The outcome at one worker count.
#[derive(Debug)]
pub struct Contended {
    pub workers: usize,
    pub cycles: usize,
    pub seconds: f64,
    pub acquire: Summary,
    pub handoff: Summary,
}

/// State the workers share.
struct Shared {
    remaining: AtomicUsize,
    deadline: Instant,
    /// When the latest holder began to unlock: the hand-off clock starts here and stops when
    /// the next holder's lock() returns. Read under the lock's own exclusion, so never stale.
    unlock_started: StdMutex<Option<Instant>>,
    progress: Progress,
}

impl Shared {
    /// Claims one cycle, unless all are taken or time is up.
    fn claim(&self) -> bool {
        Instant::now() < self.deadline
            && self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                .is_ok()
    }

    fn swap_unlock_started(&self, now: Option<Instant>) -> Option<Instant> {
        let mut slot = self
            .unlock_started
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut slot, now)
    }
}

/// Samples one worker collected.
#[derive(Default)]
struct Samples {
    acquire: Vec<Duration>,
    handoff: Vec<Duration>,
}

pub async fn run(tenure: &Tenure, name: &str, plan: Plan) -> Result<Contended> {
    let sessions = crate::cmd::open_sessions(tenure, plan.workers).await?;
    let progress = Progress::start(&format!("{} workers", plan.workers), plan.cycles);
    let shared = Arc::new(Shared {
        remaining: AtomicUsize::new(plan.cycles),
        deadline: Instant::now() + plan.max_time,
        unlock_started: StdMutex::new(None),
        progress: progress.clone(),
    });
    let start = Instant::now();
    let mut set = JoinSet::new();
    for session in &sessions {
        set.spawn(worker(session.clone(), name.to_string(), shared.clone()));
    }
    let mut all = Samples::default();
    while let Some(joined) = set.join_next().await {
        let samples = joined.context("bench worker")??;
        all.acquire.extend(samples.acquire);
        all.handoff.extend(samples.handoff);
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    crate::cmd::close_sessions(sessions, Duration::from_secs(5)).await;
    Ok(Contended {
        workers: plan.workers,
        cycles: all.acquire.len(),
        seconds,
        acquire: stats::summarize(all.acquire),
        handoff: stats::summarize(all.handoff),
    })
}

async fn worker(session: Session, name: String, shared: Arc<Shared>) -> Result<Samples> {
    let mutex = session.mutex(&name)?;
    let mut samples = Samples::default();
    while shared.claim() {
        let asked = Instant::now();
        let guard = mutex.lock().await?;
        let granted = Instant::now();
        samples.acquire.push(granted - asked);
        // The first grant of a run has no previous holder to hand over from.
        if let Some(unlock_started) = shared.swap_unlock_started(None) {
            samples.handoff.push(granted - unlock_started);
        }
        shared.swap_unlock_started(Some(Instant::now()));
        guard.unlock().await?;
        shared.progress.tick();
    }
    Ok(samples)
}
