//! Distributed counting semaphores: N holders at once, each permit fenced, crash-safe and
//! cancellation-safe like a mutex grant.

use std::time::Duration;

use crate::hold::Hold;
use crate::metrics::{Meter, Primitive};
use crate::waiting::{self, Stage, Waiting};
use crate::{Error, Result, Session, Write};

/// The largest permit count [`Session::semaphore`] accepts. Whoever waits at the head of the
/// line lists every permit entry each time one is released, so the count stays modest.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// let session = tenure.session().await?;
/// let too_many = session.semaphore("pools/db", tenure::MAX_PERMITS + 1);
/// assert!(matches!(too_many, Err(tenure::Error::InvalidPermits { .. })));
/// # Ok(()) }
/// ```
pub const MAX_PERMITS: u32 = 100_000;

/// A named counting semaphore on a [`Session`]; create it with [`Session::semaphore`].
///
/// At most `permits` [`Permit`]s of one name are held at once, across processes and tasks
/// (docs/contract.md, Semaphores). Each permit keeps the mutex contract for itself: its own
/// fencing token, strictly increasing across all grants of the name; its own lost signal;
/// guarded writes; owner-only release; it dies with its session. Waiters are served in
/// arrival order, and only the first in line watches the holders, so a release wakes one
/// waiter. Every acquiring method is cancellation-safe: a dropped, timed-out or aborted
/// acquisition leaves nothing in the store.
///
/// Every client of one name must use the same permit count. Each permit records the count
/// its acquirer used, and a caller whose count disagrees with a current holder's or waiter's
/// fails with [`Error::PermitsDisagree`]; the count may change once every holder of the old
/// one is gone. On ZooKeeper the layout is Curator's `InterProcessSemaphoreV2`, whose permits
/// record no count: a Curator client with another count is counted but cannot be detected.
///
/// Tasks of one process may share a session and hold several permits of one name at once.
///
/// A name is a semaphore or a mutex, not both: the semaphore's entries live under
/// `<name>/locks/` and `<name>/leases/`, which a mutex of the same name (whose queue is
/// `<name>/`) would take for waiters, while the semaphore would not count the mutex's holder.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// let tenure = tenure::Tenure::connect("mem://semaphore-doc").await?;
/// let session = tenure.session().await?;
/// let pool = session.semaphore("pools/db", 2)?;
/// let a = pool.acquire().await?;
/// let b = pool.acquire().await?;
/// assert!(a.token() < b.token());
/// // Both permits are held: a third fails at once.
/// assert!(matches!(pool.try_acquire().await, Err(tenure::Error::Locked { .. })));
/// a.release().await?;
/// let c = pool.try_acquire().await?;
/// assert!(c.token() > b.token());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    session: Session,
    name: String,
    permits: u32,
    value: Vec<u8>,
}

impl Semaphore {
    pub(crate) fn new(session: Session, name: &str, permits: u32) -> Result<Self> {
        if permits == 0 || permits > MAX_PERMITS {
            return Err(Error::InvalidPermits {
                name: name.to_string(),
                permits: u64::from(permits),
                max: MAX_PERMITS,
            });
        }
        Ok(Semaphore {
            session,
            name: name.to_string(),
            permits,
            value: crate::host_pid().into_bytes(),
        })
    }

    /// This semaphore, recording `value` in each permit's entry instead of the default
    /// [`crate::host_pid`] (`HOST:PID`), for [`Tenure::status`](crate::Tenure::status).
    /// Informational, as [`Mutex::with_value`](crate::Mutex::with_value).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let pool = tenure.session().await?.semaphore("pools/db", 2)?.with_value("worker-7");
    /// let _permit = pool.acquire().await?;
    /// assert_eq!(tenure.status("pools/").await?[0].holder.value, b"worker-7");
    /// # Ok(()) }
    /// ```
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = value.into();
        self
    }

    /// The semaphore's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// assert_eq!(tenure.session().await?.semaphore("pools/db", 2)?.name(), "pools/db");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many permits it has.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// assert_eq!(tenure.session().await?.semaphore("pools/db", 2)?.permits(), 2);
    /// # Ok(()) }
    /// ```
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// Waits in line until this caller holds a permit. Fails with [`Error::SessionLost`] if
    /// the session is lost while waiting, and with [`Error::PermitsDisagree`] if a holder or
    /// waiter of this name recorded another permit count.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let pool = tenure.session().await?.semaphore("pools/db", 5)?;
    /// let permit = pool.acquire().await?;
    /// // ... at most 5 of these run at once, across every process ...
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self) -> Result<Permit> {
        self.take(true).await
    }

    /// Takes a permit only if one is free and nobody waits for one, leaving nothing in the
    /// store when it fails with [`Error::Locked`]. It never jumps the line; it also fails
    /// while another acquisition of the name is in progress.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let pool = tenure.session().await?.semaphore("pools/db", 1)?;
    /// let _only = pool.try_acquire().await?;
    /// match pool.try_acquire().await {
    ///     Err(tenure::Error::Locked { .. }) => println!("pool full: try later"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&self) -> Result<Permit> {
        self.take(false).await
    }

    /// Like [`Semaphore::acquire`], but gives up with [`Error::Timeout`] after `timeout`,
    /// leaving the line. The error says what the wait was doing ([`Waiting`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let pool = tenure.session().await?.semaphore("pools/db", 1)?;
    /// let _only = pool.acquire().await?;
    /// let err = pool.acquire_timeout(Duration::from_millis(50)).await.unwrap_err();
    /// assert!(matches!(err, tenure::Error::Timeout { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Permit> {
        let meter = self.meter();
        meter
            .acquire_within(&self.name, timeout, self.grant(true, &meter))
            .await
    }

    fn meter(&self) -> Meter {
        Meter::new(&self.session, Primitive::Semaphore, &self.name)
    }

    async fn take(&self, wait: bool) -> Result<Permit> {
        let meter = self.meter();
        meter
            .acquire(&Stage::new(), wait, self.grant(wait, &meter))
            .await
    }

    async fn grant(&self, wait: bool, meter: &Meter) -> Result<Permit> {
        waiting::note(Waiting::Store);
        let backend = self.session.inner.backend.clone();
        let local = self.session.local_queue(&format!(
            "{}/{}",
            self.name,
            crate::backend::semaphore::LOCKS
        ));
        let grant = backend
            .acquire_permit(&self.name, self.permits, &self.value, wait, local)
            .await?;
        Ok(Permit {
            held: Hold::new(backend, grant).metered(meter),
            name: self.name.clone(),
            _session: self.session.clone(),
        })
    }
}

/// One held permit of a [`Semaphore`]. Dropping it releases the permit in the background;
/// call [`Permit::release`] to release it and hear about errors.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// let permit: tenure::Permit = tenure.session().await?.semaphore("pools/db", 3)?.acquire().await?;
/// println!("{} permit {} (token {})", permit.name(), permit.key(), permit.token());
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "the permit is released when it is dropped"]
pub struct Permit {
    held: Hold,
    name: String,
    /// Keeps the lease alive while the permit lives.
    _session: Session,
}

impl Permit {
    /// The semaphore's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let permit = tenure.session().await?.semaphore("pools/db", 3)?.acquire().await?;
    /// assert_eq!(permit.name(), "pools/db");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Applies `ops` atomically, only if this permit is still held (C10); otherwise nothing
    /// is written and [`Error::NotHeld`] is returned.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// use tenure::Write;
    /// let tenure = tenure::Tenure::connect("mem://permit-write-doc").await?;
    /// let permit = tenure.session().await?.semaphore("pools/db", 3)?.acquire().await?;
    /// permit.write([Write::put("pools/db-last", permit.token().to_string())]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, ops: impl IntoIterator<Item = Write>) -> Result<()> {
        let ops: Vec<Write> = ops.into_iter().collect();
        self.held.write(&ops).await
    }

    /// Gives the permit back, only if this permit still owns its entry (C8): it never
    /// releases anyone else's. Reports [`Error::LockLost`] if it was lost before.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let pool = tenure.session().await?.semaphore("pools/db", 1)?;
    /// pool.acquire().await?.release().await?;
    /// pool.try_acquire().await?; // free again
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<()> {
        self.held.release().await
    }
}

impl std::ops::Deref for Permit {
    type Target = Hold;

    /// The grant's token, key and lost signal ([`Hold`]).
    fn deref(&self) -> &Hold {
        &self.held
    }
}
