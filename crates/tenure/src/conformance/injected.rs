//! The recipe's defects the fault injector found, each pinned by a scripted fault at the one
//! call that exposes it (on the paused clock): retried steps whose first attempt was applied,
//! futures dropped mid-release, a holder watch whose start revision was compacted (C8, C13 in
//! docs/contract.md). The random schedules (`schedules.rs`) found them; these keep them found.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::embedded::MemStore;
use crate::backend::faulty::{drop_at_pending, Fault, FaultPlan, Scripted};
use crate::{Error, Tenure};

/// A fresh `mem://` store whose sessions (numbered from 0 in opening order) fault as `script`
/// says, and nowhere else.
fn faulted(script: Vec<Scripted>) -> (Tenure, Arc<MemStore>, Arc<FaultPlan>) {
    let name = format!("injected-{:x}", fastrand::u64(..));
    let store = MemStore::named(&name);
    let plan = FaultPlan::scripted(script, {
        let store = store.clone();
        move || store.revision()
    });
    (Tenure::mem_with_faults(&name, plan.clone()), store, plan)
}

fn on(session: u64, op: &'static str, nth: u64, fault: Fault) -> Scripted {
    Scripted {
        session,
        op,
        nth,
        fault,
    }
}

/// A `try_lock` whose first attempt took the free lock but whose answer was lost: the retry
/// finds our own entry and takes it (it used to say `Locked`, naming ourselves, and leave the
/// entry behind for the session's lifetime).
#[tokio::test(start_paused = true)]
async fn retried_try_lock_takes_its_own_entry() {
    let (tenure, store, _plan) = faulted(vec![on(0, "enqueue_if_empty", 0, Fault::AnswerLost)]);
    let s = tenure.session().await.unwrap();
    let g = s
        .mutex("n")
        .unwrap()
        .try_lock()
        .await
        .expect("the free lock");
    assert_eq!(store.keys("n/"), vec![g.key().to_string()]);
    g.unlock().await.unwrap();
    assert!(store.keys("n/").is_empty());
}

/// An `unlock()` dropped while its delete waits still releases, in the background (it used to
/// leave the entry, and the lock held, until the session ended).
#[tokio::test(start_paused = true)]
async fn dropped_unlock_still_releases() {
    let slow = Fault::DelayBefore(Duration::from_secs(1));
    let (tenure, store, _plan) = faulted(vec![on(0, "remove", 0, slow)]);
    let s = tenure.session().await.unwrap();
    let g = s.mutex("n").unwrap().lock().await.unwrap();
    assert!(drop_at_pending(g.unlock(), 1).await.is_none(), "dropped");
    let other = tenure.session().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(60), other.mutex("n").unwrap().lock())
        .await
        .expect("the lock is released")
        .unwrap();
    assert_eq!(store.keys("n/"), vec![next.key().to_string()]);
}

/// An `unlock()` whose delete was applied but unanswered is not a lost lock: the retry finds
/// the entry gone by our own hand (it used to report `LockLost`).
#[tokio::test(start_paused = true)]
async fn unlock_after_an_unanswered_delete_succeeds() {
    let (tenure, store, _plan) = faulted(vec![on(0, "remove", 0, Fault::AnswerLost)]);
    let s = tenure.session().await.unwrap();
    let g = s.mutex("n").unwrap().lock().await.unwrap();
    g.unlock().await.expect("released, not lost");
    assert!(store.keys("n/").is_empty());
}

/// A holder whose watch breaks after the history since its grant was compacted re-arms from
/// the present, not from its grant revision (which etcd would refuse again on every re-arm, a
/// loop for as long as the lock is held), and still hears of its entry's deletion.
#[tokio::test(start_paused = true)]
async fn holder_watch_survives_compaction() {
    let broken = Fault::Break(Duration::from_secs(1));
    let (tenure, store, plan) = faulted(vec![on(0, "watch_own", 0, broken)]);
    let s = tenure.session().await.unwrap();
    let g = s.mutex("n").unwrap().lock().await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let m = tenure.session().await.unwrap().mutex("n").unwrap();
        waiters.push(tokio::spawn(async move { m.lock().await.map(drop) }));
    }
    while store.keys("n/").len() < 3 {
        tokio::task::yield_now().await;
    }
    plan.compact();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(plan.violations(), Vec::<String>::new(), "{}", plan.report());
    assert!(!g.is_lost());
    store.admin_delete(g.key());
    let lost = tokio::time::timeout(Duration::from_secs(10), g.lost()).await;
    assert!(lost.is_ok(), "the re-armed watch saw the delete");
    for w in waiters {
        w.abort();
    }
}

/// A session's `try_lock` after one whose first attempt failed and which then found the lock
/// held: once the lock is free, it is taken. The failed try's cleanup (armed because its first
/// attempt might have been applied) must not keep the name's local queue busy meanwhile, or the
/// session is told `Locked` about a free lock for as long as that cleanup retries.
#[tokio::test(start_paused = true)]
async fn try_lock_after_a_faulted_try_takes_the_free_lock() {
    let (tenure, store, _plan) = faulted(vec![
        on(1, "enqueue_if_empty", 0, Fault::FailBefore),
        on(1, "own_entries", 0, Fault::Hang { applied: false }),
    ]);
    let a = tenure.session().await.unwrap();
    let b = tenure.session().await.unwrap();
    let held = a.mutex("n").unwrap().lock().await.unwrap();
    match b.mutex("n").unwrap().try_lock().await {
        Err(Error::Locked { holder, .. }) => assert_eq!(holder.as_deref(), Some(held.key())),
        other => panic!("expected Locked, got {other:?}"),
    }
    held.unlock().await.unwrap();
    assert!(store.keys("n/").is_empty());
    let g = b
        .mutex("n")
        .unwrap()
        .try_lock()
        .await
        .expect("the free lock");
    assert_eq!(store.keys("n/"), vec![g.key().to_string()]);
}

/// A withdrawal (the cleanup of a `lock()` that timed out) whose request reached the store
/// only after the same session had queued again and been granted the name must not delete
/// that newer entry: a stale request of our own would take the lock from its holder.
#[tokio::test(start_paused = true)]
async fn stale_withdrawal_spares_a_newer_entry() {
    // The enqueue is applied but unanswered, so the withdrawal cannot name the entry.
    let unanswered = Fault::Hang { applied: true };
    let stale = Fault::Late(Duration::from_secs(8));
    let (tenure, store, _plan) = faulted(vec![
        on(1, "enqueue", 0, unanswered),
        on(1, "remove", 0, stale),
    ]);
    let a = tenure.session().await.unwrap();
    let b = tenure.session().await.unwrap();
    let held = a.mutex("n").unwrap().lock().await.unwrap();
    let gave_up = b
        .mutex("n")
        .unwrap()
        .lock_timeout(Duration::from_secs(1))
        .await;
    assert!(matches!(gave_up, Err(Error::Timeout { .. })), "{gave_up:?}");
    // The withdrawal's first request is answered by no one; its retry removes the entry.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(store.keys("n/"), vec![held.key().to_string()]);
    held.unlock().await.unwrap();
    let g = b.mutex("n").unwrap().lock().await.unwrap();
    // The first withdrawal request arrives now, 8 s after it was sent (at 1 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!g.is_lost(), "our own stale withdrawal took the lock");
    assert_eq!(store.keys("n/"), vec![g.key().to_string()]);
}

/// An enqueue that reaches the store only after its `lock()` gave up (and withdrew, finding
/// nothing) must not leave an entry nobody owns in the queue, blocking the name for as long
/// as the session lives.
#[tokio::test(start_paused = true)]
async fn late_enqueue_after_withdrawal_leaves_nothing() {
    let late = Fault::Late(Duration::from_secs(3));
    let (tenure, store, _plan) = faulted(vec![on(1, "enqueue", 0, late)]);
    let a = tenure.session().await.unwrap();
    let b = tenure.session().await.unwrap();
    let held = a.mutex("n").unwrap().lock().await.unwrap();
    let gave_up = b
        .mutex("n")
        .unwrap()
        .lock_timeout(Duration::from_secs(1))
        .await;
    assert!(matches!(gave_up, Err(Error::Timeout { .. })), "{gave_up:?}");
    // The enqueue arrives now, 3 s after it was sent.
    tokio::time::sleep(Duration::from_secs(4)).await;
    held.unlock().await.unwrap();
    let c = tenure.session().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(60), c.mutex("n").unwrap().lock()).await;
    assert!(
        next.is_ok(),
        "an orphan entry of session b blocks the name: {:?}",
        store.keys("n/")
    );
    drop(b);
}
