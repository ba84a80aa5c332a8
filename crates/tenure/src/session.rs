//! Sessions: one lease, kept alive in the background, under which grants are held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use crate::backend::{Backend, SessionBackend};
use crate::{Election, LostReason, Mutex, Result, RwLock, Semaphore, SessionEvents};

/// A lease in the store, renewed every third of its TTL until closed, dropped or lost.
///
/// Everything acquired through a session dies with it: if the process dies or is cut off, the
/// store expires the lease after the TTL and the next waiter proceeds (C6). Cloning is cheap
/// and shares the lease. Dropping the last clone revokes the lease in the background; call
/// [`Session::close`] to revoke it and hear about errors.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// let tenure = tenure::Tenure::connect("mem://").await?;
/// let session = tenure.session().await?;
/// assert!(!session.is_lost());
/// session.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    pub(crate) inner: Arc<SessionInner>,
}

#[derive(Debug)]
pub(crate) struct SessionInner {
    pub(crate) backend: Arc<dyn SessionBackend>,
    /// The store, for reads that need no session (leader, observe).
    pub(crate) store: Arc<dyn Backend>,
    ttl: Duration,
    /// In-process queues in front of the store, one per name (C9).
    local: StdMutex<LocalQueues>,
    /// Set once revoked (or, in tests, abandoned as if crashed) so drop does nothing.
    done: AtomicBool,
    /// The session's metrics, and the labels of everything acquired under it.
    pub(crate) metrics: crate::metrics::SessionMeter,
}

impl Session {
    pub(crate) fn new(
        backend: Arc<dyn SessionBackend>,
        store: Arc<dyn Backend>,
        ttl: Duration,
        metrics: crate::metrics::Options,
    ) -> Self {
        let metrics = crate::metrics::SessionMeter::open(store.kind(), metrics, backend.liveness());
        Session {
            inner: Arc::new(SessionInner {
                backend,
                store,
                ttl,
                local: StdMutex::default(),
                done: AtomicBool::new(false),
                metrics,
            }),
        }
    }

    /// The session's id in the store: on etcd the lease id, whose lowercase hex ends every key
    /// of this session; on ZooKeeper the session id; on Redis the random id of the session's
    /// heartbeat key `tenure:session:<id hex>`; on PostgreSQL the server process id
    /// (`pg_backend_pid()`) of the session's own connection; on `mem://` the lease number.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let (a, b) = (tenure.session().await?, tenure.session().await?);
    /// assert_ne!(a.id(), b.id());
    /// println!("session {:x}", a.id()); // on etcd: `etcdctl lease timetolive <hex>`
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> u64 {
        self.inner.backend.id()
    }

    /// The TTL the lease was granted with (on ZooKeeper, the session timeout the server
    /// negotiated, which its `minSessionTimeout`/`maxSessionTimeout` may have changed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session_with_ttl(std::time::Duration::from_secs(30)).await?;
    /// assert_eq!(session.ttl(), std::time::Duration::from_secs(30));
    /// # Ok(()) }
    /// ```
    pub fn ttl(&self) -> Duration {
        self.inner.backend.granted_ttl().unwrap_or(self.inner.ttl)
    }

    /// Whether the lease is gone or can no longer be trusted. Cheap: no I/O.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let probe = session.clone(); // clones share the lease
    /// assert!(!probe.is_lost());
    /// session.close().await?;
    /// assert!(probe.is_lost());
    /// # Ok(()) }
    /// ```
    pub fn is_lost(&self) -> bool {
        self.inner.backend.liveness().is_lost()
    }

    /// Resolves when the lease is lost, with the reason. Cancellation-safe.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// tokio::select! {
    ///     reason = session.lost() => eprintln!("session lost ({reason}): stop the work"),
    ///     _ = tokio::time::sleep(Duration::from_millis(10)) => println!("work done"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) -> LostReason {
        self.inner.backend.liveness().lost().await
    }

    /// The session's connection states as a stream, like Curator's connection-state listener:
    /// first [`crate::SessionEvent::Connected`] (or `Suspended`), then every change — `Suspended` when
    /// the store stops answering, `Resumed` when it answers again in time — and finally
    /// [`crate::SessionEvent::Lost`]. The stream does not keep the session open.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// use tenure::SessionEvent;
    /// let tenure = tenure::Tenure::connect("mem://events-doc").await?;
    /// let session = tenure.session().await?;
    /// let mut events = session.events();
    /// assert_eq!(events.next().await, Some(SessionEvent::Connected));
    /// session.close().await?;
    /// assert!(matches!(events.next().await, Some(SessionEvent::Lost(_))));
    /// assert_eq!(events.next().await, None);
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> SessionEvents {
        SessionEvents::new(self.inner.backend.liveness().clone())
    }

    /// A mutex named `name` on this session. The name is the key prefix: on etcd, `jobs`
    /// meets `etcdctl lock jobs`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let guard = session.mutex("jobs/nightly")?.lock().await?;
    /// guard.unlock().await?;
    /// assert!(matches!(session.mutex(""), Err(tenure::Error::InvalidName { .. })));
    /// # Ok(()) }
    /// ```
    pub fn mutex(&self, name: &str) -> Result<Mutex> {
        crate::name::validate(name)?;
        Ok(Mutex::new(self.clone(), name))
    }

    /// A read/write lock named `name` on this session: many readers or one writer, in arrival
    /// order. On etcd, `jobs` meets Go's `recipe.NewRWMutex(session, "jobs")`; on ZooKeeper,
    /// Curator's `InterProcessReadWriteLock` on `/jobs`. See [`RwLock`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let reading = tenure.session().await?.rwlock("config")?.read().await?;
    /// let writer = tenure.session().await?.rwlock("config")?;
    /// assert!(matches!(writer.try_write().await, Err(tenure::Error::Locked { .. })));
    /// reading.unlock().await?;
    /// writer.write().await?.unlock().await?;
    /// # Ok(()) }
    /// ```
    pub fn rwlock(&self, name: &str) -> Result<RwLock> {
        crate::name::validate(name)?;
        Ok(RwLock::new(self.clone(), name))
    }

    /// An election named `name` on this session. On etcd, `leader` meets
    /// `etcdctl elect leader`.
    ///
    /// Fails with [`crate::Error::Unsupported`] on stores that cannot hold elections (Redis,
    /// PostgreSQL).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let leadership = tenure.session().await?.election("scheduler")?.campaign("host-a").await?;
    /// assert_eq!(tenure.leader("scheduler").await?.map(|l| l.value), Some(b"host-a".to_vec()));
    /// leadership.resign().await?;
    /// # Ok(()) }
    /// ```
    pub fn election(&self, name: &str) -> Result<Election> {
        crate::name::validate(name)?;
        self.inner.store.elections()?;
        Ok(Election::new(self.clone(), name))
    }

    /// A counting semaphore named `name` with `permits` permits on this session (at least 1,
    /// at most [`crate::MAX_PERMITS`], else [`crate::Error::InvalidPermits`]). Every client of
    /// the name must use the same count. On ZooKeeper, `pools/db` meets Curator's
    /// `InterProcessSemaphoreV2` at `/pools/db`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let pool = session.semaphore("pools/db", 2)?;
    /// let (_a, _b) = (pool.acquire().await?, pool.acquire().await?);
    /// assert!(pool.try_acquire().await.is_err()); // both permits taken
    /// assert!(matches!(session.semaphore("pools/db", 0), Err(tenure::Error::InvalidPermits { .. })));
    /// # Ok(()) }
    /// ```
    pub fn semaphore(&self, name: &str, permits: u32) -> Result<Semaphore> {
        crate::name::validate(name)?;
        Semaphore::new(self.clone(), name, permits)
    }

    /// The in-process queue for `name`.
    pub(crate) fn local_queue(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut local = self.inner.local.lock().unwrap_or_else(|p| p.into_inner());
        local.get(name)
    }

    /// Revokes the lease: every grant under it is released and reports itself lost.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let guard = session.mutex("jobs")?.lock().await?;
    /// session.close().await?;
    /// assert_eq!(guard.lost().await, tenure::LostReason::SessionClosed);
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<()> {
        self.inner.done.store(true, Ordering::SeqCst);
        self.inner.metrics.close();
        self.inner.backend.close().await
    }

    /// Stops renewing the lease without revoking it, exactly as if this process had crashed:
    /// the store releases everything held under it when the TTL runs out, and the holder's
    /// `lost()` fires at the local deadline. For demos and tests of crash handling: cargo
    /// feature `test-util`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session_with_ttl(Duration::from_millis(200)).await?;
    /// let guard = session.mutex("jobs")?.lock().await?;
    /// session.simulate_crash();
    /// assert_eq!(guard.lost().await, tenure::LostReason::RenewalDeadline);
    /// // The store expires the lease after the TTL: another session gets the lock.
    /// let next = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// assert!(next.token() > guard.token());
    /// # Ok(()) }
    /// ```
    #[cfg(any(test, feature = "test-util"))]
    pub fn simulate_crash(self) {
        self.inner.done.store(true, Ordering::SeqCst);
        self.inner.backend.abandon();
    }
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        if self.done.load(Ordering::SeqCst) {
            return;
        }
        let backend = self.backend.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = backend.close().await {
                    tracing::debug!(error = %e, "background session close");
                }
            });
        }
    }
}

/// Validates a TTL against a backend's range (C12).
pub(crate) fn check_ttl(ttl: Duration, (min, max): (Duration, Duration)) -> Result<()> {
    if ttl < min || ttl > max {
        return Err(crate::Error::InvalidDuration {
            what: "session TTL",
            value: ttl,
            min,
            max,
        });
    }
    Ok(())
}

/// Default session TTL: 10 s. Short enough that a crashed holder blocks others for seconds,
/// not a minute (Go's default is 60 s); long enough to ride out an etcd leader election
/// (about 1 s by default) and two missed renewals, since renewals go out every TTL/3.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// assert_eq!(tenure.session().await?.ttl(), tenure::DEFAULT_TTL); // unless Builder::ttl says otherwise
/// # Ok(()) }
/// ```
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// A session's in-process queues by name (C9). Queues nobody uses any more are swept once the
/// map has doubled since the last sweep, so that taking one costs the same with one name or
/// with thousands (many per-entity locks on one session).
#[derive(Debug, Default)]
struct LocalQueues {
    by_name: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    sweep_at: usize,
}

impl LocalQueues {
    fn get(&mut self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        if let Some(queue) = self.by_name.get(name) {
            return queue.clone();
        }
        if self.by_name.len() >= self.sweep_at {
            self.by_name.retain(|_, q| Arc::strong_count(q) > 1);
            self.sweep_at = (2 * self.by_name.len()).max(64);
        }
        self.by_name.entry(name.to_string()).or_default().clone()
    }
}
