//! One etcd lease and the queue operations made under it, each exactly one request.

use async_trait::async_trait;
use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use std::sync::Arc;
use tokio::task::AbortHandle;

use super::deep::DeepQueues;
use super::members::Members;
use super::watch::WatchHub;
use super::{is_lease_not_found, revision};
use crate::backend::heads::Heads;
use crate::backend::observe::Kv;
use crate::backend::queue::{
    downgrade_marker, Ahead, Enqueued, QueueEntry, QueueStore, Released, Role, Ticket, Witness,
};
use crate::backend::semaphore::Unlocked;
use crate::liveness::{Liveness, LostReason};
use crate::retry::with_backoff;
use crate::retry::ATTEMPTS;
use crate::{Error, Result, Write};

#[path = "rw.rs"]
mod rw;

pub(super) struct EtcdSession {
    members: Arc<Members>,
    watch: WatchHub,
    heads: Arc<Heads>,
    deep: Arc<DeepQueues>,
    lease: i64,
    liveness: Liveness,
    keep_alive: AbortHandle,
}

impl Drop for EtcdSession {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

impl EtcdSession {
    pub(super) fn new(
        members: Arc<Members>,
        watch: WatchHub,
        heads: Arc<Heads>,
        deep: Arc<DeepQueues>,
        lease: i64,
        liveness: Liveness,
        keep_alive: AbortHandle,
    ) -> Self {
        EtcdSession {
            members,
            watch,
            heads,
            deep,
            lease,
            liveness,
            keep_alive,
        }
    }

    fn my_key(&self, prefix: &str) -> String {
        format!("{prefix}{:x}", self.lease)
    }

    /// Acquisition `ticket`'s permit entry under a semaphore's `dir`:
    /// `<name>/leases/<lease id hex>-<ticket hex>` (docs/contract.md, Semaphores).
    fn lease_key(&self, dir: &str, ticket: Ticket) -> String {
        format!("{dir}{:x}-{:032x}", self.lease, ticket.0)
    }

    /// Creates acquisition `ticket`'s permit entry under `dir` if `also` holds, in one Txn
    /// that lists `dir` after it; an entry an earlier attempt made is found instead. `None`:
    /// nothing created (a compare of `also` failed, or the ticket was withdrawn).
    async fn add_lease_when(
        &self,
        dir: &str,
        value: &[u8],
        ticket: Ticket,
        also: Option<Compare>,
    ) -> Result<Option<(QueueEntry, Vec<Kv>)>> {
        let key = self.lease_key(dir, ticket);
        let put = TxnOp::put(
            key.as_str(),
            value,
            Some(PutOptions::new().with_lease(self.lease)),
        );
        let list = || TxnOp::get(dir, Some(GetOptions::new().with_prefix()));
        let mut when = vec![
            Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            self.not_withdrawn(dir, ticket),
        ];
        when.extend(also);
        let txn = Txn::new()
            .when(when)
            .and_then([put, list()])
            .or_else([TxnOp::get(key.as_str(), None), list()]);
        let resp = self.txn("acquire permit", txn).await?;
        let token = if resp.succeeded() {
            revision(resp.header())
        } else {
            match nth_kv(&resp, 0) {
                Some((_, created)) => created,
                None => return Ok(None),
            }
        };
        let all = match resp.op_responses().into_iter().nth(1) {
            Some(TxnOpResponse::Get(g)) => g.kvs().iter().map(super::observe::kv_of).collect(),
            _ => return Err(malformed("acquire permit")),
        };
        let mine = QueueEntry {
            key,
            token: token as u64,
        };
        Ok(Some((mine, all)))
    }

    /// Holds while acquisition `ticket` has not been withdrawn (see [`QueueStore::forbid`]).
    fn not_withdrawn(&self, prefix: &str, ticket: Ticket) -> Compare {
        let marker = ticket.withdrawn_key(prefix, self.lease as u64);
        Compare::create_revision(marker, CompareOp::Equal, 0)
    }

    /// One transaction. A put under a lease etcd no longer has means the session is gone:
    /// say so (and fire the session's latch) rather than pass on etcd's raw error.
    async fn txn(&self, op: &'static str, txn: Txn) -> Result<TxnResponse> {
        let answer = self
            .members
            .call(op, |c| async move { c.kv_client().txn(txn).await })
            .await;
        match answer {
            Err(e) if is_lease_not_found(&e) => {
                self.liveness.lose(LostReason::LeaseExpired);
                Err(Error::SessionLost {
                    reason: LostReason::LeaseExpired,
                })
            }
            other => other,
        }
    }
}

/// The owner query of Go's Mutex: the entry with the lowest create revision.
fn first_created(prefix: &str) -> TxnOp {
    let opts = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
        .with_limit(1);
    TxnOp::get(prefix, Some(opts))
}

/// Up to three entries of `prefix` newest first, up to create revision `max` (all if `None`):
/// the entry itself, the one just ahead of it, and whether a third exists, which tells
/// whether the one ahead is the holder.
fn newest_three(max: Option<i64>) -> GetOptions {
    let opts = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_limit(3);
    match max {
        Some(rev) => opts.with_max_create_revision(rev),
        None => opts,
    }
}

/// Two entries of `prefix` in key order, and how many there are: etcd counts a range from its
/// in-memory index and reads only the entries it returns ([`ahead_from_enqueue`]).
fn two_and_count() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_limit(2)
}

/// What stands ahead of `mine`, from [`newest_three`]'s answer up to `mine`'s create
/// revision, seen at `rev`. `None` if `mine` is not the newest of them (it is gone).
fn ahead_of(kvs: &[etcd_client::KeyValue], mine: &QueueEntry, rev: i64) -> Option<Ahead> {
    let newest = kvs.first()?;
    if newest.key() != mine.key.as_bytes() || newest.create_revision() as u64 != mine.token {
        return None;
    }
    let Some(ahead) = kvs.get(1) else {
        return Some(Ahead::Nobody { rev });
    };
    let key = String::from_utf8_lossy(ahead.key()).into_owned();
    let token = ahead.create_revision() as u64;
    // A third entry is older than the one ahead: that one is not first.
    Some(match kvs.get(2) {
        None => Ahead::First { key, token, rev },
        Some(_) => Ahead::Entry { key, token, rev },
    })
}

/// What stands ahead of `mine` from a deep queue's enqueue ([`two_and_count`]): the number of
/// entries `count` just after it was made, and up to two of them in key order. With one other
/// entry, that one is first and just ahead; with more, the waiter reads who is just ahead
/// after the Txn ([`EtcdSession::ahead`], outside etcd's apply loop; `deep.rs`).
fn ahead_from_enqueue(
    kvs: &[etcd_client::KeyValue],
    count: i64,
    mine: &QueueEntry,
    rev: i64,
) -> Option<Ahead> {
    match count {
        1 => Some(Ahead::Nobody { rev }),
        2 => {
            let other = kvs.iter().find(|kv| kv.key() != mine.key.as_bytes())?;
            Some(Ahead::First {
                key: String::from_utf8_lossy(other.key()).into_owned(),
                token: other.create_revision() as u64,
                rev,
            })
        }
        _ => None,
    }
}

impl EtcdSession {
    /// `key` as read from a state at least as new as `at`: serializable, on the member `at`
    /// names, when that member answers from there (it created a watch at `at.rev`, so it has
    /// applied that revision, and a member's state only moves forward); else linearizable.
    /// A waiter's read after its watch is created need not wait for the leader's
    /// confirmation, which costs etcd a round of its read loop per waiter.
    async fn read_since(&self, key: &str, at: Witness) -> Result<etcd_client::GetResponse> {
        if let Some(member) = at.member {
            let opts = GetOptions::new().with_serializable();
            let resp = self
                .members
                .call_at(member, "wait", |c| async move {
                    c.kv_client().get(key, Some(opts)).await
                })
                .await?;
            if revision(resp.header()) >= at.rev {
                return Ok(resp);
            }
        }
        self.members
            .call(
                "wait",
                |c| async move { c.kv_client().get(key, None).await },
            )
            .await
    }

    /// One range (not a read-only Txn: etcd 3.5.0–3.5.4 panic when one is cancelled while it
    /// runs, etcd#14110, as a timed-out or dropped waiter's request is) for what stands ahead
    /// of `mine`; `None` if `mine` is not there.
    async fn read_ahead(
        &self,
        prefix: &str,
        mine: &QueueEntry,
        serializable: bool,
    ) -> Result<Option<Ahead>> {
        let mut opts = newest_three(Some(mine.token as i64));
        if serializable {
            opts = opts.with_serializable();
        }
        let resp = self
            .members
            .call("wait", |c| async move {
                c.kv_client().get(prefix, Some(opts)).await
            })
            .await?;
        Ok(ahead_of(resp.kvs(), mine, revision(resp.header())))
    }
}

/// The first key-value of the `i`th response of a transaction, as (key, create revision).
fn nth_kv(resp: &TxnResponse, i: usize) -> Option<(String, i64)> {
    match resp.op_responses().into_iter().nth(i)? {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.create_revision(),
            )
        }),
        _ => None,
    }
}

/// The answer to an enqueue whose acquisition was withdrawn while it was in flight (nobody
/// waits for it any more).
fn withdrawn() -> Error {
    Error::Store {
        op: "lock",
        message: "this acquisition was withdrawn before its enqueue was applied".into(),
        source: None,
    }
}

fn malformed(op: &'static str) -> Error {
    Error::Store {
        op,
        message: "etcd returned a transaction response without the expected parts".into(),
        source: None,
    }
}

/// Our writes as etcd transaction operations.
pub(super) fn txn_ops(ops: &[Write]) -> Vec<TxnOp> {
    ops.iter()
        .map(|w| match w {
            Write::Put { key, value } => TxnOp::put(key.as_str(), value.as_slice(), None),
            Write::Delete { key } => TxnOp::delete(key.as_str(), None),
        })
        .collect()
}

fn is_mine(key: &str, token: u64) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, token as i64)
}

#[async_trait]
impl QueueStore for EtcdSession {
    fn heads(&self) -> Option<&Heads> {
        Some(&self.heads)
    }

    async fn enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Enqueued> {
        if matches!(role, Role::Read | Role::Write) {
            return self.enqueue_rw(prefix, value, role, ticket).await;
        }
        let key = self.my_key(prefix);
        let put = TxnOp::put(
            key.as_str(),
            value,
            Some(PutOptions::new().with_lease(self.lease)),
        );
        // A new entry is the newest: on a short queue the same answer names the one ahead of
        // it, so a waiter starts watching at once; a deep one is only counted (`deep.rs`).
        let deep = self.deep.is_deep(prefix);
        let queued = if deep {
            two_and_count()
        } else {
            newest_three(None)
        };
        let txn = Txn::new()
            .when([
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                self.not_withdrawn(prefix, ticket),
            ])
            .and_then([put, TxnOp::get(prefix, Some(queued))])
            .or_else([TxnOp::get(key.as_str(), None), first_created(prefix)]);
        let resp = self.txn("lock", txn).await?;
        let rev = revision(resp.header());
        let enq = if resp.succeeded() {
            let mine = QueueEntry {
                key,
                token: rev as u64,
            };
            let ahead = match resp.op_responses().into_iter().nth(1) {
                Some(TxnOpResponse::Get(queued)) => {
                    self.deep.counted(prefix, queued.count());
                    if deep {
                        ahead_from_enqueue(queued.kvs(), queued.count(), &mine, rev)
                    } else {
                        ahead_of(queued.kvs(), &mine, rev)
                    }
                }
                _ => return Err(malformed("lock")),
            };
            Enqueued {
                first: matches!(ahead, Some(Ahead::Nobody { .. })),
                mine,
                rev,
                ahead,
            }
        } else {
            // An earlier attempt made the entry and its answer was lost (C13).
            let token = nth_kv(&resp, 0).ok_or_else(withdrawn)?.1;
            let (_, owner) = nth_kv(&resp, 1).ok_or_else(|| malformed("lock"))?;
            Enqueued {
                mine: QueueEntry {
                    key,
                    token: token as u64,
                },
                first: owner == token,
                rev,
                ahead: None,
            }
        };
        Ok(enq)
    }

    async fn enqueue_if_empty(
        &self,
        prefix: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        let key = self.my_key(prefix);
        let put = TxnOp::put(
            key.as_str(),
            value,
            Some(PutOptions::new().with_lease(self.lease)),
        );
        // A range compare holds for an empty range, so this reads "nobody is queued".
        let nobody = Compare::create_revision(prefix, CompareOp::Equal, 0).with_prefix();
        let txn = Txn::new()
            .when([nobody, self.not_withdrawn(prefix, ticket)])
            .and_then([put])
            .or_else([first_created(prefix)]);
        let resp = self.txn("try lock", txn).await?;
        let rev = revision(resp.header());
        let token = if resp.succeeded() {
            rev
        } else {
            match nth_kv(&resp, 0) {
                // An earlier attempt was applied but its answer lost (C13): the holder is us.
                Some((holder, created)) if holder == key => created,
                holder => return Ok(Err(holder.map(|(k, _)| k))),
            }
        };
        Ok(Ok(Enqueued {
            mine: QueueEntry {
                key,
                token: token as u64,
            },
            first: true,
            rev,
            ahead: None,
        }))
    }

    async fn ahead(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead> {
        // First from the member's own store, without a round of leader confirmation: entries
        // ahead of ours are never created after ours, only deleted, so a stale answer can only
        // show more of them (we then wait on one that is gone, which the watch's read settles
        // at once), never fewer. Only our own entry could look missing on a member behind
        // our enqueue; that is asked again linearizably before it is believed.
        if let Some(ahead) = self.read_ahead(prefix, mine, true).await? {
            return Ok(ahead);
        }
        self.read_ahead(prefix, mine, false).await?.ok_or_else(|| {
            // Go's ErrSessionExpired: our entry vanished while we waited.
            let reason = self.liveness.reason().unwrap_or(LostReason::EntryDeleted);
            Error::SessionLost { reason }
        })
    }

    async fn wait_deleted(&self, key: &str, rev: i64) -> Result<()> {
        self.wait_deleted_seen(key, rev).await.map(|_| ())
    }

    async fn wait_deleted_seen(&self, key: &str, rev: i64) -> Result<Witness> {
        let broken = |message| Error::Transient {
            op: "watch",
            message,
            source: None,
        };
        let mut watch = self.watch.watch_delete(key, None);
        let created = watch.created().await.map_err(broken)?;
        let created_rev = created.rev;
        // From here the watch sees every delete; one read covers the time before it. Boxed:
        // a waiter's future lives as long as it waits, and would otherwise keep room for a
        // gRPC call's whole state machine (about 20 KB) the entire time.
        // The answer is dropped before the wait (a block, not just its last use): kept, its
        // entries stayed in memory all the time a queued waiter waits.
        let hedge = {
            let now = Box::pin(self.read_since(key, created)).await?;
            let same_entry = now
                .kvs()
                .first()
                .is_some_and(|kv| kv.create_revision() <= rev);
            if !same_entry {
                // Seen by a read, not an event: no revision to name, so a read that must
                // follow the deletion is linearizable.
                return Ok(Witness::default());
            }
            watch.hedge(key, created_rev, revision(now.header()))
        };
        watch.deleted_or(hedge).await.map_err(broken)
    }

    async fn ahead_after(
        &self,
        prefix: &str,
        mine: &QueueEntry,
        released: &Released,
    ) -> Result<Ahead> {
        if !released.first {
            return self.ahead(prefix, mine).await;
        }
        // Our own entry alone, from a state at least as new as the first entry's deletion:
        // from the member whose watch reported it, without leader confirmation, when that
        // member answers from the deletion's revision on ([`EtcdSession::read_since`]; etcd
        // sends a watch event only once it has applied its revision, yet queues it just
        // before that write turns visible to reads, so a read racing that gap answers from
        // the revision before and is asked again linearizably). If our lease was revoked
        // before the deletion, the entry is missing there; if after, we were first in between
        // and the grant's own watch, which starts right after this read's revision, reports
        // the loss. A missing entry is then confirmed as gone by the full read.
        let now = Box::pin(self.read_since(&mine.key, released.witness)).await?;
        let still_mine = now
            .kvs()
            .first()
            .is_some_and(|kv| kv.create_revision() as u64 == mine.token);
        if still_mine {
            return Ok(Ahead::Nobody {
                rev: revision(now.header()),
            });
        }
        self.ahead(prefix, mine).await
    }

    async fn watch_own(&self, mine: &QueueEntry, rev: i64) -> Result<()> {
        // No extra read on the uncontended path: a delete right after `rev` reaches this
        // watch at etcd's next catch-up (within 100 ms), soon enough for the lost signal.
        let mut watch = self.watch.watch_delete(&mine.key, Some(rev + 1));
        watch
            .deleted()
            .await
            .map(|_| ())
            .map_err(|message| Error::Transient {
                op: "watch",
                message,
                source: None,
            })
    }

    async fn remove(&self, mine: &QueueEntry) -> Result<bool> {
        let mut delete = vec![TxnOp::delete(mine.key.as_str(), None)];
        // A read/write lock's write entry goes with its downgrade marker, if it has one.
        if let Some(marker) = downgrade_marker(&mine.key) {
            delete.push(TxnOp::delete(marker, None));
        }
        let txn = Txn::new()
            .when([is_mine(&mine.key, mine.token)])
            .and_then(delete);
        Ok(self.txn("unlock", txn).await?.succeeded())
    }

    async fn forbid(&self, prefix: &str, ticket: Ticket) -> Result<()> {
        let marker = ticket.withdrawn_key(prefix, self.lease as u64);
        let put = TxnOp::put(marker, "", Some(PutOptions::new().with_lease(self.lease)));
        self.txn("withdraw", Txn::new().and_then([put]))
            .await
            .map(|_| ())
    }

    async fn own_entries(&self, prefix: &str) -> Result<Vec<QueueEntry>> {
        // The session's mutex or election entry, and its read/write lock entries: one
        // acquisition per session and name runs at a time (C9), so whichever is there is the
        // withdrawn one's.
        let keys = [
            self.my_key(prefix),
            self.rw_key(prefix, Role::Read),
            self.rw_key(prefix, Role::Write),
        ];
        let gets = keys.map(|k| TxnOp::get(k, None));
        let found = self.txn("withdraw", Txn::new().and_then(gets)).await?;
        Ok(found
            .op_responses()
            .into_iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(g) => Some(g),
                _ => None,
            })
            .flat_map(|g| g.kvs().to_vec())
            .filter(|kv| kv.lease() == self.lease)
            .map(|kv| QueueEntry {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                token: kv.create_revision() as u64,
            })
            .collect())
    }

    async fn add_lease(
        &self,
        dir: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<(QueueEntry, Vec<Kv>)> {
        self.add_lease_when(dir, value, ticket, None)
            .await?
            .ok_or_else(withdrawn)
    }

    async fn add_lease_if_unlocked(
        &self,
        dir: &str,
        locks: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<Unlocked> {
        // A range compare holds for an empty range: nobody holds or waits for the lock.
        let nobody = Compare::create_revision(locks, CompareOp::Equal, 0).with_prefix();
        let added = self
            .add_lease_when(dir, value, ticket, Some(nobody))
            .await?;
        Ok(match added {
            Some((mine, all)) => Unlocked::Added(mine, all),
            None => Unlocked::LockBusy,
        })
    }

    async fn leases(&self, dir: &str) -> Result<Vec<Kv>> {
        Ok(super::observe::entries(&self.members, dir).await?.0)
    }

    async fn own_lease(&self, dir: &str, ticket: Ticket) -> Result<Option<QueueEntry>> {
        let key = self.lease_key(dir, ticket);
        let found = self
            .members
            .call(
                "withdraw",
                |c| async move { c.kv_client().get(key, None).await },
            )
            .await?;
        Ok(found.kvs().first().map(|kv| QueueEntry {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            token: kv.create_revision() as u64,
        }))
    }

    async fn try_enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        self.try_enqueue_rw(prefix, value, role, ticket).await
    }

    async fn ahead_of_reader(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead> {
        self.ahead_of_reader_rw(prefix, mine).await
    }

    async fn wait_released(&self, key: &str, rev: i64) -> Result<()> {
        match downgrade_marker(key) {
            Some(marker) => self.wait_released_rw(key, &marker, rev).await,
            None => self.wait_deleted(key, rev).await,
        }
    }

    async fn downgrade(&self, mine: &QueueEntry) -> Result<bool> {
        self.downgrade_rw(mine).await
    }

    async fn guarded_write(&self, mine: &QueueEntry, ops: &[Write]) -> Result<bool> {
        let txn = Txn::new()
            .when([is_mine(&mine.key, mine.token)])
            .and_then(txn_ops(ops));
        Ok(self.txn("guarded write", txn).await?.succeeded())
    }

    async fn proclaim(&self, mine: &QueueEntry, value: &[u8]) -> Result<bool> {
        let put = TxnOp::put(
            mine.key.as_str(),
            value,
            Some(PutOptions::new().with_lease(self.lease)),
        );
        let txn = Txn::new()
            .when([is_mine(&mine.key, mine.token)])
            .and_then([put]);
        Ok(self.txn("proclaim", txn).await?.succeeded())
    }

    async fn put_ephemeral(&self, key: &str, value: &[u8]) -> Result<bool> {
        let put = || TxnOp::put(key, value, Some(PutOptions::new().with_lease(self.lease)));
        // etcd compares cannot say "absent or ours" at once: two conditional puts, repeated
        // once in case the key went between them.
        for _ in 0..2 {
            let absent = Compare::create_revision(key, CompareOp::Equal, 0);
            let create = Txn::new().when([absent]).and_then([put()]);
            if self.txn("put ephemeral", create).await?.succeeded() {
                return Ok(true);
            }
            let ours = Compare::lease(key, CompareOp::Equal, self.lease);
            let replace = Txn::new().when([ours]).and_then([put()]);
            if self.txn("put ephemeral", replace).await?.succeeded() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn lease_alive(&self) -> Result<bool> {
        let lease = self.lease;
        let ttl = self.members.call("lease ttl", |c| async move {
            c.lease_client().time_to_live(lease, None).await
        });
        // etcd 3.5 answers TTL -1 for a lease it no longer has; 3.4 answers an error.
        match ttl.await {
            Ok(resp) => Ok(resp.ttl() > 0),
            Err(e) if is_lease_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn close(&self) -> Result<()> {
        self.keep_alive.abort();
        self.liveness.lose(LostReason::SessionClosed);
        let lease = self.lease;
        let revoke = with_backoff(ATTEMPTS, || {
            self.members.call("lease revoke", |c| async move {
                c.lease_client().revoke(lease).await
            })
        });
        match revoke.await {
            Err(e) if is_lease_not_found(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    fn abandon(&self) {
        self.keep_alive.abort();
    }

    fn lease_id(&self) -> u64 {
        self.lease as u64
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }
}
