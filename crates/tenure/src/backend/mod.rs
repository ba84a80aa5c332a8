//! The seam between the public API and the stores.
//!
//! [`Backend`] opens sessions; a [`SessionBackend`] acquires, releases and guards named grants.
//! Stores with ordered, watchable keys (etcd, embedded, ZooKeeper) implement the smaller
//! [`queue::QueueStore`] and get a [`SessionBackend`] from the shared fair-queue recipe.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OwnedMutexGuard;
use tokio::task::AbortHandle;

use crate::liveness::Liveness;
use crate::{Result, Write};

#[cfg(feature = "embedded")]
pub(crate) mod embedded;
#[cfg(feature = "etcd")]
pub(crate) mod etcd;
#[cfg(all(test, feature = "embedded"))]
pub(crate) mod faulty;
pub(crate) mod heads;
pub(crate) mod lease;
pub(crate) mod observe;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg_attr(
    not(any(feature = "etcd", feature = "embedded", feature = "zookeeper")),
    allow(dead_code)
)]
pub(crate) mod queue;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg_attr(
    not(any(feature = "etcd", feature = "embedded", feature = "zookeeper")),
    allow(dead_code)
)]
pub(crate) mod semaphore;
#[cfg(feature = "zookeeper")]
pub(crate) mod zookeeper;

/// Runs one store request, bounded by `timeout`: a request that does not answer in time is a
/// [`crate::Error::Transient`] fault (C11); a store error goes through the backend's `map_err`.
#[cfg(any(feature = "etcd", feature = "zookeeper"))]
pub(crate) async fn call_with<T, E>(
    op: &'static str,
    timeout: Duration,
    fut: impl std::future::Future<Output = std::result::Result<T, E>>,
    map_err: impl FnOnce(&'static str, E) -> crate::Error,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(|e| map_err(op, e)),
        Err(_) => Err(crate::Error::Transient {
            op,
            message: format!("no answer within {timeout:?}"),
            source: None,
        }),
    }
}

/// A store, as reached through one URL.
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    /// Short backend name for messages: "etcd", "zk", "redis", "redlock", "postgres" or "mem".
    fn kind(&self) -> &'static str;
    /// Shortest and longest session TTL the store honours.
    fn ttl_range(&self) -> (Duration, Duration);
    /// Whether the store can run elections soundly; an error saying why not (Redis).
    fn elections(&self) -> Result<()> {
        Ok(())
    }
    /// Grants a lease of `ttl` and keeps it alive until closed or lost.
    async fn open_session(&self, ttl: Duration) -> Result<Arc<dyn SessionBackend>>;
    /// Plain (linearizable) read of one key.
    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Unguarded atomic write (the store's own floor in benchmarks).
    async fn write(&self, ops: &[Write]) -> Result<()>;
    /// The entries under `prefix` now.
    async fn entries(&self, prefix: &str) -> Result<Vec<observe::Kv>>;
    /// Every entry of every queue whose key starts with `prefix`, at any depth (for
    /// `Tenure::status`). Key-range stores list that with [`Backend::entries`]; a tree of
    /// nodes (ZooKeeper) lists one queue per directory there, and walks the tree here.
    async fn entries_under(&self, prefix: &str) -> Result<Vec<observe::Kv>> {
        self.entries(prefix).await
    }
    /// Whether `kv`, an entry that [`Backend::entries_under`] listed, is a key put with
    /// `Session::put_ephemeral` rather than a queue entry of a lock, election or semaphore.
    /// Stores without ephemeral keys keep this default.
    fn is_registered(&self, _kv: &observe::Kv) -> bool {
        false
    }
    /// Whether names are paths from a root, `a` and `/a` naming one lock (ZooKeeper), so that
    /// the store cannot say which spelling its user gave.
    fn rooted_names(&self) -> bool {
        false
    }
    /// The remaining TTL of a lease, `None` if it is gone or the store cannot say.
    async fn lease_ttl(&self, _lease: u64) -> Result<Option<Duration>> {
        Ok(None)
    }
    /// The entries under `prefix` now, and every change after, in revision order.
    async fn watch_prefix(&self, prefix: &str) -> Result<observe::PrefixWatch>;
    /// Like [`Backend::watch_prefix`], but for every key under `prefix`, not only queue
    /// entries: stores that tell the two apart (ZooKeeper's sequential recipe nodes) override it.
    async fn watch_keys(&self, prefix: &str) -> Result<observe::PrefixWatch> {
        self.watch_prefix(prefix).await
    }
}

/// One lease and what is held under it.
#[async_trait]
pub(crate) trait SessionBackend: Send + Sync + 'static {
    /// The session's id in the store: the etcd lease id; the ZooKeeper session id; on Redis
    /// the random 64-bit id of the heartbeat key `tenure:session:<id hex>`; on PostgreSQL the
    /// server process id of the session's control connection; the embedded store's lease number.
    fn id(&self) -> u64;
    /// Fires when the lease is lost.
    fn liveness(&self) -> &Liveness;
    /// The TTL the store granted, where it may differ from the one asked for (ZooKeeper
    /// negotiates the session timeout within the server's bounds); `None`: as asked.
    fn granted_ttl(&self) -> Option<Duration> {
        None
    }
    /// Enters the queue of `name` and waits to be first (`wait`), or takes it only if free.
    async fn acquire(
        &self,
        name: &str,
        value: &[u8],
        wait: bool,
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant>;
    /// Enters the queue of election `name` as a candidate proposing `value`, and waits to
    /// lead. Stores whose layout tells candidates from lock waiters (ZooKeeper: Curator's
    /// `-latch-` versus `-lock-` nodes) override it; the others queue candidates like waiters.
    async fn campaign(
        &self,
        name: &str,
        value: &[u8],
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        self.acquire(name, value, true, permit).await
    }
    /// Takes one of `permits` permits of semaphore `name`, waiting in line for one (`wait`) or
    /// only if one is free and nobody waits. `value` is recorded in the permit's entry;
    /// `local` is this session's in-process queue for the semaphore's internal lock
    /// (`<name>/locks`), taken while the acquisition uses that lock. The grant is released
    /// with [`SessionBackend::release`]. Stores without semaphores keep this default.
    async fn acquire_permit(
        &self,
        _name: &str,
        _permits: u32,
        _value: &[u8],
        _wait: bool,
        _local: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Grant> {
        Err(semaphore::unsupported())
    }
    /// Enters the queue of read/write lock `name` as a reader or a writer and waits until
    /// granted (`wait`), or takes it only if it is granted at once. Stores without read/write
    /// locks keep this default, which says so.
    async fn acquire_rw(
        &self,
        name: &str,
        mode: RwMode,
        value: &[u8],
        wait: bool,
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        let _ = (name, mode, value, wait, permit);
        Err(rw_unsupported())
    }
    /// Turns a write grant into a read grant of the same entry, with no moment unheld and no
    /// writer let in (see `rwlock.rs`). `Ok(false)`: the grant no longer holds.
    async fn downgrade(&self, grant: &Grant) -> Result<bool> {
        let _ = grant;
        Err(rw_unsupported())
    }
    /// Deletes the grant's entry if it is still this grant's (C8).
    async fn release(&self, grant: &Grant) -> Result<()>;
    /// Applies `ops` atomically, only while `grant` still holds (C10). `Ok(false)`: not held.
    async fn guarded_write(&self, grant: &Grant, ops: &[Write]) -> Result<bool>;
    /// Replaces the grant's own value, keeping it under the lease, only while it holds.
    async fn proclaim(&self, grant: &Grant, value: &[u8]) -> Result<bool>;
    /// Puts `key` = `value` under the lease, so that it lives exactly as long as the session:
    /// creates it, or replaces the value of this session's own key. `Ok(false)`: the key
    /// exists and is not this session's; nothing was written.
    async fn put_ephemeral(&self, key: &str, value: &[u8]) -> Result<bool>;
    /// Revokes the lease; everything held under it is released.
    async fn close(&self) -> Result<()>;
    /// Stops renewing without revoking, as a crashed process would.
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    fn abandon(&self);
    /// The fair-queue store behind this session, for store-level tests of C13; `None` for
    /// stores that do not use the shared recipe (Redis).
    #[cfg(test)]
    fn queue_store(&self) -> Option<&dyn queue::QueueStore> {
        None
    }
}

impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.kind())
    }
}

impl std::fmt::Debug for dyn SessionBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session({:x})", self.id())
    }
}

/// Which side of a read/write lock an acquisition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RwMode {
    /// Shared with other readers; excluded by writers.
    Read,
    /// Excludes everyone.
    Write,
}

/// The answer of a store that has no read/write locks.
pub(crate) fn rw_unsupported() -> crate::Error {
    crate::Error::Unsupported {
        backend: "this backend",
        what: "read/write locks",
        advice: "use a mutex, or a backend with read/write locks (etcd, ZooKeeper, Redis, mem)",
    }
}

/// A held entry, as the store knows it.
#[derive(Debug)]
pub(crate) struct Grant {
    /// The holder key.
    pub key: String,
    /// Fencing token (C2).
    pub token: u64,
    /// Fires when the entry or its session is lost.
    pub liveness: Liveness,
    /// Stops the entry watch when the grant ends.
    pub watch: Option<AbortHandle>,
    /// In-process exclusion (C9): held until the entry is gone from the store.
    pub _permit: Option<OwnedMutexGuard<()>>,
    /// The queue prefix and ticket of an acquisition that may still have an enqueue attempt
    /// in flight: release forbids that ticket before deleting the entry, or the late attempt
    /// could land after the delete and leave an entry nobody holds (C13).
    pub in_flight: Option<(String, queue::Ticket)>,
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(w) = self.watch.take() {
            w.abort();
        }
    }
}
