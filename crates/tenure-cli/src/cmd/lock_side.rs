//! Which lock `tenure lock` takes: the plain mutex (no flag; `etcdctl lock NAME`, Curator's
//! InterProcessMutex and redis-py's `Lock` take the same one), a side of the read/write
//! lock of the same name (`--shared`, as `flock -s`; `--exclusive`, as `flock -x`), or one
//! permit of the semaphore of that name (`--permits N`, as GNU parallel's `sem -j N`).
//!
//! On etcd, ZooKeeper and `mem://` the three are one lock for Tenure: a mutex entry counts as
//! a writer for readers, and the mutex waits for every entry ahead of it, readers included.
//! `--exclusive` is what Go's RWMutex and Curator's read locks see as a writer too; on Redis
//! the read/write lock is apart from the mutex key, so there `--shared` and `--exclusive`
//! exclude each other but not a plain `tenure lock`.

use std::time::Duration;

use tenure::{FencingToken, LostReason, MutexGuard, Permit, ReadGuard, Session, WriteGuard};

use crate::requeue::Grant;

/// The kind of hold asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Mutex,
    Shared,
    Exclusive,
    /// One of this many permits.
    Permit(u32),
}

impl Side {
    pub fn from_flags(shared: bool, exclusive: bool, permits: Option<u32>) -> Side {
        match (shared, exclusive, permits) {
            (_, _, Some(n)) => Side::Permit(n),
            (true, _, _) => Side::Shared,
            (_, true, _) => Side::Exclusive,
            _ => Side::Mutex,
        }
    }
}

/// A held lock of any side.
#[derive(Debug)]
pub enum Guard {
    Mutex(MutexGuard),
    Read(ReadGuard),
    Write(WriteGuard),
    Permit(Permit),
}

impl Guard {
    pub fn name(&self) -> &str {
        match self {
            Guard::Mutex(g) => g.name(),
            Guard::Read(g) => g.name(),
            Guard::Write(g) => g.name(),
            Guard::Permit(p) => p.name(),
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Guard::Mutex(g) => g.key(),
            Guard::Read(g) => g.key(),
            Guard::Write(g) => g.key(),
            Guard::Permit(p) => p.key(),
        }
    }

    pub fn token(&self) -> FencingToken {
        match self {
            Guard::Mutex(g) => g.token(),
            Guard::Read(g) => g.token(),
            Guard::Write(g) => g.token(),
            Guard::Permit(p) => p.token(),
        }
    }

    pub async fn lost(&self) -> LostReason {
        match self {
            Guard::Mutex(g) => g.lost().await,
            Guard::Read(g) => g.lost().await,
            Guard::Write(g) => g.lost().await,
            Guard::Permit(p) => p.lost().await,
        }
    }

    pub async fn release(self) -> tenure::Result<()> {
        match self {
            Guard::Mutex(g) => g.unlock().await,
            Guard::Read(g) => g.unlock().await,
            Guard::Write(g) => g.unlock().await,
            Guard::Permit(p) => p.release().await,
        }
    }
}

impl Grant for Guard {
    fn is_lost(&self) -> bool {
        match self {
            Guard::Mutex(g) => g.is_lost(),
            Guard::Read(g) => g.is_lost(),
            Guard::Write(g) => g.is_lost(),
            Guard::Permit(p) => p.is_lost(),
        }
    }
}

/// Queues on `session` for the `side` of `name` for at most `left` (`None`: until granted;
/// zero: only if granted at once, as flock(1) treats a zero timeout), holding with `value`
/// (`None`: the library's `HOST:PID`). Dropping it (a signal) withdraws from the queue.
pub async fn wait_for(
    session: Session,
    name: &str,
    side: Side,
    value: Option<&str>,
    left: Option<Duration>,
) -> tenure::Result<Guard> {
    if let Side::Permit(permits) = side {
        let mut semaphore = session.semaphore(name, permits)?;
        if let Some(value) = value {
            semaphore = semaphore.with_value(value);
        }
        return Ok(Guard::Permit(match left {
            Some(left) if left.is_zero() => semaphore.try_acquire().await?,
            Some(left) => semaphore.acquire_timeout(left).await?,
            None => {
                tracing::info!(name, permits, "waiting for a permit");
                semaphore.acquire().await?
            }
        }));
    }
    if side == Side::Mutex {
        let mut mutex = session.mutex(name)?;
        if let Some(value) = value {
            mutex = mutex.with_value(value);
        }
        return Ok(Guard::Mutex(match left {
            Some(left) if left.is_zero() => mutex.try_lock().await?,
            Some(left) => mutex.lock_timeout(left).await?,
            None => {
                tracing::info!(name = mutex.name(), "waiting for the lock");
                mutex.lock().await?
            }
        }));
    }
    let mut lock = session.rwlock(name)?;
    if let Some(value) = value {
        lock = lock.with_value(value);
    }
    let shared = side == Side::Shared;
    Ok(match left {
        Some(left) if left.is_zero() && shared => Guard::Read(lock.try_read().await?),
        Some(left) if left.is_zero() => Guard::Write(lock.try_write().await?),
        Some(left) if shared => Guard::Read(lock.read_timeout(left).await?),
        Some(left) => Guard::Write(lock.write_timeout(left).await?),
        None => {
            tracing::info!(name = lock.name(), shared, "waiting for the lock");
            if shared {
                Guard::Read(lock.read().await?)
            } else {
                Guard::Write(lock.write().await?)
            }
        }
    })
}
