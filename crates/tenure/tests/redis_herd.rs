//! Herd-free, first-come-first-served waiting on one Redis instance (docs/contract.md, C3),
//! counted by Redis itself (`INFO commandstats`) on a private server of this test's own, so
//! that nobody else's traffic is counted: one release costs the same few commands whether 2
//! or 20 wait (a herd, every waiter woken to race, costs a script run per waiter), and the
//! lock passes down the queue in arrival order.

mod redis_support;
mod support;

use std::time::Duration;

use redis_support::{commands_run, redis_bin_or_skip, resp, start_servers};
use support::{wait_for, within, PATIENCE};
use tenure::Tenure;
use tokio::sync::{mpsc, oneshot};

/// The most commands one hand-off may cost: the release script, which also hands the lock over
/// to the head and wakes it (10 commands; the woken head sends nothing), with room for the
/// first release's script load, and far below the 20 script runs a herd of 20 waiters would
/// cost.
const BOUND: u64 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_release_wakes_one_waiter() {
    let Some(bin) = redis_bin_or_skip("one_release_wakes_one_waiter") else {
        return;
    };
    let server = start_servers(&bin, 1).await.remove(0);
    // A TTL far longer than the test, so that no renewal (every TTL/3) lands in a counted
    // window, and a waiter gets the lock only because it was released.
    let tenure = Tenure::builder(&format!("redis://127.0.0.1:{}", server.port))
        .ttl(Duration::from_secs(600))
        .connect()
        .await
        .expect("connect");
    let few = hand_offs(&tenure, server.port, "herd-few", 2).await;
    let many = hand_offs(&tenure, server.port, "herd-many", 20).await;
    support::report(
        "one_release_wakes_one_waiter",
        format!("commands per hand-off: {few:?} with 2 waiters, {many:?} with 20"),
    );
    for cost in few.iter().chain(&many) {
        assert!(*cost <= BOUND, "a hand-off cost {cost} commands: {many:?}");
    }
    // Independent of how many wait: no hand-off with 20 waiters costs more than one with 2 (the
    // very first release also loads its script, hence the most rather than the first).
    let (few_most, many_most) = (few.iter().max(), many.iter().max());
    assert!(many_most <= few_most, "{few:?} vs {many:?}");
}

/// Queues `waiters` behind a holder, each on a session of its own, then passes the lock down
/// the whole queue, checking arrival order; the commands each hand-off cost.
async fn hand_offs(tenure: &Tenure, port: u16, name: &str, waiters: usize) -> Vec<u64> {
    let holder = tenure.session().await.expect("session");
    let first = holder
        .mutex(name)
        .expect("name")
        .lock()
        .await
        .expect("lock");
    let (granted, mut grants) = mpsc::unbounded_channel();
    let mut sessions = Vec::new();
    let mut releases = Vec::new();
    for i in 0..waiters {
        let session = tenure.session().await.expect("session");
        let mutex = session.mutex(name).expect("name");
        let (release, released) = oneshot::channel::<()>();
        let granted = granted.clone();
        tokio::spawn(async move {
            let guard = mutex.lock().await.expect("lock");
            let _ = granted.send(i);
            let _ = released.await;
            guard.unlock().await.expect("unlock");
        });
        // Arrival order is the store's queue order: wait for this waiter's entry.
        wait_for("waiter queued", PATIENCE, || async {
            let len = resp(port, &format!("LLEN tenure:queue:{name}"));
            (len.as_deref() == Some(&format!(":{}", i + 1))).then_some(())
        })
        .await;
        sessions.push(session);
        releases.push(release);
    }
    // And subscribed to its own wake-up channel, so no fallback look can land in a window.
    wait_for("waiters subscribed", PATIENCE, || async {
        let subs = resp(port, &format!("PUBSUB CHANNELS tenure:wake:{name}:*"));
        (subs.as_deref() == Some(&format!("*{waiters}"))).then_some(())
    })
    .await;
    let mut costs = Vec::new();
    let mut order = Vec::new();
    let before = commands_run(port).expect("INFO");
    first.unlock().await.expect("unlock");
    let mut last = before;
    for release in releases {
        let next = within("next holder", PATIENCE, grants.recv())
            .await
            .expect("grant");
        order.push(next);
        let now = commands_run(port).expect("INFO");
        // Less the INFO that read `last`.
        costs.push(now - last - 1);
        last = now;
        let _ = release.send(());
    }
    assert_eq!(
        order,
        (0..waiters).collect::<Vec<_>>(),
        "granted out of arrival order"
    );
    costs
}
