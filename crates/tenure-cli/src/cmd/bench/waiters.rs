//! W queued waiters on one lock in one process: what each costs the client in memory, how
//! fast the lock passes down the queue, and how much store work each hand-off takes.
//!
//! Each waiter has a session of its own (opened before anything is measured), so that all W
//! wait in the store: tasks sharing one session queue in the process first (C9) and would
//! leave one waiter in the store. Memory is the growth of the resident set while the W
//! waiters enter the queue, so the sessions themselves are not counted (their cost is
//! reported apart, each used once first: [`warm_up`]). Hand-offs are timed, and the store's
//! counters read, over the first [`WINDOW`] hand-offs, while the queue is still about W deep;
//! the rest then drain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tenure::{Session, Tenure};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::counters::{PerUnit, Source};
use crate::progress::Progress;
use crate::stats::{self, Summary};

/// Hand-offs measured per run (fewer if there are fewer waiters).
const WINDOW: usize = 200;

/// Waiters that start entering the queue together.
const BATCH: usize = 100;

/// How long to give waiters to enter the queue on a store that cannot list them (Redis).
const SETTLE_UNLISTED: Duration = Duration::from_secs(2);

/// The outcome for one number of waiters.
#[derive(Debug)]
pub struct Waiters {
    pub waiters: usize,
    pub handoffs: usize,
    pub handoff: Summary,
    /// Resident-set growth per queued waiter, in bytes.
    pub waiter_bytes: f64,
    /// Resident-set growth per open session, in bytes.
    pub session_bytes: f64,
    /// Store work per hand-off, from the store's own counters.
    pub store: Option<PerUnit>,
}

/// Resident set size in bytes (Linux's /proc/self/statm; 0 elsewhere).
fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

struct Shared {
    /// The lock's name.
    name: String,
    /// When the latest holder began to unlock (the hand-off clock's start).
    unlock_started: StdMutex<Option<Instant>>,
    granted: AtomicUsize,
    window: usize,
    samples: StdMutex<Vec<Duration>>,
    /// Told when the last measured hand-off is done.
    window_done: Notify,
    /// Set once the counters after the window are read: the waiter holding then may go on.
    go: watch::Receiver<bool>,
    progress: Progress,
}

impl Shared {
    fn swap_unlock_started(&self, now: Option<Instant>) -> Option<Instant> {
        let mut slot = self
            .unlock_started
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut slot, now)
    }
}

pub async fn run(tenure: &Tenure, name: &str, waiters: usize) -> Result<Waiters> {
    let counters = Source::for_lock(tenure.url(), name);
    let window = waiters.min(WINDOW);
    let rss_empty = rss_bytes();
    let holder = tenure.session().await?;
    let mut sessions = Vec::with_capacity(waiters);
    while sessions.len() < waiters {
        let batch = BATCH.min(waiters - sessions.len());
        sessions.extend(crate::cmd::open_sessions(tenure, batch).await?);
    }
    for (i, batch) in sessions.chunks(BATCH).enumerate() {
        warm_up(batch, name, i * BATCH).await?;
    }
    let rss_sessions = rss_bytes();
    let guard = holder.mutex(name)?.lock().await?;

    let (go_tx, go) = watch::channel(false);
    let progress = Progress::start(&format!("{waiters} waiters"), waiters);
    let shared = Arc::new(Shared {
        name: name.to_string(),
        unlock_started: StdMutex::new(None),
        granted: AtomicUsize::new(0),
        window,
        samples: StdMutex::new(Vec::with_capacity(window)),
        window_done: Notify::new(),
        go,
        progress: progress.clone(),
    });
    let mut set = JoinSet::new();
    // In batches, each queued before the next starts, as jobs arrive over time: thousands of
    // enqueues in flight at once would measure the client's buffers for that burst (which the
    // allocator keeps), not what a queued waiter holds.
    for (i, session) in sessions.iter().enumerate() {
        set.spawn(waiter(session.clone(), shared.clone()));
        if (i + 1) % BATCH == 0 || i + 1 == waiters {
            settle(tenure, name, i + 1, &mut set).await?;
        }
    }
    if let Some(source) = &counters {
        quiesce(source).await;
    }
    let rss_queued = rss_bytes();

    let before = match &counters {
        Some(source) => source.read().await,
        None => None,
    };
    let window_done = shared.window_done.notified();
    shared.swap_unlock_started(Some(Instant::now()));
    guard.unlock().await?;
    // Waiters ahead of the window's last end as they go; one that fails ends the run.
    tokio::pin!(window_done);
    loop {
        tokio::select! {
            () = &mut window_done => break,
            Some(ended) = set.join_next() => ended.context("bench waiter")??,
        }
    }
    let after = match &counters {
        Some(source) => source.read().await,
        None => None,
    };
    go_tx.send_replace(true);
    while let Some(joined) = set.join_next().await {
        joined.context("bench waiter")??;
    }
    progress.finish();
    let samples = std::mem::take(&mut *shared.samples.lock().unwrap_or_else(|p| p.into_inner()));
    crate::cmd::close_sessions(sessions, Duration::from_secs(5)).await;
    crate::cmd::close_session(holder, Duration::from_secs(5)).await;
    let per = |grown: u64, n: usize| grown as f64 / n.max(1) as f64;
    Ok(Waiters {
        waiters,
        handoffs: samples.len(),
        handoff: stats::summarize(samples),
        waiter_bytes: per(rss_queued.saturating_sub(rss_sessions), waiters),
        session_bytes: per(rss_sessions.saturating_sub(rss_empty), waiters),
        store: before.zip(after).map(|(b, a)| a.per(b, window)),
    })
}

/// Has each session take and release a lock of its own once, as a session in use has, so
/// that what a session's first requests cost is counted with the session, not with the
/// waiter it then carries: the ZooKeeper client allocates its per-session tables when the
/// session opens but the pages are first written by its first requests (about 2.5 KB per
/// session), and a session makes its map of in-process queues (C9) at its first lock. A
/// process with many waiters on one session pays these once.
async fn warm_up(sessions: &[Session], name: &str, first: usize) -> Result<()> {
    let mut set = JoinSet::new();
    for (i, session) in sessions.iter().enumerate() {
        let (session, own) = (session.clone(), format!("{name}-warm-{}", first + i));
        set.spawn(async move { session.mutex(&own)?.lock().await?.unlock().await });
    }
    while let Some(joined) = set.join_next().await {
        joined.context("warming a session")??;
    }
    Ok(())
}

/// Waits until the store's request counter stops moving (every waiter has set up its watch),
/// so that the window counts hand-offs only; gives up after a while on a busy store.
async fn quiesce(source: &Source) {
    let mut last = None;
    for _ in 0..50 {
        let now = source.read().await.map(|c| c.requests);
        // Our own scrape is not a request the store counts (etcd's /metrics is HTTP, mntr
        // and INFO are excluded).
        if now.is_some() && now == last {
            return;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until all `waiters` are queued in the store, as the store lists them; a store that
/// cannot list (Redis) gets a fixed time instead. No waiter may end before the first holder
/// unlocks: one that did failed, and the queue would never fill, so its error ends the run.
async fn settle(
    tenure: &Tenure,
    name: &str,
    waiters: usize,
    set: &mut JoinSet<Result<()>>,
) -> Result<()> {
    loop {
        if let Some(ended) = set.try_join_next() {
            ended.context("bench waiter")??;
            anyhow::bail!("a waiter was granted the lock while its holder still held it");
        }
        let asked = Instant::now();
        match tenure.status(name).await {
            Ok(status) => {
                let queued = status
                    .iter()
                    .find(|s| s.name == name)
                    .map_or(0, |s| s.waiters);
                if queued >= waiters {
                    return Ok(());
                }
            }
            Err(tenure::Error::Unsupported { .. }) => {
                tokio::time::sleep(SETTLE_UNLISTED).await;
                return Ok(());
            }
            // Thousands of waiters entering at once can keep a listing waiting; ask again.
            Err(e) if e.is_transient() => tracing::debug!("listing the waiters: {e}"),
            Err(e) => return Err(e.into()),
        }
        // A listing reads the whole queue: with thousands queued, asking every 20 ms would
        // keep the store busy with the bench's own reads (and slow the enqueues it waits for).
        tokio::time::sleep(Duration::from_millis(20).max(asked.elapsed() * 4)).await;
    }
}

/// One waiter, as a user's task would wait: lock, then unlock. Not an `async fn`, which would
/// store its arguments twice; the one waiter that holds the lock while the counters are read
/// waits for that in a box of its own, so that the others keep no room for it.
#[allow(clippy::manual_async_fn)]
fn waiter(
    session: Session,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = Result<()>> + Send {
    async move {
        let guard = session.mutex(&shared.name)?.lock().await?;
        let granted = Instant::now();
        let index = 1 + shared.granted.fetch_add(1, Ordering::SeqCst);
        if let Some(unlock_started) = shared.swap_unlock_started(None) {
            if index <= shared.window {
                let mut samples = shared.samples.lock().unwrap_or_else(|p| p.into_inner());
                samples.push(granted - unlock_started);
            }
        }
        if index == shared.window {
            shared.window_done.notify_one();
            let mut go = shared.go.clone();
            Box::pin(go.wait_for(|go| *go))
                .await
                .context("bench stopped")?;
        }
        shared.progress.tick();
        shared.swap_unlock_started(Some(Instant::now()));
        guard.unlock().await?;
        Ok(())
    }
}
