//! Herd-free waiting (C3) on a real etcd, counted by etcd itself: each release sends a watch
//! event to the next waiter only, however many wait; and no watch outlives its wait. Each
//! test starts a private server (`TENURE_TEST_ETCD34_BIN` / `TENURE_TEST_ETCD35_BIN`) so that
//! its `/metrics` counts nobody else's traffic.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tenure::{MutexGuard, Tenure};

use support::{
    etcd_bin_from_env, etcd_metric, per_version, report, unique, wait_for, Admin, PrivateEtcd,
    Version, PATIENCE,
};

per_version!(
    each_release_notifies_only_the_next_waiter,
    a_deep_queue_passes_down_in_order
);

/// Waiters queued behind one holder, each on a session of its own.
const WAITERS: usize = 20;

/// A queue deep enough that its later enqueues only count it instead of reading who is
/// ahead in the same Txn (backend/etcd/deep.rs, from 64 entries on).
const DEEP_WAITERS: usize = 80;

/// Watch events etcd has sent to clients.
const EVENTS: &str = "etcd_debugging_mvcc_events_total";
/// Watches etcd currently keeps.
const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";

/// 20 waiters queue behind a holder, then the lock passes down the whole queue. A herd (every
/// waiter watching the prefix, as a naive recipe does) would make etcd send 20 + 19 + … + 1 =
/// 210 delete events; herd-free waiting sends one per hand-off, two where a waiter added a
/// second watch on the same predecessor (when writes raced its first watch's creation). At
/// the end etcd holds no watch of ours.
async fn each_release_notifies_only_the_next_waiter(v: Version, test: &'static str) {
    pass_down_the_queue(v, test, WAITERS).await;
}

/// The same with 80 waiters: those that queued behind 64 others find who is ahead of them by
/// a read of their own, and every hand-off still goes to the next in line, with one event.
async fn a_deep_queue_passes_down_in_order(v: Version, test: &'static str) {
    pass_down_the_queue(v, test, DEEP_WAITERS).await;
}

async fn pass_down_the_queue(v: Version, test: &'static str, waiters: usize) {
    let Some(bin) = etcd_bin_from_env(v, test) else {
        return;
    };
    let etcd = PrivateEtcd::start(&bin).await;
    let tenure = Tenure::connect(&etcd.url).await.expect("connect");
    let admin = Admin::connect(&etcd.endpoint).await;
    let name = unique("herd");

    let holder = tenure.session().await.expect("session");
    let first = support::locked(&holder, &name).await;
    // Who holds the lock, counted by the holders themselves: the holder, then each waiter.
    let holders = Arc::new(AtomicUsize::new(1));
    let mut sessions = Vec::new();
    let mut waits = Vec::new();
    for queued in 1..=waiters {
        let session = tenure.session().await.expect("session");
        let mutex = session.mutex(&name).expect("mutex");
        let holders = holders.clone();
        waits.push(tokio::spawn(async move {
            let guard = mutex.lock().await?;
            assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
            Ok::<_, tenure::Error>(guard)
        }));
        admin.wait_queue_len(&name, 1 + queued).await;
        sessions.push(session);
    }
    // Every waiter has its watch on etcd before the first release.
    let watching = wait_for("a watch per waiter", PATIENCE, || async {
        let n = etcd_metric(&etcd.endpoint, WATCHERS).await;
        (n >= waiters as f64).then_some(n)
    })
    .await;
    let before = etcd_metric(&etcd.endpoint, EVENTS).await;

    let mut tokens = vec![first.token()];
    holders.fetch_sub(1, Ordering::SeqCst);
    first.unlock().await.expect("unlock");
    for wait in waits {
        let guard: MutexGuard = wait.await.expect("join").expect("lock");
        tokens.push(guard.token());
        holders.fetch_sub(1, Ordering::SeqCst);
        guard.unlock().await.expect("unlock");
    }
    // The last grant travelled on the same stream after every earlier event, so all the
    // events of the 20 hand-offs have been sent and counted.
    let sent = etcd_metric(&etcd.endpoint, EVENTS).await - before;
    report(
        test,
        format!("{waiters} hand-offs: {sent} watch events sent; {watching} watches while queued"),
    );
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens {tokens:?}");
    assert!(
        sent <= 2.0 * waiters as f64,
        "{sent} events for {waiters} hand-offs: releases woke more than the next waiter"
    );
    assert!(
        watching <= 2.0 * waiters as f64 + 1.0,
        "{watching} watches for {waiters} waiters and one holder"
    );
    wait_for("every watch cancelled", PATIENCE, || async {
        (etcd_metric(&etcd.endpoint, WATCHERS).await == 0.0).then_some(())
    })
    .await;
    assert!(admin.queue(&name).await.is_empty(), "no entry left");
}
