//! A fault-injecting [`QueueStore`] for tests: the faults that break lock libraries in
//! production, injected per call by a seeded RNG so that a failing run can be replayed.
//!
//! Per store call [`Faulty`] may fail before applying, apply and then lose the answer, delay,
//! hang (no answer until the store's own request timeout, by which time the caller may have
//! dropped the future at that await point), break a watch before the deletion it waits for, or
//! compact the store's history as etcd does: a holder's own watch that starts at a compacted
//! revision is refused, and refused again every time it is re-armed there. [`drop_at_pending`]
//! is the caller's side: it abandons a public-API future at its K-th await point.
//!
//! Every retried step must be safe when its first attempt was applied (C8, C13 in
//! docs/contract.md); these faults are how the tests check it without a server.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;

use super::lease::Renewer;
use super::observe::Kv;
use super::queue::{Ahead, Enqueued, QueueEntry, QueueStore, Role, Ticket};
use super::semaphore::Unlocked;
use crate::liveness::Liveness;
use crate::{Error, Result, Write};

/// How often each fault strikes, as a probability per store call (at most one of the call
/// faults per call; compaction is drawn on its own).
#[derive(Debug, Clone)]
pub(crate) struct FaultConfig {
    /// The request fails before the store sees it.
    pub fail_before: f64,
    /// The store applies the request, but the answer is lost.
    pub answer_lost: f64,
    /// The request or its answer is delayed by up to `max_delay`.
    pub delay: f64,
    pub max_delay: Duration,
    /// The request (applied or not) is not answered until `request_timeout` has passed, when
    /// the store's client gives up with a transient fault (as `call_with` does on etcd).
    pub hang: f64,
    pub request_timeout: Duration,
    /// A write reaches the store late, up to twice `request_timeout` after it was sent, and is
    /// applied then even if the caller has given up on it (as etcd applies a request that was
    /// proposed before its client timed out); the caller has its answer if it comes within
    /// `request_timeout`, else a transient fault.
    pub late: f64,
    /// A watch breaks within `max_delay`, before the deletion it waits for.
    pub break_watch: f64,
    /// The store's history is compacted up to its current revision.
    pub compact: f64,
    /// Whether lease renewals fault too (at the call rates, breaks aside). A session whose
    /// renewals keep failing is lost at its local deadline, as it must be (C7b).
    pub renewals: bool,
}

/// One injected fault, as the schedule records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    FailBefore,
    AnswerLost,
    DelayBefore(Duration),
    DelayAfter(Duration),
    Hang { applied: bool },
    Late(Duration),
    Break(Duration),
}

/// What a call does to the store, which decides the faults it can meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Read,
    /// Changes the store: may also arrive late.
    Write,
    /// May also break.
    Watch,
}

/// One watcher's start: `(session, op, key, revision)`.
type WatchStart = (u64, &'static str, String, i64);

/// The faults for one store, shared by all its sessions: the seed, the rates, the compacted
/// revision, and the schedule of what was injected.
pub(crate) struct FaultPlan {
    seed: u64,
    config: FaultConfig,
    /// The store's current revision (compaction compacts up to it).
    revision: Box<dyn Fn() -> i64 + Send + Sync>,
    sessions: AtomicU64,
    compacted: AtomicI64,
    /// Watch starts already refused as compacted, `(session, op, key, revision)`, and how
    /// often (two watchers may well start at one revision; one watcher must not twice).
    refused: StdMutex<HashMap<WatchStart, u32>>,
    schedule: StdMutex<Vec<String>>,
    violations: StdMutex<Vec<String>>,
    /// Faults that strike exactly where a test says, on top of the random ones.
    script: Vec<Scripted>,
}

/// A fault a test places by hand: on session `session`'s `nth` call (from 0) of `op`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scripted {
    pub session: u64,
    pub op: &'static str,
    pub nth: u64,
    pub fault: Fault,
}

impl FaultPlan {
    /// A plan for a store whose current revision `revision` reads.
    pub(crate) fn new(
        seed: u64,
        config: FaultConfig,
        revision: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FaultPlan {
            seed,
            config,
            revision: Box::new(revision),
            sessions: AtomicU64::new(0),
            compacted: AtomicI64::new(0),
            refused: StdMutex::default(),
            schedule: StdMutex::default(),
            violations: StdMutex::default(),
            script: Vec::new(),
        })
    }

    /// A plan with no random faults, only `script`'s, for a store whose current revision
    /// `revision` reads.
    pub(crate) fn scripted(
        script: Vec<Scripted>,
        revision: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Arc<Self> {
        let none = FaultConfig {
            fail_before: 0.0,
            answer_lost: 0.0,
            delay: 0.0,
            max_delay: Duration::from_millis(20),
            hang: 0.0,
            request_timeout: Duration::from_secs(5),
            late: 0.0,
            break_watch: 0.0,
            compact: 0.0,
            renewals: false,
        };
        let mut plan = FaultPlan::new(0, none, revision);
        if let Some(p) = Arc::get_mut(&mut plan) {
            p.script = script;
        }
        plan
    }

    /// Compacts the store's history up to its current revision, now.
    pub(crate) fn compact(&self) {
        let rev = (self.revision)();
        self.compacted.fetch_max(rev, Ordering::SeqCst);
        self.record(format!("compacted up to {rev}"));
    }

    fn record(&self, line: String) {
        lock(&self.schedule).push(line);
    }

    /// Puts what the caller did into the schedule, between the faults it met.
    pub(crate) fn note(&self, line: String) {
        self.record(format!("-- {line}"));
    }

    /// Everything injected so far, in order.
    pub(crate) fn schedule(&self) -> Vec<String> {
        lock(&self.schedule).clone()
    }

    /// Contract breaches the injector saw itself (a watch re-armed at a revision it was
    /// already told is compacted: on etcd that loops for as long as the grant is held).
    pub(crate) fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    /// The seed, the rates and the schedule, for a failure message.
    pub(crate) fn report(&self) -> String {
        let schedule = self.schedule();
        let shown = schedule.len().saturating_sub(400);
        let mut out = format!(
            "fault seed {} ({:?}), {} faults injected{}:\n",
            self.seed,
            self.config,
            schedule.len(),
            if shown > 0 { ", the last 400" } else { "" }
        );
        for line in &schedule[shown..] {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        for v in self.violations() {
            out.push_str("  VIOLATION ");
            out.push_str(&v);
            out.push('\n');
        }
        out
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn transient(op: &'static str, message: impl Into<String>) -> Error {
    Error::Transient {
        op,
        message: message.into(),
        source: None,
    }
}

/// One session's generator, so that its faults do not depend on how its calls interleave
/// with other sessions', and the number of calls it has drawn for.
struct Dice {
    rng: fastrand::Rng,
    calls: u64,
    /// Calls per operation, for scripted faults.
    per_op: HashMap<&'static str, u64>,
}

impl Dice {
    fn new(seed: u64, ordinal: u64, stream: u64) -> Self {
        let mix = ordinal.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream;
        Dice {
            rng: fastrand::Rng::with_seed(seed.wrapping_add(mix)),
            calls: 0,
            per_op: HashMap::new(),
        }
    }
}

impl FaultPlan {
    /// A number for the next session opened on this plan, in opening order.
    pub(crate) fn open_session(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::SeqCst)
    }

    /// Draws session `ordinal`'s fault for a call of `op` (and maybe a compaction), recording
    /// what was drawn; a scripted fault for this call overrides the draw.
    fn draw(&self, ordinal: u64, dice: &mut Dice, op: &'static str, call: Call) -> Option<Fault> {
        let who = format!("s{ordinal}");
        let n = dice.calls;
        dice.calls += 1;
        let nth = dice.per_op.entry(op).or_default();
        let scripted = self
            .script
            .iter()
            .find(|s| s.session == ordinal && s.op == op && s.nth == *nth);
        *nth += 1;
        let c = &self.config;
        let rng = &mut dice.rng;
        let compact = rng.f64() < c.compact;
        let roll = rng.f64();
        let before = rng.bool();
        let delay = c.max_delay.mul_f64(rng.f64());
        if compact {
            let rev = (self.revision)();
            let was = self.compacted.fetch_max(rev, Ordering::SeqCst);
            if rev > was {
                self.record(format!("{who}#{n} {op}: compacted up to {rev}"));
            }
        }
        let mut edge = 0.0;
        let mut hit = |p: f64| {
            edge += p;
            roll < edge
        };
        let fault = if hit(c.fail_before) {
            Some(Fault::FailBefore)
        } else if hit(c.answer_lost) {
            Some(Fault::AnswerLost)
        } else if hit(c.delay) {
            Some(if before {
                Fault::DelayBefore(delay)
            } else {
                Fault::DelayAfter(delay)
            })
        } else if hit(c.hang) {
            Some(Fault::Hang { applied: before })
        } else if call == Call::Write && hit(c.late) {
            Some(Fault::Late(c.request_timeout.mul_f64(2.0 * rng.f64())))
        } else if call == Call::Watch && hit(c.break_watch) {
            Some(Fault::Break(delay))
        } else {
            None
        };
        let fault = scripted.map(|s| s.fault).or(fault);
        if let Some(f) = fault {
            self.record(format!("{who}#{n} {op}: {f:?}"));
        }
        fault
    }

    /// Runs one request under `fault`.
    async fn faulted<T>(
        &self,
        op: &'static str,
        fault: Option<Fault>,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        // `request` is lazy: a fault that returns before awaiting it never reaches the store.
        match fault {
            None => request.await,
            Some(Fault::FailBefore) => Err(transient(op, "injected: failed before applying")),
            Some(Fault::AnswerLost) => {
                let _ = request.await;
                Err(transient(op, "injected: applied, answer lost"))
            }
            Some(Fault::DelayBefore(d)) => {
                tokio::time::sleep(d).await;
                request.await
            }
            Some(Fault::DelayAfter(d)) => {
                let answer = request.await;
                tokio::time::sleep(d).await;
                answer
            }
            Some(Fault::Hang { applied }) => {
                if applied {
                    let _ = request.await;
                }
                let timeout = self.config.request_timeout;
                tokio::time::sleep(timeout).await;
                Err(transient(
                    op,
                    format!("injected: no answer within {timeout:?}"),
                ))
            }
            // Only `late` can make a request outlive its caller; here it is just slow.
            Some(Fault::Late(d)) => {
                tokio::time::sleep(d).await;
                request.await
            }
            Some(Fault::Break(d)) => tokio::select! {
                answer = request => answer,
                () = tokio::time::sleep(d) => Err(transient(op, "injected: watch broken")),
            },
        }
    }
}

impl FaultPlan {
    /// Sends `request` to arrive `d` from now whatever becomes of the caller, who hears the
    /// answer if it comes within the request timeout.
    async fn late<T: Send + 'static>(
        &self,
        op: &'static str,
        d: Duration,
        request: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            let _ = tx.send(request.await);
        });
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(transient(op, "injected: the request was dropped")),
            Err(_) => Err(transient(
                op,
                format!("injected: no answer within {timeout:?} (applied later)"),
            )),
        }
    }
}

/// A session of store `S` whose every call may fault, as its plan decides.
pub(crate) struct Faulty<S> {
    inner: Arc<S>,
    plan: Arc<FaultPlan>,
    /// Which session of the plan this is (see [`FaultPlan::open_session`]).
    ordinal: u64,
    dice: StdMutex<Dice>,
}

impl<S: QueueStore> Faulty<S> {
    pub(crate) fn new(inner: S, plan: Arc<FaultPlan>, ordinal: u64) -> Self {
        let dice = StdMutex::new(Dice::new(plan.seed, ordinal, 0));
        Faulty {
            inner: Arc::new(inner),
            plan,
            ordinal,
            dice,
        }
    }

    fn draw(&self, op: &'static str, call: Call) -> Option<Fault> {
        self.plan
            .draw(self.ordinal, &mut lock(&self.dice), op, call)
    }

    /// Runs one read under this call's fault.
    async fn read<T>(
        &self,
        op: &'static str,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let fault = self.draw(op, Call::Read);
        self.plan.faulted(op, fault, request).await
    }

    /// Runs one write under this call's fault. `request` owns what it needs, so that a late
    /// one can still be applied after the caller is gone.
    async fn write<T: Send + 'static>(
        &self,
        op: &'static str,
        request: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match self.draw(op, Call::Write) {
            Some(Fault::Late(d)) => self.plan.late(op, d, request).await,
            fault => self.plan.faulted(op, fault, request).await,
        }
    }

    /// A watch of `key` from revision `rev + 1`: refused if that start is compacted (as etcd
    /// cancels such a watch), else faulted like a call.
    async fn watch(
        &self,
        op: &'static str,
        key: &str,
        rev: i64,
        watch: impl Future<Output = Result<()>>,
    ) -> Result<()> {
        let fault = self.draw(op, Call::Watch);
        let compacted = self.plan.compacted.load(Ordering::SeqCst);
        // etcd refuses a watch whose start revision is below the compaction revision.
        if rev + 1 < compacted {
            let refusals = {
                let mut refused = lock(&self.plan.refused);
                let n = refused
                    .entry((self.ordinal, op, key.to_string(), rev))
                    .or_default();
                *n += 1;
                *n
            };
            // One line per watch is enough; the loop would repeat it without end.
            if refusals == 2 {
                lock(&self.plan.violations).push(format!(
                    "s{}: {op} of {key} re-armed at revision {rev}, already refused as \
                     compacted (at {compacted}): on etcd this is refused forever",
                    self.ordinal
                ));
            }
            return Err(transient(
                op,
                format!("injected: required revision {} has been compacted", rev + 1),
            ));
        }
        self.plan.faulted(op, fault, watch).await
    }
}

#[async_trait]
impl<S: QueueStore> QueueStore for Faulty<S> {
    async fn enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Enqueued> {
        let (inner, prefix, value) = (self.inner.clone(), prefix.to_string(), value.to_vec());
        self.write("enqueue", async move {
            inner.enqueue(&prefix, &value, role, ticket).await
        })
        .await
    }

    async fn enqueue_if_empty(
        &self,
        prefix: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        let (inner, prefix, value) = (self.inner.clone(), prefix.to_string(), value.to_vec());
        self.write("enqueue_if_empty", async move {
            inner.enqueue_if_empty(&prefix, &value, ticket).await
        })
        .await
    }

    async fn ahead(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead> {
        self.read("ahead", self.inner.ahead(prefix, mine)).await
    }

    // Never refused as compacted: `rev` names which version of `key` to wait for, and the
    // watch starts from the store's present (etcd: a watch from now, then a read), so no
    // compaction can refuse it; a predecessor watch only breaks.
    async fn wait_deleted(&self, key: &str, rev: i64) -> Result<()> {
        let fault = self.draw("wait_deleted", Call::Watch);
        self.plan
            .faulted("wait_deleted", fault, self.inner.wait_deleted(key, rev))
            .await
    }

    // A holder's own watch starts right after `rev` (etcd: `start_revision = rev + 1`, to
    // spare the uncontended path a read), so a compaction past `rev` refuses it.
    async fn watch_own(&self, mine: &QueueEntry, rev: i64) -> Result<()> {
        self.watch("watch_own", &mine.key, rev, self.inner.watch_own(mine, rev))
            .await
    }

    async fn remove(&self, mine: &QueueEntry) -> Result<bool> {
        let (inner, mine) = (self.inner.clone(), mine.clone());
        self.write("remove", async move { inner.remove(&mine).await })
            .await
    }

    async fn forbid(&self, prefix: &str, ticket: Ticket) -> Result<()> {
        let (inner, prefix) = (self.inner.clone(), prefix.to_string());
        self.write("forbid", async move { inner.forbid(&prefix, ticket).await })
            .await
    }

    async fn own_entries(&self, prefix: &str) -> Result<Vec<QueueEntry>> {
        self.read("own_entries", self.inner.own_entries(prefix))
            .await
    }

    async fn add_lease(
        &self,
        dir: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<(QueueEntry, Vec<Kv>)> {
        let (inner, dir, value) = (self.inner.clone(), dir.to_string(), value.to_vec());
        self.write("add_lease", async move {
            inner.add_lease(&dir, &value, ticket).await
        })
        .await
    }

    async fn add_lease_if_unlocked(
        &self,
        dir: &str,
        locks: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<Unlocked> {
        let (inner, dir, value) = (self.inner.clone(), dir.to_string(), value.to_vec());
        let locks = locks.to_string();
        self.write("add_lease_if_unlocked", async move {
            inner
                .add_lease_if_unlocked(&dir, &locks, &value, ticket)
                .await
        })
        .await
    }

    async fn leases(&self, dir: &str) -> Result<Vec<Kv>> {
        self.read("leases", self.inner.leases(dir)).await
    }

    async fn own_lease(&self, dir: &str, ticket: Ticket) -> Result<Option<QueueEntry>> {
        self.read("own_lease", self.inner.own_lease(dir, ticket))
            .await
    }

    async fn guarded_write(&self, mine: &QueueEntry, ops: &[Write]) -> Result<bool> {
        let (inner, mine, ops) = (self.inner.clone(), mine.clone(), ops.to_vec());
        self.write("guarded_write", async move {
            inner.guarded_write(&mine, &ops).await
        })
        .await
    }

    async fn proclaim(&self, mine: &QueueEntry, value: &[u8]) -> Result<bool> {
        let (inner, mine, value) = (self.inner.clone(), mine.clone(), value.to_vec());
        self.write(
            "proclaim",
            async move { inner.proclaim(&mine, &value).await },
        )
        .await
    }

    async fn put_ephemeral(&self, key: &str, value: &[u8]) -> Result<bool> {
        let (inner, key, value) = (self.inner.clone(), key.to_string(), value.to_vec());
        self.write("put_ephemeral", async move {
            inner.put_ephemeral(&key, &value).await
        })
        .await
    }

    async fn try_enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        let (inner, prefix, value) = (self.inner.clone(), prefix.to_string(), value.to_vec());
        self.write("try_enqueue", async move {
            inner.try_enqueue(&prefix, &value, role, ticket).await
        })
        .await
    }

    async fn ahead_of_reader(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead> {
        self.read("ahead_of_reader", self.inner.ahead_of_reader(prefix, mine))
            .await
    }

    // Like `wait_deleted`: from the store's present, so it only breaks.
    async fn wait_released(&self, key: &str, rev: i64) -> Result<()> {
        let fault = self.draw("wait_released", Call::Watch);
        self.plan
            .faulted("wait_released", fault, self.inner.wait_released(key, rev))
            .await
    }

    async fn downgrade(&self, mine: &QueueEntry) -> Result<bool> {
        let (inner, mine) = (self.inner.clone(), mine.clone());
        self.write("downgrade", async move { inner.downgrade(&mine).await })
            .await
    }

    async fn lease_alive(&self) -> Result<bool> {
        self.read("lease_alive", self.inner.lease_alive()).await
    }

    // Not faulted: closing revokes the lease, which belongs to the session's lifecycle (as
    // renewals do), not to the recipe under test; the clauses close sessions and expect it.
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn abandon(&self) {
        self.inner.abandon();
    }

    fn lease_id(&self) -> u64 {
        self.inner.lease_id()
    }

    fn liveness(&self) -> &Liveness {
        self.inner.liveness()
    }

    fn granted_ttl(&self) -> Option<Duration> {
        self.inner.granted_ttl()
    }
}

/// A session's lease renewals, faulting as its plan says when `renewals` is on.
pub(crate) struct FaultyRenewer<R> {
    inner: R,
    plan: Arc<FaultPlan>,
    ordinal: u64,
    dice: Dice,
}

impl<R: Renewer> FaultyRenewer<R> {
    pub(crate) fn new(inner: R, plan: Arc<FaultPlan>, ordinal: u64) -> Self {
        // A stream of its own: renewals run on the clock, not in step with the session's calls.
        let dice = Dice::new(plan.seed, ordinal, 0x5eed_4e4e);
        FaultyRenewer {
            inner,
            plan,
            ordinal,
            dice,
        }
    }
}

#[async_trait]
impl<R: Renewer> Renewer for FaultyRenewer<R> {
    async fn renew(&mut self) -> Result<Option<Duration>> {
        let scripted = self.plan.script.iter().any(|s| s.op == "renew");
        if !self.plan.config.renewals && !scripted {
            return self.inner.renew().await;
        }
        let fault = self
            .plan
            .draw(self.ordinal, &mut self.dice, "renew", Call::Read);
        self.plan.faulted("renew", fault, self.inner.renew()).await
    }

    fn reset(&mut self) {
        self.inner.reset();
    }
}

/// Polls `fut` until it has been pending `k` times, then drops it there: the caller giving up
/// at its K-th await point. `None` if dropped, else what `fut` returned first.
pub(crate) async fn drop_at_pending<F: Future>(fut: F, k: usize) -> Option<F::Output> {
    if k == 0 {
        return None;
    }
    let mut fut = std::pin::pin!(fut);
    let mut pendings = 0;
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => {
            pendings += 1;
            if pendings >= k {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drop_at_pending_counts_await_points() {
        let three_yields = async {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            7
        };
        assert_eq!(drop_at_pending(three_yields, 4).await, Some(7));
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        let counted = async move {
            tokio::task::yield_now().await;
            d.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            d.fetch_add(1, Ordering::SeqCst);
        };
        assert_eq!(drop_at_pending(counted, 2).await, None);
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "dropped at the second");
    }
}
