//! Sessions and the primitives on them, blocking.

use std::time::Duration;

use super::{Guard, Leadership, MutexGuard, Permit, ReadGuard, Rt, WriteGuard};
use crate::{LostReason, Result};

/// A lease, blocking; see [`crate::Session`]. Dropping the last clone, once no guard of it is
/// left, revokes the lease (blocking, bounded); [`Session::close`] reports errors.
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// let session: tenure::blocking::Session = tenure.session()?;
/// let guard = session.mutex("jobs")?.lock()?;
/// guard.unlock()?;
/// session.close()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    inner: Option<crate::Session>,
    rt: Rt,
}

impl Session {
    pub(super) fn new(inner: crate::Session, rt: Rt) -> Self {
        Session {
            inner: Some(inner),
            rt,
        }
    }

    fn get(&self) -> &crate::Session {
        // Only `close` and `drop` take it, and both consume the session.
        self.inner.as_ref().expect("session present until closed")
    }

    /// The async session behind this one.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let async_session: &tenure::Session = session.as_async();
    /// assert_eq!(async_session.id(), session.id());
    /// # Ok(()) }
    /// ```
    pub fn as_async(&self) -> &crate::Session {
        self.get()
    }

    /// The session's id in the store; see [`crate::Session::id`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// assert_ne!(session.id(), tenure.session()?.id());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> u64 {
        self.get().id()
    }

    /// The TTL the lease was granted with.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// assert_eq!(session.ttl(), tenure::DEFAULT_TTL);
    /// # Ok(()) }
    /// ```
    pub fn ttl(&self) -> Duration {
        self.get().ttl()
    }

    /// Whether the lease is lost. No I/O.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// assert!(!session.is_lost());
    /// # Ok(()) }
    /// ```
    pub fn is_lost(&self) -> bool {
        self.get().is_lost()
    }

    /// Blocks until the lease is lost, with the reason.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let watcher = session.clone();
    /// let watching = std::thread::spawn(move || watcher.wait_lost());
    /// session.close()?;
    /// assert_eq!(watching.join().unwrap(), tenure::LostReason::SessionClosed);
    /// # Ok(()) }
    /// ```
    pub fn wait_lost(&self) -> LostReason {
        self.rt.block_on(self.get().lost())
    }

    /// A mutex on this session; see [`crate::Session::mutex`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// session.mutex("jobs/nightly")?.lock()?.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn mutex(&self, name: &str) -> Result<Mutex> {
        Ok(Mutex {
            inner: self.get().mutex(name)?,
            rt: self.rt.clone(),
        })
    }

    /// An election on this session; see [`crate::Session::election`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let leadership = session.election("primary")?.campaign("host-a")?;
    /// leadership.resign()?;
    /// # Ok(()) }
    /// ```
    pub fn election(&self, name: &str) -> Result<Election> {
        Ok(Election {
            inner: self.get().election(name)?,
            rt: self.rt.clone(),
        })
    }

    /// A semaphore of `permits` on this session; see [`crate::Session::semaphore`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let pool = session.semaphore("pools/db", 4)?;
    /// pool.acquire()?.release()?;
    /// # Ok(()) }
    /// ```
    pub fn semaphore(&self, name: &str, permits: u32) -> Result<Semaphore> {
        Ok(Semaphore {
            inner: self.get().semaphore(name, permits)?,
            rt: self.rt.clone(),
        })
    }

    /// A read/write lock on this session; see [`crate::Session::rwlock`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// session.rwlock("config")?.read()?.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn rwlock(&self, name: &str) -> Result<RwLock> {
        Ok(RwLock {
            inner: self.get().rwlock(name)?,
            rt: self.rt.clone(),
        })
    }

    /// Puts a key that lives as long as the session; see [`crate::Session::put_ephemeral`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// session.put_ephemeral("services/api/host-a", "10.0.0.7:8080")?;
    /// assert_eq!(tenure.read("services/api/host-a")?, Some(b"10.0.0.7:8080".to_vec()));
    /// # Ok(()) }
    /// ```
    pub fn put_ephemeral(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        self.rt.block_on(self.get().put_ephemeral(key, value))
    }

    /// Revokes the lease: everything held under it is released.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let guard = session.mutex("jobs")?.lock()?;
    /// session.close()?;
    /// assert!(guard.is_lost());
    /// # Ok(()) }
    /// ```
    pub fn close(mut self) -> Result<()> {
        match self.inner.take() {
            Some(inner) => self.rt.block_on(inner.close()),
            None => Ok(()),
        }
    }

    /// Stops renewing without revoking, as a crash would; see
    /// [`crate::Session::simulate_crash`] (cargo feature `test-util`).
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// let session = tenure::blocking::Tenure::connect_with(
    ///     tenure::Tenure::builder("mem://blocking-crash-doc").ttl(std::time::Duration::from_millis(200)),
    /// )?
    /// .session()?;
    /// let guard = session.mutex("jobs")?.lock()?;
    /// session.simulate_crash();
    /// assert_eq!(guard.lost(), tenure::LostReason::RenewalDeadline);
    /// # Ok(()) }
    /// ```
    #[cfg(any(test, feature = "test-util"))]
    pub fn simulate_crash(mut self) {
        if let Some(inner) = self.inner.take() {
            let _inside = self.rt.0.enter();
            inner.simulate_crash();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        if std::sync::Arc::strong_count(&inner.inner) == 1 {
            self.rt
                .finish("session close", async move { inner.close().await });
            return;
        }
        // Guards and handles still share the lease; the last of them revokes it, in the
        // background, on this runtime.
        let _inside = self.rt.0.enter();
        drop(inner);
    }
}

/// A mutex, blocking; see [`crate::Mutex`].
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let jobs: tenure::blocking::Mutex = session.mutex("jobs")?;
/// jobs.lock()?.unlock()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Mutex {
    inner: crate::Mutex,
    rt: Rt,
}

impl Mutex {
    /// Records `value` in the holder's entry; see [`crate::Mutex::with_value`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let _guard = session.mutex("jobs")?.with_value("cron-host-3").lock()?;
    /// assert_eq!(tenure.status("jobs")?[0].holder.value, b"cron-host-3");
    /// # Ok(()) }
    /// ```
    pub fn with_value(self, value: impl Into<Vec<u8>>) -> Self {
        Mutex {
            inner: self.inner.with_value(value),
            rt: self.rt,
        }
    }

    /// Blocks until this caller holds the lock (FIFO).
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let guard = session.mutex("jobs")?.lock()?;
    /// // ... the work only one process may do ...
    /// guard.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn lock(&self) -> Result<MutexGuard> {
        let guard = self.rt.block_on(self.inner.lock())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Takes the lock only if nobody holds or waits for it.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let _held = session.mutex("jobs")?.lock()?;
    /// let other = tenure.session()?.mutex("jobs")?;
    /// assert!(matches!(other.try_lock(), Err(tenure::Error::Locked { .. })));
    /// # Ok(()) }
    /// ```
    pub fn try_lock(&self) -> Result<MutexGuard> {
        let guard = self.rt.block_on(self.inner.try_lock())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Like [`Mutex::lock`], giving up with [`crate::Error::Timeout`] after `timeout`.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let _held = session.mutex("jobs")?.lock()?;
    /// let other = tenure.session()?.mutex("jobs")?;
    /// let err = other.lock_timeout(std::time::Duration::from_millis(50)).unwrap_err();
    /// assert!(matches!(err, tenure::Error::Timeout { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard> {
        let guard = self.rt.block_on(self.inner.lock_timeout(timeout))?;
        Ok(Guard::new(guard, self.rt.clone()))
    }
}

/// An election, blocking; see [`crate::Election`].
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let election: tenure::blocking::Election = session.election("primary")?;
/// let leadership = election.campaign("host-a")?;
/// leadership.resign()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Election {
    inner: crate::Election,
    rt: Rt,
}

impl Election {
    /// Blocks until this session leads, proposing `value`.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let leadership = session.election("primary")?.campaign("host-a:8080")?;
    /// assert_eq!(leadership.value(), b"host-a:8080");
    /// # Ok(()) }
    /// ```
    pub fn campaign(&self, value: impl Into<Vec<u8>>) -> Result<Leadership> {
        let leadership = self.rt.block_on(self.inner.campaign(value))?;
        Ok(Guard::new(leadership, self.rt.clone()))
    }

    /// The current leader, or `None`.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let election = session.election("primary")?;
    /// assert_eq!(election.leader()?, None);
    /// let _leading = election.campaign("host-a")?;
    /// assert!(election.leader()?.is_some());
    /// # Ok(()) }
    /// ```
    pub fn leader(&self) -> Result<Option<crate::Leader>> {
        self.rt.block_on(self.inner.leader())
    }
}

/// A semaphore, blocking; see [`crate::Semaphore`].
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let pool: tenure::blocking::Semaphore = session.semaphore("pools/db", 2)?;
/// pool.acquire()?.release()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    inner: crate::Semaphore,
    rt: Rt,
}

impl Semaphore {
    /// Blocks until this caller holds one of the permits (FIFO).
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let permit = session.semaphore("pools/db", 2)?.acquire()?;
    /// // ... at most 2 of these run at once ...
    /// permit.release()?;
    /// # Ok(()) }
    /// ```
    pub fn acquire(&self) -> Result<Permit> {
        let permit = self.rt.block_on(self.inner.acquire())?;
        Ok(Guard::new(permit, self.rt.clone()))
    }

    /// Takes a permit only if one is free and nobody waits.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let pool = session.semaphore("pools/db", 1)?;
    /// let _only = pool.try_acquire()?;
    /// assert!(matches!(pool.try_acquire(), Err(tenure::Error::Locked { .. })));
    /// # Ok(()) }
    /// ```
    pub fn try_acquire(&self) -> Result<Permit> {
        let permit = self.rt.block_on(self.inner.try_acquire())?;
        Ok(Guard::new(permit, self.rt.clone()))
    }

    /// Like [`Semaphore::acquire`], giving up with [`crate::Error::Timeout`] after `timeout`.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let pool = session.semaphore("pools/db", 1)?;
    /// let _only = pool.acquire()?;
    /// let err = pool.acquire_timeout(std::time::Duration::from_millis(50)).unwrap_err();
    /// assert!(matches!(err, tenure::Error::Timeout { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit> {
        let permit = self.rt.block_on(self.inner.acquire_timeout(timeout))?;
        Ok(Guard::new(permit, self.rt.clone()))
    }
}

/// A read/write lock, blocking; see [`crate::RwLock`].
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let config: tenure::blocking::RwLock = session.rwlock("config")?;
/// config.write()?.unlock()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RwLock {
    inner: crate::RwLock,
    rt: Rt,
}

impl RwLock {
    /// Blocks until this caller reads (shared with other readers, after every writer ahead).
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let reading = session.rwlock("config")?.read()?;
    /// let other_reader = tenure.session()?.rwlock("config")?.read()?; // readers share
    /// reading.unlock()?;
    /// other_reader.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn read(&self) -> Result<ReadGuard> {
        let guard = self.rt.block_on(self.inner.read())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Blocks until this caller writes (alone).
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let writing = session.rwlock("config")?.write()?;
    /// writing.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn write(&self) -> Result<WriteGuard> {
        let guard = self.rt.block_on(self.inner.write())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Reads only if that is granted at once.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let _writing = session.rwlock("config")?.write()?;
    /// let reader = tenure.session()?.rwlock("config")?;
    /// assert!(matches!(reader.try_read(), Err(tenure::Error::Locked { .. })));
    /// # Ok(()) }
    /// ```
    pub fn try_read(&self) -> Result<ReadGuard> {
        let guard = self.rt.block_on(self.inner.try_read())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Writes only if that is granted at once.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let writing = session.rwlock("config")?.try_write()?; // nobody held it
    /// writing.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn try_write(&self) -> Result<WriteGuard> {
        let guard = self.rt.block_on(self.inner.try_write())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Like [`RwLock::read`], giving up with [`crate::Error::Timeout`] after `timeout`.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let _writing = session.rwlock("config")?.write()?;
    /// let reader = tenure.session()?.rwlock("config")?;
    /// let err = reader.read_timeout(std::time::Duration::from_millis(50)).unwrap_err();
    /// assert!(matches!(err, tenure::Error::Timeout { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn read_timeout(&self, timeout: Duration) -> Result<ReadGuard> {
        let guard = self.rt.block_on(self.inner.read_timeout(timeout))?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Like [`RwLock::write`], giving up with [`crate::Error::Timeout`] after `timeout`.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let _reading = session.rwlock("config")?.read()?;
    /// let writer = tenure.session()?.rwlock("config")?;
    /// let err = writer.write_timeout(std::time::Duration::from_millis(50)).unwrap_err();
    /// assert!(matches!(err, tenure::Error::Timeout { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn write_timeout(&self, timeout: Duration) -> Result<WriteGuard> {
        let guard = self.rt.block_on(self.inner.write_timeout(timeout))?;
        Ok(Guard::new(guard, self.rt.clone()))
    }
}
