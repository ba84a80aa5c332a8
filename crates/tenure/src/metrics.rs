//! Metrics through the `metrics` crate facade (cargo feature `metrics`). Every metric's name and
//! labels live here, and every primitive records through the same few helpers: an acquisition
//! ([`Meter::acquire`]), a hold ([`Meter::hold`]), a session ([`SessionMeter`]) and a lease
//! renewal ([`renewal`]). The README's "Metrics" section lists them for users.
//!
//! Without the feature the helpers keep their signatures, record nothing and spawn nothing, so
//! the primitives are written once for both builds.

// Without the feature the labels are carried but never read.
#![cfg_attr(not(feature = "metrics"), allow(dead_code, unused_variables))]

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::liveness::{Liveness, LostReason};
use crate::waiting::{self, Stage};
use crate::{Error, Result, Session};

/// Histogram: seconds from calling an acquiring method to its answer, by `backend`,
/// `primitive` and `outcome`.
pub(crate) const ACQUIRE_WAIT: &str = "tenure_acquire_wait_seconds";
/// Histogram: seconds a grant was held, from its grant until its release or loss.
pub(crate) const HOLD: &str = "tenure_hold_seconds";
/// Counter: grants that had to wait for another holder (in the store or in this process)
/// first, i.e. that were handed the lock by a release or a loss.
pub(crate) const HANDOFFS: &str = "tenure_handoffs_total";
/// Counter: grants (and sessions, `primitive="session"`) lost, by `reason`.
pub(crate) const LOST: &str = "tenure_lost_total";
/// Gauge: acquisitions waiting now (every acquiring method but the `try_` ones).
pub(crate) const QUEUED: &str = "tenure_queued_waiters";
/// Gauge: elections this process leads now.
pub(crate) const LEADER: &str = "tenure_leader_held";
/// Gauge: sessions open now (opened, not yet closed, dropped or lost).
pub(crate) const SESSIONS: &str = "tenure_sessions_open";
/// Counter: lease renewals, by `result`.
pub(crate) const RENEWALS: &str = "tenure_lease_renewals_total";
/// Histogram: seconds from sending a lease renewal to its answer, by `result` (answered ones).
pub(crate) const RENEWAL_LATENCY: &str = "tenure_lease_renewal_seconds";

/// Registers a description and unit of every metric Tenure records with the recorder installed
/// now (exporters print them as `# HELP` lines). Optional: without it the metrics are recorded
/// all the same. Call it after installing the recorder.
///
/// ```
/// tenure::describe_metrics(); // no recorder installed: does nothing
/// ```
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        ACQUIRE_WAIT,
        Unit::Seconds,
        "Time from calling an acquiring method until it answered, by outcome"
    );
    describe_histogram!(
        HOLD,
        Unit::Seconds,
        "Time a grant was held, from grant to release or loss"
    );
    describe_counter!(
        HANDOFFS,
        "Grants that waited for another holder first (handed over by a release or a loss)"
    );
    describe_counter!(
        LOST,
        "Grants, and sessions (primitive=session), lost while held, by reason"
    );
    describe_gauge!(QUEUED, "Acquisitions of this process waiting now");
    describe_gauge!(LEADER, "Elections this process leads now");
    describe_gauge!(SESSIONS, "Sessions of this process open now");
    describe_counter!(RENEWALS, "Lease renewals, by result");
    describe_histogram!(
        RENEWAL_LATENCY,
        Unit::Seconds,
        "Time from sending a lease renewal until its answer"
    );
}

/// Metrics options of a [`crate::Builder`], carried by each session it opens.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// Label per-lock metrics with the lock's name (`Builder::metrics_name_label`).
    pub(crate) name_label: bool,
}

/// The kind of primitive a metric is about (the `primitive` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Primitive {
    Mutex,
    Election,
    Semaphore,
    RwLockRead,
    RwLockWrite,
}

impl Primitive {
    fn as_str(self) -> &'static str {
        match self {
            Primitive::Mutex => "mutex",
            Primitive::Election => "election",
            Primitive::Semaphore => "semaphore",
            Primitive::RwLockRead => "rwlock_read",
            Primitive::RwLockWrite => "rwlock_write",
        }
    }
}

/// How an acquisition ended (the `outcome` label).
fn outcome<T>(answer: &Result<T>, waits: bool) -> &'static str {
    match answer {
        Ok(_) => "acquired",
        Err(Error::Timeout { .. }) => "timed_out",
        // A `try_` that found the lock taken: contention, not a fault.
        Err(Error::Locked { .. }) if !waits => "busy",
        Err(_) => "failed",
    }
}

/// `LostReason` as its snake-case label value (the same spelling as its serde form).
fn reason_label(reason: LostReason) -> &'static str {
    match reason {
        LostReason::LeaseExpired => "lease_expired",
        LostReason::RenewalDeadline => "renewal_deadline",
        LostReason::EntryDeleted => "entry_deleted",
        LostReason::SessionClosed => "session_closed",
    }
}

/// What one primitive's metrics are labelled with: backend, primitive, and the lock's name
/// when the session's [`Options::name_label`] asks for it.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    backend: &'static str,
    primitive: Primitive,
    name: Option<Arc<str>>,
}

impl Meter {
    pub(crate) fn new(session: &Session, primitive: Primitive, name: &str) -> Self {
        let meter = &session.inner.metrics;
        Meter {
            backend: meter.backend,
            primitive,
            name: meter.options.name_label.then(|| name.into()),
        }
    }

    /// Runs the acquisition `wait` inside `stage` (see [`crate::waiting`]), recording its wait
    /// and outcome when it answers, or as `cancelled` when it is dropped first. `waits`: it may
    /// wait for others (every acquiring method but the `try_` ones), so it counts as a queued
    /// waiter meanwhile, and as a hand-off if it was granted after waiting behind someone.
    pub(crate) async fn acquire<T>(
        &self,
        stage: &Stage,
        waits: bool,
        wait: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        #[cfg(feature = "metrics")]
        let mut recording = Acquiring::start(self, stage, waits);
        let answer = waiting::observed(stage, wait).await;
        #[cfg(feature = "metrics")]
        {
            recording.outcome = Some(outcome(&answer, waits));
        }
        answer
    }

    /// [`Meter::acquire`] for a wait bounded by `timeout`: past it, the wait is dropped (which
    /// withdraws it, C5) and the answer is [`crate::Error::Timeout`] for `name`, saying what
    /// the wait was doing then ([`crate::Waiting`]). The `*_timeout` methods of every
    /// primitive.
    pub(crate) async fn acquire_within<T>(
        &self,
        name: &str,
        timeout: std::time::Duration,
        wait: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let stage = Stage::recording();
        let bounded = async {
            tokio::time::timeout(timeout, wait)
                .await
                .map_err(|_| crate::Error::Timeout {
                    name: name.to_string(),
                    waited: timeout,
                    waiting: stage.get(),
                })?
        };
        self.acquire(&stage, true, bounded).await
    }

    /// Starts timing a grant that was just acquired, watching `liveness` so that a loss is
    /// counted when it happens, not when the guard is dropped.
    pub(crate) fn hold(&self, liveness: &Liveness) -> Holding {
        Holding::start(self, liveness)
    }
}

#[cfg(feature = "metrics")]
mod record {
    use ::metrics::Label;

    use super::*;

    impl Meter {
        /// The labels every per-lock metric has, then `extra`.
        pub(super) fn labels(&self, extra: &[(&'static str, &'static str)]) -> Vec<Label> {
            let mut labels = Vec::with_capacity(3 + extra.len());
            labels.push(Label::from_static_parts("backend", self.backend));
            labels.push(Label::from_static_parts(
                "primitive",
                self.primitive.as_str(),
            ));
            if let Some(name) = &self.name {
                labels.push(Label::new("name", name.to_string()));
            }
            labels.extend(extra.iter().map(|(k, v)| Label::from_static_parts(k, v)));
            labels
        }
    }

    /// An acquisition in progress; records itself when dropped, as `cancelled` unless an
    /// outcome was set, so that a dropped or aborted acquisition is counted too.
    pub(super) struct Acquiring<'a> {
        meter: &'a Meter,
        stage: Stage,
        started: Instant,
        waits: bool,
        pub(super) outcome: Option<&'static str>,
    }

    impl<'a> Acquiring<'a> {
        pub(super) fn start(meter: &'a Meter, stage: &Stage, waits: bool) -> Self {
            if waits {
                ::metrics::gauge!(QUEUED, meter.labels(&[])).increment(1.0);
            }
            Acquiring {
                meter,
                stage: stage.clone(),
                started: Instant::now(),
                waits,
                outcome: None,
            }
        }
    }

    impl Drop for Acquiring<'_> {
        fn drop(&mut self) {
            let outcome = self.outcome.unwrap_or("cancelled");
            let labels = self.meter.labels(&[("outcome", outcome)]);
            ::metrics::histogram!(ACQUIRE_WAIT, labels).record(self.started.elapsed());
            if self.waits {
                ::metrics::gauge!(QUEUED, self.meter.labels(&[])).decrement(1.0);
            }
            if outcome == "acquired" && self.stage.blocked() {
                ::metrics::counter!(HANDOFFS, self.meter.labels(&[])).increment(1);
            }
        }
    }
}
#[cfg(feature = "metrics")]
use record::Acquiring;

/// A grant being held: records its hold time, and its loss if it is lost, once — at the loss,
/// or at its release or drop, whichever comes first. Leadership also counts in
/// [`LEADER`] meanwhile.
#[derive(Debug)]
pub(crate) struct Holding {
    #[cfg(feature = "metrics")]
    inner: HoldingInner,
}

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct HoldingInner {
    state: Arc<HoldState>,
    /// Ends the hold at the moment of loss; aborted when the hold ends otherwise.
    watcher: Option<AbortHandle>,
    liveness: Liveness,
}

#[derive(Debug)]
struct HoldState {
    meter: Meter,
    started: Instant,
    ended: AtomicBool,
}

#[cfg(feature = "metrics")]
impl HoldState {
    /// Records the end of the hold, once: `lost` if it ended by loss.
    fn end(&self, lost: Option<LostReason>) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let meter = &self.meter;
        ::metrics::histogram!(HOLD, meter.labels(&[])).record(self.started.elapsed());
        if let Some(reason) = lost {
            let labels = meter.labels(&[("reason", reason_label(reason))]);
            ::metrics::counter!(LOST, labels).increment(1);
        }
        if meter.primitive == Primitive::Election {
            ::metrics::gauge!(LEADER, leader_labels(meter)).decrement(1.0);
        }
    }
}

/// The leader gauge is per backend (and name), not per primitive: only elections have leaders.
#[cfg(feature = "metrics")]
fn leader_labels(meter: &Meter) -> Vec<::metrics::Label> {
    let mut labels = vec![::metrics::Label::from_static_parts(
        "backend",
        meter.backend,
    )];
    if let Some(name) = &meter.name {
        labels.push(::metrics::Label::new("name", name.to_string()));
    }
    labels
}

/// Runs `end` with the reason when `liveness` fires, on the current runtime (if any).
#[cfg(feature = "metrics")]
fn on_loss(
    liveness: &Liveness,
    end: impl FnOnce(LostReason) + Send + 'static,
) -> Option<AbortHandle> {
    let rt = tokio::runtime::Handle::try_current().ok()?;
    let liveness = liveness.clone();
    let task = rt.spawn(async move { end(liveness.lost().await) });
    Some(task.abort_handle())
}

impl Holding {
    fn start(meter: &Meter, liveness: &Liveness) -> Self {
        #[cfg(feature = "metrics")]
        {
            if meter.primitive == Primitive::Election {
                ::metrics::gauge!(LEADER, leader_labels(meter)).increment(1.0);
            }
            let state = Arc::new(HoldState {
                meter: meter.clone(),
                started: Instant::now(),
                ended: AtomicBool::new(false),
            });
            let watched = state.clone();
            let watcher = on_loss(liveness, move |reason| watched.end(Some(reason)));
            Holding {
                inner: HoldingInner {
                    state,
                    watcher,
                    liveness: liveness.clone(),
                },
            }
        }
        #[cfg(not(feature = "metrics"))]
        Holding {}
    }

    /// Ends the hold now (a release was asked for, or the guard was dropped): counted as lost
    /// if the grant was lost before. Call it before the store is told to release, so that the
    /// release itself (which may fire the grant's own lost signal) is never taken for a loss.
    pub(crate) fn end(&self) {
        #[cfg(feature = "metrics")]
        {
            let inner = &self.inner;
            if let Some(watcher) = &inner.watcher {
                watcher.abort();
            }
            inner.state.end(inner.liveness.reason());
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.end();
    }
}

/// A session's share of the metrics: counts it in [`SESSIONS`] while open, and its loss in
/// [`LOST`] (`primitive="session"`) when the store or the deadline ends it.
#[derive(Debug)]
pub(crate) struct SessionMeter {
    /// The `backend` label of everything recorded under the session.
    pub(crate) backend: &'static str,
    pub(crate) options: Options,
    state: Arc<SessionState>,
    watcher: Option<AbortHandle>,
    liveness: Liveness,
}

#[derive(Debug)]
struct SessionState {
    backend: &'static str,
    ended: AtomicBool,
}

impl SessionState {
    fn end(&self, lost: Option<LostReason>) {
        let first = !self.ended.swap(true, Ordering::SeqCst);
        #[cfg(feature = "metrics")]
        if first {
            let backend = ::metrics::Label::from_static_parts("backend", self.backend);
            ::metrics::gauge!(SESSIONS, vec![backend.clone()]).decrement(1.0);
            // Closing is the owner's choice, not a loss.
            if let Some(reason) = lost.filter(|r| *r != LostReason::SessionClosed) {
                let labels = vec![
                    backend,
                    ::metrics::Label::from_static_parts("primitive", "session"),
                    ::metrics::Label::from_static_parts("reason", reason_label(reason)),
                ];
                ::metrics::counter!(LOST, labels).increment(1);
            }
        }
    }
}

impl SessionMeter {
    /// A session just opened on `backend` (its kind: "etcd", "zk", …), whose lease `liveness`
    /// follows.
    pub(crate) fn open(backend: &'static str, options: Options, liveness: &Liveness) -> Self {
        let state = Arc::new(SessionState {
            backend,
            ended: AtomicBool::new(false),
        });
        #[cfg(feature = "metrics")]
        let watcher = {
            let labels = vec![::metrics::Label::from_static_parts("backend", backend)];
            ::metrics::gauge!(SESSIONS, labels).increment(1.0);
            let watched = state.clone();
            on_loss(liveness, move |reason| watched.end(Some(reason)))
        };
        #[cfg(not(feature = "metrics"))]
        let watcher = None;
        SessionMeter {
            backend,
            options,
            state,
            watcher,
            liveness: liveness.clone(),
        }
    }

    /// The owner closed or dropped the session: no longer open; lost if it was lost before
    /// (the watcher may not have run yet).
    pub(crate) fn close(&self) {
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
        self.state.end(self.liveness.reason());
    }
}

impl Drop for SessionMeter {
    fn drop(&mut self) {
        self.close();
    }
}

/// How a lease renewal ended (the `result` label of [`RENEWALS`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Renewal {
    /// The store confirmed the lease.
    Ok,
    /// The request failed (connection refused, no leader, …); retried.
    Failed,
    /// No answer within a third of the TTL; retried.
    Unanswered,
    /// The store says the lease is gone.
    Expired,
}

/// Records one lease renewal on `backend`, sent `latency` before its answer (`None`: never
/// answered).
pub(crate) fn renewal(backend: &'static str, result: Renewal, latency: Option<Duration>) {
    #[cfg(feature = "metrics")]
    {
        let result = match result {
            Renewal::Ok => "ok",
            Renewal::Failed => "failed",
            Renewal::Unanswered => "unanswered",
            Renewal::Expired => "expired",
        };
        let labels = [
            ::metrics::Label::from_static_parts("backend", backend),
            ::metrics::Label::from_static_parts("result", result),
        ];
        ::metrics::counter!(RENEWALS, labels.to_vec()).increment(1);
        if let Some(latency) = latency {
            ::metrics::histogram!(RENEWAL_LATENCY, labels.to_vec()).record(latency);
        }
    }
}
