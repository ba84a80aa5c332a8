//! What a bounded wait (`lock_timeout`) was doing when it ran out, so that
//! [`crate::Error::Timeout`] tells a lock held by someone else from a store that kept failing.
//!
//! The wait runs inside [`observed`]; the steps it goes through report where they are with
//! [`note`] (queued locally, waiting for the store, queued behind a holder) and
//! [`crate::retry`] reports transient faults and their recovery. Outside [`observed`] (a plain
//! `lock()`, background tasks) reporting does nothing.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::liveness::Liveness;
use crate::{Error, Result};

/// What a wait was doing when its time ran out.
///
/// With the `serde` feature it is an object tagged by `state`, the variant's name in snake
/// case, beside its fields: `{"state": "queued", "ahead": "jobs/694d…"}`,
/// `{"state": "retrying", "last_error": "…"}`, `{"state": "local_queue"}`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// use tenure::{Error, Waiting};
/// let _held = tenure.session().await?.mutex("jobs")?.lock().await?;
/// let jobs = tenure.session().await?.mutex("jobs")?;
/// match jobs.lock_timeout(std::time::Duration::from_millis(50)).await {
///     Err(Error::Timeout { waiting: Waiting::Queued { ahead }, .. }) => println!("held by {ahead:?}"),
///     Err(Error::Timeout { waiting: Waiting::Retrying { last_error }, .. }) => eprintln!("store failing: {last_error}"),
///     other => println!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "state", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Waiting {
    /// Queued behind another task of this process that held or waited for the same name on
    /// the same session (C9); the store was not asked yet.
    LocalQueue,
    /// A request to the store was in flight and had not been answered.
    Store,
    /// Queued in the store: the lock was held by someone else, or other waiters were ahead,
    /// when last checked.
    Queued {
        /// The entry directly ahead (the holder, or the waiter before us), where known.
        ahead: Option<String>,
    },
    /// The store kept failing with transient faults (lost connection, no leader, timeout),
    /// and the request was being retried.
    Retrying {
        /// The last fault.
        last_error: String,
    },
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waiting::LocalQueue => f.write_str(
                "another task of this process held or was waiting for it on the same session",
            ),
            Waiting::Store => f.write_str("the store had not answered the last request yet"),
            Waiting::Queued { ahead: Some(key) } => {
                write!(f, "it was still held by someone else (queued behind {key})")
            }
            Waiting::Queued { ahead: None } => f.write_str("it was still held by someone else"),
            Waiting::Retrying { last_error } => write!(
                f,
                "the store kept failing transiently and the request was being retried (last error: {last_error})"
            ),
        }
    }
}

type Cell = Arc<Shared>;

/// What a [`Stage`] records.
struct Shared {
    now: StdMutex<Waiting>,
    /// Whether the wait was ever held up by someone ahead (queued in the store, or behind
    /// another task of this process): a grant after that is a hand-off (`crate::metrics`).
    blocked: AtomicBool,
}

tokio::task_local! {
    static STAGE: Cell;
}

/// A record of what the wait run inside [`observed`] with it is doing; `None`: nobody asks.
#[derive(Clone)]
pub(crate) struct Stage(Option<Cell>);

impl Stage {
    /// A stage for a wait with no deadline: only metrics ask what it did (whether it was
    /// held up), so without them nothing is recorded, and nothing allocated for each
    /// acquisition (docs/contract.md, Performance rules: client memory per queued waiter).
    pub(crate) fn new() -> Self {
        if cfg!(feature = "metrics") {
            Self::recording()
        } else {
            Stage(None)
        }
    }

    /// A stage that records, for a wait whose timeout tells what it was doing.
    pub(crate) fn recording() -> Self {
        Stage(Some(Arc::new(Shared {
            now: StdMutex::new(Waiting::LocalQueue),
            blocked: AtomicBool::new(false),
        })))
    }

    /// What the wait was doing last.
    pub(crate) fn get(&self) -> Waiting {
        self.0.as_ref().map_or(Waiting::LocalQueue, |cell| {
            cell.now.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }

    /// Whether the wait ever had to wait for someone ahead of it.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn blocked(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|cell| cell.blocked.load(Ordering::Relaxed))
    }
}

/// Runs `fut` with `stage` recording what it does.
pub(crate) async fn observed<F: Future>(stage: &Stage, fut: F) -> F::Output {
    match &stage.0 {
        Some(cell) => STAGE.scope(cell.clone(), fut).await,
        None => fut.await,
    }
}

/// Records what the current wait is doing (nothing outside [`observed`]).
pub(crate) fn note(now: Waiting) {
    let _ = STAGE.try_with(|cell| {
        if matches!(now, Waiting::Queued { .. }) {
            cell.blocked.store(true, Ordering::Relaxed);
        }
        *cell.now.lock().unwrap_or_else(|p| p.into_inner()) = now;
    });
}

/// Takes this session's in-process queue for a name (C9), noting [`Waiting::LocalQueue`]
/// meanwhile, and that the wait was held up if another task of this process was ahead. Fails
/// with [`Error::SessionLost`] once `session` is lost: a task ahead may hold its place for as
/// long as it keeps a guard of the lost session, and a waiter's only deadline is its caller's
/// (C11), so the loss must end the wait.
pub(crate) async fn queue_locally(
    queue: Arc<AsyncMutex<()>>,
    session: &Liveness,
) -> Result<OwnedMutexGuard<()>> {
    note(Waiting::LocalQueue);
    let place = match queue.clone().try_lock_owned() {
        Ok(place) => place,
        Err(_) => {
            let _ = STAGE.try_with(|cell| cell.blocked.store(true, Ordering::Relaxed));
            // Boxed: only a task queued behind a sibling pays for this wait; inline, every
            // lock's future kept room for it all the time it then waited in the store
            // (docs/contract.md, Performance rules: client memory per queued waiter).
            Box::pin(async {
                tokio::select! {
                    place = queue.lock_owned() => Ok(place),
                    reason = session.lost() => Err(Error::SessionLost { reason }),
                }
            })
            .await?
        }
    };
    note(Waiting::Store);
    Ok(place)
}

/// Records that a request was answered: a fault recorded before is over.
pub(crate) fn note_answered() {
    let _ = STAGE.try_with(|cell| {
        let mut stage = cell.now.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*stage, Waiting::Retrying { .. }) {
            *stage = Waiting::Store;
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Error, Tenure, Waiting};

    /// A task queued in process behind a guard of its own session hears of that session's
    /// loss (it used to wait for as long as the guard was kept).
    #[tokio::test(start_paused = true)]
    async fn a_local_waiter_hears_of_its_session_lost() {
        let tenure = Tenure::builder("mem://local-waiter-lost")
            .ttl(Duration::from_secs(1))
            .connect()
            .await
            .unwrap();
        let session = tenure.session().await.unwrap();
        let held = session.mutex("n").unwrap().lock().await.unwrap();
        let mutex = session.mutex("n").unwrap();
        let waiter = tokio::spawn(async move { mutex.lock().await.map(|_| ()) });
        session.clone().simulate_crash();
        let waited = tokio::time::timeout(Duration::from_secs(60), waiter).await;
        let answer = waited.expect("the waiter is told").expect("waiter task");
        assert!(
            matches!(answer, Err(Error::SessionLost { .. })),
            "{answer:?}"
        );
        assert!(held.is_lost());
    }

    #[tokio::test]
    async fn timeout_says_whether_queued_in_the_store_or_locally() {
        let tenure = Tenure::connect("mem://waiting-stage").await.unwrap();
        let holder = tenure.session().await.unwrap();
        let guard = holder.mutex("w").unwrap().lock().await.unwrap();
        let other = tenure.session().await.unwrap();
        let err = other
            .mutex("w")
            .unwrap()
            .lock_timeout(Duration::from_millis(100))
            .await
            .unwrap_err();
        match &err {
            Error::Timeout {
                waiting: Waiting::Queued { ahead: Some(key) },
                ..
            } => assert_eq!(key, guard.key()),
            other => panic!("expected a Timeout queued behind the holder, got {other:?}"),
        }
        assert!(err.to_string().contains("held by someone else"), "{err}");
        // Behind a task of this process on the same session: the store was never asked.
        let err = holder
            .mutex("w")
            .unwrap()
            .lock_timeout(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Timeout {
                    waiting: Waiting::LocalQueue,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("this process"), "{err}");
        guard.unlock().await.unwrap();
    }
}
