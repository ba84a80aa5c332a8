//! The counter scenario: N workers add 1 to a counter kept in the store, first without the
//! lock (so read-modify-write races lose updates), then with it (exactly N).

use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;
use tenure::{Session, Tenure, Write};
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::output;
use crate::progress::Progress;

#[derive(Serialize)]
struct CounterJson {
    workers: usize,
    expected: usize,
    locked_count: u64,
    unlocked_count: u64,
    seconds: f64,
}

/// One increment, with or without the lock.
#[derive(Clone)]
struct Job {
    tenure: Tenure,
    key: String,
    lock: Option<String>,
}

pub async fn run(tenure: &Tenure, workers: usize, json: bool, prefix: &str) -> Result<()> {
    if !json {
        output::line(format!(
            "counter demo: {workers} workers, each with its own session on {}, add 1 to a \
             counter in the store",
            tenure.url()
        ))?;
    }
    let sessions = crate::cmd::open_sessions(tenure, workers).await?;
    let start = Instant::now();
    let job = |key: &str, lock: Option<String>| Job {
        tenure: tenure.clone(),
        key: format!("{prefix}/{key}"),
        lock,
    };
    let unlocked_job = job("unlocked-count", None);
    let unlocked = phase(&sessions, &unlocked_job, json).await?;
    let locked_job = job("locked-count", Some(format!("{prefix}/counter-lock")));
    let locked = phase(&sessions, &locked_job, json).await?;
    let seconds = start.elapsed().as_secs_f64();
    let cleanup = [
        Write::delete(unlocked_job.key),
        Write::delete(locked_job.key),
    ];
    tenure.write(cleanup).await?;
    crate::cmd::close_sessions(sessions, std::time::Duration::from_secs(5)).await;
    if !json {
        return output::line(format!("  total {seconds:.2}s"));
    }
    output::json(&CounterJson {
        workers,
        expected: workers,
        locked_count: locked,
        unlocked_count: unlocked,
        seconds,
    })
}

fn report(json: bool, what: &str, count: u64, expected: usize, since: Instant) -> Result<()> {
    if json {
        return Ok(());
    }
    let lost = (expected as u64).saturating_sub(count);
    let note = match lost {
        0 => "exact".to_string(),
        n => format!("{n} updates lost"),
    };
    output::line(format!(
        "  {:<50} {:>12}  {note:<18} {:.2}s",
        format!("{what}:"),
        format!("{count} of {expected}"),
        since.elapsed().as_secs_f64()
    ))
}

/// Every worker does `job` once, all starting together; reports and returns the final count.
async fn phase(sessions: &[Session], job: &Job, json: bool) -> Result<u64> {
    let what = match job.lock {
        Some(_) => "with the lock (lock, read, pause, write, unlock)",
        None => "without the lock (read, pause, write)",
    };
    let start = Instant::now();
    let progress = Progress::start(what, sessions.len());
    let barrier = Arc::new(Barrier::new(sessions.len()));
    let mut set = JoinSet::new();
    for session in sessions {
        let (session, job, barrier, progress) = (
            session.clone(),
            job.clone(),
            barrier.clone(),
            progress.clone(),
        );
        set.spawn(async move {
            barrier.wait().await;
            let result = increment(&session, &job).await;
            progress.tick();
            result
        });
    }
    let mut outcome = Ok(());
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined.context("worker task").and_then(|r| r) {
            outcome = outcome.and(Err(e));
        }
    }
    progress.finish();
    outcome?;
    let count = read_count(&job.tenure, &job.key).await?;
    report(json, what, count, sessions.len(), start)?;
    Ok(count)
}

async fn increment(session: &Session, job: &Job) -> Result<()> {
    let guard = match &job.lock {
        Some(name) => Some(session.mutex(name)?.lock().await?),
        None => None,
    };
    let n = read_count(&job.tenure, &job.key).await?;
    // Stands for the work between reading and writing back, where other workers get in.
    tokio::task::yield_now().await;
    let put = Write::put(&job.key, (n + 1).to_string());
    match guard {
        Some(guard) => {
            guard.write([put]).await?;
            guard.unlock().await?;
        }
        None => job.tenure.write([put]).await?,
    }
    Ok(())
}

async fn read_count(tenure: &Tenure, key: &str) -> Result<u64> {
    let Some(raw) = tenure.read(key).await? else {
        return Ok(0);
    };
    let text = String::from_utf8_lossy(&raw);
    text.trim()
        .parse()
        .with_context(|| format!("the counter at {key:?} holds {text:?}, not a number"))
}
