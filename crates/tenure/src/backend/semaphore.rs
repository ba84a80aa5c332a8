//! The counting semaphore, written once for every store with ordered, watchable keys (etcd,
//! embedded, ZooKeeper), with the algorithm of Curator's InterProcessSemaphoreV2 so that on
//! ZooKeeper Curator and Tenure share one semaphore (docs/contract.md, Semaphores):
//!
//! 1. take the semaphore's internal FIFO lock `<name>/locks` (the shared queue recipe, the
//!    same one a mutex uses);
//! 2. holding it, create this acquisition's permit entry under `<name>/leases/` and count
//!    the entries there: at most `permits` → granted;
//! 3. otherwise, still holding the internal lock, wait until any other permit entry is
//!    deleted and count again. Only the head of the internal lock's queue ever watches the
//!    holders, so a release wakes one waiter and costs the same with 5 waiters as with 500;
//! 4. release the internal lock.
//!
//! The count is safe without the lock: every acquirer creates its entry before it counts, so
//! of any set of entries present together, the one counted last saw them all (at most
//! `permits` are ever granted). The lock only makes waiting fair and herd-free. So where the
//! store can create and count in one atomic step *and* see that nobody holds or waits for the
//! internal lock (etcd, embedded: one Txn), an uncontended acquisition skips the lock.
//!
//! Each entry records the permit count its acquirer used (`permits=N\n` before the holder's
//! value); a count that disagrees with ours is [`Error::PermitsDisagree`], never silent
//! over-admission. Entries that record no count (Curator's, whose data is an address) are
//! counted but cannot be checked.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

use super::observe::Kv;
use super::queue::{patiently, watch_entry, QueueEntry, QueueSession, QueueStore, Ticket};
use super::{Grant, SessionBackend};
use crate::hold::Hold;
use crate::liveness::{Liveness, LostReason};
use crate::retry::{jitter, while_alive, with_backoff, ATTEMPTS};
use crate::waiting::{self, Waiting};
use crate::{Error, Result};

/// The internal lock's name under the semaphore's (Curator's `LOCK_PARENT`).
pub(crate) const LOCKS: &str = "locks";
/// The directory of permit entries under the semaphore's name (Curator's `LEASE_PARENT`).
pub(crate) const LEASES: &str = "leases";

/// What a store without semaphores answers.
pub(crate) fn unsupported() -> Error {
    Error::Unsupported {
        backend: "selected",
        what: "a semaphore",
        advice: "use an etcd://, zk://, redis:// or mem:// URL",
    }
}

/// A permit entry's data: the permit count its acquirer used, then the holder's value.
pub(crate) fn record(permits: u32, value: &[u8]) -> Vec<u8> {
    let mut data = format!("permits={permits}\n").into_bytes();
    data.extend_from_slice(value);
    data
}

/// The permit count and holder value an entry recorded; `None` for an entry that records no
/// count (Curator's, whose data is its client's address).
pub(crate) fn recorded(data: &[u8]) -> Option<(u32, &[u8])> {
    let rest = data.strip_prefix(b"permits=")?;
    let end = rest.iter().position(|b| *b == b'\n')?;
    let count = std::str::from_utf8(&rest[..end]).ok()?;
    if !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((count.parse().ok()?, &rest[end + 1..]))
}

/// What [`QueueStore::add_lease_if_unlocked`] found.
#[derive(Debug)]
#[cfg_attr(not(any(feature = "etcd", feature = "embedded")), allow(dead_code))]
pub(crate) enum Unlocked {
    /// Nobody held or waited for the internal lock: our entry, and every entry after it.
    Added(QueueEntry, Vec<Kv>),
    /// Someone holds or waits for the internal lock; nothing was created.
    LockBusy,
    /// The store cannot check the lock and create in one step; nothing was asked.
    NotAtomic,
}

/// Whether `all` (which holds `mine`) admits `mine`: at most `permits` entries, and no entry
/// that recorded another count.
fn admit(name: &str, permits: u32, all: &[Kv]) -> Result<bool> {
    if let Some((recorded, kv)) = all
        .iter()
        .find_map(|kv| recorded(&kv.value).map(|(n, _)| (n, kv)))
        .filter(|(n, _)| *n != permits)
    {
        return Err(Error::PermitsDisagree {
            name: name.to_string(),
            permits,
            recorded,
            holder: kv.key.clone(),
        });
    }
    Ok(all.len() <= permits as usize)
}

/// The oldest entry that is not `mine`: who a `Locked` or a wait names.
fn oldest_other(all: &[Kv], mine: &QueueEntry) -> Option<String> {
    all.iter()
        .filter(|kv| kv.key != mine.key)
        .min_by_key(|kv| kv.create_rev)
        .map(|kv| kv.key.clone())
}

/// A waiter's store call retries while its session lives (C11); a try's a bounded number of
/// times.
async fn retrying<T, F, Fut>(wait: bool, session: &Liveness, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    if wait {
        patiently(session, op).await
    } else {
        with_backoff(ATTEMPTS, op).await
    }
}

/// Withdraws an acquisition's permit entry in the background unless disarmed, then gives back
/// the internal lock (C5): a permit entry left behind would hold a permit for as long as the
/// session lives.
struct PermitWithdrawal<S: QueueStore> {
    store: Arc<S>,
    dir: String,
    ticket: Ticket,
    /// Our entry, once an answer named it.
    entry: Option<QueueEntry>,
    /// Whether an entry may exist that no answer named: a create attempt went unanswered, or
    /// was still out when the acquisition ended.
    unknown: bool,
    /// Whether such an attempt may still land later (it must be forbidden first, C13).
    in_flight: bool,
    /// The internal lock, while this acquisition holds it.
    lock: Option<Hold>,
}

impl<S: QueueStore> PermitWithdrawal<S> {
    fn disarm(&mut self) {
        self.entry = None;
        self.unknown = false;
        self.in_flight = false;
    }

    /// Withdraws what this acquisition left in the store before its caller hears `err` (a
    /// refused try leaves nothing behind, C4), then gives back the internal lock. Whatever
    /// could not be withdrawn now, or is abandoned midway, is withdrawn in the background.
    async fn fail(&mut self, err: Error) -> Error {
        let store = self.store.clone();
        let withdrawn = async {
            if self.in_flight {
                with_backoff(ATTEMPTS, || store.forbid(&self.dir, self.ticket)).await?;
            }
            let entry = match &self.entry {
                Some(e) => Some(e.clone()),
                None if self.unknown => {
                    with_backoff(ATTEMPTS, || store.own_lease(&self.dir, self.ticket)).await?
                }
                None => None,
            };
            if let Some(e) = entry {
                with_backoff(ATTEMPTS, || store.remove(&e)).await?;
            }
            Ok::<_, Error>(())
        };
        match withdrawn.await {
            Ok(()) => self.disarm(),
            Err(e) => {
                tracing::debug!(dir = %self.dir, error = %e, "withdrawing a permit entry; retrying in the background");
                return err;
            }
        }
        if let Some(lock) = self.lock.take() {
            if let Err(e) = lock.release().await {
                tracing::debug!(dir = %self.dir, error = %e, "semaphore's internal lock release");
            }
        }
        err
    }
}

impl<S: QueueStore> Drop for PermitWithdrawal<S> {
    fn drop(&mut self) {
        let lock = self.lock.take();
        if self.entry.is_none() && !self.unknown && !self.in_flight {
            return; // `lock`, if any, is released in the background by its own drop.
        }
        let (store, dir, entry) = (self.store.clone(), self.dir.clone(), self.entry.take());
        let (ticket, in_flight) = (self.ticket, self.in_flight);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%dir, "no runtime to withdraw a permit entry; its lease will expire it");
            return;
        };
        rt.spawn(async move {
            let alive = store.liveness();
            if in_flight {
                if let Err(e) = while_alive(alive, || store.forbid(&dir, ticket)).await {
                    tracing::warn!(%dir, error = %e, "could not mark a withdrawn permit; a late create may hold a permit until the session ends");
                }
            }
            let res = match &entry {
                Some(e) => while_alive(alive, || store.remove(e)).await.map(|_| ()),
                None => {
                    while_alive(alive, || async {
                        match store.own_lease(&dir, ticket).await? {
                            Some(e) => store.remove(&e).await.map(|_| ()),
                            None => Ok(()),
                        }
                    })
                    .await
                }
            };
            if let Err(e) = res {
                tracing::warn!(%dir, error = %e, "could not withdraw a permit entry; its lease will expire it");
            }
            // Only now may the next in line count the entries.
            drop(lock);
        });
    }
}

/// Takes one of `permits` permits of semaphore `name` on `store` (see the module docs).
/// `local` is this session's in-process queue for the internal lock (C9 applies to that lock:
/// one entry per session there), taken only while the acquisition needs the lock.
pub(crate) async fn acquire<S: QueueStore>(
    store: &Arc<S>,
    name: &str,
    permits: u32,
    value: &[u8],
    wait: bool,
    local: Arc<tokio::sync::Mutex<()>>,
) -> Result<Grant> {
    let session = store.liveness().clone();
    if let Some(reason) = session.reason() {
        return Err(Error::SessionLost { reason });
    }
    let dir = format!("{name}/{LEASES}/");
    let locks = format!("{name}/{LOCKS}");
    let data = record(permits, value);
    let ticket = Ticket::new();
    let mut pending = PermitWithdrawal {
        store: store.clone(),
        dir: dir.clone(),
        ticket,
        entry: None,
        unknown: false,
        in_flight: false,
        lock: None,
    };
    let locked = |holder| Error::Locked {
        name: name.to_string(),
        holder,
    };

    // Nobody in line: create and count in one step, without the internal lock.
    let lock_prefix = format!("{locks}/");
    let mut tries = 0;
    let fast = retrying(wait, &session, || {
        tries += 1;
        store.add_lease_if_unlocked(&dir, &lock_prefix, &data, ticket)
    });
    let fast = fast.await;
    if fast.is_err() || tries > 1 {
        (pending.unknown, pending.in_flight) = (true, true);
    }
    match fast? {
        Unlocked::Added(mine, all) => {
            pending.entry = Some(mine.clone());
            match admit(name, permits, &all) {
                Ok(true) => return granted(store, &session, &mut pending, mine),
                Ok(false) => {}
                Err(e) => return Err(pending.fail(e).await),
            }
            // Every permit is taken: give the entry back before queuing (or failing a try).
            let removed = retrying(wait, &session, || store.remove(&mine)).await;
            removed?;
            pending.entry = None;
            if !wait {
                return Err(locked(oldest_other(&all, &mine)));
            }
        }
        Unlocked::LockBusy if !wait => return Err(locked(None)),
        Unlocked::LockBusy | Unlocked::NotAtomic => {}
    }

    // The internal lock, queued in process first (C9: one entry per session there).
    let place = if wait {
        waiting::queue_locally(local, store.liveness()).await?
    } else {
        local.try_lock_owned().map_err(|_| locked(None))?
    };
    let backend: Arc<dyn SessionBackend> = Arc::new(QueueSession(store.clone()));
    let lock = match backend.acquire(&locks, value, wait, place).await {
        Ok(grant) => grant,
        Err(Error::Locked { .. }) => return Err(locked(None)),
        Err(e) => return Err(e),
    };
    pending.lock = Some(Hold::new(backend, lock));

    let mut tries = 0;
    let added = retrying(wait, &session, || {
        tries += 1;
        store.add_lease(&dir, &data, ticket)
    });
    let added = added.await;
    if added.is_err() || tries > 1 {
        (pending.unknown, pending.in_flight) = (true, true);
    }
    let (mine, mut all) = added?;
    pending.entry = Some(mine.clone());
    loop {
        if !all.iter().any(|kv| kv.key == mine.key) {
            let reason = session.reason().unwrap_or(LostReason::EntryDeleted);
            return Err(Error::SessionLost { reason });
        }
        match admit(name, permits, &all) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(pending.fail(e).await),
        }
        if !wait {
            return Err(pending.fail(locked(oldest_other(&all, &mine))).await);
        }
        waiting::note(Waiting::Queued {
            ahead: oldest_other(&all, &mine),
        });
        wait_any_deleted(store.as_ref(), &session, &all, &mine).await?;
        all = patiently(&session, || store.leases(&dir)).await?;
    }
    // Give the internal lock back before handing out the permit: if this future is dropped
    // meanwhile, `pending` still withdraws the entry.
    if let Some(lock) = pending.lock.take() {
        if let Err(e) = lock.release().await {
            tracing::debug!(%name, error = %e, "semaphore's internal lock release");
        }
    }
    granted(store, &session, &mut pending, mine)
}

/// Waits until any entry of `all` but `mine` is deleted (as it was when listed).
async fn wait_any_deleted<S: QueueStore>(
    store: &S,
    session: &Liveness,
    all: &[Kv],
    mine: &QueueEntry,
) -> Result<()> {
    let mut watches: Vec<_> = all
        .iter()
        .filter(|kv| kv.key != mine.key)
        .map(|kv| store.wait_deleted(&kv.key, kv.create_rev))
        .collect();
    if watches.is_empty() {
        // Only over the count with our own entry alone: `permits` is 0, which the API refuses.
        tokio::time::sleep(jitter(Duration::from_millis(200))).await;
        return Ok(());
    }
    // The first of the watches to finish (no allocation-free select over a Vec in tokio).
    let first = std::future::poll_fn(|cx| {
        for w in watches.iter_mut() {
            if let std::task::Poll::Ready(res) = w.as_mut().poll(cx) {
                return std::task::Poll::Ready(res);
            }
        }
        std::task::Poll::Pending
    });
    tokio::select! {
        res = first => match res {
            Ok(()) => Ok(()),
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "permit watch broke; counting again");
                waiting::note(Waiting::Retrying { last_error: e.to_string() });
                tokio::time::sleep(jitter(Duration::from_millis(50))).await;
                Ok(())
            }
            Err(e) => Err(e),
        },
        reason = session.lost() => Err(Error::SessionLost { reason }),
    }
}

/// The grant for `mine`, disarming `pending`. No await: once made, the grant is the caller's.
fn granted<S: QueueStore>(
    store: &Arc<S>,
    session: &Liveness,
    pending: &mut PermitWithdrawal<S>,
    mine: QueueEntry,
) -> Result<Grant> {
    // Never past the session's local deadline (C14); `pending` withdraws the entry.
    if let Some(reason) = session.reason() {
        return Err(Error::SessionLost { reason });
    }
    let liveness = session.child();
    let watch = watch_entry(store, &mine, mine.token as i64, &liveness);
    let in_flight = pending
        .in_flight
        .then(|| (pending.dir.clone(), pending.ticket));
    pending.disarm();
    Ok(Grant {
        key: mine.key,
        token: mine.token,
        liveness,
        watch,
        _permit: None::<OwnedMutexGuard<()>>,
        in_flight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_foreign_data_records_nothing() {
        let data = record(3, b"host:1\nmore");
        assert_eq!(recorded(&data), Some((3, &b"host:1\nmore"[..])));
        assert_eq!(recorded(b"127.0.1.1"), None);
        assert_eq!(recorded(b"permits=+3\n"), None);
        assert_eq!(recorded(b"permits=3"), None);
        assert_eq!(recorded(b"permits=99999999999\n"), None);
    }

    #[test]
    fn a_disagreeing_count_is_an_error_and_foreign_entries_count() {
        let kv = |key: &str, value: Vec<u8>, create_rev| Kv {
            key: key.into(),
            value,
            create_rev,
            lease: 1,
        };
        let all = vec![
            kv("s/leases/a", b"10.0.0.1".to_vec(), 1),
            kv("s/leases/b", record(2, b""), 2),
        ];
        assert_eq!(admit("s", 2, &all), Ok(true));
        let more = [all.clone(), vec![kv("s/leases/c", record(2, b""), 3)]].concat();
        assert_eq!(admit("s", 2, &more), Ok(false));
        let err = admit("s", 3, &all).unwrap_err();
        assert!(
            matches!(&err, Error::PermitsDisagree { recorded: 2, permits: 3, holder, .. } if holder == "s/leases/b"),
            "{err:?}"
        );
    }
}
