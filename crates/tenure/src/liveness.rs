//! The lost signal (C7): a one-way latch that fires when a store reports a lease or entry gone,
//! or when a local deadline passes without a confirmed renewal.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Why a session or a grant can no longer be trusted.
///
/// With the `serde` feature it is the variant's name in snake case (`"lease_expired"`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// use tenure::LostReason;
/// let session = tenure.session().await?;
/// let guard = session.mutex("jobs")?.lock().await?;
/// session.close().await?;
/// match guard.lost().await {
///     LostReason::SessionClosed => println!("we closed it"),
///     LostReason::RenewalDeadline => println!("store unreachable for too long"),
///     other => println!("{other}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum LostReason {
    /// The store reported the lease gone (expired or revoked).
    LeaseExpired,
    /// No renewal was confirmed in time: the local deadline (last confirmed renewal's send
    /// instant + TTL − safety margin) passed, so the store may already have expired the lease.
    RenewalDeadline,
    /// The holder's entry was deleted by someone else.
    EntryDeleted,
    /// The session was closed by its owner.
    SessionClosed,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::LeaseExpired => "the store reports the lease expired or revoked",
            LostReason::RenewalDeadline => {
                "no lease renewal was confirmed before the local safety deadline"
            }
            LostReason::EntryDeleted => "the holder entry was deleted by someone else",
            LostReason::SessionClosed => "the session was closed",
        })
    }
}

#[derive(Clone, Copy, Default)]
struct State {
    lost: Option<LostReason>,
    deadline: Option<Instant>,
    /// The store connection is down but the lease may still be alive (a renewal failed or went
    /// unanswered; ZooKeeper's Disconnected): not lost yet, but nothing can be confirmed until
    /// it comes back.
    suspended: bool,
}

/// A latch, optionally chained to a parent (a grant's latch is chained to its session's).
#[derive(Clone)]
pub(crate) struct Liveness {
    own: Own,
    parent: Option<Arc<watch::Sender<State>>>,
}

#[derive(Clone)]
enum Own {
    /// A latch kept alive by renewals (a session's, or a grant renewed on its own as a
    /// PostgreSQL lock's connection is): deadline, suspension and subscribers
    /// ([`crate::Session::events`]).
    Renewed(Arc<watch::Sender<State>>),
    /// A grant's latch, which only ever fires once; its deadline and suspension are its
    /// session's. One is made and dropped per grant, so it is lighter than a watch channel
    /// (whose drop wakes eight wait lists): on the embedded store that was a tenth of an
    /// uncontended lock+unlock.
    Grant(Arc<GrantLatch>),
}

#[derive(Default)]
struct GrantLatch {
    /// 0 until fired, then [`encode`]d reason.
    lost: AtomicU8,
    fired: Notify,
}

impl GrantLatch {
    fn reason(&self) -> Option<LostReason> {
        decode(self.lost.load(Ordering::Acquire))
    }

    fn fire(&self, reason: LostReason) {
        let fired =
            self.lost
                .compare_exchange(0, encode(reason), Ordering::AcqRel, Ordering::Acquire);
        if fired.is_ok() {
            self.fired.notify_waiters();
        }
    }

    async fn wait(&self) -> LostReason {
        loop {
            let notified = self.fired.notified();
            tokio::pin!(notified);
            // Registered before looking, so a fire in between is not missed.
            notified.as_mut().enable();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }
}

fn encode(reason: LostReason) -> u8 {
    match reason {
        LostReason::LeaseExpired => 1,
        LostReason::RenewalDeadline => 2,
        LostReason::EntryDeleted => 3,
        LostReason::SessionClosed => 4,
    }
}

fn decode(code: u8) -> Option<LostReason> {
    Some(match code {
        1 => LostReason::LeaseExpired,
        2 => LostReason::RenewalDeadline,
        3 => LostReason::EntryDeleted,
        4 => LostReason::SessionClosed,
        _ => return None,
    })
}

impl fmt::Debug for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Liveness")
            .field("lost", &self.reason())
            .finish()
    }
}

/// The latch's reason, latching a passed deadline so that loss is one-way: a renewal
/// answered after the deadline (a thawed server) must not make a lost grant valid again.
fn current(tx: &watch::Sender<State>) -> Option<LostReason> {
    let s = *tx.borrow();
    if s.lost.is_some() {
        return s.lost;
    }
    if !s.deadline.is_some_and(|d| Instant::now() >= d) {
        return None;
    }
    tx.send_if_modified(|s| latch(s, LostReason::RenewalDeadline));
    tx.borrow().lost
}

/// Sets `reason` unless a reason is already set; reports whether it changed.
fn latch(s: &mut State, reason: LostReason) -> bool {
    if s.lost.is_some() {
        return false;
    }
    s.lost = Some(reason);
    true
}

async fn wait(tx: &watch::Sender<State>) -> LostReason {
    let mut rx = tx.subscribe();
    loop {
        let s = *rx.borrow_and_update();
        if let Some(r) = s.lost {
            return r;
        }
        match s.deadline {
            Some(d) if Instant::now() >= d => {
                return current(tx).unwrap_or(LostReason::RenewalDeadline)
            }
            Some(d) => {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { std::future::pending::<()>().await },
                    () = tokio::time::sleep_until(d) => {}
                }
            }
            None => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

impl Liveness {
    pub(crate) fn new() -> Self {
        Liveness {
            own: Own::Renewed(Arc::new(watch::Sender::new(State::default()))),
            parent: None,
        }
    }

    /// A new grant latch that also counts as lost whenever `self` is (for a grant latch's
    /// child: whenever that latch's parent is).
    pub(crate) fn child(&self) -> Self {
        Liveness {
            own: Own::Grant(Arc::default()),
            parent: self.as_parent(),
        }
    }

    /// A child latch with a deadline and suspension of its own, for a grant that is renewed on
    /// its own (a PostgreSQL lock's connection, probed apart from the session's).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn renewed_child(&self) -> Self {
        Liveness {
            own: Own::Renewed(Arc::new(watch::Sender::new(State::default()))),
            parent: self.as_parent(),
        }
    }

    /// What a child of this latch follows: its renewed channel, or a grant latch's parent.
    fn as_parent(&self) -> Option<Arc<watch::Sender<State>>> {
        match &self.own {
            Own::Renewed(tx) => Some(tx.clone()),
            Own::Grant(_) => self.parent.clone(),
        }
    }

    /// The renewed latch's channel; `None` for a grant's latch.
    fn renewed(&self) -> Option<&watch::Sender<State>> {
        match &self.own {
            Own::Renewed(tx) => Some(tx),
            Own::Grant(_) => None,
        }
    }

    /// Fires the latch (first reason wins).
    pub(crate) fn lose(&self, reason: LostReason) {
        match &self.own {
            Own::Renewed(tx) => {
                tx.send_if_modified(|s| latch(s, reason));
            }
            Own::Grant(latch) => latch.fire(reason),
        }
    }

    /// Moves the local deadline forward — unless it has passed already: then the latch fires
    /// instead, since the store may have expired the lease in between.
    pub(crate) fn set_deadline(&self, deadline: Instant) {
        let Some(own) = self.renewed() else {
            debug_assert!(false, "a grant's deadline is its session's");
            return;
        };
        own.send_if_modified(|s| {
            if s.deadline.is_some_and(|d| Instant::now() >= d) {
                return latch(s, LostReason::RenewalDeadline);
            }
            s.deadline = Some(deadline);
            s.lost.is_none()
        });
    }

    /// Marks the connection down (`true`) or back (`false`); see [`Liveness::is_suspended`].
    pub(crate) fn set_suspended(&self, suspended: bool) {
        let Some(own) = self.renewed() else {
            debug_assert!(false, "a grant is suspended with its session");
            return;
        };
        own.send_if_modified(|s| {
            let changed = s.suspended != suspended;
            s.suspended = suspended;
            changed
        });
    }

    /// Whether the store connection is down while the lease may still live (a renewal failed
    /// or went unanswered; ZooKeeper's Disconnected); `false` once lost.
    pub(crate) fn is_suspended(&self) -> bool {
        let suspended = |tx: &watch::Sender<State>| tx.borrow().suspended;
        !self.is_lost()
            && (self.renewed().is_some_and(suspended)
                || self.parent.as_deref().is_some_and(suspended))
    }

    /// The reason, if lost; a passed deadline counts as lost.
    pub(crate) fn reason(&self) -> Option<LostReason> {
        self.parent
            .as_deref()
            .and_then(current)
            .or_else(|| match &self.own {
                Own::Renewed(tx) => current(tx),
                Own::Grant(latch) => latch.reason(),
            })
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.reason().is_some()
    }

    /// A subscription to this latch's own changes (loss, suspension, the deadline moving),
    /// for [`crate::Session::events`].
    pub(crate) fn changes(&self) -> Changes {
        let own = self.renewed().or(self.parent.as_deref());
        Changes {
            rx: own.map_or_else(
                || watch::channel(State::default()).1,
                watch::Sender::subscribe,
            ),
        }
    }

    async fn wait_own(&self) -> LostReason {
        match &self.own {
            Own::Renewed(tx) => wait(tx).await,
            Own::Grant(latch) => latch.wait().await,
        }
    }

    /// Resolves when the latch (or its parent) fires.
    pub(crate) async fn lost(&self) -> LostReason {
        match &self.parent {
            None => self.wait_own().await,
            Some(p) => {
                // Boxed: a session's latch has no parent, and every queued waiter keeps a wait
                // on it; inline, this branch's two waits made each of those futures twice the
                // size (docs/contract.md, Performance rules: client memory per queued waiter).
                let woke = Box::pin(async {
                    tokio::select! {
                        r = wait(p) => r,
                        r = self.wait_own() => r,
                    }
                })
                .await;
                // Both may have fired; report the root cause, as `reason()` does.
                self.reason().unwrap_or(woke)
            }
        }
    }
}

/// See [`Liveness::changes`].
pub(crate) struct Changes {
    rx: watch::Receiver<State>,
}

impl Changes {
    /// Resolves once the latch's state changed since the last call, or its deadline passed
    /// (which is a change too: the latch counts as lost from then on).
    pub(crate) async fn changed(&mut self) {
        let deadline = self.rx.borrow_and_update().deadline;
        let changed = async {
            if self.rx.changed().await.is_err() {
                // The latch is gone with everything that could fire it: nothing will change.
                std::future::pending::<()>().await;
            }
        };
        match deadline {
            Some(d) => tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(d) => {}
            },
            None => changed.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn deadline_fires_without_a_timer_task() {
        let l = Liveness::new();
        l.set_deadline(Instant::now() + Duration::from_secs(5));
        assert!(!l.is_lost());
        let r = l.lost().await;
        assert_eq!(r, LostReason::RenewalDeadline);
        assert!(l.is_lost());
    }

    #[tokio::test(start_paused = true)]
    async fn extending_the_deadline_postpones_loss() {
        let l = Liveness::new();
        let start = Instant::now();
        l.set_deadline(start + Duration::from_secs(1));
        let l2 = l.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            l2.set_deadline(start + Duration::from_secs(3));
        });
        l.lost().await;
        assert!(Instant::now() >= start + Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_stays_passed() {
        let l = Liveness::new();
        l.set_deadline(Instant::now() + Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(2)).await;
        // A late renewal answer (e.g. from a thawed server) cannot revive it.
        l.set_deadline(Instant::now() + Duration::from_secs(10));
        assert_eq!(l.reason(), Some(LostReason::RenewalDeadline));
        assert_eq!(l.lost().await, LostReason::RenewalDeadline);
    }

    #[tokio::test]
    async fn child_follows_parent_and_first_reason_wins() {
        let parent = Liveness::new();
        let child = parent.child();
        child.lose(LostReason::EntryDeleted);
        child.lose(LostReason::LeaseExpired);
        assert_eq!(child.reason(), Some(LostReason::EntryDeleted));
        assert!(!parent.is_lost());
        let other = parent.child();
        parent.lose(LostReason::SessionClosed);
        assert_eq!(other.lost().await, LostReason::SessionClosed);
    }
}
