//! Semaphore clauses (docs/contract.md, Semaphores), on every backend that has semaphores:
//! never more holders than permits, a crashed holder's permit reclaimed, cancellation leaves
//! nothing, owner-only release, strictly increasing tokens, disagreeing counts refused,
//! several permits held by the tasks of one session.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use super::fixture::{eventually, Admin, Fixture};
use super::within;
use crate::{Error, LostReason, Write};

/// The keys of semaphore `name` that stand for acquisitions: its internal lock's queue and
/// its permit entries (withdrawn markers, which live beside them until their session ends,
/// are not acquisitions); on Redis its permit keys (waiters leave none there).
async fn semaphore_keys(f: &Fixture, name: &str) -> Vec<String> {
    #[cfg(feature = "redis")]
    if let Admin::Redis(admin) = &f.admin {
        let mut keys = admin
            .keys_with_prefix(&format!("tenure:semaphore:{name}:"))
            .await;
        keys.retain(|k| !k.ends_with(":permits") && !k.ends_with(":fence"));
        return keys;
    }
    #[cfg(feature = "postgres")]
    if let Admin::Postgres(admin) = &f.admin {
        // The queue key's rows (`<name>/locks/<pid>`) and the held permit slots.
        let mut keys = admin.keys(&format!("{name}/locks/")).await;
        keys.extend(admin.permits(name).await);
        keys.sort();
        return keys;
    }
    let mut keys = f.admin.keys(&format!("{name}/locks/")).await;
    keys.extend(f.admin.keys(&format!("{name}/leases/")).await);
    keys.retain(|k| !k.contains('\0'));
    keys.sort();
    keys
}

/// How many acquisitions of semaphore `name` are in line: entries of its internal lock's
/// queue (the head of the line holds the lock). Not its permit entries: an uncontended
/// attempt that found every permit taken has one for a moment before it queues.
async fn in_line(f: &Fixture, name: &str) -> usize {
    let mut keys = f.admin.keys(&format!("{name}/locks/")).await;
    keys.retain(|k| !k.contains('\0'));
    keys.len()
}

/// Every key under `prefix` (the occupancy marks).
async fn marks(f: &Fixture, prefix: &str) -> usize {
    #[cfg(feature = "redis")]
    if let Admin::Redis(admin) = &f.admin {
        return admin.keys_with_prefix(prefix).await.len();
    }
    // PostgreSQL's admin lists advisory locks as keys; the marks are rows of `tenure_kv`.
    #[cfg(feature = "postgres")]
    if let Admin::Postgres(admin) = &f.admin {
        return admin.kv_keys(prefix).await.len();
    }
    f.admin.keys(prefix).await.len()
}

/// Whether the head of the line has a permit entry while it waits (the shared recipe's
/// does; PostgreSQL's head only holds the queue key and tries the slots).
fn head_has_entry(f: &Fixture) -> bool {
    #[cfg(feature = "postgres")]
    if let Admin::Postgres(_) = &f.admin {
        return false;
    }
    let _ = f;
    true
}

/// Whether waiters have entries in the store (every backend but Redis, which keeps no line).
fn waiters_queue(f: &Fixture) -> bool {
    #[cfg(feature = "redis")]
    if let Admin::Redis(_) = &f.admin {
        return false;
    }
    let _ = f;
    true
}

/// N holders exactly: 50 sessions × 20 acquisitions of a semaphore of 3 permits. Each holder
/// marks itself in the store with a guarded write (one key per holder, under a prefix), counts
/// the marks, and removes its mark with a guarded write before it releases: the store never
/// shows more than 3 marks, never fewer than its own, and none at the end.
pub(crate) async fn s1_never_more_holders_than_permits(f: Fixture) {
    let (sessions, rounds, permits) = (50, 20, 3);
    let f = Arc::new(f);
    let name = f.name("pool");
    let marks = f.name("pool-occupancy/");
    let inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let (f, name, marks) = (f.clone(), name.clone(), marks.clone());
        let inside = inside.clone();
        tasks.push(tokio::spawn(async move {
            let session = f.tenure.session().await.expect("session");
            let pool = session.semaphore(&name, permits).expect("semaphore");
            for _ in 0..rounds {
                // Each wait is bounded, not the whole run: 1000 acquisitions through 3
                // permits take a while on a loaded machine, and only a hang should fail.
                let permit = within("acquire", pool.acquire()).await.expect("acquire");
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(now <= permits as usize, "{now} holders at once");
                // Zero-padded: ZooKeeper's admin lists the children that end in a sequence.
                let mark = format!("{marks}{:020}", permit.token().get());
                permit
                    .write([Write::put(mark.clone(), "1")])
                    .await
                    .expect("guarded mark");
                let occupancy = self::marks(&f, &marks).await;
                assert!(
                    (1..=permits as usize).contains(&occupancy),
                    "the store shows {occupancy} holders"
                );
                permit
                    .write([Write::delete(mark)])
                    .await
                    .expect("guarded unmark");
                inside.fetch_sub(1, Ordering::SeqCst);
                permit.release().await.expect("release");
            }
            session.close().await.expect("close");
        }));
    }
    for t in tasks {
        t.await.expect("contender task");
    }
    assert_eq!(self::marks(&f, &marks).await, 0);
    eventually("nothing left", || async {
        semaphore_keys(&f, &name).await.is_empty()
    })
    .await;
}

/// A holder whose process dies (stops renewing) loses its permits when its lease expires;
/// a waiter then gets one without anyone's help, with a larger token.
pub(crate) async fn s2_crashed_holder_permit_reclaimed(f: Fixture) {
    let name = f.name("crash");
    let crashed = f.tenure.session_with_ttl(f.short_ttl).await.unwrap();
    let pool = crashed.semaphore(&name, 2).unwrap();
    let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    let last = a.token().max(b.token());
    std::mem::forget((a, b));
    crashed.simulate_crash();
    let waiter = f.tenure.session().await.unwrap();
    let pool = waiter.semaphore(&name, 2).unwrap();
    let p = within("waiter after crash", pool.acquire()).await.unwrap();
    assert!(p.token() > last);
    let q = within("second permit after crash", pool.acquire())
        .await
        .unwrap();
    assert!(q.token() > p.token());
}

/// Cancelled acquisitions (aborted, timed out, dropped mid-wait) leave no key: neither a
/// permit entry nor an entry in the internal lock's queue; the permits stay usable.
pub(crate) async fn s3_cancellation_leaves_nothing(f: Fixture) {
    let name = f.name("cancel");
    let holder = f.tenure.session().await.unwrap();
    let pool = holder.semaphore(&name, 2).unwrap();
    let held = [pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    let mut expected: Vec<String> = held.iter().map(|p| p.key().to_string()).collect();
    expected.sort();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = f
            .tenure
            .session()
            .await
            .unwrap()
            .semaphore(&name, 2)
            .unwrap();
        tasks.push(tokio::spawn(async move { s.acquire().await.map(|_| ()) }));
    }
    // The head of the line has a permit entry and the lock; the rest wait for the lock.
    if waiters_queue(&f) {
        eventually("waiters queued", || async {
            in_line(&f, &name).await == 10
        })
        .await;
    }
    for t in &tasks {
        t.abort();
    }
    let timed_out = f
        .tenure
        .session()
        .await
        .unwrap()
        .semaphore(&name, 2)
        .unwrap();
    let err = timed_out
        .acquire_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    {
        let s = f
            .tenure
            .session()
            .await
            .unwrap()
            .semaphore(&name, 2)
            .unwrap();
        let fut = s.acquire();
        tokio::pin!(fut);
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut fut).await;
    }
    assert!(matches!(
        timed_out.try_acquire().await,
        Err(Error::Locked { .. })
    ));
    eventually("abandoned entries removed", || async {
        semaphore_keys(&f, &name).await == expected
    })
    .await;
    let [first, second] = held;
    first.release().await.unwrap();
    let next = f.tenure.session().await.unwrap();
    let p = within(
        "acquire after cancellations",
        next.semaphore(&name, 2).unwrap().acquire(),
    )
    .await
    .unwrap();
    p.release().await.unwrap();
    second.release().await.unwrap();
    eventually("nothing left", || async {
        semaphore_keys(&f, &name).await.is_empty()
    })
    .await;
}

/// Owner-only release: a permit whose entry was deleted by someone else reports it lost, and
/// releasing it then reports `LockLost` and removes nobody else's permit.
pub(crate) async fn s4_owner_only_release(f: Fixture) {
    let name = f.name("owner");
    let a = f.tenure.session().await.unwrap();
    let b = f.tenure.session().await.unwrap();
    let mine = a.semaphore(&name, 2).unwrap().acquire().await.unwrap();
    let theirs = b.semaphore(&name, 2).unwrap().acquire().await.unwrap();
    f.admin.delete(mine.key()).await;
    assert_eq!(
        within("lost on delete", mine.lost()).await,
        LostReason::EntryDeleted
    );
    let newer = b.semaphore(&name, 2).unwrap().acquire().await.unwrap();
    let err = mine.release().await.unwrap_err();
    assert!(matches!(err, Error::LockLost { .. }), "{err}");
    let mut expected = vec![theirs.key().to_string(), newer.key().to_string()];
    expected.sort();
    assert_eq!(semaphore_keys(&f, &name).await, expected);
    // A released permit can no longer write.
    theirs.release().await.unwrap();
    assert!(matches!(
        newer.write([Write::put(f.name("owner-x"), "1")]).await,
        Ok(())
    ));
    f.admin.delete(newer.key()).await;
    within("lost", newer.lost()).await;
    assert!(matches!(
        newer.write([Write::put(f.name("owner-x"), "2")]).await,
        Err(Error::NotHeld { .. })
    ));
}

/// Tokens strictly increase in grant order, across sessions and across overlapping holders,
/// and a waiter is granted once a permit is released, in arrival order.
pub(crate) async fn s5_tokens_increase_in_grant_order(f: Fixture) {
    let name = f.name("tokens");
    let mut tokens = Vec::new();
    let mut held = Vec::new();
    for _ in 0..3 {
        let s = f.tenure.session().await.unwrap();
        let p = s.semaphore(&name, 3).unwrap().acquire().await.unwrap();
        tokens.push(p.token());
        held.push((s, p));
    }
    let order = Arc::new(StdMutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..3 {
        let s = f.tenure.session().await.unwrap();
        let pool = s.semaphore(&name, 3).unwrap();
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let p = pool.acquire().await.unwrap();
            order.lock().unwrap().push((i, p.token()));
            (s, p)
        }));
        // Arrival order: each waiter is in line before the next one starts.
        eventually("in line", || async { in_line(&f, &name).await == i + 1 }).await;
    }
    let mut granted = Vec::new();
    for (i, w) in waiters.into_iter().enumerate() {
        let (_, p) = held.remove(0);
        p.release().await.unwrap();
        granted.push(within("waiter granted", w).await.unwrap());
        assert_eq!(order.lock().unwrap().len(), i + 1);
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
    tokens.extend(order.iter().map(|(_, t)| *t));
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens not strictly increasing: {tokens:?}"
    );
}

/// Clients that disagree on the permit count get a typed error and leave nothing behind;
/// counts out of range are refused before anything is asked.
pub(crate) async fn s6_permit_counts_must_agree(f: Fixture) {
    let name = f.name("agree");
    let a = f.tenure.session().await.unwrap();
    let held = a.semaphore(&name, 3).unwrap().acquire().await.unwrap();
    let b = f.tenure.session().await.unwrap();
    let other = b.semaphore(&name, 2).unwrap();
    for attempt in 0..2 {
        let res = match attempt {
            0 => other.acquire().await,
            _ => other.try_acquire().await,
        };
        match res {
            Err(Error::PermitsDisagree {
                permits: 2,
                recorded: 3,
                holder,
                ..
            }) if waiters_queue(&f) => assert_eq!(holder, held.key()),
            // Redis names the key that records the count.
            Err(Error::PermitsDisagree {
                permits: 2,
                recorded: 3,
                ..
            }) => {}
            other => panic!("expected PermitsDisagree, got {other:?}"),
        }
        // The refused acquisition withdrew before it answered.
        eventually("nothing left by the refused", || async {
            semaphore_keys(&f, &name).await == vec![held.key().to_string()]
        })
        .await;
    }
    for bad in [0, crate::MAX_PERMITS + 1] {
        assert!(matches!(
            b.semaphore(&name, bad),
            Err(Error::InvalidPermits { .. })
        ));
    }
    assert!(matches!(b.semaphore("", 1), Err(Error::InvalidName { .. })));
    // Once every holder of the old count is gone, the count may change.
    held.release().await.unwrap();
    other.acquire().await.unwrap().release().await.unwrap();
}

/// Tasks of one session hold several permits of one name at once, and wait like anyone else
/// once they are all taken.
pub(crate) async fn s7_one_session_holds_several(f: Fixture) {
    let name = f.name("local");
    let s = f.tenure.session().await.unwrap();
    let pool = s.semaphore(&name, 3).unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(within("permit", pool.acquire()).await.unwrap());
    }
    assert!(matches!(
        pool.try_acquire().await,
        Err(Error::Locked { .. })
    ));
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await })
    };
    if waiters_queue(&f) {
        eventually("in line", || async { in_line(&f, &name).await == 1 }).await;
    }
    let first = held.remove(0);
    let freed = first.token();
    first.release().await.unwrap();
    let p = within("waiter", waiter).await.unwrap().unwrap();
    assert!(p.token() > freed);
}

/// Redlock refuses semaphores with a typed error that says why, leaving nothing behind.
#[cfg(feature = "redis")]
pub(crate) async fn rl_semaphores_unsupported(f: Fixture) {
    let name = f.name("sem");
    let s = f.tenure.session().await.unwrap();
    let pool = s.semaphore(&name, 3).unwrap();
    for res in [pool.acquire().await, pool.try_acquire().await] {
        match res {
            Err(Error::Unsupported { what, advice, .. }) => {
                assert_eq!(what, "semaphores");
                assert!(advice.contains("majority"), "{advice}");
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
    assert!(semaphore_keys(&f, &name).await.is_empty());
}

/// C15 for semaphores: `status` lists a semaphore once, under its name, with its recorded
/// permit count, every holder (oldest first, each with its own value and token) and how many
/// wait; its internal lock is not listed as a lock of its own.
pub(crate) async fn s8_status_lists_semaphores(f: Fixture) {
    let prefix = f.name("sem-status/");
    let name = f.name("sem-status/pool");
    let a = f.tenure.session().await.unwrap();
    let first = a
        .semaphore(&name, 2)
        .unwrap()
        .with_value("worker-1")
        .acquire()
        .await
        .unwrap();
    let second = a
        .semaphore(&name, 2)
        .unwrap()
        .with_value("worker-2")
        .acquire()
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let s = f
            .tenure
            .session()
            .await
            .unwrap()
            .semaphore(&name, 2)
            .unwrap();
        waiters.push(tokio::spawn(
            async move { s.acquire().await.map(|p| p.token()) },
        ));
    }
    eventually("waiters in line", || async {
        in_line(&f, &name).await == 2
            && semaphore_keys(&f, &name).await.len() == 2 + usize::from(head_has_entry(&f)) + 2
    })
    .await;
    let listed = f.tenure.status(&prefix).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let row = &listed[0];
    assert_eq!(
        (row.name.as_str(), row.permits, row.waiters),
        (name.as_str(), Some(2), 2)
    );
    let holders: Vec<(&str, &[u8], crate::FencingToken)> = row
        .holders
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_slice(), h.token))
        .collect();
    assert_eq!(
        holders,
        [
            (first.key(), &b"worker-1"[..], first.token()),
            (second.key(), &b"worker-2"[..], second.token())
        ]
    );
    assert_eq!(row.holder, row.holders[0]);
    first.release().await.unwrap();
    second.release().await.unwrap();
    for w in waiters {
        within("waiter", w).await.unwrap().unwrap();
    }
    eventually("nothing listed once released", || async {
        f.tenure.status(&prefix).await.unwrap().is_empty()
    })
    .await;
}

/// C13 for the semaphore's store steps, each repeated as if its first answer had been lost:
/// creating a permit entry (with and without the internal-lock check) finds the entry the
/// first attempt made instead of making a second one; `own_lease` finds it for a withdrawal;
/// once the acquisition is forbidden, a create of its ticket makes nothing.
pub(crate) async fn s9_retried_permit_steps_are_idempotent(f: Fixture) {
    use crate::backend::queue::{Role, Ticket};
    use crate::backend::semaphore::{record, Unlocked};
    let name = f.name("retried");
    let dir = format!("{name}/leases/");
    let locks = format!("{name}/locks/");
    let session = f.tenure.session().await.unwrap();
    let store = session
        .inner
        .backend
        .queue_store()
        .expect("a store of the shared recipe");
    let data = record(2, b"v");
    let ticket = Ticket::new();
    let (a, _) = store.add_lease(&dir, &data, ticket).await.unwrap();
    let (b, all) = store.add_lease(&dir, &data, ticket).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        store.own_lease(&dir, ticket).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(semaphore_keys(&f, &name).await, vec![a.key.clone()]);
    // The uncontended step, where the store has one: repeated, it finds its own entry even
    // though the semaphore is no longer free of entries.
    let fast = Ticket::new();
    let first = store
        .add_lease_if_unlocked(&dir, &locks, &data, fast)
        .await
        .unwrap();
    if let Unlocked::Added(c, all) = first {
        assert_eq!(all.len(), 2);
        match store
            .add_lease_if_unlocked(&dir, &locks, &data, fast)
            .await
            .unwrap()
        {
            Unlocked::Added(d, all) => assert_eq!((d, all.len()), (c.clone(), 2)),
            other => panic!("a repeated create found {other:?}"),
        }
        // Behind a holder or waiter of the internal lock, a new ticket creates nothing.
        let queued = store
            .enqueue(&locks, b"v", Role::Lock, Ticket::new())
            .await
            .unwrap();
        let busy = store
            .add_lease_if_unlocked(&dir, &locks, &data, Ticket::new())
            .await
            .unwrap();
        assert!(matches!(busy, Unlocked::LockBusy), "{busy:?}");
        assert!(store.remove(&queued.mine).await.unwrap());
        assert!(store.remove(&c).await.unwrap());
        assert!(!store.remove(&c).await.unwrap());
    }
    // A forbidden acquisition's late create makes nothing (docs/contract.md, Idempotency
    // rule 4).
    let late = Ticket::new();
    store.forbid(&dir, late).await.unwrap();
    let landed = store.add_lease(&dir, &data, late).await;
    if f.tenure.backend() == "zk" {
        // ZooKeeper applies one session's requests in order and needs no marker: a create
        // sent after the acquisition ended is just a create, which a withdrawal finds by its
        // uuid.
        let (e, _) = landed.unwrap();
        assert_eq!(store.own_lease(&dir, late).await.unwrap(), Some(e.clone()));
        assert!(store.remove(&e).await.unwrap());
    } else {
        assert!(landed.is_err(), "{landed:?}");
        assert_eq!(store.own_lease(&dir, late).await.unwrap(), None);
    }
    assert!(store.remove(&a).await.unwrap());
    assert!(semaphore_keys(&f, &name).await.is_empty());
}

/// Herd-freedom on the embedded store: with 20 acquisitions waiting behind 3 held permits,
/// the head of the line watches the 3 holders, every other waiter only its predecessor in the
/// internal lock's line, so no key has more than its successor's watch and its own holder's.
#[tokio::test]
async fn only_the_head_of_the_line_watches_the_holders() {
    use crate::backend::embedded::MemStore;
    let store_name = format!("sem-herd-{}", fastrand::u32(..));
    let tenure = crate::Tenure::connect(&format!("mem://{store_name}"))
        .await
        .unwrap();
    let store = MemStore::named(&store_name);
    let holder = tenure.session().await.unwrap();
    let pool = holder.semaphore("q", 3).unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await.unwrap());
    }
    let mut waiters = Vec::new();
    for _ in 0..20 {
        let s = tenure.session().await.unwrap().semaphore("q", 3).unwrap();
        waiters.push(tokio::spawn(
            async move { s.acquire().await.map(|p| p.token()) },
        ));
    }
    // 19 predecessor watches in the internal lock's line, the head's watch of each of the 3
    // holders, the 3 holders' own lost-signal watches, and the internal lock holder's own.
    let settled = async {
        loop {
            let watched = store.delete_watchers_for_test();
            if watched.iter().map(|(_, n)| n).sum::<usize>() == 19 + 3 + 3 + 1 {
                return watched;
            }
            tokio::task::yield_now().await;
        }
    };
    let watched = within("watches settled", settled).await;
    for (key, n) in &watched {
        assert!(*n <= 2, "{key}: {n} watchers");
    }
    let holders = watched
        .iter()
        .filter(|(k, _)| k.starts_with("q/leases/"))
        .count();
    assert_eq!(holders, 3, "{watched:?}");
    for p in held {
        p.release().await.unwrap();
    }
    for w in waiters {
        within("waiter", w).await.unwrap().unwrap();
    }
}
