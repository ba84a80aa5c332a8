//! Distributed mutexes: FIFO, fenced, cancellation-safe.

use std::time::Duration;

use crate::backend::Grant;
use crate::held::Held;
use crate::{Error, FencingToken, LostReason, Result, Session, Write};

/// A named lock on a [`Session`]; create it with [`Session::mutex`].
///
/// Waiters are served in arrival order (C3) across processes, and tasks of one process that
/// share a session queue locally first (C9). Every acquiring method is cancellation-safe: a
/// future that is dropped, timed out or aborted withdraws its queue entry (C5).
///
/// On Redis (`redis://`, `redlock://`) waiting is *not* FIFO: waiters wake on a release
/// message and race for the key (as with redis-py and redsync), so arrival order is not kept,
/// though no waiter starves in practice.
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
}

impl Mutex {
    pub(crate) fn new(session: Session, name: &str) -> Self {
        Mutex {
            session,
            name: name.to_string(),
        }
    }

    /// The lock's name (the key prefix in the store).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until this caller holds the lock. Fails with [`Error::SessionLost`] if the
    /// session is lost while waiting.
    pub async fn lock(&self) -> Result<MutexGuard> {
        let permit = self.session.local_queue(&self.name).lock_owned().await;
        self.acquire(true, permit).await
    }

    /// Takes the lock only if nobody holds or waits for it, in one round trip, leaving no
    /// trace in the store when it fails ([`Error::Locked`], naming the holder if known).
    pub async fn try_lock(&self) -> Result<MutexGuard> {
        let Ok(permit) = self.session.local_queue(&self.name).try_lock_owned() else {
            return Err(Error::Locked {
                name: self.name.clone(),
                holder: None,
            });
        };
        self.acquire(false, permit).await
    }

    /// Like [`Mutex::lock`], but gives up with [`Error::Timeout`] after `timeout`, withdrawing
    /// from the queue.
    pub async fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard> {
        tokio::time::timeout(timeout, self.lock())
            .await
            .map_err(|_| Error::Timeout {
                name: self.name.clone(),
                waited: timeout,
            })?
    }

    async fn acquire(
        &self,
        wait: bool,
        permit: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<MutexGuard> {
        let backend = self.session.inner.backend.clone();
        let grant: Grant = backend.acquire(&self.name, b"", wait, permit).await?;
        Ok(MutexGuard {
            held: Held::new(backend, grant),
            name: self.name.clone(),
            _session: self.session.clone(),
        })
    }
}

/// Proof of holding a [`Mutex`]. Dropping it releases the lock in the background; call
/// [`MutexGuard::unlock`] to release it and hear about errors.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct MutexGuard {
    held: Held,
    name: String,
    /// Keeps the lease alive while the guard lives.
    _session: Session,
}

impl MutexGuard {
    /// The fencing token (C2): strictly increasing across successive holders of this name.
    pub fn token(&self) -> FencingToken {
        self.held.token()
    }

    /// The holder key in the store (on etcd `<name>/<lease id hex>`).
    pub fn key(&self) -> &str {
        self.held.key()
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the lock can no longer be trusted. Cheap: no I/O.
    pub fn is_lost(&self) -> bool {
        self.held.lost_reason().is_some()
    }

    /// Why the lock was lost, if it was.
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.held.lost_reason()
    }

    /// Whether the store connection is down while the session may still be alive (ZooKeeper's
    /// Disconnected): the lock is not lost yet, but cannot be confirmed either; it becomes
    /// lost at the local deadline unless the connection comes back first. Cheap: no I/O.
    /// Always `false` on stores without such a state, and once lost.
    pub fn is_suspended(&self) -> bool {
        self.held.is_suspended()
    }

    /// Resolves when the lock is lost (C7): the store reported the lease or the holder entry
    /// gone, or renewals stopped being confirmed and the local safety deadline passed.
    /// Cancellation-safe; race it against the work the lock protects.
    pub async fn lost(&self) -> LostReason {
        self.held.lost().await
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
    pub async fn unlock(self) -> Result<()> {
        self.held.release().await
    }
}
