//! Distributed mutexes: FIFO, fenced, cancellation-safe.

use std::time::Duration;

use crate::backend::Grant;
use crate::hold::Hold;
use crate::metrics::{Meter, Primitive};
use crate::waiting::{self, Stage};
use crate::{Error, Result, Session, Write};

/// A named lock on a [`Session`]; create it with [`Session::mutex`].
///
/// Waiters are served in arrival order (C3) across processes, and tasks of one process that
/// share a session queue locally first (C9). Every acquiring method is cancellation-safe: a
/// future that is dropped, timed out or aborted withdraws its queue entry (C5).
///
/// On one Redis instance (`redis://`) Tenure clients queue in arrival order too (a release
/// hands the lock to the queue's head); redis-py and redsync clients, which do not queue, can
/// still go first. On Redlock (`redlock://`) waiting is *not* FIFO: waiters wake on a release
/// message and race for the key, as with redsync.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// let tenure = tenure::Tenure::connect("mem://").await?;
/// let session = tenure.session().await?;
/// let jobs = session.mutex("jobs/nightly")?;
/// let guard = jobs.lock().await?;
/// // Another session's try_lock now fails with Error::Locked.
/// let other = tenure.session().await?;
/// assert!(matches!(other.mutex("jobs/nightly")?.try_lock().await, Err(tenure::Error::Locked { .. })));
/// guard.unlock().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Mutex {
    session: Session,
    name: String,
    /// Recorded in the holder's entry, for operators (`Tenure::status`).
    value: Vec<u8>,
}

impl Mutex {
    pub(crate) fn new(session: Session, name: &str) -> Self {
        Mutex {
            session,
            name: name.to_string(),
            value: crate::host_pid().into_bytes(),
        }
    }

    /// This mutex, recording `value` in its holder's entry instead of the default
    /// [`crate::host_pid`] (`HOST:PID`), so that [`Tenure::status`](crate::Tenure::status) and
    /// `tenure status` say who holds the lock, as Curator records the holder's address.
    ///
    /// The value is informational: no peer's locking reads it. On etcd it is the holder key's
    /// value (Go's `concurrency.Mutex` and `etcdctl lock` write an empty one and ignore it); on
    /// ZooKeeper the holder node's data (as Curator's); on PostgreSQL the holding connection's
    /// `application_name`, after the token (63 bytes in all, non-ASCII shown as `?`). On Redis
    /// it is not recorded: the lock key's value must stay the random owner token that redis-py
    /// and redsync compare on release, and Redis does not list holders anyway.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::connect("mem://with-value-doc").await?;
    /// let session = tenure.session().await?;
    /// let _guard = session.mutex("jobs/nightly")?.with_value("web-1:8080").lock().await?;
    /// let status = tenure.status("jobs/").await?;
    /// assert_eq!(status[0].holder.value, b"web-1:8080");
    /// # Ok(()) }
    /// ```
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = value.into();
        self
    }

    /// The lock's name (the key prefix in the store).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let jobs = tenure.session().await?.mutex("jobs/nightly")?;
    /// assert_eq!(jobs.name(), "jobs/nightly");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until this caller holds the lock. Fails with [`Error::SessionLost`] if the
    /// session is lost while waiting.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let jobs = tenure.session().await?.mutex("jobs/nightly")?;
    /// let guard = jobs.lock().await?;
    /// // ... the work only one process may do ...
    /// guard.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self) -> Result<MutexGuard> {
        let meter = self.meter();
        // Boxed: an argument of an async fn is kept for the whole of it, so unboxed the wait
        // is stored again at every layer it is passed through (metering, the stage scope),
        // all the time a queued waiter waits (docs/contract.md, Performance rules).
        let wait = Box::pin(self.wait(&meter));
        meter.acquire(&Stage::new(), true, wait).await
    }

    /// Takes the lock only if nobody holds or waits for it, in one round trip, leaving no
    /// trace in the store when it fails ([`Error::Locked`], naming the holder if known).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let _held = tenure.session().await?.mutex("jobs/nightly")?.lock().await?;
    /// match tenure.session().await?.mutex("jobs/nightly")?.try_lock().await {
    ///     Ok(_guard) => unreachable!("held by the other session"),
    ///     Err(tenure::Error::Locked { name, .. }) => println!("{name} is busy; skipping this run"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_lock(&self) -> Result<MutexGuard> {
        let meter = self.meter();
        let attempt = async {
            let Ok(permit) = self.session.local_queue(&self.name).try_lock_owned() else {
                return Err(Error::Locked {
                    name: self.name.clone(),
                    holder: None,
                });
            };
            self.acquire(false, permit, &meter).await
        };
        meter.acquire(&Stage::new(), false, attempt).await
    }

    /// Like [`Mutex::lock`], but gives up with [`Error::Timeout`] after `timeout`, withdrawing
    /// from the queue. The error says what the wait was doing ([`Waiting`](crate::Waiting)): queued behind a
    /// holder, or retrying a store that kept failing.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let _held = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// let other = tenure.session().await?.mutex("jobs")?;
    /// let err = other.lock_timeout(Duration::from_millis(50)).await.unwrap_err();
    /// assert!(matches!(err, tenure::Error::Timeout { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    pub async fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard> {
        let meter = self.meter();
        // Boxed, as in `lock`.
        let wait = Box::pin(self.wait(&meter));
        meter.acquire_within(&self.name, timeout, wait).await
    }

    fn meter(&self) -> Meter {
        Meter::new(&self.session, Primitive::Mutex, &self.name)
    }

    /// Queues in process, then in the store, until granted.
    async fn wait(&self, meter: &Meter) -> Result<MutexGuard> {
        let permit = waiting::queue_locally(
            self.session.local_queue(&self.name),
            self.session.inner.backend.liveness(),
        )
        .await?;
        self.acquire(true, permit, meter).await
    }

    async fn acquire(
        &self,
        wait: bool,
        permit: tokio::sync::OwnedMutexGuard<()>,
        meter: &Meter,
    ) -> Result<MutexGuard> {
        let backend = self.session.inner.backend.clone();
        let grant: Grant = backend
            .acquire(&self.name, &self.value, wait, permit)
            .await?;
        Ok(MutexGuard {
            held: Hold::new(backend, grant).metered(meter),
            name: self.name.clone(),
            _session: self.session.clone(),
        })
    }
}

/// Proof of holding a [`Mutex`]. Dropping it releases the lock in the background; call
/// [`MutexGuard::unlock`] to release it and hear about errors.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// let guard: tenure::MutexGuard = tenure.session().await?.mutex("jobs")?.lock().await?;
/// println!("{} holds {} (token {})", guard.name(), guard.key(), guard.token());
/// guard.unlock().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct MutexGuard {
    held: Hold,
    name: String,
    /// Keeps the lease alive while the guard lives.
    _session: Session,
}

impl MutexGuard {
    /// The lock's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let guard = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// assert_eq!(guard.name(), "jobs");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Applies `ops` atomically, only if this guard still holds the lock (C10); otherwise
    /// nothing is written and [`Error::NotHeld`] is returned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// use tenure::Write;
    /// let tenure = tenure::Tenure::connect("mem://").await?;
    /// let guard = tenure.session().await?.mutex("counter")?.lock().await?;
    /// let n: u64 = match tenure.read("counter-value").await? {
    ///     Some(v) => String::from_utf8_lossy(&v).parse().unwrap_or(0),
    ///     None => 0,
    /// };
    /// guard.write([Write::put("counter-value", (n + 1).to_string())]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, ops: impl IntoIterator<Item = Write>) -> Result<()> {
        let ops: Vec<Write> = ops.into_iter().collect();
        self.held.write(&ops).await
    }

    /// Releases the lock, only if this guard still owns it (C8). Reports [`Error::LockLost`]
    /// if it was lost before, touching nothing that is not its own.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// session.mutex("jobs")?.lock().await?.unlock().await?;
    /// // Released: another session takes it at once.
    /// tenure.session().await?.mutex("jobs")?.try_lock().await?.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub fn unlock(self) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        // Not an `async fn`, as `Hold::release` is not: the guard would be stored in the
        // future twice over, beside the release that holds it too, and a task that waits for
        // the lock keeps room for its unlock all the time it waits.
        // (An `async move` block awaiting the release would store it twice as well.)
        let MutexGuard { held, _session, .. } = self;
        futures_util::FutureExt::map(held.release(), move |answer| {
            // The lease stays ours until the release is answered.
            drop(_session);
            answer
        })
    }
}

impl std::ops::Deref for MutexGuard {
    type Target = Hold;

    /// The grant's token, key and lost signal ([`Hold`]).
    fn deref(&self) -> &Hold {
        &self.held
    }
}
