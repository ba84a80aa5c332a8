//! Read/write locks on etcd, in the layout of Go's `contrib/recipes` RWMutex: lock `N`'s
//! readers are `N/read/<id>`, its writers `N/write/<id>`, all ordered by revision (ours:
//! `<id>` is the lease id in lowercase hex, so that a retried enqueue finds its own entry; Go's
//! is a Unix time in nanoseconds). A writer is granted when no entry under `N/` is older; a
//! reader when no entry under `N/` outside `N/read/` is older — so a plain mutex entry
//! `N/<lease>` (and `etcdctl lock N`) counts as a writer for our readers. Go's readers look
//! only at `N/write`, and share with a mutex holder: their limit, not ours.
//!
//! Go orders by *mod* revision (`WithLastRev`, `WithMaxModRev`), so an entry must never be
//! rewritten: a put would move it behind the writers queued after it, for Go's eyes. That is
//! why a downgrade is recorded in a marker beside the queue (`N\0downgraded/<id>`, holding the
//! entry's create revision, under the lease) and never in the entry's value. Go's peers do not
//! read the marker and keep taking the downgraded entry for a writer: they wait a little
//! longer, which is safe.

use etcd_client::{
    Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};

use super::{first_created, malformed, nth_kv, withdrawn, EtcdSession};
use crate::backend::etcd::revision;
use crate::backend::queue::{downgrade_marker, Ahead, Enqueued, QueueEntry, Role, Ticket};
use crate::{Error, Result};

/// How often a try of a read lock re-checks a downgraded writer that is the only one in the
/// way before it says `Locked`: each pass is one request and only repeats when the queue
/// changed under it.
const TRY_PASSES: usize = 3;

/// The end of the range of keys under `prefix` (which ends with `/`).
fn prefix_end(prefix: &str) -> String {
    let stem = prefix.strip_suffix('/').unwrap_or(prefix);
    format!("{stem}0")
}

/// The newest entry of the range `[from, to)`, created before revision `before` if given.
fn last_in(from: String, to: String, before: Option<i64>) -> TxnOp {
    let mut opts = GetOptions::new()
        .with_range(to)
        .with_sort(SortTarget::Create, SortOrder::Descend)
        .with_limit(1);
    if let Some(rev) = before {
        opts = opts.with_max_create_revision(rev - 1);
    }
    TxnOp::get(from, Some(opts))
}

/// The two ranges of `prefix` that hold whatever is not a reader: before `read/` and after.
fn writer_ranges(prefix: &str) -> [(String, String); 2] {
    [
        (prefix.to_string(), format!("{prefix}read/")),
        (format!("{prefix}read0"), prefix_end(prefix)),
    ]
}

/// Gets of the newest non-reader in each of the two ranges.
fn last_writers(prefix: &str, before: Option<i64>) -> [TxnOp; 2] {
    writer_ranges(prefix).map(|(from, to)| last_in(from, to, before))
}

/// Every downgrade marker of the lock at `prefix`.
fn markers(prefix: &str) -> TxnOp {
    let stem = prefix.strip_suffix('/').unwrap_or(prefix);
    let opts = GetOptions::new().with_prefix();
    TxnOp::get(format!("{stem}\0downgraded/"), Some(opts))
}

/// Whether the markers read at response `m` say that entry `key` created at `rev` is a
/// downgraded writer.
fn downgraded(resp: &TxnResponse, m: usize, key: &str, rev: i64) -> bool {
    let Some(marker) = downgrade_marker(key) else {
        return false;
    };
    let token = rev.to_string();
    match resp.op_responses().into_iter().nth(m) {
        Some(TxnOpResponse::Get(g)) => g
            .kvs()
            .iter()
            .any(|kv| kv.key() == marker.as_bytes() && kv.value() == token.as_bytes()),
        _ => false,
    }
}

/// The newest non-reader read at responses `i` and `i + 1`, as (key, create revision).
fn newest_writer(resp: &TxnResponse, i: usize) -> Option<(String, i64)> {
    match (nth_kv(resp, i), nth_kv(resp, i + 1)) {
        (Some(a), Some(b)) => Some(if a.1 > b.1 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// What keeps a reader out, from the newest non-reader ahead (responses `i`, `i + 1`) and the
/// markers (response `m`): that entry, unless it is a downgraded writer — a granted writer had
/// nothing ahead of it, so then nothing ahead excludes the reader.
fn reader_blocker(resp: &TxnResponse, i: usize, m: usize) -> Option<(String, i64)> {
    newest_writer(resp, i).filter(|(key, rev)| !downgraded(resp, m, key, *rev))
}

impl EtcdSession {
    /// This session's entry of `role` in the lock at `prefix`.
    pub(super) fn rw_key(&self, prefix: &str, role: Role) -> String {
        let side = if role == Role::Read { "read" } else { "write" };
        format!("{prefix}{side}/{:x}", self.lease)
    }

    fn put_mine(&self, key: &str, value: &[u8]) -> TxnOp {
        TxnOp::put(key, value, Some(PutOptions::new().with_lease(self.lease)))
    }

    /// One request: creates the entry and, in the same transaction, reads what decides whether
    /// it is granted (a writer: the oldest entry; a reader: the newest non-reader, and the
    /// downgrade markers).
    pub(super) async fn enqueue_rw(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Enqueued> {
        let key = self.rw_key(prefix, role);
        let mut then = vec![self.put_mine(&key, value)];
        if role == Role::Read {
            then.extend(last_writers(prefix, None));
            then.push(markers(prefix));
        } else {
            then.push(first_created(prefix));
        }
        let txn = Txn::new()
            .when([
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                self.not_withdrawn(prefix, ticket),
            ])
            .and_then(then)
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = self.txn("lock", txn).await?;
        let rev = revision(resp.header());
        if !resp.succeeded() {
            // An earlier attempt was applied, its answer lost (C13): the entry is ours; the
            // waiting loop finds out whether it is granted.
            let token = nth_kv(&resp, 0).ok_or_else(withdrawn)?.1 as u64;
            return Ok(Enqueued {
                mine: QueueEntry { key, token },
                first: false,
                rev,
                ahead: None,
            });
        }
        let first = if role == Role::Read {
            reader_blocker(&resp, 1, 3).is_none()
        } else {
            nth_kv(&resp, 1).ok_or_else(|| malformed("lock"))?.1 == rev
        };
        Ok(Enqueued {
            mine: QueueEntry {
                key,
                token: rev as u64,
            },
            first,
            rev,
            ahead: None,
        })
    }

    /// Takes the lock at `prefix` only if granted at once, in one request (two when a
    /// downgraded writer is in the way of a reader: then the reader may join it only if no
    /// writer has queued behind it).
    pub(super) async fn try_enqueue_rw(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        let key = self.rw_key(prefix, role);
        if role == Role::Write {
            // A range compare holds for an empty range, so this reads "nobody is queued".
            let nobody = Compare::create_revision(prefix, CompareOp::Equal, 0).with_prefix();
            let txn = Txn::new()
                .when([nobody, self.not_withdrawn(prefix, ticket)])
                .and_then([self.put_mine(&key, value)])
                .or_else([first_created(prefix)]);
            let resp = self.txn("try lock", txn).await?;
            let rev = revision(resp.header());
            let token = if resp.succeeded() {
                rev
            } else {
                match nth_kv(&resp, 0) {
                    // An earlier attempt was applied, its answer lost (C13): it was made into an
                    // empty queue, so it is first.
                    Some((holder, created)) if holder == key => created,
                    holder => return Ok(Err(holder.map(|(k, _)| k))),
                }
            };
            let mine = QueueEntry {
                key,
                token: token as u64,
            };
            return Ok(Ok(Enqueued {
                mine,
                first: true,
                rev,
                ahead: None,
            }));
        }
        // A reader: no non-reader may be queued, except a downgraded writer with nobody
        // behind it (all non-readers created no later than it, and its marker unchanged).
        let mut allowed: Option<(String, i64)> = None;
        let mut holder = None;
        for _ in 0..TRY_PASSES {
            let bound = allowed.as_ref().map_or(1, |(_, rev)| rev + 1);
            let mut when: Vec<Compare> = writer_ranges(prefix)
                .into_iter()
                .map(|(from, to)| {
                    Compare::create_revision(from, CompareOp::Less, bound).with_range(to)
                })
                .collect();
            if let Some((writer, rev)) = &allowed {
                let marker = downgrade_marker(writer).unwrap_or_default();
                when.push(Compare::value(marker, CompareOp::Equal, rev.to_string()));
            }
            when.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
            when.push(self.not_withdrawn(prefix, ticket));
            let mut otherwise = vec![TxnOp::get(key.as_str(), None)];
            otherwise.extend(last_writers(prefix, None));
            otherwise.push(markers(prefix));
            let txn = Txn::new()
                .when(when)
                .and_then([self.put_mine(&key, value)])
                .or_else(otherwise);
            let resp = self.txn("try lock", txn).await?;
            let rev = revision(resp.header());
            let token = if resp.succeeded() {
                Some(rev)
            } else {
                // An earlier attempt was applied, its answer lost (C13): it was made when
                // nothing excluded it, and only entries behind it came since.
                nth_kv(&resp, 0).map(|(_, created)| created)
            };
            if let Some(token) = token {
                let mine = QueueEntry {
                    key,
                    token: token as u64,
                };
                return Ok(Ok(Enqueued {
                    mine,
                    first: true,
                    rev,
                    ahead: None,
                }));
            }
            let newest = newest_writer(&resp, 1);
            holder = newest.as_ref().map(|(k, _)| k.clone());
            match newest {
                Some((writer, created)) if downgraded(&resp, 3, &writer, created) => {
                    allowed = Some((writer, created));
                }
                _ => break,
            }
        }
        Ok(Err(holder))
    }

    /// One request: the entry a reader waits for (see [`reader_blocker`]), and whether the
    /// reader's own entry is still there.
    pub(super) async fn ahead_of_reader_rw(
        &self,
        prefix: &str,
        mine: &QueueEntry,
    ) -> Result<Ahead> {
        let mut ops = last_writers(prefix, Some(mine.token as i64)).to_vec();
        ops.push(TxnOp::get(mine.key.as_str(), None));
        ops.push(markers(prefix));
        let resp = self.txn("wait", Txn::new().and_then(ops)).await?;
        let rev = revision(resp.header());
        if nth_kv(&resp, 2).map(|(_, r)| r as u64) != Some(mine.token) {
            let reason = self
                .liveness
                .reason()
                .unwrap_or(crate::LostReason::EntryDeleted);
            return Err(Error::SessionLost { reason });
        }
        Ok(match reader_blocker(&resp, 0, 3) {
            Some((key, _)) => Ahead::Entry { key, token: 0, rev },
            None => Ahead::Nobody { rev },
        })
    }

    /// Waits until write entry `key` (as it was at `rev`) is deleted or downgraded. Both
    /// watches start at etcd's current revision (synced, prompt); one read after etcd
    /// confirms them covers the time before.
    pub(super) async fn wait_released_rw(&self, key: &str, marker: &str, rev: i64) -> Result<()> {
        let broken = |message| Error::Transient {
            op: "watch",
            message,
            source: None,
        };
        let mut deleted = self.watch.watch_delete(key, None);
        let mut marked = self.watch.watch_put(marker);
        deleted.created().await.map_err(broken)?;
        marked.created().await.map_err(broken)?;
        let read = Txn::new().and_then([TxnOp::get(key, None), TxnOp::get(marker, None)]);
        let now = self.txn("wait", read).await?;
        let Some((_, created)) = nth_kv(&now, 0).filter(|(_, created)| *created <= rev) else {
            return Ok(());
        };
        let token = created.to_string();
        let is_marked = match now.op_responses().into_iter().nth(1) {
            Some(TxnOpResponse::Get(g)) => g.kvs().iter().any(|kv| kv.value() == token.as_bytes()),
            _ => false,
        };
        if is_marked {
            return Ok(());
        }
        tokio::select! {
            seen = deleted.deleted() => seen.map(|_| ()).map_err(broken),
            seen = marked.deleted() => seen.map(|_| ()).map_err(broken),
        }
    }

    /// Marks the write entry `mine` downgraded, only while it is still ours: one request.
    pub(super) async fn downgrade_rw(&self, mine: &QueueEntry) -> Result<bool> {
        let Some(marker) = downgrade_marker(&mine.key) else {
            return Ok(false);
        };
        let put = self.put_mine(&marker, mine.token.to_string().as_bytes());
        let txn = Txn::new()
            .when([Compare::create_revision(
                mine.key.as_str(),
                CompareOp::Equal,
                mine.token as i64,
            )])
            .and_then([put]);
        Ok(self.txn("downgrade", txn).await?.succeeded())
    }
}
