//! What every kind of grant (mutex guard, leadership, permit, read or write hold) has in
//! common: a token, a key, the lost signal, guarded writes, and release — explicit, or in the
//! background on drop. One type, [`Hold`], that every guard dereferences to.

use std::sync::Arc;

use crate::backend::{Grant, SessionBackend};
use crate::metrics::{Holding, Meter};
use crate::retry::while_alive;
use crate::{Error, FencingToken, LostReason, Result, Write};

/// What every grant has: its fencing token, its key and its lost signal. Every guard
/// ([`crate::MutexGuard`], [`crate::Leadership`], [`crate::Permit`], [`crate::ReadGuard`],
/// [`crate::WriteGuard`]) dereferences to its `Hold`, so these are its methods too.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// let tenure = tenure::Tenure::connect("mem://hold-doc").await?;
/// let guard = tenure.session().await?.mutex("jobs")?.lock().await?;
/// let hold: &tenure::Hold = &guard;
/// assert!(!hold.is_lost() && hold.key().starts_with("jobs/") && hold.token().get() > 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Hold {
    session: Arc<dyn SessionBackend>,
    grant: Option<Grant>,
    /// Hold time and loss, for grants handed to users (`crate::metrics`); `None` for a
    /// recipe's internal grants.
    holding: Option<Holding>,
}

impl Hold {
    pub(crate) fn new(session: Arc<dyn SessionBackend>, grant: Grant) -> Self {
        Hold {
            session,
            grant: Some(grant),
            holding: None,
        }
    }

    /// This grant, its hold time and loss recorded under `meter`'s labels.
    pub(crate) fn metered(mut self, meter: &Meter) -> Self {
        self.holding = Some(meter.hold(&self.grant().liveness));
        self
    }

    /// The hold is over for the metrics: before the store hears of the release, so that a
    /// release never counts as a loss.
    fn end_holding(&self) {
        if let Some(holding) = &self.holding {
            holding.end();
        }
    }

    fn grant(&self) -> &Grant {
        // Only `release` takes the grant, and it consumes `self`.
        self.grant.as_ref().expect("grant present until released")
    }

    /// The fencing token (C2 in the repository's `docs/contract.md`): strictly increasing
    /// across successive grants of this name, never changing for one holder.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let first = session.mutex("jobs")?.lock().await?;
    /// let t1 = first.token();
    /// first.unlock().await?;
    /// let second = session.mutex("jobs")?.lock().await?;
    /// assert!(second.token() > t1); // a store that saw t2 can refuse writes fenced with t1
    /// # Ok(()) }
    /// ```
    pub fn token(&self) -> FencingToken {
        FencingToken(self.grant().token)
    }

    /// The holder key in the store (on etcd `<name>/<lease id hex>` for a mutex).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let guard = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// assert!(guard.key().starts_with("jobs/"));
    /// # Ok(()) }
    /// ```
    pub fn key(&self) -> &str {
        &self.grant().key
    }

    /// Whether the grant can no longer be trusted. Cheap: no I/O.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let guard = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// for batch in 0..3 {
    ///     if guard.is_lost() {
    ///         break; // stop before the next batch, not after the run
    ///     }
    ///     println!("batch {batch}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_lost(&self) -> bool {
        self.lost_reason().is_some()
    }

    /// Why the grant was lost, if it was.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let guard = session.mutex("jobs")?.lock().await?;
    /// assert_eq!(guard.lost_reason(), None);
    /// session.close().await?;
    /// assert_eq!(guard.lost_reason(), Some(tenure::LostReason::SessionClosed));
    /// # Ok(()) }
    /// ```
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.grant().liveness.reason()
    }

    /// Whether the store stopped answering while the session may still be alive (a lease
    /// renewal failed or went unanswered; ZooKeeper's Disconnected): not lost yet, but not
    /// confirmed either; it becomes lost at the local deadline unless the store answers
    /// first. Cheap: no I/O. `false` once lost. [`crate::Session::events`] reports the
    /// changes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let guard = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// if guard.is_suspended() {
    ///     eprintln!("store unreachable: pause side effects until it answers");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_suspended(&self) -> bool {
        self.grant().liveness.is_suspended()
    }

    /// Resolves when the grant is lost (C7): the store reported the lease or the holder entry
    /// gone, or renewals stopped being confirmed and the local safety deadline passed.
    /// Cancellation-safe; race it against the work it protects.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let guard = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// let work = async { /* the protected work */ };
    /// let lost = tokio::select! {
    ///     reason = guard.lost() => Some(reason),
    ///     () = work => None,
    /// };
    /// match lost {
    ///     Some(reason) => eprintln!("lost the lock ({reason}): the work was abandoned"),
    ///     None => guard.unlock().await?,
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) -> LostReason {
        self.grant().liveness.lost().await
    }

    pub(crate) async fn write(&self, ops: &[Write]) -> Result<()> {
        let grant = self.grant();
        if self.session.guarded_write(grant, ops).await? {
            Ok(())
        } else {
            Err(Error::NotHeld {
                key: grant.key.clone(),
            })
        }
    }

    pub(crate) async fn proclaim(&self, value: &[u8]) -> Result<bool> {
        self.session.proclaim(self.grant(), value).await
    }

    /// Turns this write grant into a read grant of the same entry (read/write locks): it
    /// holds throughout. `LockLost` if the grant no longer held.
    pub(crate) async fn downgrade(&self) -> Result<()> {
        let grant = self.grant();
        if self.session.downgrade(grant).await? {
            return Ok(());
        }
        Err(Error::LockLost {
            key: grant.key.clone(),
            reason: grant.liveness.reason().unwrap_or(LostReason::EntryDeleted),
        })
    }

    pub(crate) fn mark_lost(&self, reason: LostReason) {
        self.grant().liveness.lose(reason);
    }

    /// Releases now. The grant stays in `self` until the store has answered, so if this
    /// future is dropped mid-release, or the store could not be reached, dropping `self`
    /// releases in the background: the entry never outlives an abandoned or failed release
    /// while the session lives (docs/contract.md, C13).
    ///
    /// Not an `async fn`: one stores its argument twice (as passed, and as bound in the body),
    /// and a task that waits for a lock and then unlocks it keeps room for its largest state,
    /// this one, all the time it waits (docs/contract.md, Performance rules).
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn release(mut self) -> impl std::future::Future<Output = Result<()>> + Send {
        async move {
            let Some(grant) = self.grant.as_ref() else {
                return Ok(());
            };
            self.end_holding();
            let answer = self.session.release(grant).await;
            if !matches!(&answer, Err(e) if e.is_transient()) {
                // Released: nothing is left for the drop to release.
                self.grant.take();
            }
            answer
        }
    }
}

/// Retries a release until it succeeds, fails for good, or the session is gone.
async fn release_in_background(session: Arc<dyn SessionBackend>, grant: Grant) {
    if let Err(e) = while_alive(session.liveness(), || session.release(&grant)).await {
        tracing::debug!(key = %grant.key, error = %e, "background release");
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.end_holding();
        let Some(grant) = self.grant.take() else {
            return;
        };
        let session = self.session.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(release_in_background(session, grant));
            }
            Err(_) => tracing::warn!(
                key = %grant.key,
                "guard dropped outside a tokio runtime; the lease will release it"
            ),
        }
    }
}
