//! Grants in the blocking API: one wrapper for every kind of async grant.

use std::ops::Deref;

use super::{ReadGuard, Rt};
use crate::{LostReason, Result, Write};

/// A grant held through the blocking API: [`super::MutexGuard`], [`super::Leadership`],
/// [`super::Permit`], [`super::ReadGuard`] or [`super::WriteGuard`].
///
/// It dereferences to the async grant for the cheap accessors (`token()`, `key()`, `name()`,
/// `is_lost()`, `lost_reason()`, `is_suspended()`); the calls that wait are its own and block.
/// Dropping it releases the grant before the drop returns (bounded by five seconds, then in
/// the background); `unlock()`/`release()`/`resign()` report errors.
///
/// ```
/// # fn main() -> tenure::Result<()> {
/// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
/// # let session = tenure.session()?;
/// let guard: tenure::blocking::MutexGuard = session.mutex("jobs")?.lock()?;
/// println!("{} holds {} (token {})", guard.name(), guard.key(), guard.token());
/// guard.unlock()?;
/// # Ok(()) }
/// ```
#[must_use = "the grant is released when the guard is dropped"]
pub struct Guard<G: Grant> {
    inner: Option<G>,
    rt: Rt,
}

/// The async grants a [`Guard`] can hold. Sealed: implemented for the crate's own.
pub trait Grant: private::Sealed {}

mod private {
    use std::future::Future;

    use crate::{LostReason, Result, Write};

    /// The async calls a [`super::Guard`] blocks on.
    pub trait Sealed: Send + Sized + 'static {
        fn write(&self, ops: Vec<Write>) -> impl Future<Output = Result<()>>;
        fn lost(&self) -> impl Future<Output = LostReason>;
        fn release(self) -> impl Future<Output = Result<()>> + Send;
    }
}

/// Implements [`Grant`] for an async grant whose release is called `$release`.
macro_rules! grant {
    ($t:ty, $release:ident) => {
        impl Grant for $t {}
        impl private::Sealed for $t {
            fn write(&self, ops: Vec<Write>) -> impl std::future::Future<Output = Result<()>> {
                <$t>::write(self, ops)
            }
            fn lost(&self) -> impl std::future::Future<Output = LostReason> {
                crate::Hold::lost(self)
            }
            fn release(self) -> impl std::future::Future<Output = Result<()>> + Send {
                <$t>::$release(self)
            }
        }
    };
}
grant!(crate::MutexGuard, unlock);
grant!(crate::Leadership, resign);
grant!(crate::Permit, release);
grant!(crate::ReadGuard, unlock);
grant!(crate::WriteGuard, unlock);

impl<G: Grant> Guard<G> {
    pub(super) fn new(inner: G, rt: Rt) -> Self {
        Guard {
            inner: Some(inner),
            rt,
        }
    }

    fn get(&self) -> &G {
        // Only `release` and `drop` take it, and both consume the guard.
        self.inner.as_ref().expect("grant present until released")
    }

    /// Applies `ops` atomically, only while this grant holds (C10 in the repository's
    /// `docs/contract.md`); otherwise [`crate::Error::NotHeld`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let guard = session.mutex("jobs")?.lock()?;
    /// guard.write([tenure::Write::put("jobs/result", "done")])?;
    /// assert_eq!(tenure.read("jobs/result")?, Some(b"done".to_vec()));
    /// # Ok(()) }
    /// ```
    pub fn write(&self, ops: impl IntoIterator<Item = Write>) -> Result<()> {
        self.rt
            .block_on(self.get().write(ops.into_iter().collect()))
    }

    /// Blocks until the grant is lost (C7), with the reason. The `is_lost()` of the async
    /// grant (through `Deref`) looks without blocking.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let guard = session.mutex("jobs")?.lock()?;
    /// std::thread::scope(|s| {
    ///     let watch = s.spawn(|| guard.lost()); // e.g. a thread that stops the work
    ///     session.clone().close()?;
    ///     assert_eq!(watch.join().unwrap(), tenure::LostReason::SessionClosed);
    ///     Ok::<_, tenure::Error>(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn lost(&self) -> LostReason {
        self.rt.block_on(self.get().lost())
    }

    /// Gives the grant back, only if it is still this guard's (C8); reports
    /// [`crate::Error::LockLost`] if it was lost before.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let permit = session.semaphore("pools/db", 1)?.acquire()?;
    /// permit.release()?; // any guard: mutex, permit, leadership, read or write hold
    /// # Ok(()) }
    /// ```
    pub fn release(mut self) -> Result<()> {
        match self.inner.take() {
            Some(inner) => self.rt.block_on(inner.release()),
            None => Ok(()),
        }
    }

    /// The async grant, for code that has a runtime after all; it no longer releases on this
    /// guard's drop, but on its own.
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let guard = session.mutex("jobs")?.lock()?;
    /// let async_guard: tenure::MutexGuard = guard.into_async().expect("not yet released");
    /// assert_eq!(async_guard.name(), "jobs");
    /// # Ok(()) }
    /// ```
    pub fn into_async(mut self) -> Option<G> {
        self.inner.take()
    }
}

impl<G: Grant> Deref for Guard<G> {
    type Target = G;

    fn deref(&self) -> &G {
        self.get()
    }
}

impl<G: Grant + std::fmt::Debug> std::fmt::Debug for Guard<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Guard").field(&self.inner).finish()
    }
}

impl<G: Grant> Drop for Guard<G> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            self.rt.finish(
                "release",
                async move { private::Sealed::release(inner).await },
            );
        }
    }
}

impl Guard<crate::MutexGuard> {
    /// Releases the lock; see [`crate::MutexGuard::unlock`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// session.mutex("jobs")?.lock()?.unlock()?;
    /// tenure.session()?.mutex("jobs")?.try_lock()?; // free again
    /// # Ok(()) }
    /// ```
    pub fn unlock(self) -> Result<()> {
        self.release()
    }
}

impl Guard<crate::ReadGuard> {
    /// Stops reading; see [`crate::ReadGuard::unlock`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// session.rwlock("config")?.read()?.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn unlock(self) -> Result<()> {
        self.release()
    }
}

impl Guard<crate::WriteGuard> {
    /// Stops writing; see [`crate::WriteGuard::unlock`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// session.rwlock("config")?.write()?.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn unlock(self) -> Result<()> {
        self.release()
    }

    /// Turns the write hold into a read hold with no moment unheld and no writer let in; see
    /// [`crate::WriteGuard::downgrade`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let writing = session.rwlock("cache")?.write()?;
    /// writing.write([tenure::Write::put("cache-value", "fresh")])?;
    /// let reading = writing.downgrade()?; // no writer got in between
    /// reading.unlock()?;
    /// # Ok(()) }
    /// ```
    pub fn downgrade(mut self) -> Result<ReadGuard> {
        let rt = self.rt.clone();
        let Some(inner) = self.inner.take() else {
            return Err(crate::Error::NotHeld { key: String::new() });
        };
        let read = rt.block_on(inner.downgrade())?;
        Ok(Guard::new(read, rt))
    }
}

impl Guard<crate::Leadership> {
    /// Steps down; see [`crate::Leadership::resign`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// session.election("primary")?.campaign("host-a")?.resign()?;
    /// assert_eq!(tenure.leader("primary")?, None);
    /// # Ok(()) }
    /// ```
    pub fn resign(self) -> Result<()> {
        self.release()
    }

    /// Replaces the leader's value while still leading; see [`crate::Leadership::proclaim`].
    ///
    /// ```
    /// # fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::blocking::Tenure::connect("mem://")?;
    /// # let session = tenure.session()?;
    /// let leadership = session.election("primary")?.campaign("host-a:8080")?;
    /// leadership.proclaim("host-a:9090")?;
    /// assert_eq!(tenure.leader("primary")?.map(|l| l.value), Some(b"host-a:9090".to_vec()));
    /// # Ok(()) }
    /// ```
    pub fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        self.rt.block_on(self.get().proclaim(value))
    }
}
