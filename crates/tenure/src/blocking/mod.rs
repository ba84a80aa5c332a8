//! A blocking API, like `reqwest::blocking`, for programs without an async runtime: the same
//! types and contract, each call blocking the calling thread on an internal runtime (one worker
//! thread, which also keeps leases alive between calls). Cargo feature `blocking` (on by
//! default).
//!
//! Call it from plain threads, never from inside an async runtime (that would block the
//! runtime's own threads; tokio refuses with a panic). Guards release on drop, as in the async
//! API, but synchronously here (bounded by five seconds, then in the background), so a lock is
//! free once the guard is gone; `unlock()` reports errors.
//!
//! ```
//! use tenure::blocking::Tenure;
//!
//! # fn main() -> tenure::Result<()> {
//! let tenure = Tenure::connect("mem://blocking-doc")?;
//! let session = tenure.session()?;
//! let guard = session.mutex("jobs/nightly")?.lock()?;
//! println!("holding {} with fencing token {}", guard.key(), guard.token());
//! guard.write([tenure::Write::put("jobs/last-run", "today")])?;
//! guard.unlock()?;
//! # Ok(()) }
//! ```

mod guard;
mod session;

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

pub use guard::Guard;
pub use session::{Election, Mutex, RwLock, Semaphore, Session};

use crate::{Error, Leader, LockStatus, Result, Write};

/// The mutex guard of the blocking API.
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let guard: tenure::blocking::MutexGuard = session.mutex("jobs")?.lock()?;
/// guard.unlock()?;
/// # Ok(()) }
/// ```
pub type MutexGuard = Guard<crate::MutexGuard>;
/// Leadership, in the blocking API.
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let leadership: tenure::blocking::Leadership = session.election("primary")?.campaign("host-a")?;
/// leadership.resign()?;
/// # Ok(()) }
/// ```
pub type Leadership = Guard<crate::Leadership>;
/// A semaphore permit, in the blocking API.
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let permit: tenure::blocking::Permit = session.semaphore("pools/db", 2)?.acquire()?;
/// permit.release()?;
/// # Ok(()) }
/// ```
pub type Permit = Guard<crate::Permit>;
/// A read hold of a read/write lock, in the blocking API.
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let reading: tenure::blocking::ReadGuard = session.rwlock("config")?.read()?;
/// reading.unlock()?;
/// # Ok(()) }
/// ```
pub type ReadGuard = Guard<crate::ReadGuard>;
/// A write hold of a read/write lock, in the blocking API.
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let writing: tenure::blocking::WriteGuard = session.rwlock("config")?.write()?;
/// let reading: tenure::blocking::ReadGuard = writing.downgrade()?;
/// reading.unlock()?;
/// # Ok(()) }
/// ```
pub type WriteGuard = Guard<crate::WriteGuard>;

/// How long a drop may block to release (a guard) or revoke (a session) before it leaves the
/// rest to the background and the lease's TTL.
const DROP_BOUND: Duration = Duration::from_secs(5);

/// The runtime every blocking call runs on, shared by a client and all it hands out.
#[derive(Debug, Clone)]
pub(crate) struct Rt(Arc<Runtime>);

impl Rt {
    fn new() -> Result<Rt> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tenure-blocking")
            .enable_all()
            .build()
            .map_err(|e| Error::Store {
                op: "start the blocking runtime",
                message: e.to_string(),
                source: Some(crate::Cause::new(e)),
            })?;
        Ok(Rt(Arc::new(rt)))
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.0.block_on(fut)
    }

    /// Runs a release or close at drop: blocking, within [`DROP_BOUND`], when called from a
    /// plain thread; in the background when called from inside a runtime (where blocking is
    /// not allowed) or when the bound passes.
    pub(crate) fn finish<F>(&self, what: &'static str, fut: F)
    where
        F: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let task = self.0.spawn(fut);
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        // The timer is made inside the runtime: it needs its clock.
        let waited = self
            .0
            .block_on(async { tokio::time::timeout(DROP_BOUND, task).await });
        match waited {
            Ok(Ok(Err(e))) => tracing::debug!(error = %e, "{what} at drop"),
            Ok(_) => {}
            Err(_) => tracing::warn!(
                "{what} at drop still running after {DROP_BOUND:?}; it goes on in the background"
            ),
        }
    }
}

/// A connection to a store, blocking; see [`crate::Tenure`].
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// let tenure: tenure::blocking::Tenure = tenure::blocking::Tenure::connect("mem://")?;
/// let guard = tenure.session()?.mutex("jobs")?.lock()?;
/// guard.unlock()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Tenure {
    inner: crate::Tenure,
    rt: Rt,
}

impl Tenure {
    /// Connects to the store at `url` with default options; see [`crate::Tenure::connect`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// let tenure = tenure::blocking::Tenure::connect("mem://")?; // or "etcd://127.0.0.1:2379"
    /// assert_eq!(tenure.backend(), "mem");
    /// # Ok(()) }
    /// ```
    pub fn connect(url: &str) -> Result<Tenure> {
        Tenure::connect_with(crate::Tenure::builder(url))
    }

    /// Connects with the options of `builder` ([`crate::Tenure::builder`]: TTL, TLS,
    /// credentials).
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// use std::time::Duration;
    /// let builder = tenure::Tenure::builder("mem://blocking-builder-doc").ttl(Duration::from_secs(5));
    /// let tenure = tenure::blocking::Tenure::connect_with(builder)?;
    /// assert_eq!(tenure.session()?.ttl(), Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn connect_with(builder: crate::Builder) -> Result<Tenure> {
        let rt = Rt::new()?;
        let inner = rt.block_on(builder.connect())?;
        Ok(Tenure { inner, rt })
    }

    /// The async client behind this one, for code that has a runtime after all.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// let async_client: tenure::Tenure = tenure.as_async().clone();
    /// assert_eq!(async_client.url(), tenure.url());
    /// # Ok(()) }
    /// ```
    pub fn as_async(&self) -> &crate::Tenure {
        &self.inner
    }

    /// The URL connected to, with any password redacted.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// let tenure = tenure::blocking::Tenure::connect("mem://blocking-url-doc")?;
    /// assert_eq!(tenure.url(), "mem://blocking-url-doc");
    /// # Ok(()) }
    /// ```
    pub fn url(&self) -> &str {
        self.inner.url()
    }

    /// The backend's short name; see [`crate::Tenure::backend`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// assert_eq!(tenure.backend(), "mem");
    /// # Ok(()) }
    /// ```
    pub fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    /// Opens a session (one lease, renewed in the background); see [`crate::Tenure::session`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// let session = tenure.session()?;
    /// assert!(!session.is_lost());
    /// # Ok(()) }
    /// ```
    pub fn session(&self) -> Result<Session> {
        let session = self.rt.block_on(self.inner.session())?;
        Ok(Session::new(session, self.rt.clone()))
    }

    /// Reads one key; see [`crate::Tenure::read`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// assert_eq!(tenure.read("jobs/last-run")?, None);
    /// # Ok(()) }
    /// ```
    pub fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.rt.block_on(self.inner.read(key))
    }

    /// Writes without a lock (the store's plain write); see [`crate::Tenure::write`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// tenure.write([tenure::Write::put("jobs/last-run", "today")])?;
    /// assert_eq!(tenure.read("jobs/last-run")?, Some(b"today".to_vec()));
    /// # Ok(()) }
    /// ```
    pub fn write(&self, ops: impl IntoIterator<Item = Write>) -> Result<()> {
        self.rt.block_on(self.inner.write(ops))
    }

    /// The current leader of election `name`; see [`crate::Tenure::leader`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// let _leading = tenure.session()?.election("primary")?.campaign("host-a")?;
    /// assert_eq!(tenure.leader("primary")?.map(|l| l.value), Some(b"host-a".to_vec()));
    /// # Ok(()) }
    /// ```
    pub fn leader(&self, name: &str) -> Result<Option<Leader>> {
        self.rt.block_on(self.inner.leader(name))
    }

    /// Locks and elections under `prefix`; see [`crate::Tenure::status`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// let _guard = tenure.session()?.mutex("jobs/nightly")?.lock()?;
    /// let status = tenure.status("jobs/")?;
    /// assert_eq!(status[0].name, "jobs/nightly");
    /// # Ok(()) }
    /// ```
    pub fn status(&self, prefix: &str) -> Result<Vec<LockStatus>> {
        self.rt.block_on(self.inner.status(prefix))
    }
}
