//! The embedded backend (`mem://`): an in-process store with etcd's model (a revision counter,
//! leases with TTLs, keys ordered by create revision), so that the shared queue recipe runs on
//! it unchanged and every clause can be tested with no server.
//!
//! Expiry is lazy and driven by whoever waits: a waiter sleeps until the lease of the key it
//! watches could expire, then re-checks; a prefix watch does the same for the keys under its
//! prefix. No reaper task, so a store outlives any one runtime.

mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use self::state::{Lookup, State};
use super::lease::{spawn_keep_alive, Renewer};
use super::observe::{Kv, PrefixWatch};
use super::queue::{
    downgrade_marker, Ahead, Enqueued, QueueEntry, QueueSession, QueueStore, Role, Ticket, Witness,
};
use super::semaphore::Unlocked;
use super::{Backend, SessionBackend};
use crate::liveness::{Liveness, LostReason};
use crate::{Result, Write};

/// One in-process store, shared by every client that names it.
#[derive(Default)]
pub(crate) struct MemStore {
    state: StdMutex<State>,
}

impl MemStore {
    /// The store named `name` in this process, created on first use.
    pub(crate) fn named(name: &str) -> Arc<MemStore> {
        static STORES: OnceLock<StdMutex<HashMap<String, Weak<MemStore>>>> = OnceLock::new();
        let mut stores = STORES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        stores.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = stores.get(name).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(MemStore::default());
        stores.insert(name.to_string(), Arc::downgrade(&s));
        s
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        self.locked(|st| {
            st.expire(Instant::now());
            f(st)
        })
    }

    /// Like [`MemStore::with`], without expiring leases first.
    fn locked<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock cannot leave State half-updated in a way that matters
        // more than refusing all later work would.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut st)
    }

    /// Deletes a key as an administrator would (for tests of the lost signal).
    #[cfg(test)]
    pub(crate) fn admin_delete(&self, key: &str) -> bool {
        self.with(|st| st.delete(key))
    }

    /// Revokes a lease as an administrator would.
    #[cfg(test)]
    pub(crate) fn admin_revoke(&self, lease: u64) {
        self.with(|st| st.revoke(lease));
    }

    /// The store's current revision (the fault injector compacts up to it).
    #[cfg(test)]
    pub(crate) fn revision(&self) -> i64 {
        self.with(|st| st.rev())
    }

    /// Every key with the given prefix.
    #[cfg(test)]
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        self.with(|st| st.keys_with_prefix(prefix))
    }

    /// How many deletion watchers each key has (herd-freedom checks elsewhere in the crate).
    #[cfg(test)]
    pub(crate) fn delete_watchers_for_test(&self) -> Vec<(String, usize)> {
        self.with(|st| st.delete_watchers())
    }

    /// Waits until read/write lock entry `key` is downgraded (`marker` holds `token`).
    async fn until_marked(&self, marker: &str, token: u64) {
        let token = token.to_string();
        let (initial, mut changes) = self.with(|st| st.watch_prefix(marker));
        let marked = |kv: &Kv| kv.key == marker && kv.value == token.as_bytes();
        if initial.iter().any(marked) {
            return;
        }
        while let Some(change) = changes.recv().await {
            if let Ok(super::observe::Change::Put(kv)) = change {
                if marked(&kv) {
                    return;
                }
            }
        }
        std::future::pending().await
    }

    /// Waits until `key`, as it was at `rev`, is gone, sleeping at most until its lease could
    /// expire.
    async fn until_deleted(&self, key: &str, rev: i64) {
        loop {
            let (rx, expiry) = match self.with(|st| st.watch_delete(key, rev)) {
                Lookup::Gone => return,
                Lookup::Present { rx, expiry } => (rx, expiry),
            };
            match expiry {
                Some(at) => tokio::select! {
                    _ = rx => {}
                    () = tokio::time::sleep_until(at) => {}
                },
                None => {
                    let _ = rx.await;
                }
            }
        }
    }
}

/// `mem://NAME` as a [`Backend`].
pub(crate) struct MemBackend {
    store: Arc<MemStore>,
    /// Tests only: every session's store calls go through this fault injector.
    #[cfg(test)]
    faults: Option<Arc<super::faulty::FaultPlan>>,
}

impl MemBackend {
    pub(crate) fn new(name: &str) -> Self {
        MemBackend {
            store: MemStore::named(name),
            #[cfg(test)]
            faults: None,
        }
    }

    /// `mem://NAME` whose sessions are `QueueSession<Faulty<MemSession>>`, faulting as `plan`
    /// says.
    #[cfg(test)]
    pub(crate) fn with_faults(name: &str, plan: Arc<super::faulty::FaultPlan>) -> Self {
        MemBackend {
            store: MemStore::named(name),
            faults: Some(plan),
        }
    }
}

#[async_trait]
impl Backend for MemBackend {
    fn kind(&self) -> &'static str {
        "mem"
    }

    fn is_registered(&self, kv: &super::observe::Kv) -> bool {
        super::observe::leased_key(kv)
    }

    fn ttl_range(&self) -> (Duration, Duration) {
        (Duration::from_millis(10), Duration::from_secs(24 * 3600))
    }

    async fn open_session(&self, ttl: Duration) -> Result<Arc<dyn SessionBackend>> {
        let granted_at = Instant::now();
        let lease = self.store.with(|st| st.grant(ttl, granted_at));
        let liveness = Liveness::new();
        let renewer = MemRenewer {
            store: self.store.clone(),
            lease,
        };
        let session = |keep_alive| MemSession {
            store: self.store.clone(),
            lease,
            liveness: liveness.clone(),
            keep_alive,
            forbade: AtomicBool::new(false),
        };
        #[cfg(test)]
        if let Some(plan) = &self.faults {
            use super::faulty::{Faulty, FaultyRenewer};
            let ordinal = plan.open_session();
            let renewer = FaultyRenewer::new(renewer, plan.clone(), ordinal);
            let keep_alive = spawn_keep_alive(renewer, liveness.clone(), ttl, granted_at, "mem");
            let faulty = Faulty::new(session(keep_alive), plan.clone(), ordinal);
            return Ok(Arc::new(QueueSession(Arc::new(faulty))));
        }
        let keep_alive = spawn_keep_alive(renewer, liveness.clone(), ttl, granted_at, "mem");
        Ok(Arc::new(QueueSession(Arc::new(session(keep_alive)))))
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.store.with(|st| st.value(key)))
    }

    async fn write(&self, ops: &[Write]) -> Result<()> {
        self.store.with(|st| st.apply(ops));
        Ok(())
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<Kv>> {
        Ok(self.store.with(|st| st.entries(prefix)))
    }

    async fn lease_ttl(&self, lease: u64) -> Result<Option<Duration>> {
        Ok(self.store.with(|st| st.remaining(lease, Instant::now())))
    }

    async fn watch_prefix(&self, prefix: &str) -> Result<PrefixWatch> {
        let (initial, mut store_changes) = self.store.with(|st| st.watch_prefix(prefix));
        // Forwards the store's changes, and wakes when a lease under the prefix could expire
        // so that the expiry (and its deletes) happens without anyone else touching the store.
        let (tx, changes) = tokio::sync::mpsc::unbounded_channel();
        let (store, prefix) = (self.store.clone(), prefix.to_string());
        tokio::spawn(async move {
            loop {
                let expiry = store.with(|st| st.next_expiry(&prefix));
                let expired = async {
                    match expiry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    change = store_changes.recv() => {
                        let Some(change) = change else { return };
                        if tx.send(change).is_err() {
                            return;
                        }
                    }
                    () = expired => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok(PrefixWatch { initial, changes })
    }
}

struct MemRenewer {
    store: Arc<MemStore>,
    lease: u64,
}

#[async_trait]
impl Renewer for MemRenewer {
    async fn renew(&mut self) -> Result<Option<Duration>> {
        Ok(self.store.with(|st| st.renew(self.lease, Instant::now())))
    }
}

struct MemSession {
    store: Arc<MemStore>,
    lease: u64,
    liveness: Liveness,
    keep_alive: tokio::task::AbortHandle,
    /// Whether this session ever marked an acquisition withdrawn: until it has, no enqueue
    /// needs to look for a marker.
    forbade: AtomicBool,
}

impl Drop for MemSession {
    fn drop(&mut self) {
        // Like a crashed process: renewals stop and the lease runs out by itself.
        self.keep_alive.abort();
    }
}

impl MemSession {
    /// Refuses an enqueue of a withdrawn acquisition (see [`QueueStore::forbid`]).
    fn check_not_withdrawn(&self, st: &State, prefix: &str, ticket: Ticket) -> Result<()> {
        // Markers are written under the store's lock, which orders this load after them.
        if !self.forbade.load(Ordering::Relaxed) {
            return Ok(());
        }
        match st.create_rev(&ticket.withdrawn_key(prefix, self.lease)) {
            None => Ok(()),
            Some(_) => Err(crate::Error::Store {
                op: "lock",
                message: "this acquisition was withdrawn before its enqueue was applied".into(),
                source: None,
            }),
        }
    }
}

/// Acquisition `ticket`'s permit entry under a semaphore's `dir`, laid out as on etcd.
fn lease_key(dir: &str, lease: u64, ticket: Ticket) -> String {
    format!("{dir}{lease:x}-{:032x}", ticket.0)
}

impl MemSession {
    /// Creates acquisition `ticket`'s permit entry under `dir` (or finds it) and lists `dir`,
    /// in one step, if `free(state)` holds or the entry exists; `None` otherwise.
    fn add_lease_when(
        &self,
        dir: &str,
        value: &[u8],
        ticket: Ticket,
        free: impl FnOnce(&State) -> bool,
    ) -> Result<Option<(QueueEntry, Vec<Kv>)>> {
        let key = lease_key(dir, self.lease, ticket);
        self.store.with(|st| {
            st.check_lease(self.lease)?;
            if st.create_rev(&key).is_none() {
                if !free(st) {
                    return Ok(None);
                }
                self.check_not_withdrawn(st, dir, ticket)?;
            }
            let token = st.put_if_absent(&key, value, self.lease);
            Ok(Some((QueueEntry { key, token }, st.entries(dir))))
        })
    }
}

fn key_in(prefix: &str, lease: u64) -> String {
    use std::fmt::Write as _;
    // Sized up front: `format!` grows the string as it goes, on every lock.
    let mut key = String::with_capacity(prefix.len() + 16);
    key.push_str(prefix);
    let _ = write!(key, "{lease:x}");
    key
}

/// A session's entry of `role` in a queue: the read/write lock layout of etcd's (see
/// `backend/etcd/rw.rs`), else the mutex one.
fn key_of(prefix: &str, role: Role, lease: u64) -> String {
    match role {
        Role::Read => format!("{prefix}read/{lease:x}"),
        Role::Write => format!("{prefix}write/{lease:x}"),
        Role::Lock | Role::Candidate | Role::Lease => key_in(prefix, lease),
    }
}

/// What keeps a reader whose entry was created at `before` (`None`: not yet) out: the newest
/// non-reader ahead of it, unless that is a downgraded writer (which had nothing ahead).
fn reader_blocker(st: &State, prefix: &str, before: Option<u64>) -> Option<(String, u64)> {
    st.last_writer(prefix, before).filter(|(key, token)| {
        let marker = downgrade_marker(key);
        marker.and_then(|m| st.value(&m)) != Some(token.to_string().into_bytes())
    })
}

#[async_trait]
impl QueueStore for MemSession {
    async fn enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Enqueued> {
        let key = key_of(prefix, role, self.lease);
        self.store.with(|st| {
            st.check_lease(self.lease)?;
            self.check_not_withdrawn(st, prefix, ticket)?;
            let token = st.put_if_absent(&key, value, self.lease);
            let first = if role == Role::Read {
                reader_blocker(st, prefix, Some(token)).is_none()
            } else {
                st.first_in(prefix).map(|(k, _)| k) == Some(key.clone())
            };
            Ok(Enqueued {
                mine: QueueEntry { key, token },
                first,
                rev: st.rev(),
                ahead: None,
            })
        })
    }

    async fn enqueue_if_empty(
        &self,
        prefix: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        let key = key_in(prefix, self.lease);
        self.store.with(|st| {
            st.check_lease(self.lease)?;
            self.check_not_withdrawn(st, prefix, ticket)?;
            if let Some((holder, token)) = st.first_in(prefix) {
                if holder == key {
                    // An earlier attempt was applied but its answer lost (C13): ours.
                    return Ok(Ok(Enqueued {
                        mine: QueueEntry { key, token },
                        first: true,
                        rev: st.rev(),
                        ahead: None,
                    }));
                }
                return Ok(Err(Some(holder)));
            }
            let token = st.put_if_absent(&key, value, self.lease);
            Ok(Ok(Enqueued {
                mine: QueueEntry { key, token },
                first: true,
                rev: st.rev(),
                ahead: None,
            }))
        })
    }

    async fn ahead(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead> {
        self.store.with(|st| {
            if st.create_rev(&mine.key) != Some(mine.token) {
                let reason = self.liveness.reason().unwrap_or(LostReason::EntryDeleted);
                return Err(crate::Error::SessionLost { reason });
            }
            Ok(match st.just_before(prefix, mine.token) {
                Some(key) => Ahead::Entry {
                    key,
                    token: 0,
                    rev: st.rev(),
                },
                None => Ahead::Nobody { rev: st.rev() },
            })
        })
    }

    async fn wait_deleted(&self, key: &str, rev: i64) -> Result<()> {
        self.store.until_deleted(key, rev).await;
        Ok(())
    }

    /// Overridden only so that a waiter's wait is one box, not the default's box around
    /// [`QueueStore::wait_deleted`]'s (docs/contract.md, Performance rules).
    async fn wait_deleted_seen(&self, key: &str, rev: i64) -> Result<Witness> {
        self.store.until_deleted(key, rev).await;
        Ok(Witness::default())
    }

    fn fire_on_delete(&self, mine: &QueueEntry, grant: &Liveness) -> bool {
        // Registering needs no expiry check first: a lease expired meanwhile deletes the entry
        // at the next store call, which fires the signal then.
        self.store.locked(|st| {
            let entry = (mine.token as i64, self.lease);
            st.fire_on_delete(&mine.key, entry, grant, &self.liveness);
        });
        true
    }

    async fn remove(&self, mine: &QueueEntry) -> Result<bool> {
        Ok(self.store.with(|st| {
            if st.create_rev(&mine.key) != Some(mine.token) {
                return false;
            }
            if let Some(marker) = downgrade_marker(&mine.key) {
                st.delete(&marker);
            }
            st.delete_own(&mine.key)
        }))
    }

    async fn try_enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        let key = key_of(prefix, role, self.lease);
        self.store.with(|st| {
            st.check_lease(self.lease)?;
            self.check_not_withdrawn(st, prefix, ticket)?;
            let enqueued = |token, st: &State| Enqueued {
                mine: QueueEntry {
                    key: key.clone(),
                    token,
                },
                first: true,
                rev: st.rev(),
                ahead: None,
            };
            if let Some(token) = st.create_rev(&key) {
                // An earlier attempt was applied but its answer lost (C13): it was made when
                // nothing excluded it, and only entries behind it came since.
                return Ok(Ok(enqueued(token, st)));
            }
            let in_the_way = if role == Role::Read {
                // A downgraded writer is no obstacle only if it is the newest non-reader:
                // a writer queued behind it is, and a reader must not jump it (C4).
                reader_blocker(st, prefix, None)
            } else {
                st.first_in(prefix)
            };
            if let Some((holder, _)) = in_the_way {
                return Ok(Err(Some(holder)));
            }
            let token = st.put_if_absent(&key, value, self.lease);
            Ok(Ok(enqueued(token, st)))
        })
    }

    async fn ahead_of_reader(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead> {
        self.store.with(|st| {
            if st.create_rev(&mine.key) != Some(mine.token) {
                let reason = self.liveness.reason().unwrap_or(LostReason::EntryDeleted);
                return Err(crate::Error::SessionLost { reason });
            }
            Ok(match reader_blocker(st, prefix, Some(mine.token)) {
                Some((key, _)) => Ahead::Entry {
                    key,
                    token: 0,
                    rev: st.rev(),
                },
                None => Ahead::Nobody { rev: st.rev() },
            })
        })
    }

    async fn wait_released(&self, key: &str, rev: i64) -> Result<()> {
        let token = self.store.with(|st| st.create_rev(key));
        match (downgrade_marker(key), token) {
            (Some(marker), Some(token)) if token as i64 <= rev => tokio::select! {
                () = self.store.until_deleted(key, rev) => {}
                () = self.store.until_marked(&marker, token) => {}
            },
            _ => self.store.until_deleted(key, rev).await,
        }
        Ok(())
    }

    async fn downgrade(&self, mine: &QueueEntry) -> Result<bool> {
        let Some(marker) = downgrade_marker(&mine.key) else {
            return Ok(false);
        };
        Ok(self.store.with(|st| {
            if st.create_rev(&mine.key) != Some(mine.token) {
                return false;
            }
            st.put_leased(&marker, mine.token.to_string().as_bytes(), self.lease);
            true
        }))
    }

    async fn forbid(&self, prefix: &str, ticket: Ticket) -> Result<()> {
        let marker = ticket.withdrawn_key(prefix, self.lease);
        self.store.with(|st| {
            self.forbade.store(true, Ordering::Relaxed);
            st.put_if_absent(&marker, b"", self.lease)
        });
        Ok(())
    }

    async fn own_entries(&self, prefix: &str) -> Result<Vec<QueueEntry>> {
        // One acquisition per session and name runs at a time (C9): whichever entry is there
        // is the withdrawn one's.
        let keys = [Role::Lock, Role::Read, Role::Write].map(|r| key_of(prefix, r, self.lease));
        Ok(self.store.with(|st| {
            keys.into_iter()
                .filter_map(|key| st.create_rev(&key).map(|token| QueueEntry { key, token }))
                .collect()
        }))
    }

    async fn add_lease(
        &self,
        dir: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<(QueueEntry, Vec<Kv>)> {
        let added = self.add_lease_when(dir, value, ticket, |_| true)?;
        added.ok_or_else(|| crate::Error::Store {
            op: "acquire permit",
            message: "the store created nothing".into(),
            source: None,
        })
    }

    async fn add_lease_if_unlocked(
        &self,
        dir: &str,
        locks: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<Unlocked> {
        let added = self.add_lease_when(dir, value, ticket, |st| st.entries(locks).is_empty())?;
        Ok(match added {
            Some((mine, all)) => Unlocked::Added(mine, all),
            None => Unlocked::LockBusy,
        })
    }

    async fn leases(&self, dir: &str) -> Result<Vec<Kv>> {
        Ok(self.store.with(|st| st.entries(dir)))
    }

    async fn own_lease(&self, dir: &str, ticket: Ticket) -> Result<Option<QueueEntry>> {
        let key = lease_key(dir, self.lease, ticket);
        let token = self.store.with(|st| st.create_rev(&key));
        Ok(token.map(|token| QueueEntry { key, token }))
    }

    async fn guarded_write(&self, mine: &QueueEntry, ops: &[Write]) -> Result<bool> {
        Ok(self.store.with(|st| {
            if st.create_rev(&mine.key) != Some(mine.token) {
                return false;
            }
            st.apply(ops);
            true
        }))
    }

    async fn proclaim(&self, mine: &QueueEntry, value: &[u8]) -> Result<bool> {
        Ok(self.store.with(|st| {
            st.create_rev(&mine.key) == Some(mine.token) && st.set_value(&mine.key, value)
        }))
    }

    async fn put_ephemeral(&self, key: &str, value: &[u8]) -> Result<bool> {
        self.store.with(|st| {
            st.check_lease(self.lease)?;
            Ok(st.put_owned(key, value, self.lease))
        })
    }

    async fn lease_alive(&self) -> Result<bool> {
        Ok(self.store.with(|st| st.check_lease(self.lease).is_ok()))
    }

    async fn close(&self) -> Result<()> {
        self.keep_alive.abort();
        self.liveness.lose(LostReason::SessionClosed);
        self.store.with(|st| st.revoke(self.lease));
        Ok(())
    }

    fn abandon(&self) {
        self.keep_alive.abort();
    }

    fn lease_id(&self) -> u64 {
        self.lease
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tenure;

    /// C3, herd-free: with 20 waiters queued, every key is watched by at most its successor
    /// (plus, for the holder, its own lost-signal watch), so a release wakes one waiter.
    #[tokio::test]
    async fn each_waiter_watches_only_its_predecessor() {
        let name = format!("herd-{}", fastrand::u32(..));
        let tenure = Tenure::connect(&format!("mem://{name}")).await.unwrap();
        let store = MemStore::named(&name);
        let holder = tenure.session().await.unwrap();
        let guard = holder.mutex("q").unwrap().lock().await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..20 {
            let m = tenure.session().await.unwrap().mutex("q").unwrap();
            waiters.push(tokio::spawn(
                async move { m.lock().await.map(|g| g.token()) },
            ));
        }
        let settled = async {
            loop {
                let watched = store.with(|st| st.delete_watchers());
                if watched.iter().map(|(_, n)| n).sum::<usize>() == 21 {
                    return watched;
                }
                tokio::task::yield_now().await;
            }
        };
        let watched = tokio::time::timeout(Duration::from_secs(30), settled)
            .await
            .expect("20 predecessor watches and the holder's own");
        assert_eq!(watched.len(), 20, "{watched:?}");
        for (key, n) in watched {
            assert!(
                n <= 2 && (n == 1 || key == guard.key()),
                "{key}: {n} watchers"
            );
        }
        guard.unlock().await.unwrap();
        for w in waiters {
            w.await.unwrap().unwrap();
        }
    }

    /// RW3, herd-free: behind a writer W1 wait readers R1–R5, a writer W2, readers R6–R10.
    /// R1–R5 watch W1 (its release unblocks all of them), W2 watches R5 (the entry just ahead),
    /// R6–R10 watch W2: no waiter watches anything that does not keep it out, so a reader's
    /// release wakes at most the one writer behind it.
    #[tokio::test]
    async fn rw_waiters_watch_only_what_keeps_them_out() {
        let name = format!("rw-herd-{}", fastrand::u32(..));
        let tenure = Tenure::connect(&format!("mem://{name}")).await.unwrap();
        let store = MemStore::named(&name);
        let w1 = tenure.session().await.unwrap().rwlock("q").unwrap();
        let w1 = w1.write().await.unwrap();
        let mut waiters = Vec::new();
        let mut w2_key = String::new();
        let mut r5_key = String::new();
        for i in 1..=11 {
            let session = tenure.session().await.unwrap();
            let lock = session.rwlock("q").unwrap();
            let key = |role: &str| format!("q/{role}/{:x}", session.id());
            if i == 6 {
                w2_key = key("write");
                waiters.push(tokio::spawn(async move {
                    lock.write().await.map(|g| g.token())
                }));
            } else {
                if i == 5 {
                    r5_key = key("read");
                }
                waiters.push(tokio::spawn(
                    async move { lock.read().await.map(|g| g.token()) },
                ));
            }
            let queued = async {
                while store.keys("q/").len() != i + 1 {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(30), queued)
                .await
                .expect("queued");
        }
        let settled = async {
            loop {
                let watched = store.with(|st| st.delete_watchers());
                if watched.iter().map(|(_, n)| n).sum::<usize>() == 12 {
                    return watched;
                }
                tokio::task::yield_now().await;
            }
        };
        let watched: std::collections::HashMap<String, usize> =
            tokio::time::timeout(Duration::from_secs(30), settled)
                .await
                .expect("11 waiters' watches and the holder's own")
                .into_iter()
                .collect();
        let expected: std::collections::HashMap<String, usize> =
            [(w1.key().to_string(), 6), (r5_key, 1), (w2_key, 5)]
                .into_iter()
                .collect();
        assert_eq!(watched, expected);
        w1.unlock().await.unwrap();
        for w in waiters {
            w.await.unwrap().unwrap();
        }
    }
}
