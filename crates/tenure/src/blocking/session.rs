//! Sessions and the primitives on them, blocking.

use std::time::Duration;

use super::{Guard, Leadership, MutexGuard, Permit, ReadGuard, Rt, WriteGuard};
use crate::{LostReason, Result};

/// A lease, blocking; see [`crate::Session`]. Dropping the last clone, once no guard of it is
/// left, revokes the lease (blocking, bounded); [`Session::close`] reports errors.
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
    pub fn as_async(&self) -> &crate::Session {
        self.get()
    }

    /// The session's id in the store; see [`crate::Session::id`].
    pub fn id(&self) -> u64 {
        self.get().id()
    }

    /// The TTL the lease was granted with.
    pub fn ttl(&self) -> Duration {
        self.get().ttl()
    }

    /// Whether the lease is lost. No I/O.
    pub fn is_lost(&self) -> bool {
        self.get().is_lost()
    }

    /// Blocks until the lease is lost, with the reason.
    pub fn wait_lost(&self) -> LostReason {
        self.rt.block_on(self.get().lost())
    }

    /// A mutex on this session; see [`crate::Session::mutex`].
    pub fn mutex(&self, name: &str) -> Result<Mutex> {
        Ok(Mutex {
            inner: self.get().mutex(name)?,
            rt: self.rt.clone(),
        })
    }

    /// An election on this session; see [`crate::Session::election`].
    pub fn election(&self, name: &str) -> Result<Election> {
        Ok(Election {
            inner: self.get().election(name)?,
            rt: self.rt.clone(),
        })
    }

    /// A semaphore of `permits` on this session; see [`crate::Session::semaphore`].
    pub fn semaphore(&self, name: &str, permits: u32) -> Result<Semaphore> {
        Ok(Semaphore {
            inner: self.get().semaphore(name, permits)?,
            rt: self.rt.clone(),
        })
    }

    /// A read/write lock on this session; see [`crate::Session::rwlock`].
    pub fn rwlock(&self, name: &str) -> Result<RwLock> {
        Ok(RwLock {
            inner: self.get().rwlock(name)?,
            rt: self.rt.clone(),
        })
    }

    /// Puts a key that lives as long as the session; see [`crate::Session::put_ephemeral`].
    pub fn put_ephemeral(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        self.rt.block_on(self.get().put_ephemeral(key, value))
    }

    /// Revokes the lease: everything held under it is released.
    pub fn close(mut self) -> Result<()> {
        match self.inner.take() {
            Some(inner) => self.rt.block_on(inner.close()),
            None => Ok(()),
        }
    }

    /// Stops renewing without revoking, as a crash would; see
    /// [`crate::Session::simulate_crash`] (cargo feature `test-util`).
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
#[derive(Debug, Clone)]
pub struct Mutex {
    inner: crate::Mutex,
    rt: Rt,
}

impl Mutex {
    /// Records `value` in the holder's entry; see [`crate::Mutex::with_value`].
    pub fn with_value(self, value: impl Into<Vec<u8>>) -> Self {
        Mutex {
            inner: self.inner.with_value(value),
            rt: self.rt,
        }
    }

    /// Blocks until this caller holds the lock (FIFO).
    pub fn lock(&self) -> Result<MutexGuard> {
        let guard = self.rt.block_on(self.inner.lock())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Takes the lock only if nobody holds or waits for it.
    pub fn try_lock(&self) -> Result<MutexGuard> {
        let guard = self.rt.block_on(self.inner.try_lock())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Like [`Mutex::lock`], giving up with [`crate::Error::Timeout`] after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard> {
        let guard = self.rt.block_on(self.inner.lock_timeout(timeout))?;
        Ok(Guard::new(guard, self.rt.clone()))
    }
}

/// An election, blocking; see [`crate::Election`].
#[derive(Debug, Clone)]
pub struct Election {
    inner: crate::Election,
    rt: Rt,
}

impl Election {
    /// Blocks until this session leads, proposing `value`.
    pub fn campaign(&self, value: impl Into<Vec<u8>>) -> Result<Leadership> {
        let leadership = self.rt.block_on(self.inner.campaign(value))?;
        Ok(Guard::new(leadership, self.rt.clone()))
    }

    /// The current leader, or `None`.
    pub fn leader(&self) -> Result<Option<crate::Leader>> {
        self.rt.block_on(self.inner.leader())
    }
}

/// A semaphore, blocking; see [`crate::Semaphore`].
#[derive(Debug, Clone)]
pub struct Semaphore {
    inner: crate::Semaphore,
    rt: Rt,
}

impl Semaphore {
    /// Blocks until this caller holds one of the permits (FIFO).
    pub fn acquire(&self) -> Result<Permit> {
        let permit = self.rt.block_on(self.inner.acquire())?;
        Ok(Guard::new(permit, self.rt.clone()))
    }

    /// Takes a permit only if one is free and nobody waits.
    pub fn try_acquire(&self) -> Result<Permit> {
        let permit = self.rt.block_on(self.inner.try_acquire())?;
        Ok(Guard::new(permit, self.rt.clone()))
    }

    /// Like [`Semaphore::acquire`], giving up with [`crate::Error::Timeout`] after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit> {
        let permit = self.rt.block_on(self.inner.acquire_timeout(timeout))?;
        Ok(Guard::new(permit, self.rt.clone()))
    }
}

/// A read/write lock, blocking; see [`crate::RwLock`].
#[derive(Debug, Clone)]
pub struct RwLock {
    inner: crate::RwLock,
    rt: Rt,
}

impl RwLock {
    /// Blocks until this caller reads (shared with other readers, after every writer ahead).
    pub fn read(&self) -> Result<ReadGuard> {
        let guard = self.rt.block_on(self.inner.read())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Blocks until this caller writes (alone).
    pub fn write(&self) -> Result<WriteGuard> {
        let guard = self.rt.block_on(self.inner.write())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Reads only if that is granted at once.
    pub fn try_read(&self) -> Result<ReadGuard> {
        let guard = self.rt.block_on(self.inner.try_read())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Writes only if that is granted at once.
    pub fn try_write(&self) -> Result<WriteGuard> {
        let guard = self.rt.block_on(self.inner.try_write())?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Like [`RwLock::read`], giving up with [`crate::Error::Timeout`] after `timeout`.
    pub fn read_timeout(&self, timeout: Duration) -> Result<ReadGuard> {
        let guard = self.rt.block_on(self.inner.read_timeout(timeout))?;
        Ok(Guard::new(guard, self.rt.clone()))
    }

    /// Like [`RwLock::write`], giving up with [`crate::Error::Timeout`] after `timeout`.
    pub fn write_timeout(&self, timeout: Duration) -> Result<WriteGuard> {
        let guard = self.rt.block_on(self.inner.write_timeout(timeout))?;
        Ok(Guard::new(guard, self.rt.clone()))
    }
}
