//! The fair-queue recipe (C3, C5), written once for every store with ordered, watchable keys.
//!
//! Enqueue an entry under the session; if it is not first, find the entry just ahead of it and
//! wait for that one's deletion (so a release wakes exactly one waiter); repeat until first.
//! A waiter that is dropped or fails removes its entry in the background, still holding the
//! in-process permit so that no sibling task can enter the queue under the same key meanwhile.
//!
//! Read/write locks ([`Role::Read`], [`Role::Write`]) run the same recipe: a writer is granted
//! when nothing is ahead of it, exactly as a mutex; a reader when no writer (nor mutex entry)
//! is ahead of it, and it waits on the newest one that is, until that one is deleted or marked
//! downgraded ([`QueueStore::ahead_of_reader`], [`QueueStore::wait_released`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OwnedMutexGuard;

use super::heads::Heads;
use super::{Grant, SessionBackend};
use crate::liveness::{Liveness, LostReason};
use crate::retry::ATTEMPTS;
use crate::retry::{jitter, while_alive, with_backoff};
use crate::waiting::{self, Waiting};
use crate::{Error, Result, Write};

/// An entry in a queue: its key and fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueEntry {
    pub key: String,
    pub token: u64,
}

impl QueueEntry {
    fn of(grant: &Grant) -> Self {
        QueueEntry {
            key: grant.key.clone(),
            token: grant.token,
        }
    }
}

/// The answer to enqueueing: our entry, whether it is first, and the store revision it was
/// seen at (watches start after it).
#[derive(Debug, Clone)]
pub(crate) struct Enqueued {
    pub mine: QueueEntry,
    pub first: bool,
    pub rev: i64,
    /// What stood ahead of the entry when it was made, where the store's answer to the enqueue
    /// already said (saving a waiter its first [`QueueStore::ahead`] request); `None`: ask.
    pub ahead: Option<Ahead>,
}

/// What stands ahead of our entry.
#[derive(Debug, Clone)]
pub(crate) enum Ahead {
    /// Nobody: we are first, as of `rev`.
    Nobody { rev: i64 },
    /// The entry just ahead, its token where the store read it (0: not read), and the
    /// revision to watch it from.
    Entry { key: String, token: u64, rev: i64 },
    /// The entry just ahead, known to be first (the holder) as of `rev`. Nothing is ever
    /// queued ahead of an existing entry, so once it is deleted ours is first if it is still
    /// there: [`QueueStore::ahead_after`] may confirm that alone. The recipe remembers it in
    /// the store's [`Heads`].
    #[cfg_attr(not(any(feature = "etcd", feature = "zookeeper")), allow(dead_code))]
    First { key: String, token: u64, rev: i64 },
}

/// The entry whose deletion ended a wait ([`QueueStore::ahead_after`]).
#[derive(Debug, Clone)]
pub(crate) struct Released {
    /// Its key.
    pub key: String,
    /// Its token, where the store read it (0: not read): which incarnation of `key` it was.
    pub token: u64,
    /// Whether it is known to have been first: when the wait began ([`Ahead::First`]), or by
    /// the store's [`Heads`] when it was deleted.
    #[cfg_attr(not(any(feature = "etcd", feature = "zookeeper")), allow(dead_code))]
    pub first: bool,
    /// Where its deletion was seen.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub witness: Witness,
}

impl Released {
    /// `key` (its incarnation's `token`), whose deletion was seen at `witness`: first if it
    /// was known to be when the wait began (`first`), or the store's [`Heads`] say so now.
    pub(crate) fn of<S: QueueStore + ?Sized>(
        store: &S,
        key: String,
        token: u64,
        first: bool,
        witness: Witness,
    ) -> Self {
        let first = first || store.heads().is_some_and(|h| h.was_first(&key, token));
        Released {
            key,
            token,
            first,
            witness,
        }
    }
}

/// Where a store saw an entry deleted, for a read that must not be older than that deletion
/// ([`QueueStore::ahead_after`]). Stores with one state to read (the embedded store,
/// ZooKeeper's session) need nothing, hence the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Witness {
    /// The member (of a cluster's) whose state included the deletion.
    pub member: Option<usize>,
    /// The store revision the deletion was reported at.
    pub rev: i64,
}

/// What an entry is queued for. Most stores lay both out alike; ZooKeeper names Curator's
/// InterProcessMutex nodes `-lock-` and LeaderLatch nodes `-latch-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A mutex waiter or holder.
    Lock,
    /// An election candidate or leader.
    Candidate,
    /// A semaphore permit, held or awaited (Curator InterProcessSemaphoreV2's `-lease-`).
    #[cfg_attr(not(feature = "zookeeper"), allow(dead_code))]
    Lease,
    /// A read/write lock's reader: granted when no writer is ahead of it (a mutex entry
    /// counts as a writer).
    Read,
    /// A read/write lock's writer: granted when nothing is ahead of it, like a mutex.
    Write,
}

/// The downgrade marker of a read/write lock's write entry `<name>/write/<id>`:
/// `<name>\0downgraded/<id>`, beside the queue (as the withdrawn markers are), holding the
/// entry's token in decimal. Our readers take a write entry whose marker holds its token for
/// a reader; a peer that does not know the marker (Go's RWMutex) keeps taking it for a writer,
/// which only makes that peer wait longer. `None` for keys that are no write entry.
#[cfg_attr(not(any(feature = "etcd", feature = "embedded")), allow(dead_code))]
pub(crate) fn downgrade_marker(key: &str) -> Option<String> {
    // Split on characters, not on "/write/": this runs on every release.
    let (queue, id) = key.rsplit_once('/')?;
    let name = queue.strip_suffix("/write")?;
    (!id.is_empty()).then(|| format!("{name}\0downgraded/{id}"))
}

/// One acquisition's identity, the same across all its retries (docs/contract.md, C13). A
/// store whose entry names are not derived from the session alone (ZooKeeper's protected-mode
/// uuid) names the entry after it, so that a retry finds the entry an unanswered attempt made
/// instead of creating a second one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(pub(crate) u128);

impl Ticket {
    pub(crate) fn new() -> Self {
        Ticket(fastrand::u128(..))
    }

    /// The key that marks this acquisition of the queue at `prefix` withdrawn, for stores
    /// that may apply a request after its client gave up (etcd): an enqueue of a withdrawn
    /// ticket writes nothing. It sits beside the queue (`<name>\0withdrawn/…`), so a user
    /// allowed the name's keys is allowed it, and outside it: lock names cannot contain NUL,
    /// so no queue or name ever reaches it. It lives under the session's lease.
    #[cfg_attr(not(any(feature = "etcd", feature = "embedded")), allow(dead_code))]
    pub(crate) fn withdrawn_key(self, prefix: &str, lease: u64) -> String {
        let name = prefix.strip_suffix('/').unwrap_or(prefix);
        format!("{name}\0withdrawn/{lease:x}/{:032x}", self.0)
    }
}

/// A store's own idioms for the recipe. `prefix` is `<name>/`.
///
/// Every method may be retried after an attempt that the store applied but whose answer was
/// lost (C13): enqueueing finds the entry the earlier attempt made (same session key, or the
/// same `ticket`), and conditional deletes and writes are safe to repeat.
#[async_trait]
pub(crate) trait QueueStore: Send + Sync + 'static {
    /// Creates this session's entry of `role` under `prefix` (or finds the one an earlier
    /// attempt with the same `ticket` made), learning atomically whether it is first. Stores
    /// whose layout does not depend on the role or the ticket ignore them.
    async fn enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Enqueued>;
    /// In one round trip: creates the entry only if the queue is empty; else names the holder.
    /// A holder that is our own entry (an earlier attempt applied, its answer lost) is ours;
    /// when the answer is "held by another", nothing of ours is left in the store, whatever
    /// earlier attempts with the same `ticket` did.
    async fn enqueue_if_empty(
        &self,
        prefix: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>>;
    /// The entry just ahead of `mine`. Fails with [`Error::SessionLost`] when `mine` is gone.
    async fn ahead(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead>;
    /// The entries this client knows to have been first in their queues, which the recipe
    /// keeps (backend/heads.rs); `None` for a store that has no cheaper read after a first
    /// entry's release than [`QueueStore::ahead`].
    fn heads(&self) -> Option<&Heads> {
        None
    }
    /// Which incarnation of its key the entry with `token` is, as [`Heads`] names entries: the
    /// token itself where a key can be made again (an etcd session's entry under a name is
    /// always the same key); a store whose keys never repeat, and whose reads of the queue do
    /// not show tokens (ZooKeeper's listings), names every entry's incarnation 0.
    fn incarnation(&self, token: u64) -> u64 {
        token
    }
    /// [`QueueStore::ahead`], asked once `released`, the entry that was just ahead of `mine`,
    /// is deleted. Once an entry that had been first is gone, ours is first if it is still
    /// there; a store told so ([`Released::first`]) checks `mine` alone,
    /// with a read no older than the deletion ([`Released::witness`]), so that an entry of ours
    /// whose lease was revoked while it waited is never taken for first. By default,
    /// [`QueueStore::ahead`].
    async fn ahead_after(
        &self,
        prefix: &str,
        mine: &QueueEntry,
        released: &Released,
    ) -> Result<Ahead> {
        let _ = released;
        self.ahead(prefix, mine).await
    }
    /// Resolves once `key`, as it was at `rev`, is deleted. On the hand-off path: prompt.
    async fn wait_deleted(&self, key: &str, rev: i64) -> Result<()>;
    /// [`QueueStore::wait_deleted`], also saying where the deletion was seen.
    async fn wait_deleted_seen(&self, key: &str, rev: i64) -> Result<Witness> {
        self.wait_deleted(key, rev)
            .await
            .map(|()| Witness::default())
    }
    /// Resolves once the held entry `mine` is deleted (for the lost signal); may be a little
    /// less prompt than [`QueueStore::wait_deleted`] if that saves the uncontended path a
    /// request.
    async fn watch_own(&self, mine: &QueueEntry, rev: i64) -> Result<()> {
        self.wait_deleted(&mine.key, rev).await
    }
    /// Has the store itself fire `grant` (and, with the lease gone, the session) when the held
    /// entry `mine` is deleted by anyone but our own [`QueueStore::remove`], instead of a task
    /// watching it: the embedded store deletes in process, so it needs no task per grant,
    /// which on the uncontended path costs more than the lock itself. `false`: not offered.
    fn fire_on_delete(&self, _mine: &QueueEntry, _grant: &Liveness) -> bool {
        false
    }
    /// Deletes `mine` only if it is still the same entry. `Ok(false)`: it was already gone.
    async fn remove(&self, mine: &QueueEntry) -> Result<bool>;
    /// Makes sure no attempt of the acquisition `ticket` that is still in flight can be
    /// applied from now on: an enqueue applied after its acquisition ended would leave an
    /// entry nobody waits on, blocking the name for as long as the session lives (C13). Stores
    /// that apply one session's requests in order (ZooKeeper) need nothing.
    async fn forbid(&self, _prefix: &str, _ticket: Ticket) -> Result<()> {
        Ok(())
    }
    /// This session's entries under `prefix`, whichever acquisition made them (an enqueue
    /// whose answer never arrived). A read: the withdrawal then removes exactly these entries
    /// with [`QueueStore::remove`], so a withdrawal applied late can never delete a newer
    /// entry of the same session (C13).
    async fn own_entries(&self, prefix: &str) -> Result<Vec<QueueEntry>>;
    /// Creates acquisition `ticket`'s permit entry under a semaphore's `dir` (`<name>/leases/`),
    /// or finds the one an earlier attempt of that ticket made (C13), and lists every entry
    /// under `dir` after it. An acquisition forbidden with [`QueueStore::forbid`] on `dir`
    /// creates nothing. Stores without semaphores keep this default.
    async fn add_lease(
        &self,
        _dir: &str,
        _value: &[u8],
        _ticket: Ticket,
    ) -> Result<(QueueEntry, Vec<super::observe::Kv>)> {
        Err(super::semaphore::unsupported())
    }
    /// [`QueueStore::add_lease`] in the same atomic step as a check that nobody holds or
    /// waits for the semaphore's internal lock (the queue at `locks`), creating nothing when
    /// someone does. An entry an earlier attempt of `ticket` made is ours whatever the lock's
    /// state. Stores that cannot check both at once keep this default.
    async fn add_lease_if_unlocked(
        &self,
        _dir: &str,
        _locks: &str,
        _value: &[u8],
        _ticket: Ticket,
    ) -> Result<super::semaphore::Unlocked> {
        Ok(super::semaphore::Unlocked::NotAtomic)
    }
    /// Every entry under a semaphore's `dir` now.
    async fn leases(&self, _dir: &str) -> Result<Vec<super::observe::Kv>> {
        Err(super::semaphore::unsupported())
    }
    /// Acquisition `ticket`'s permit entry under `dir`, if it exists (after an `add_lease`
    /// whose answer never came).
    async fn own_lease(&self, _dir: &str, _ticket: Ticket) -> Result<Option<QueueEntry>> {
        Err(super::semaphore::unsupported())
    }
    /// Applies `ops` only if `mine` is still there. `Ok(false)`: it is not.
    async fn guarded_write(&self, mine: &QueueEntry, ops: &[Write]) -> Result<bool>;
    /// Sets `mine`'s value (keeping its lease) only if it is still there.
    async fn proclaim(&self, mine: &QueueEntry, value: &[u8]) -> Result<bool>;
    /// See [`SessionBackend::put_ephemeral`]. Safe to retry: a put applied but unanswered
    /// left this session's own key, which the retry replaces.
    async fn put_ephemeral(&self, key: &str, value: &[u8]) -> Result<bool>;
    /// Asks the store whether the session's lease still exists (after an entry vanished:
    /// was it deleted by someone, or did the lease go?).
    async fn lease_alive(&self) -> Result<bool> {
        Ok(true)
    }
    /// Read/write locks: in one round trip, creates the entry of `role` only if it would be
    /// granted at once (a writer: the queue is empty; a reader: no writer is queued, or the
    /// only one is a downgraded holder); else names the entry in the way. Like
    /// [`QueueStore::enqueue_if_empty`], a refusal leaves nothing of ours in the store.
    async fn try_enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        let _ = (prefix, value, role, ticket);
        Err(super::rw_unsupported())
    }
    /// What a reader `mine` waits for: the last entry ahead of it that is not a reader nor a
    /// downgraded writer (so a release of a reader ahead never wakes it), or nobody.
    async fn ahead_of_reader(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead> {
        let _ = (prefix, mine);
        Err(super::rw_unsupported())
    }
    /// Resolves once the entry `key` (as it was at `rev`) no longer excludes readers: it is
    /// deleted, or downgraded.
    async fn wait_released(&self, key: &str, rev: i64) -> Result<()> {
        self.wait_deleted(key, rev).await
    }
    /// Marks the write entry `mine` downgraded, only if it is still there (`Ok(false)`: it is
    /// not). Its release removes the mark with it.
    async fn downgrade(&self, mine: &QueueEntry) -> Result<bool> {
        let _ = mine;
        Err(super::rw_unsupported())
    }
    /// Revokes the session's lease.
    async fn close(&self) -> Result<()>;
    /// Stops renewing without revoking.
    fn abandon(&self);
    /// The session's lease id.
    fn lease_id(&self) -> u64;
    /// Fires when the lease is lost.
    fn liveness(&self) -> &Liveness;
    /// See [`SessionBackend::granted_ttl`].
    fn granted_ttl(&self) -> Option<Duration> {
        None
    }
}

/// Any [`QueueStore`] is a [`SessionBackend`] through the recipe.
pub(crate) struct QueueSession<S>(pub Arc<S>);

#[async_trait]
impl<S: QueueStore> SessionBackend for QueueSession<S> {
    fn id(&self) -> u64 {
        self.0.lease_id()
    }

    fn liveness(&self) -> &Liveness {
        self.0.liveness()
    }

    fn granted_ttl(&self) -> Option<Duration> {
        self.0.granted_ttl()
    }

    async fn acquire(
        &self,
        name: &str,
        value: &[u8],
        wait: bool,
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        acquire(&self.0, name, value, wait, permit, Role::Lock).await
    }

    async fn campaign(
        &self,
        name: &str,
        value: &[u8],
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        acquire(&self.0, name, value, true, permit, Role::Candidate).await
    }

    async fn acquire_permit(
        &self,
        name: &str,
        permits: u32,
        value: &[u8],
        wait: bool,
        local: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Grant> {
        super::semaphore::acquire(&self.0, name, permits, value, wait, local).await
    }

    async fn acquire_rw(
        &self,
        name: &str,
        mode: super::RwMode,
        value: &[u8],
        wait: bool,
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        let role = match mode {
            super::RwMode::Read => Role::Read,
            super::RwMode::Write => Role::Write,
        };
        acquire(&self.0, name, value, wait, permit, role).await
    }

    async fn downgrade(&self, grant: &Grant) -> Result<bool> {
        if grant.liveness.is_lost() {
            return Ok(false);
        }
        let mine = QueueEntry::of(grant);
        with_backoff(ATTEMPTS, || self.0.downgrade(&mine)).await
    }

    async fn release(&self, grant: &Grant) -> Result<()> {
        // Our own delete must not wake our own lost-signal watch (and cost a lease query).
        if let Some(watch) = &grant.watch {
            watch.abort();
        }
        if let Some((prefix, ticket)) = &grant.in_flight {
            with_backoff(ATTEMPTS, || self.0.forbid(prefix, *ticket)).await?;
        }
        let mine = QueueEntry::of(grant);
        let lost = grant.liveness.reason();
        let mut tries = 0;
        let removed = with_backoff(ATTEMPTS, || {
            tries += 1;
            self.0.remove(&mine)
        })
        .await?;
        // After an unanswered attempt, "already gone" is most likely our own delete (C13).
        let removed = removed || tries > 1;
        match lost {
            Some(reason) => Err(Error::LockLost {
                key: grant.key.clone(),
                reason,
            }),
            None if !removed => Err(Error::LockLost {
                key: grant.key.clone(),
                reason: self
                    .0
                    .liveness()
                    .reason()
                    .unwrap_or(LostReason::EntryDeleted),
            }),
            None => Ok(()),
        }
    }

    async fn guarded_write(&self, grant: &Grant, ops: &[Write]) -> Result<bool> {
        if grant.liveness.is_lost() {
            return Ok(false);
        }
        let mine = QueueEntry::of(grant);
        with_backoff(ATTEMPTS, || self.0.guarded_write(&mine, ops)).await
    }

    async fn proclaim(&self, grant: &Grant, value: &[u8]) -> Result<bool> {
        if grant.liveness.is_lost() {
            return Ok(false);
        }
        let mine = QueueEntry::of(grant);
        with_backoff(ATTEMPTS, || self.0.proclaim(&mine, value)).await
    }

    async fn put_ephemeral(&self, key: &str, value: &[u8]) -> Result<bool> {
        with_backoff(ATTEMPTS, || self.0.put_ephemeral(key, value)).await
    }

    async fn close(&self) -> Result<()> {
        self.0.close().await
    }

    fn abandon(&self) {
        self.0.abandon();
    }

    #[cfg(test)]
    fn queue_store(&self) -> Option<&dyn QueueStore> {
        Some(self.0.as_ref())
    }
}

/// Removes an abandoned entry in the background unless disarmed.
struct EntryWithdrawal<S: QueueStore> {
    store: Arc<S>,
    prefix: String,
    ticket: Ticket,
    entry: Option<QueueEntry>,
    /// Whether an enqueue attempt may still be applied later: one went unanswered, or was
    /// still out when the acquisition ended.
    in_flight: bool,
    /// The name's in-process queue, and our place in it while we hold it (C9).
    queue: Arc<tokio::sync::Mutex<()>>,
    permit: Option<OwnedMutexGuard<()>>,
}

impl<S: QueueStore> Drop for EntryWithdrawal<S> {
    fn drop(&mut self) {
        let permit = self.permit.take();
        if permit.is_none() && !self.in_flight {
            return;
        }
        let (store, prefix, entry) = (self.store.clone(), self.prefix.clone(), self.entry.take());
        let (ticket, in_flight, queue) = (self.ticket, self.in_flight, self.queue.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%prefix, "no runtime to withdraw a waiter; its lease will expire it");
            return;
        };
        rt.spawn(async move {
            // An entry left behind blocks the name for as long as the session lives, so these
            // steps do not give up while it does (its lease takes the entry once it is lost).
            // First no late attempt can land, then whatever landed goes.
            let alive = store.liveness();
            if in_flight {
                if let Err(e) = while_alive(alive, || store.forbid(&prefix, ticket)).await {
                    tracing::warn!(%prefix, error = %e, "could not mark a withdrawn waiter; a late enqueue may block the name until the session ends");
                }
            }
            // A try that was told `Locked` gave its place back at once; an attempt of it that
            // landed before the marker is withdrawn once the place is ours again, so that no
            // sibling's entry (the same key on etcd) can be taken for it.
            let permit = match permit {
                Some(permit) => permit,
                None => tokio::select! {
                    permit = queue.lock_owned() => permit,
                    _ = alive.lost() => return,
                },
            };
            let res = match &entry {
                Some(e) => while_alive(alive, || store.remove(e)).await.map(|_| ()),
                None => while_alive(alive, || withdraw_unknown(store.as_ref(), &prefix)).await,
            };
            if let Err(e) = res {
                tracing::warn!(%prefix, error = %e, "could not withdraw a waiter; its lease will expire it");
            }
            drop(permit);
        });
    }
}

/// Withdraws whatever entry this session has under `prefix`: each is read, then deleted only
/// if it is still that entry.
async fn withdraw_unknown<S: QueueStore>(store: &S, prefix: &str) -> Result<()> {
    for entry in store.own_entries(prefix).await? {
        store.remove(&entry).await?;
    }
    Ok(())
}

async fn acquire<S: QueueStore>(
    store: &Arc<S>,
    name: &str,
    value: &[u8],
    wait: bool,
    permit: OwnedMutexGuard<()>,
    role: Role,
) -> Result<Grant> {
    let session = store.liveness().clone();
    if let Some(reason) = session.reason() {
        return Err(Error::SessionLost { reason });
    }
    let ticket = Ticket::new();
    // The prefix, the entry and what is ahead are each kept once while a waiter waits (the
    // withdrawal owns the first two, the wait the last; docs/contract.md, Performance rules).
    let mut pending = EntryWithdrawal {
        store: store.clone(),
        prefix: [name, "/"].concat(),
        ticket,
        entry: None,
        in_flight: true,
        queue: OwnedMutexGuard::mutex(&permit).clone(),
        permit: Some(permit),
    };
    let prefix = &pending.prefix;
    let mut tries = 0;
    let mut enq = if wait {
        // Retry loops are boxed here and below: an acquisition's future lives as long as it
        // waits, and would otherwise keep room for them (and their backoff timers) all along;
        // docs/contract.md, Performance rules (client memory per queued waiter).
        let enqueued = Box::pin(patiently(&session, || {
            tries += 1;
            store.enqueue(prefix, value, role, ticket)
        }));
        let enq = match enqueued.await {
            Ok(enq) => enq,
            Err(e) if e.is_permission() => {
                // Refused outright: nothing was written, so there is nothing to withdraw and
                // no reason to keep siblings out while a cleanup runs.
                pending.permit = None;
                pending.in_flight = tries > 1;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        pending.in_flight = tries > 1;
        enq
    } else {
        let tried = Box::pin(with_backoff(ATTEMPTS, || {
            tries += 1;
            match role {
                Role::Read | Role::Write => store.try_enqueue(prefix, value, role, ticket),
                Role::Lock | Role::Candidate | Role::Lease => {
                    store.enqueue_if_empty(prefix, value, ticket)
                }
            }
        }));
        let answer = tried.await;
        pending.in_flight = answer.is_err() || tries > 1;
        match answer {
            Ok(Ok(enq)) => enq,
            Ok(Err(holder)) => {
                // A `Locked` answer leaves nothing of ours in the store, also after retries
                // (the store withdraws what an unanswered attempt made: C4, C13), so there is
                // no cleanup to keep siblings waiting for.
                pending.permit = None;
                return Err(Error::Locked {
                    name: name.to_string(),
                    holder,
                });
            }
            Err(e) => return Err(e),
        }
    };
    let ahead = enq.ahead.take();
    // A waiter's entry is withdrawn by `pending` if the wait is abandoned (C5); a try's,
    // granted at once, only by what it finds under the prefix, as before any entry was known.
    let mut tried = None;
    let mine: &QueueEntry = if wait {
        pending.entry.insert(enq.mine)
    } else {
        tried.insert(enq.mine)
    };
    let rev = if enq.first {
        enq.rev
    } else {
        // What the enqueue saw just ahead is what a writer or a mutex waiter waits on, but
        // not a reader, which waits on the newest writer ahead: a reader asks again.
        let known = ahead.filter(|_| role != Role::Read);
        // Boxed: only a waiter pays for the wait's state; inline it made every acquisition's
        // future (boxed by the seam) large enough to cost an uncontended lock on `mem://` a
        // fifth of its time in the allocator.
        Box::pin(wait_for_turn(
            store.as_ref(),
            &session,
            prefix,
            mine,
            role,
            known,
        ))
        .await?
    };
    // A grant is never handed out past the session's local deadline (C14): the answers above
    // may have come after retries that outlived the last confirmed renewal. `pending` is still
    // armed and withdraws the entry.
    if let Some(reason) = session.reason() {
        return Err(Error::SessionLost { reason });
    }
    // Readers are granted beside others, so a granted reader is not first.
    if let (Some(heads), false) = (store.heads(), role == Role::Read) {
        heads.record(&mine.key, store.incarnation(mine.token));
    }
    let liveness = session.child();
    let watch = watch_entry(store, mine, rev, &liveness);
    let permit = pending.permit.take();
    // An attempt still in flight is forbidden at release, before the entry is deleted.
    let in_flight = std::mem::take(&mut pending.in_flight);
    // Disarmed (no permit, nothing in flight): what it kept is the grant's now.
    let in_flight = in_flight.then(|| (std::mem::take(&mut pending.prefix), ticket));
    let mine = pending
        .entry
        .take()
        .or(tried)
        .expect("the entry is kept by the withdrawal or the try");
    Ok(Grant {
        key: mine.key,
        token: mine.token,
        liveness,
        watch,
        _permit: permit,
        in_flight,
    })
}

/// A waiter's store call: transient faults are retried for as long as the session lives, since
/// a waiter's only deadline is its caller's (C11; a member fault or a leaderless spell of a
/// cluster outlasting a fixed number of attempts is no reason to give up, C14). Once the
/// session is lost, that is the error.
pub(crate) async fn patiently<T, F, Fut>(session: &Liveness, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    match while_alive(session, op).await {
        Err(e) if e.is_transient() => Err(session
            .reason()
            .map_or(e, |reason| Error::SessionLost { reason })),
        other => other,
    }
}

/// Waits until nothing is ahead of `mine` that excludes it (for a reader: no writer; for
/// anyone else: nothing at all), starting from `known` (what the enqueue saw ahead) when
/// given; returns a revision at which `mine` was seen queued, for the holder's watch. Each
/// pass waits on exactly the entry that blocks it, so a release wakes only the waiters it
/// unblocks.
///
/// After the blocker's release, what is ahead is always read again: that read is what
/// confirms our own entry is still there. Our lease may have been revoked or expired while we
/// waited, which the session hears of only at its next renewal; granting on the holder's
/// delete event alone would hand out a grant with no entry, beside the next comer
/// (etcd#16221, the bug Go's RWMutex has; `tests/etcd_go_rwmutex.rs` revokes a waiter's lease
/// to check it). When the blocker was first, that read may be of our entry alone
/// ([`QueueStore::ahead_after`]).
async fn wait_for_turn<S: QueueStore>(
    store: &S,
    session: &Liveness,
    prefix: &str,
    mine: &QueueEntry,
    role: Role,
    mut known: Option<Ahead>,
) -> Result<i64> {
    let reader = role == Role::Read;
    // The entry this waiter waited on, once its wait ended with that entry deleted.
    let mut released: Option<Released> = None;
    loop {
        let ahead = match known.take() {
            Some(ahead) => ahead,
            None => {
                // Boxed: a queued waiter's future need not keep room for a store request's
                // state machine the whole time it waits.
                Box::pin(patiently(session, || async {
                    match &released {
                        _ if reader => store.ahead_of_reader(prefix, mine).await,
                        Some(released) => store.ahead_after(prefix, mine, released).await,
                        None => store.ahead(prefix, mine).await,
                    }
                }))
                .await?
            }
        };
        let heads = store.heads();
        if let (Some(heads), Some(released)) = (heads, &released) {
            // Its successor (us) has taken over from it: nobody asks about it again.
            if released.first && matches!(ahead, Ahead::Nobody { .. }) {
                heads.forget(&released.key, released.token);
            }
        }
        let (key, token, rev, first) = match ahead {
            Ahead::Nobody { rev } => return Ok(rev),
            Ahead::Entry { key, token, rev } => (key, token, rev, false),
            Ahead::First { key, token, rev } => {
                if let Some(heads) = heads {
                    heads.record(&key, token);
                }
                (key, token, rev, true)
            }
        };
        waiting::note(Waiting::Queued {
            ahead: Some(key.clone()),
        });
        let deleted = async {
            if reader {
                store
                    .wait_released(&key, rev)
                    .await
                    .map(|()| Witness::default())
            } else {
                store.wait_deleted_seen(&key, rev).await
            }
        };
        released = None;
        tokio::select! {
            res = deleted => match res {
                Ok(witness) => {
                    released = Some(Released::of(store, key.clone(), token, first, witness));
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "predecessor watch broke; re-checking");
                    waiting::note(Waiting::Retrying {
                        last_error: e.to_string(),
                    });
                    tokio::time::sleep(jitter(Duration::from_millis(50))).await;
                }
                Err(e) => return Err(e),
            },
            reason = session.lost() => return Err(Error::SessionLost { reason }),
        }
    }
}

/// Arms `liveness` to fire when the held entry `mine` is deleted by anyone but us: by the
/// store itself where it can ([`QueueStore::fire_on_delete`]), else by a task whose handle
/// stops it.
pub(crate) fn watch_entry<S: QueueStore>(
    store: &Arc<S>,
    mine: &QueueEntry,
    rev: i64,
    liveness: &Liveness,
) -> Option<tokio::task::AbortHandle> {
    if store.fire_on_delete(mine, liveness) {
        return None;
    }
    Some(spawn_entry_watch(
        store.clone(),
        mine.clone(),
        rev,
        liveness.clone(),
    ))
}

/// Fires `liveness` when the entry is deleted by anyone but us.
///
/// The first watch starts right after the grant's revision (no extra request on the
/// uncontended path). Once that watch breaks, the history since the grant may have been
/// compacted, so every later watch starts from the store's current revision and re-reads the
/// entry (as a waiter's does): a holder whose watch broke never loops on a start revision the
/// store no longer has.
fn spawn_entry_watch<S: QueueStore>(
    store: Arc<S>,
    mine: QueueEntry,
    rev: i64,
    liveness: Liveness,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut rearmed = false;
        loop {
            let watched = if rearmed {
                store.wait_deleted(&mine.key, mine.token as i64).await
            } else {
                store.watch_own(&mine, rev).await
            };
            match watched {
                Ok(()) => return entry_gone(store.as_ref(), &liveness).await,
                Err(e) if e.is_transient() => {
                    tracing::debug!(key = %mine.key, error = %e, "holder watch broke; re-arming");
                    tokio::time::sleep(jitter(Duration::from_millis(200))).await;
                    rearmed = true;
                }
                Err(_) => return,
            }
        }
    })
    .abort_handle()
}

/// Fires a grant's latch for a vanished entry, with the true reason: if the lease went with
/// it, the session is lost too (and the grant reports `LeaseExpired`, from its parent).
async fn entry_gone<S: QueueStore>(store: &S, grant: &Liveness) {
    if let Ok(false) = store.lease_alive().await {
        store.liveness().lose(LostReason::LeaseExpired);
    }
    grant.lose(LostReason::EntryDeleted);
}

#[cfg(test)]
mod tests {
    use super::downgrade_marker;

    #[test]
    fn downgrade_markers_only_for_write_entries() {
        let marker = |key| downgrade_marker(key);
        assert_eq!(
            marker("jobs/write/1f").as_deref(),
            Some("jobs\0downgraded/1f")
        );
        assert_eq!(
            marker("a/write/b/write/c").as_deref(),
            Some("a/write/b\0downgraded/c")
        );
        for no in [
            "jobs/1f",
            "jobs/read/1f",
            "jobs/write/",
            "a/write/b/c",
            "write/1f",
        ] {
            assert_eq!(marker(no), None, "{no:?}");
        }
    }
}
