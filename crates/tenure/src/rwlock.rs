//! Distributed read/write locks: many readers or one writer, in arrival order, fenced,
//! cancellation-safe, downgradable.

use std::time::Duration;

use crate::backend::RwMode;
use crate::hold::Hold;
use crate::metrics::{Meter, Primitive};
use crate::waiting::{self, Stage};
use crate::{Error, Result, Session, Write};

/// A named read/write lock on a [`Session`]; create it with [`Session::rwlock`].
///
/// Readers share the lock; a writer excludes everyone. Waiters are served in arrival order
/// (docs/contract.md, Read/write locks): a reader that arrives behind a waiting writer waits
/// behind it, so a steady stream of readers never starves a writer, and readers that arrive
/// together share. Each waiter watches only the entry that keeps it out (a writer: the entry
/// just ahead; a reader: the newest writer ahead), so a release wakes only those it unblocks.
/// Every grant carries a fencing token (C2) that is larger than every earlier grant's that
/// excludes it, readers and writers alike.
///
/// One session takes one hold of a name at a time: tasks of one process that share a session
/// queue locally first (C9), readers too — give each concurrent reader a session of its own.
/// A [`Mutex`](crate::Mutex) of the same name on the same store is the same lock for Tenure:
/// our readers take a mutex holder for a writer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// let tenure = tenure::Tenure::connect("mem://rwlock-doc").await?;
/// let (a, b) = (tenure.session().await?, tenure.session().await?);
/// let r1 = a.rwlock("config")?.read().await?;
/// let r2 = b.rwlock("config")?.read().await?; // readers share
/// let writer = tenure.session().await?;
/// assert!(matches!(writer.rwlock("config")?.try_write().await, Err(tenure::Error::Locked { .. })));
/// let last_reader = r2.token();
/// r1.unlock().await?;
/// r2.unlock().await?;
/// let w = writer.rwlock("config")?.write().await?;
/// assert!(w.token() > last_reader); // fencing spans readers and writers
/// w.unlock().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RwLock {
    session: Session,
    name: String,
    /// Recorded in the holder's entry, for operators (`Tenure::status`).
    value: Vec<u8>,
}

impl RwLock {
    pub(crate) fn new(session: Session, name: &str) -> Self {
        RwLock {
            session,
            name: name.to_string(),
            value: crate::host_pid().into_bytes(),
        }
    }

    /// This lock, recording `value` in its holders' entries instead of the default
    /// [`crate::host_pid`], as [`Mutex::with_value`](crate::Mutex::with_value) does.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let config = tenure.session().await?.rwlock("config")?.with_value("loader-2");
    /// let _w = config.write().await?;
    /// assert_eq!(tenure.status("config").await?[0].holder.value, b"loader-2");
    /// # Ok(()) }
    /// ```
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = value.into();
        self
    }

    /// The lock's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// assert_eq!(tenure.session().await?.rwlock("config")?.name(), "config");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until this caller holds the lock shared with other readers. Fails with
    /// [`Error::SessionLost`] if the session is lost while waiting.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let config = tenure.session().await?.rwlock("config")?;
    /// let reading = config.read().await?;
    /// // ... read the configuration; writers wait, other readers do not ...
    /// reading.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub async fn read(&self) -> Result<ReadGuard> {
        let held = self.wait(RwMode::Read).await?;
        Ok(ReadGuard {
            held,
            name: self.name.clone(),
            _session: self.session.clone(),
        })
    }

    /// Waits until this caller holds the lock alone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let config = tenure.session().await?.rwlock("config")?;
    /// let writing = config.write().await?;
    /// // ... rewrite the configuration; nobody reads it half-written ...
    /// writing.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self) -> Result<WriteGuard> {
        let held = self.wait(RwMode::Write).await?;
        Ok(WriteGuard {
            held,
            name: self.name.clone(),
            _session: self.session.clone(),
        })
    }

    /// Takes a read hold only if it is granted at once: no writer holds or waits (a reader
    /// never jumps a waiting writer). Fails with [`Error::Locked`], naming the writer in the
    /// way, and leaves nothing in the store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let _writing = tenure.session().await?.rwlock("config")?.write().await?;
    /// let reader = tenure.session().await?.rwlock("config")?;
    /// assert!(matches!(reader.try_read().await, Err(tenure::Error::Locked { .. })));
    /// # Ok(()) }
    /// ```
    pub async fn try_read(&self) -> Result<ReadGuard> {
        let held = self.try_take(RwMode::Read).await?;
        Ok(ReadGuard {
            held,
            name: self.name.clone(),
            _session: self.session.clone(),
        })
    }

    /// Takes the write hold only if nobody holds or waits for the lock; else
    /// [`Error::Locked`], leaving nothing in the store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let config = tenure.session().await?.rwlock("config")?;
    /// let writing = config.try_write().await?; // nobody held it
    /// writing.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub async fn try_write(&self) -> Result<WriteGuard> {
        let held = self.try_take(RwMode::Write).await?;
        Ok(WriteGuard {
            held,
            name: self.name.clone(),
            _session: self.session.clone(),
        })
    }

    /// Like [`RwLock::read`], but gives up with [`Error::Timeout`] after `timeout`,
    /// withdrawing from the queue; the error says what the wait was doing ([`Waiting`](crate::Waiting)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let _writing = tenure.session().await?.rwlock("config")?.write().await?;
    /// let reader = tenure.session().await?.rwlock("config")?;
    /// let err = reader.read_timeout(Duration::from_millis(50)).await.unwrap_err();
    /// assert!(matches!(err, tenure::Error::Timeout { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    pub async fn read_timeout(&self, timeout: Duration) -> Result<ReadGuard> {
        let held = self.bounded(timeout, RwMode::Read).await?;
        Ok(ReadGuard {
            held,
            name: self.name.clone(),
            _session: self.session.clone(),
        })
    }

    /// Like [`RwLock::write`], but gives up with [`Error::Timeout`] after `timeout`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let _reading = tenure.session().await?.rwlock("config")?.read().await?;
    /// let writer = tenure.session().await?.rwlock("config")?;
    /// let err = writer.write_timeout(Duration::from_millis(50)).await.unwrap_err();
    /// assert!(matches!(err, tenure::Error::Timeout { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    pub async fn write_timeout(&self, timeout: Duration) -> Result<WriteGuard> {
        let held = self.bounded(timeout, RwMode::Write).await?;
        Ok(WriteGuard {
            held,
            name: self.name.clone(),
            _session: self.session.clone(),
        })
    }

    async fn bounded(&self, timeout: Duration, mode: RwMode) -> Result<Hold> {
        let meter = self.meter(mode);
        meter
            .acquire_within(&self.name, timeout, self.queued(mode, &meter))
            .await
    }

    fn meter(&self, mode: RwMode) -> Meter {
        let primitive = match mode {
            RwMode::Read => Primitive::RwLockRead,
            RwMode::Write => Primitive::RwLockWrite,
        };
        Meter::new(&self.session, primitive, &self.name)
    }

    async fn wait(&self, mode: RwMode) -> Result<Hold> {
        let meter = self.meter(mode);
        meter
            .acquire(&Stage::new(), true, self.queued(mode, &meter))
            .await
    }

    /// Queues in process, then in the store, until granted.
    async fn queued(&self, mode: RwMode, meter: &Meter) -> Result<Hold> {
        let permit = waiting::queue_locally(
            self.session.local_queue(&self.name),
            self.session.inner.backend.liveness(),
        )
        .await?;
        self.acquire(mode, true, permit, meter).await
    }

    async fn try_take(&self, mode: RwMode) -> Result<Hold> {
        let meter = self.meter(mode);
        let attempt = async {
            let Ok(permit) = self.session.local_queue(&self.name).try_lock_owned() else {
                return Err(Error::Locked {
                    name: self.name.clone(),
                    holder: None,
                });
            };
            self.acquire(mode, false, permit, &meter).await
        };
        meter.acquire(&Stage::new(), false, attempt).await
    }

    async fn acquire(
        &self,
        mode: RwMode,
        wait: bool,
        permit: tokio::sync::OwnedMutexGuard<()>,
        meter: &Meter,
    ) -> Result<Hold> {
        let backend = self.session.inner.backend.clone();
        let grant = backend
            .acquire_rw(&self.name, mode, &self.value, wait, permit)
            .await?;
        Ok(Hold::new(backend, grant).metered(meter))
    }
}

/// Proof of holding a [`RwLock`] shared. Dropping it releases the hold in the background;
/// call [`ReadGuard::unlock`] to release it and hear about errors.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// let reading: tenure::ReadGuard = tenure.session().await?.rwlock("config")?.read().await?;
/// println!("reading {} as {} (token {})", reading.name(), reading.key(), reading.token());
/// reading.unlock().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct ReadGuard {
    held: Hold,
    name: String,
    /// Keeps the lease alive while the guard lives.
    _session: Session,
}

impl ReadGuard {
    /// The lock's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// assert_eq!(tenure.session().await?.rwlock("config")?.read().await?.name(), "config");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Applies `ops` atomically, only if this read hold still holds (C10); otherwise nothing
    /// is written and [`Error::NotHeld`] is returned. Other readers may write at the same
    /// time: exclusion is the write side's.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// use tenure::Write;
    /// let reading = tenure.session().await?.rwlock("config")?.read().await?;
    /// // A reader may record what it saw, e.g. its progress, while readers are let in.
    /// reading.write([Write::put("config-readers/worker-7", "v41")]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, ops: impl IntoIterator<Item = Write>) -> Result<()> {
        let ops: Vec<Write> = ops.into_iter().collect();
        self.held.write(&ops).await
    }

    /// Releases the read hold, only if this guard still owns it (C8); [`Error::LockLost`] if
    /// it was lost before.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let reading = tenure.session().await?.rwlock("config")?.read().await?;
    /// reading.unlock().await?;
    /// tenure.session().await?.rwlock("config")?.try_write().await?; // free for a writer
    /// # Ok(()) }
    /// ```
    pub async fn unlock(self) -> Result<()> {
        self.held.release().await
    }
}

/// Proof of holding a [`RwLock`] alone. Dropping it releases the lock in the background;
/// call [`WriteGuard::unlock`] to release it and hear about errors.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// let writing: tenure::WriteGuard = tenure.session().await?.rwlock("config")?.write().await?;
/// println!("writing {} as {} (token {})", writing.name(), writing.key(), writing.token());
/// writing.unlock().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct WriteGuard {
    held: Hold,
    name: String,
    /// Keeps the lease alive while the guard lives.
    _session: Session,
}

impl WriteGuard {
    /// The lock's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// assert_eq!(tenure.session().await?.rwlock("config")?.write().await?.name(), "config");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Applies `ops` atomically, only if this guard still holds the lock (C10): once anyone
    /// has been granted the lock after this writer, nothing is written and
    /// [`Error::NotHeld`] is returned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// use tenure::Write;
    /// let writing = tenure.session().await?.rwlock("config")?.write().await?;
    /// writing.write([Write::put("config-v", "42"), Write::delete("config-draft")]).await?;
    /// assert_eq!(tenure.read("config-v").await?, Some(b"42".to_vec()));
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, ops: impl IntoIterator<Item = Write>) -> Result<()> {
        let ops: Vec<Write> = ops.into_iter().collect();
        self.held.write(&ops).await
    }

    /// Turns this write hold into a read hold, with no moment unheld and no writer let in
    /// between: the entry stays where it is in the queue (so every writer queued behind it
    /// keeps waiting) and is marked downgraded in the store, which lets the readers queued
    /// before the next writer in. The read hold keeps this grant's key and token.
    ///
    /// If the store cannot be told (the grant was lost: [`Error::LockLost`]; or a fault), the
    /// hold is released in the background and the error returned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// use tenure::Write;
    /// let tenure = tenure::Tenure::connect("mem://downgrade-doc").await?;
    /// let w = tenure.session().await?.rwlock("cache")?.write().await?;
    /// w.write([Write::put("cache-value", "fresh")]).await?;
    /// let r = w.downgrade().await?; // still held: no writer got in
    /// let r2 = tenure.session().await?.rwlock("cache")?.try_read().await?; // readers join
    /// let writer = tenure.session().await?;
    /// assert!(matches!(writer.rwlock("cache")?.try_write().await, Err(tenure::Error::Locked { .. })));
    /// r.unlock().await?;
    /// r2.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub async fn downgrade(self) -> Result<ReadGuard> {
        self.held.downgrade().await?;
        Ok(ReadGuard {
            held: self.held,
            name: self.name,
            _session: self._session,
        })
    }

    /// Releases the lock, only if this guard still owns it (C8); [`Error::LockLost`] if it
    /// was lost before.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let writing = tenure.session().await?.rwlock("config")?.write().await?;
    /// writing.unlock().await?;
    /// tenure.session().await?.rwlock("config")?.try_read().await?; // readers may come in
    /// # Ok(()) }
    /// ```
    pub async fn unlock(self) -> Result<()> {
        self.held.release().await
    }
}

impl std::ops::Deref for ReadGuard {
    type Target = Hold;

    /// The grant's token, key and lost signal ([`Hold`]).
    fn deref(&self) -> &Hold {
        &self.held
    }
}

impl std::ops::Deref for WriteGuard {
    type Target = Hold;

    /// The grant's token, key and lost signal ([`Hold`]).
    fn deref(&self) -> &Hold {
        &self.held
    }
}
