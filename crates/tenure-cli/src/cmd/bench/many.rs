//! Many locks on one session: T tasks share one session, each cycle locking a random one of N
//! names — the per-entity shape (`orders/<id>`) of most production use. It shows whether the
//! client lets the store batch concurrent writes or serializes them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tenure::{Session, Tenure};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::progress::Progress;
use crate::stats::{self, Summary};

/// What to run for one task count.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub locks: usize,
    pub tasks: usize,
    pub cycles: usize,
    pub max_time: Duration,
}

/// The outcome for one task count.
#[derive(Debug)]
pub struct Many {
    pub locks: usize,
    pub tasks: usize,
    pub cycles: usize,
    pub seconds: f64,
    pub latency: Summary,
}

struct Shared {
    remaining: AtomicUsize,
    deadline: Instant,
    progress: Progress,
}

pub async fn run(tenure: &Tenure, prefix: &str, plan: Plan) -> Result<Many> {
    let session = tenure.session().await?;
    let label = format!("{} tasks over {} locks", plan.tasks, plan.locks);
    let progress = Progress::start(&label, plan.cycles);
    let shared = Arc::new(Shared {
        remaining: AtomicUsize::new(plan.cycles),
        deadline: Instant::now() + plan.max_time,
        progress: progress.clone(),
    });
    let start = Instant::now();
    let mut set = JoinSet::new();
    for seed in 0..plan.tasks {
        let (session, shared) = (session.clone(), shared.clone());
        let prefix = prefix.to_string();
        set.spawn(task(session, prefix, plan.locks, seed as u64, shared));
    }
    let mut latencies = Vec::with_capacity(plan.cycles);
    while let Some(joined) = set.join_next().await {
        latencies.extend(joined.context("bench task")??);
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    crate::cmd::close_session(session, Duration::from_secs(5)).await;
    Ok(Many {
        locks: plan.locks,
        tasks: plan.tasks,
        cycles: latencies.len(),
        seconds,
        latency: stats::summarize(latencies),
    })
}

async fn task(
    session: Session,
    prefix: String,
    locks: usize,
    seed: u64,
    shared: Arc<Shared>,
) -> Result<Vec<Duration>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut latencies = Vec::new();
    while Instant::now() < shared.deadline
        && shared
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
            .is_ok()
    {
        let name = format!("{prefix}/{}", rng.usize(..locks));
        let t = Instant::now();
        session.mutex(&name)?.lock().await?.unlock().await?;
        latencies.push(t.elapsed());
        shared.progress.tick();
    }
    Ok(latencies)
}
