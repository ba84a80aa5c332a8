//! A session's connection states as a stream, like Curator's connection-state listener.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::liveness::Liveness;
use crate::LostReason;

/// What a session's link to the store is doing; [`crate::Session::events`] streams them.
///
/// The states are the ones the lost signal (C7 in the repository's `docs/contract.md`) is made
/// of: a healthy session is `Connected`; when the store stops answering it is `Suspended`
/// (grants are not lost yet: the store may well keep the lease); it is `Resumed` when the store
/// answers again before the local deadline, and `Lost` when it does not, or when the store
/// reports the lease gone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// use tenure::SessionEvent;
/// let session = tenure.session().await?;
/// let mut events = session.events();
/// tokio::spawn(async move {
///     while let Some(event) = events.next().await {
///         match event {
///             SessionEvent::Connected | SessionEvent::Resumed => println!("store reachable"),
///             SessionEvent::Suspended => println!("store unreachable: pause side effects"),
///             SessionEvent::Lost(reason) => println!("session lost: {reason}"),
///             _ => {}
///         }
///     }
/// });
/// session.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The lease is confirmed: the first event of a healthy session.
    Connected,
    /// The store stopped answering (a lease renewal failed or went unanswered; on ZooKeeper,
    /// the connection dropped). Everything held is still held until the local deadline, but
    /// nothing can be confirmed; work that must not outlive the lease should pause.
    Suspended,
    /// The store answered again before the deadline: the lease, and every grant under it, held
    /// throughout.
    Resumed,
    /// The session is lost, for the reason given; the last event.
    Lost(LostReason),
}

/// The stream [`crate::Session::events`] returns: a [`futures_util::Stream`] of
/// [`SessionEvent`]s (use `StreamExt::next`, or [`SessionEvents::next`] without importing a
/// trait). It ends after [`SessionEvent::Lost`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// use futures_util::StreamExt;
/// let session = tenure.session().await?;
/// let events: tenure::SessionEvents = session.events();
/// session.close().await?; // the stream does not keep the session open
/// let all: Vec<_> = events.collect().await;
/// assert!(matches!(all.last(), Some(tenure::SessionEvent::Lost(_))));
/// # Ok(()) }
/// ```
pub struct SessionEvents {
    events: Pin<Box<dyn Stream<Item = SessionEvent> + Send>>,
}

impl std::fmt::Debug for SessionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionEvents")
    }
}

/// What the stream has told so far.
struct Told {
    liveness: Liveness,
    changes: crate::liveness::Changes,
    /// Whether the last event told was `Suspended`; `None` before the first event.
    suspended: Option<bool>,
}

impl SessionEvents {
    pub(crate) fn new(liveness: Liveness) -> Self {
        let told = Told {
            changes: liveness.changes(),
            liveness,
            suspended: None,
        };
        let events = futures_util::stream::unfold(Some(told), |told| async move {
            let mut told = told?;
            let event = told.next().await;
            let more = !matches!(event, SessionEvent::Lost(_));
            Some((event, more.then_some(told)))
        });
        SessionEvents {
            events: Box::pin(events),
        }
    }

    /// The next event; `None` after [`SessionEvent::Lost`]. Cancellation-safe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let mut events = session.events();
    /// assert_eq!(events.next().await, Some(tenure::SessionEvent::Connected));
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<SessionEvent> {
        futures_util::StreamExt::next(self).await
    }
}

impl Told {
    async fn next(&mut self) -> SessionEvent {
        loop {
            if let Some(reason) = self.liveness.reason() {
                return SessionEvent::Lost(reason);
            }
            let now = self.liveness.is_suspended();
            let event = match (self.suspended, now) {
                (None, false) => Some(SessionEvent::Connected),
                (_, true) if self.suspended != Some(true) => Some(SessionEvent::Suspended),
                (Some(true), false) => Some(SessionEvent::Resumed),
                _ => None,
            };
            self.suspended = Some(now);
            if let Some(event) = event {
                return event;
            }
            self.changes.changed().await;
        }
    }
}

impl Stream for SessionEvents {
    type Item = SessionEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>> {
        self.get_mut().events.as_mut().poll_next(cx)
    }
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use std::time::Duration;

    use super::SessionEvent;
    use crate::backend::embedded::MemStore;
    use crate::backend::faulty::{Fault, FaultPlan, Scripted};
    use crate::{LostReason, Tenure};

    /// On `mem://`: a renewal that fails suspends the session, the next confirmed one resumes
    /// it, and renewals that stop (a crash) lose it at the local deadline, which ends the
    /// stream.
    #[tokio::test(start_paused = true)]
    async fn failed_renewal_suspends_next_resumes_crash_loses() {
        let name = format!("events-{:x}", fastrand::u64(..));
        let store = MemStore::named(&name);
        let failed_renewal = Scripted {
            session: 0,
            op: "renew",
            nth: 0,
            fault: Fault::FailBefore,
        };
        let plan = FaultPlan::scripted(vec![failed_renewal], move || store.revision());
        let tenure = Tenure::mem_with_faults(&name, plan);
        let session = tenure.session().await.unwrap();
        let mut events = session.events();
        assert_eq!(events.next().await, Some(SessionEvent::Connected));
        assert_eq!(events.next().await, Some(SessionEvent::Suspended));
        assert!(!session.is_lost(), "suspended is not lost");
        assert_eq!(events.next().await, Some(SessionEvent::Resumed));
        let held = session.mutex("events").unwrap().lock().await.unwrap();
        session.clone().simulate_crash();
        let lost = tokio::time::timeout(Duration::from_secs(60), events.next()).await;
        assert_eq!(
            lost.unwrap(),
            Some(SessionEvent::Lost(LostReason::RenewalDeadline))
        );
        assert!(held.is_lost());
        assert_eq!(events.next().await, None);
    }
}
