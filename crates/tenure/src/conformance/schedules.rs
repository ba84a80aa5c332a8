//! Many short random scenarios under injected faults, each from one seed: a few sessions lock,
//! try, time out, cancel, campaign, take a read/write lock's either side (and downgrade), write
//! and release (by `unlock`, by drop, or by abandoning `unlock` at an await point) while their
//! store calls fault; then the contract is checked. The read/write lock's operations come from
//! a generator of their own, so every schedule's other operations are as they were before it.
//!
//! In a third of the scenarios one session crashes (stops renewing, as a dead process would)
//! or is closed part-way, so that holders are lost and waiters see their session end.
//!
//! Checked per scenario: never two valid holders of one name (C1: when a name is granted,
//! whoever held it before has been told it lost it; for the read/write lock, a writer never
//! beside a valid reader or writer, a reader never beside a valid writer); tokens strictly increase (C2); `try_lock` never names our own entry as the holder, `unlock` never reports a loss
//! nobody caused, no call hangs past a bound (C8, C11, C13); no entry is left in the store once
//! the background cleanups have run, and a newcomer gets the lock and the leadership (C5, C13);
//! no watch is re-armed at a revision already refused as compacted (the injector's own check).
//!
//! Time is tokio's paused clock, so hangs, TTLs and backoffs cost no real time. The default
//! run is a fixed set of schedules; `TENURE_FAULT_SCHEDULES=N` runs N from a random base seed,
//! `TENURE_FAULT_SEED=S` replays schedule S alone, and `TENURE_FAULT_KINDS=answer_lost,hang`
//! limits the kinds of fault drawn (to tell which kind finds a defect; `all`, the default, draws
//! every kind).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use crate::backend::embedded::MemStore;
use crate::backend::faulty::{drop_at_pending, FaultConfig, FaultPlan};
use crate::{
    Error, FencingToken, Leadership, MutexGuard, ReadGuard, Session, Tenure, Write, WriteGuard,
};

/// Schedules in the default run (`cargo test`, `scripts/test`).
const DEFAULT_SCHEDULES: u64 = 1000;
/// Any single public call that takes longer than this (virtual time) has hung: the worst
/// legitimate case is a queue of a few holders, each slowed by a full retry budget of hangs.
const BOUND: Duration = Duration::from_secs(600);
/// Virtual time after the last task for background releases and withdrawals to finish: a
/// release's whole retry budget of hangs and backoffs takes under 45 s.
const QUIESCE: Duration = Duration::from_secs(60);
/// Real time one schedule may take; only a busy loop (no timers to advance to) exceeds it.
const REAL_LIMIT: Duration = Duration::from_secs(60);

const MUTEX: &str = "m";
const ELECTION: &str = "e";
/// The read/write lock of the scenarios (docs/contract.md, Read/write locks).
const RW: &str = "r";

/// The fault kinds, by the names `TENURE_FAULT_KINDS` takes.
const KINDS: [&str; 8] = [
    "fail_before",
    "answer_lost",
    "delay",
    "hang",
    "late",
    "break_watch",
    "compact",
    "renewals",
];

#[derive(Debug, Clone, Copy)]
enum Acquire {
    Lock,
    TryLock,
    LockTimeout(Duration),
    /// `lock()` abandoned at its K-th await point.
    DroppedLock(usize),
    Campaign,
    /// `campaign()` abandoned at its K-th await point.
    DroppedCampaign(usize),
    Read,
    TryRead,
    ReadTimeout(Duration),
    /// `read()` abandoned at its K-th await point.
    DroppedRead(usize),
    Write,
    TryWrite,
    /// `write()` abandoned at its K-th await point.
    DroppedWrite(usize),
}

#[derive(Debug, Clone, Copy)]
enum Release {
    Unlock,
    Drop,
    /// `unlock()`/`resign()` abandoned at its K-th await point.
    DroppedUnlock(usize),
}

#[derive(Debug, Clone, Copy)]
struct Op {
    acquire: Acquire,
    hold: Duration,
    write: bool,
    /// A write hold is downgraded half-way through.
    downgrade: bool,
    release: Release,
}

/// How a session ends before the scenario does.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Stops renewing without revoking ([`Session::simulate_crash`]).
    Crash,
    /// Revokes its lease ([`Session::close`]).
    Close,
}

#[derive(Debug)]
struct Scenario {
    faults: FaultConfig,
    sessions: usize,
    /// The sessions' TTL: short ones let renewal faults end a session within a scenario.
    ttl: Duration,
    /// Each task: the session it uses, and its operations in order.
    tasks: Vec<(usize, Vec<Op>)>,
    /// A session that ends part-way: which, when, how.
    end: Option<(usize, Duration, End)>,
}

fn kinds_allowed() -> Vec<String> {
    match std::env::var("TENURE_FAULT_KINDS") {
        Ok(v) if v.trim() == "all" => KINDS.iter().map(|k| k.to_string()).collect(),
        Ok(v) if !v.trim().is_empty() => {
            let kinds: Vec<String> = v.split(',').map(|k| k.trim().to_string()).collect();
            for k in &kinds {
                assert!(
                    KINDS.contains(&k.as_str()),
                    "TENURE_FAULT_KINDS: no kind {k:?} in {KINDS:?}"
                );
            }
            kinds
        }
        _ => KINDS.iter().map(|k| k.to_string()).collect(),
    }
}

impl Scenario {
    fn generate(seed: u64, allowed: &[String]) -> Scenario {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut rate = |kind: &str, max: f64| {
            // Each kind is on in half the schedules, so that a finding can be pinned on few.
            let on = rng.bool() && allowed.iter().any(|k| k == kind);
            if on {
                0.02 + rng.f64() * (max - 0.02)
            } else {
                0.0
            }
        };
        let faults = FaultConfig {
            fail_before: rate("fail_before", 0.25),
            answer_lost: rate("answer_lost", 0.25),
            delay: rate("delay", 0.3),
            max_delay: Duration::from_millis(50),
            hang: rate("hang", 0.1),
            request_timeout: Duration::from_secs(5),
            late: rate("late", 0.1),
            break_watch: rate("break_watch", 0.3),
            compact: rate("compact", 0.3),
            renewals: rng.bool() && allowed.iter().any(|k| k == "renewals"),
        };
        // Read/write lock operations come from a generator of their own, so that the mutex
        // and election operations of every earlier schedule stay as they were.
        let mut rw = fastrand::Rng::with_seed(seed ^ 0x7277_6c6f_636b);
        let sessions = rng.usize(1..=4);
        let ttl = Duration::from_secs([1, 3, 10][rng.usize(0..3)]);
        let tasks = (0..rng.usize(2..=6))
            .map(|_| {
                let ops = (0..rng.usize(1..=5))
                    .map(|_| {
                        let mut op = Op {
                            acquire: match rng.u8(0..6) {
                                0 => Acquire::Lock,
                                1 => Acquire::TryLock,
                                2 => Acquire::LockTimeout(Duration::from_millis(rng.u64(50..3000))),
                                3 => Acquire::DroppedLock(rng.usize(1..8)),
                                4 => Acquire::Campaign,
                                _ => Acquire::DroppedCampaign(rng.usize(1..8)),
                            },
                            hold: Duration::from_millis(rng.u64(0..500)),
                            write: rng.bool(),
                            downgrade: false,
                            release: match rng.u8(0..3) {
                                0 => Release::Unlock,
                                1 => Release::Drop,
                                _ => Release::DroppedUnlock(rng.usize(1..6)),
                            },
                        };
                        if rw.u8(0..3) == 0 {
                            op.acquire = match rw.u8(0..7) {
                                0 => Acquire::Read,
                                1 => Acquire::TryRead,
                                2 => Acquire::ReadTimeout(Duration::from_millis(rw.u64(50..3000))),
                                3 => Acquire::DroppedRead(rw.usize(1..8)),
                                4 => Acquire::Write,
                                5 => Acquire::TryWrite,
                                _ => Acquire::DroppedWrite(rw.usize(1..8)),
                            };
                            op.downgrade = rw.bool();
                        }
                        op
                    })
                    .collect();
                (rng.usize(0..sessions), ops)
            })
            .collect();
        let end = (rng.u8(0..3) == 0).then(|| {
            let how = if rng.bool() { End::Crash } else { End::Close };
            let at = Duration::from_millis(rng.u64(0..3000));
            (rng.usize(0..sessions), at, how)
        });
        Scenario {
            faults,
            sessions,
            ttl,
            tasks,
            end,
        }
    }
}

/// What the scenario's tasks saw, and what broke.
#[derive(Default)]
struct Checker {
    /// Per name: the grant holding it now, as far as the tasks know (its number, key and
    /// session).
    holder: std::collections::HashMap<&'static str, (u64, String, Session)>,
    grants: u64,
    last_token: std::collections::HashMap<&'static str, FencingToken>,
    /// The read/write lock's holders as far as the tasks know: its writer, its readers (by
    /// grant number), the largest token granted and the largest writer's token.
    rw_writer: Option<(u64, String, Session)>,
    rw_readers: std::collections::HashMap<u64, (String, Session)>,
    rw_max: Option<FencingToken>,
    rw_max_writer: Option<FencingToken>,
    violations: Vec<String>,
}

impl Checker {
    /// Registers a read/write grant; what it breaks (RW2, RW6), if anything.
    fn rw_granted(
        &mut self,
        grant: u64,
        key: &str,
        token: FencingToken,
        writer: bool,
        session: &Session,
    ) -> Vec<String> {
        let mut broken = Vec::new();
        let live = |s: &Session| !s.is_lost();
        if let Some((_, other, _)) = self.rw_writer.as_ref().filter(|(_, _, s)| live(s)) {
            broken.push(format!(
                "[C1] {key} granted {RW} while writer {other} held it, not told"
            ));
        }
        if writer {
            if let Some((other, _)) = self.rw_readers.values().find(|(_, s)| live(s)) {
                broken.push(format!(
                    "[C1] writer {key} granted {RW} while reader {other} held it, not told"
                ));
            }
        }
        let bound = if writer {
            self.rw_max
        } else {
            self.rw_max_writer
        };
        if let Some(last) = bound.filter(|last| token <= *last) {
            broken.push(format!(
                "[C2] {key} got token {token} after {last} for {RW}"
            ));
        }
        self.rw_max = self.rw_max.max(Some(token));
        if writer {
            self.rw_max_writer = self.rw_max_writer.max(Some(token));
            self.rw_writer = Some((grant, key.to_string(), session.clone()));
        } else {
            self.rw_readers
                .insert(grant, (key.to_string(), session.clone()));
        }
        broken
    }

    /// The grant leaves the read/write lock (out of the critical section before the store can
    /// hand it on).
    fn rw_left(&mut self, grant: u64) {
        if self.rw_writer.as_ref().is_some_and(|(g, _, _)| *g == grant) {
            self.rw_writer = None;
        }
        self.rw_readers.remove(&grant);
    }
}

/// One scenario's shared state: the checks, and the plan whose schedule also records what
/// each task did.
struct Ctx {
    checker: StdMutex<Checker>,
    plan: Arc<FaultPlan>,
}

impl Ctx {
    fn check(&self) -> std::sync::MutexGuard<'_, Checker> {
        self.checker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn violation(&self, v: String) {
        self.plan.note(format!("VIOLATION {v}"));
        self.check().violations.push(v);
    }

    fn note(&self, line: String) {
        self.plan.note(line);
    }
}

/// A held mutex, leadership, or read/write hold.
enum Holding {
    Guard(MutexGuard),
    Lead(Leadership),
    Read(ReadGuard),
    Write(WriteGuard),
}

impl Holding {
    fn name(&self) -> &'static str {
        match self {
            Holding::Guard(_) => MUTEX,
            Holding::Lead(_) => ELECTION,
            Holding::Read(_) | Holding::Write(_) => RW,
        }
    }
    fn key(&self) -> String {
        match self {
            Holding::Guard(g) => g.key().to_string(),
            Holding::Lead(l) => l.key().to_string(),
            Holding::Read(g) => g.key().to_string(),
            Holding::Write(g) => g.key().to_string(),
        }
    }
    fn token(&self) -> FencingToken {
        match self {
            Holding::Guard(g) => g.token(),
            Holding::Lead(l) => l.token(),
            Holding::Read(g) => g.token(),
            Holding::Write(g) => g.token(),
        }
    }
    fn is_lost(&self) -> bool {
        match self {
            Holding::Guard(g) => g.is_lost(),
            Holding::Lead(l) => l.is_lost(),
            Holding::Read(g) => g.is_lost(),
            Holding::Write(g) => g.is_lost(),
        }
    }
    async fn lost(&self) -> crate::LostReason {
        match self {
            Holding::Guard(g) => g.lost().await,
            Holding::Lead(l) => l.lost().await,
            Holding::Read(g) => g.lost().await,
            Holding::Write(g) => g.lost().await,
        }
    }
    async fn write(&self, value: String) -> crate::Result<()> {
        match self {
            Holding::Guard(g) => g.write([Write::put(format!("{MUTEX}-value"), value)]).await,
            Holding::Lead(l) => l.proclaim(value).await,
            Holding::Read(g) => g.write([Write::put(format!("{RW}-read"), value)]).await,
            Holding::Write(g) => g.write([Write::put(format!("{RW}-value"), value)]).await,
        }
    }
    async fn release(self) -> crate::Result<()> {
        match self {
            Holding::Guard(g) => g.unlock().await,
            Holding::Lead(l) => l.resign().await,
            Holding::Read(g) => g.unlock().await,
            Holding::Write(g) => g.unlock().await,
        }
    }
}

/// Bounds one public call: past [`BOUND`] it has hung.
async fn bounded<T>(ctx: &Ctx, what: &str, fut: impl std::future::Future<Output = T>) -> Option<T> {
    match tokio::time::timeout(BOUND, fut).await {
        Ok(v) => Some(v),
        Err(_) => {
            ctx.violation(format!("[hung] {what} did not return within {BOUND:?}"));
            None
        }
    }
}

/// Sorts an acquisition's outcome: a holding, or nothing (fine, or a violation recorded).
fn acquired<T>(
    ctx: &Ctx,
    what: &str,
    session: &Session,
    own_key: &str,
    res: Option<Option<crate::Result<T>>>,
) -> Option<T> {
    let res = res?;
    match &res {
        None => ctx.note(format!("{what}: dropped at its await point")),
        Some(Ok(_)) => {}
        Some(Err(e)) => ctx.note(format!("{what}: {e:?}")),
    }
    match res? {
        Ok(g) => Some(g),
        Err(Error::Locked {
            holder: Some(h), ..
        }) if h == own_key => {
            ctx.violation(format!(
                "[own-holder] {what} said Locked, naming our own entry {h} as holder"
            ));
            None
        }
        Err(Error::Locked { .. } | Error::Timeout { .. }) => None,
        Err(e) if e.is_transient() || ended(session, &e) => None,
        Err(e) => {
            ctx.violation(format!("[error] {what}: {e}"));
            None
        }
    }
}

/// Whether `e` is what a caller must expect once its session has ended.
fn ended(session: &Session, e: &Error) -> bool {
    session.is_lost()
        && matches!(
            e,
            Error::SessionLost { .. }
                | Error::LockLost { .. }
                | Error::NotHeld { .. }
                | Error::NotLeader { .. }
        )
}

async fn run_task(ctx: Arc<Ctx>, task: usize, session: Session, ops: Vec<Op>) {
    let mutex = session.mutex(MUTEX).expect("mutex name");
    let election = session.election(ELECTION).expect("election name");
    let own_lock_key = format!("{MUTEX}/{:x}", session.id());
    let own_lead_key = format!("{ELECTION}/{:x}", session.id());
    let rwlock = session.rwlock(RW).expect("rwlock name");
    let own_read_key = format!("{RW}/read/{:x}", session.id());
    let own_write_key = format!("{RW}/write/{:x}", session.id());
    for (i, op) in ops.into_iter().enumerate() {
        let what = format!("t{task}.{i} {:?}", op.acquire);
        ctx.note(format!("{what}: starts"));
        let ctx = &*ctx;
        let holding = match op.acquire {
            Acquire::Lock => {
                let r = bounded(ctx, &what, async { Some(mutex.lock().await) }).await;
                acquired(ctx, &what, &session, &own_lock_key, r).map(Holding::Guard)
            }
            Acquire::TryLock => {
                let r = bounded(ctx, &what, async { Some(mutex.try_lock().await) }).await;
                acquired(ctx, &what, &session, &own_lock_key, r).map(Holding::Guard)
            }
            Acquire::LockTimeout(d) => {
                let r = bounded(ctx, &what, async { Some(mutex.lock_timeout(d).await) }).await;
                acquired(ctx, &what, &session, &own_lock_key, r).map(Holding::Guard)
            }
            Acquire::DroppedLock(k) => {
                let r = bounded(ctx, &what, drop_at_pending(mutex.lock(), k)).await;
                acquired(ctx, &what, &session, &own_lock_key, r).map(Holding::Guard)
            }
            Acquire::Campaign => {
                let r = bounded(ctx, &what, async { Some(election.campaign("v").await) }).await;
                acquired(ctx, &what, &session, &own_lead_key, r).map(Holding::Lead)
            }
            Acquire::DroppedCampaign(k) => {
                let r = bounded(ctx, &what, drop_at_pending(election.campaign("v"), k)).await;
                acquired(ctx, &what, &session, &own_lead_key, r).map(Holding::Lead)
            }
            Acquire::Read => {
                let r = bounded(ctx, &what, async { Some(rwlock.read().await) }).await;
                acquired(ctx, &what, &session, &own_read_key, r).map(Holding::Read)
            }
            Acquire::TryRead => {
                let r = bounded(ctx, &what, async { Some(rwlock.try_read().await) }).await;
                acquired(ctx, &what, &session, &own_read_key, r).map(Holding::Read)
            }
            Acquire::ReadTimeout(d) => {
                let r = bounded(ctx, &what, async { Some(rwlock.read_timeout(d).await) }).await;
                acquired(ctx, &what, &session, &own_read_key, r).map(Holding::Read)
            }
            Acquire::DroppedRead(k) => {
                let r = bounded(ctx, &what, drop_at_pending(rwlock.read(), k)).await;
                acquired(ctx, &what, &session, &own_read_key, r).map(Holding::Read)
            }
            Acquire::Write => {
                let r = bounded(ctx, &what, async { Some(rwlock.write().await) }).await;
                acquired(ctx, &what, &session, &own_write_key, r).map(Holding::Write)
            }
            Acquire::TryWrite => {
                let r = bounded(ctx, &what, async { Some(rwlock.try_write().await) }).await;
                acquired(ctx, &what, &session, &own_write_key, r).map(Holding::Write)
            }
            Acquire::DroppedWrite(k) => {
                let r = bounded(ctx, &what, drop_at_pending(rwlock.write(), k)).await;
                acquired(ctx, &what, &session, &own_write_key, r).map(Holding::Write)
            }
        };
        let Some(h) = holding else { continue };
        hold(ctx, &what, &session, h, op).await;
    }
}

/// Checks C1 and C2 on entry, holds, maybe writes, and releases as `op` says.
async fn hold(ctx: &Ctx, what: &str, session: &Session, h: Holding, op: Op) {
    let (name, key, token) = (h.name(), h.key(), h.token());
    ctx.note(format!("{what}: holds {key} with token {token}"));
    if h.is_lost() && !session.is_lost() {
        ctx.violation(format!(
            "[lost] {key} lost at once, with nothing deleted or expired"
        ));
    }
    if name == RW {
        return hold_rw(ctx, what, session, h, op).await;
    }
    let (grant, before, last) = {
        let mut c = ctx.check();
        c.grants += 1;
        let grant = c.grants;
        let before = c.holder.insert(name, (grant, key.clone(), session.clone()));
        (grant, before, c.last_token.insert(name, token))
    };
    // The one before must have been told (its session ended: lost at its local deadline,
    // before the store could expire it), or have left.
    if let Some((_, other, _)) = before.filter(|(_, _, s)| !s.is_lost()) {
        ctx.violation(format!(
            "[C1] {key} granted {name} while {other} held it, not told"
        ));
    }
    if let Some(last) = last.filter(|last| token <= *last) {
        ctx.violation(format!(
            "[C2] {key} got token {token} after {last} for {name}"
        ));
    }
    held(ctx, session, &h, &key, op).await;
    // Out of the critical section before the store can hand the name on (unless the name was
    // already handed on, after this grant was lost).
    {
        let mut c = ctx.check();
        if c.holder.get(name).is_some_and(|(g, _, _)| *g == grant) {
            c.holder.remove(name);
        }
    }
    release(ctx, what, session, h, &key, op).await;
}

/// Holds for `op.hold` (a loss with nothing deleted is a violation), then writes if asked.
async fn held(ctx: &Ctx, session: &Session, h: &Holding, key: &str, op: Op) {
    // Nobody deletes entries in these scenarios: a grant lost while its session lives was
    // taken away by the library itself (a stale request of our own).
    tokio::select! {
        () = tokio::time::sleep(op.hold) => {}
        reason = h.lost() => {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if !session.is_lost() {
                ctx.violation(format!("[lost] {key} lost while held ({reason:?}), nothing deleted it"));
            }
            tokio::time::sleep(op.hold).await;
        }
    }
    if op.write {
        match bounded(ctx, "write()", h.write(h.token().to_string())).await {
            None | Some(Ok(())) => {}
            Some(Err(e)) if e.is_transient() || ended(session, &e) => {}
            Some(Err(e)) => ctx.violation(format!("[write] {key}: {e}")),
        }
    }
}

/// Releases as `op` says (the caller has left the critical section in the checker).
async fn release(ctx: &Ctx, what: &str, session: &Session, h: Holding, key: &str, op: Op) {
    ctx.note(format!("{what}: releases {key} by {:?}", op.release));
    let res = match op.release {
        Release::Drop => {
            drop(h);
            return;
        }
        Release::Unlock => bounded(ctx, "unlock()", h.release()).await,
        Release::DroppedUnlock(k) => bounded(ctx, "unlock()", drop_at_pending(h.release(), k))
            .await
            .flatten(),
    };
    match res {
        None => ctx.note(format!("{what}: release dropped at its await point")),
        Some(Ok(())) => {}
        Some(Err(e)) if e.is_transient() || ended(session, &e) => {
            ctx.note(format!("{what}: release: {e:?}"))
        }
        Some(Err(e)) => ctx.violation(format!(
            "[release] {key}: unlock()/resign() said {e:?}, though nothing else touched it"
        )),
    }
}

/// [`hold`] for the read/write lock: shared and exclusive holds checked apart (RW2, RW6), and
/// a write hold downgraded half-way when `op` says so (RW4: it counts as a reader from the
/// moment it asks, so a writer let in at the downgrade is caught).
async fn hold_rw(ctx: &Ctx, what: &str, session: &Session, h: Holding, op: Op) {
    let (key, token) = (h.key(), h.token());
    let writer = matches!(h, Holding::Write(_));
    let grant = {
        let mut c = ctx.check();
        c.grants += 1;
        let grant = c.grants;
        let broken = c.rw_granted(grant, &key, token, writer, session);
        drop(c);
        broken.into_iter().for_each(|v| ctx.violation(v));
        grant
    };
    held(ctx, session, &h, &key, op).await;
    let h = match h {
        Holding::Write(w) if op.downgrade => {
            {
                let mut c = ctx.check();
                c.rw_readers.insert(grant, (key.clone(), session.clone()));
                if c.rw_writer.as_ref().is_some_and(|(g, _, _)| *g == grant) {
                    c.rw_writer = None;
                }
            }
            match bounded(ctx, "downgrade()", w.downgrade()).await {
                Some(Ok(r)) => {
                    ctx.note(format!("{what}: downgraded {key}"));
                    let r = Holding::Read(r);
                    held(ctx, session, &r, &key, op).await;
                    r
                }
                other => {
                    ctx.note(format!("{what}: downgrade: {other:?}"));
                    if let Some(Err(e)) = other {
                        if !(e.is_transient() || ended(session, &e)) {
                            ctx.violation(format!("[downgrade] {key}: {e}"));
                        }
                    }
                    ctx.check().rw_left(grant);
                    return;
                }
            }
        }
        h => h,
    };
    ctx.check().rw_left(grant);
    release(ctx, what, session, h, &key, op).await;
}

async fn run_scenario(
    store_name: &str,
    store: Arc<MemStore>,
    plan: Arc<FaultPlan>,
    sc: &Scenario,
) -> Outcome {
    let ctx = Arc::new(Ctx {
        checker: StdMutex::default(),
        plan: plan.clone(),
    });
    let tenure = Tenure::mem_with_faults(store_name, plan.clone());
    let mut sessions = Vec::new();
    for _ in 0..sc.sessions {
        sessions.push(tenure.session_with_ttl(sc.ttl).await.expect("session"));
    }
    let ending = sc.end.map(|(i, at, how)| {
        let (session, ctx) = (sessions[i].clone(), ctx.clone());
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            ctx.note(format!("session {:x}: {how:?}", session.id()));
            match how {
                End::Crash => session.simulate_crash(),
                End::Close => {
                    let _ = session.close().await;
                }
            }
        })
    });
    let tasks: Vec<_> = sc
        .tasks
        .iter()
        .enumerate()
        .map(|(i, (s, ops))| {
            let session = sessions[*s].clone();
            tokio::spawn(run_task(ctx.clone(), i, session, ops.clone()))
        })
        .collect();
    for t in tasks.into_iter().chain(ending) {
        if let Err(e) = t.await {
            ctx.violation(format!("[panic] a task: {e}"));
        }
    }
    // Sessions lost though the scenario did not end them: their renewals kept failing.
    let lost = sessions
        .iter()
        .enumerate()
        .filter(|(i, s)| s.is_lost() && sc.end.is_none_or(|(e, ..)| e != *i))
        .count();
    tokio::time::sleep(QUIESCE).await;
    for name in [MUTEX, ELECTION, RW] {
        let mut left = store.keys(&format!("{name}/"));
        left.extend(store.keys(&format!("{name}\0downgraded/")));
        if !left.is_empty() {
            ctx.violation(format!(
                "[leak] entries left after the scenario under {name}/: {left:?}"
            ));
        }
    }
    // Nothing left blocks a newcomer (C5).
    ctx.note("newcomer: lock(), campaign() and write()".into());
    newcomer(&ctx, &tenure, Acquire::Lock).await;
    newcomer(&ctx, &tenure, Acquire::Campaign).await;
    newcomer(&ctx, &tenure, Acquire::Write).await;
    for s in sessions {
        let _ = s.close().await;
    }
    let mut violations = std::mem::take(&mut ctx.check().violations);
    violations.extend(
        plan.violations()
            .into_iter()
            .map(|v| format!("[compacted-rearm] {v}")),
    );
    Outcome { violations, lost }
}

/// A newcomer takes the lock (or leadership) once everything else is over. It retries what
/// the store did not answer (a run of faults longer than the retry budget is a transient error,
/// C11) and opens a new session if renewal faults ended its own: neither is a block.
async fn newcomer(ctx: &Ctx, tenure: &Tenure, kind: Acquire) {
    let what = match kind {
        Acquire::Campaign => "newcomer's campaign()",
        Acquire::Write => "newcomer's write()",
        _ => "newcomer's lock()",
    };
    let attempt = async {
        loop {
            let session = tenure.session().await?;
            let got = match kind {
                Acquire::Campaign => session.election(ELECTION)?.campaign("n").await.map(drop),
                Acquire::Write => session.rwlock(RW)?.write().await.map(drop),
                _ => session.mutex(MUTEX)?.lock().await.map(drop),
            };
            match got {
                Err(e) if e.is_transient() || ended(&session, &e) => {}
                other => {
                    let _ = session.close().await;
                    return other;
                }
            }
        }
    };
    if let Some(Err(e)) = bounded(ctx, what, attempt).await {
        ctx.violation(format!("[error] {what}: {e}"));
    }
}

/// What one schedule found.
struct Outcome {
    violations: Vec<String>,
    /// Sessions lost to renewal faults.
    lost: usize,
}

/// A schedule that broke the contract: what broke, and the message that explains and replays it.
struct Failure {
    violations: Vec<String>,
    message: String,
}

/// Runs schedule `seed` on a fresh paused-clock runtime in a thread of its own.
/// `Ok`: how many sessions it lost to renewal faults.
fn run_schedule(seed: u64, allowed: &[String]) -> Result<usize, Failure> {
    let sc = Scenario::generate(seed, allowed);
    let (tx, rx) = std::sync::mpsc::channel();
    let described = format!("{sc:#?}");
    std::thread::spawn(move || {
        // The recipe's backoff jitter draws from this thread's generator: seed it too.
        fastrand::seed(seed);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let store_name = format!("fault-schedule-{seed:x}-{:x}", fastrand::u64(..));
        let store = MemStore::named(&store_name);
        let plan = FaultPlan::new(seed, sc.faults.clone(), {
            let store = store.clone();
            move || store.revision()
        });
        let outcome = rt.block_on(async {
            let run = run_scenario(&store_name, store.clone(), plan.clone(), &sc);
            match tokio::time::timeout(BOUND * 8, run).await {
                Ok(o) => o,
                Err(_) => Outcome {
                    violations: vec![format!(
                        "[hung] the scenario did not end within {:?}",
                        BOUND * 8
                    )],
                    lost: 0,
                },
            }
        });
        let _ = tx.send((outcome, plan.report()));
    });
    let (outcome, report) = match rx.recv_timeout(REAL_LIMIT) {
        Ok(r) => r,
        Err(_) => (
            Outcome {
                violations: vec![format!(
                    "[busy] not done after {REAL_LIMIT:?} of real time (a loop without timers?)"
                )],
                lost: 0,
            },
            String::from("(schedule not available: the run is still going)"),
        ),
    };
    let violations = outcome.violations;
    if violations.is_empty() {
        return Ok(outcome.lost);
    }
    let mut message = format!("schedule {seed} failed (replay: TENURE_FAULT_SEED={seed}):\n");
    for v in &violations {
        let _ = writeln!(message, "  {v}");
    }
    let _ = write!(message, "scenario: {described}\n{report}");
    Err(Failure {
        violations,
        message,
    })
}

fn env_u64(var: &str) -> Option<u64> {
    let v = std::env::var(var).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v}: not a number")),
    )
}

/// The kinds of violation (their `[tag]`), for the summary.
fn tags(violations: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = violations
        .iter()
        .filter_map(|v| v.strip_prefix('[')?.split(']').next())
        .map(str::to_string)
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

#[test]
fn random_fault_schedules() {
    let allowed = kinds_allowed();
    if let Some(seed) = env_u64("TENURE_FAULT_SEED") {
        if let Err(f) = run_schedule(seed, &allowed) {
            panic!("{}", f.message);
        }
        return;
    }
    let (count, base) = match env_u64("TENURE_FAULT_SCHEDULES") {
        Some(n) => (n, fastrand::u64(..) >> 16),
        None => (DEFAULT_SCHEDULES, 0),
    };
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut by_tag = std::collections::BTreeMap::<String, Vec<u64>>::new();
    let mut lost = 0;
    for seed in base..base + count {
        match run_schedule(seed, &allowed) {
            Ok(n) => lost += n,
            Err(f) => {
                for t in tags(&f.violations) {
                    by_tag.entry(t).or_default().push(seed);
                }
                failures.push(f.message);
            }
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "fault schedules: {count} from seed {base} (kinds {allowed:?}) in {:?}: {} failed; \
         {lost} sessions lost to renewal faults in those that passed",
        started.elapsed(),
        failures.len()
    );
    if failures.is_empty() {
        return;
    }
    let mut summary = String::new();
    for (tag, seeds) in &by_tag {
        let shown: Vec<_> = seeds.iter().take(10).collect();
        let _ = writeln!(
            summary,
            "  [{tag}] in {} schedules, e.g. {shown:?}",
            seeds.len()
        );
    }
    for f in failures.iter().take(3) {
        let _ = writeln!(std::io::stderr(), "{f}");
    }
    panic!(
        "{} of {count} fault schedules failed:\n{summary}(the first three are printed above)",
        failures.len()
    );
}
