//! Herd-free waiting (C3) on ZooKeeper, read from the server's own watch table (`wchp`) on a
//! private server: each waiter watches its predecessor's node and nothing else; nobody
//! watches the lock's directory (the herd recipe: every waiter re-lists on any change).

#![cfg(all(feature = "zookeeper", feature = "etcd"))]

#[allow(unused_macros, unused_imports)]
mod support;
mod zk_support;

use support::{report, unique, wait_for, PATIENCE};
use tenure::{MutexGuard, Tenure};
use zk_support::{Admin, PrivateZk};

/// Waiters queued behind one holder, each on a session of its own.
const WAITERS: usize = 20;

/// 20 waiters queue behind a holder: the server holds exactly one watch on each node but the
/// last (the successor's), plus at most the holder's own lost-signal watch on its node, and
/// none anywhere else (the directory included). The lock then passes down the queue in order, leaving no node and no watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_waiter_watches_only_its_predecessor() {
    const TEST: &str = "each_waiter_watches_only_its_predecessor";
    let Some(classpath) = zk_support::classpath_from_env(TEST) else {
        return;
    };
    let zk = PrivateZk::start(&classpath).await;
    let tenure = Tenure::connect(&zk.url).await.expect("connect");
    let admin = Admin::connect(&zk.url).await;
    let name = unique("herd");
    let dir = format!("/{name}");

    let holder = tenure.session().await.expect("session");
    let first = support::locked(&holder, &name).await;
    let mut sessions = Vec::new();
    let mut waits = Vec::new();
    for queued in 1..=WAITERS {
        let session = tenure.session().await.expect("session");
        let mutex = session.mutex(&name).expect("mutex");
        waits.push(tokio::spawn(async move { mutex.lock().await }));
        admin.wait_children(&name, 1 + queued).await;
        sessions.push(session);
    }
    let mut nodes = admin.children(&name).await;
    nodes.sort_by_key(|n| n.rsplit('-').next().map(str::to_string));
    let watched = wait_for("a watch per waiter", PATIENCE, || async {
        let all = zk.watches_by_path();
        let on_nodes = nodes[..WAITERS]
            .iter()
            .all(|n| all.contains_key(&format!("{dir}/{n}")));
        on_nodes.then_some(all)
    })
    .await;
    let total: usize = watched.values().sum();
    report(
        TEST,
        format!(
            "{WAITERS} waiters: {total} watches on {} paths",
            watched.len()
        ),
    );

    let expected: Vec<String> = nodes[..WAITERS]
        .iter()
        .map(|n| format!("{dir}/{n}"))
        .collect();
    let paths: Vec<&String> = watched.keys().collect();
    let mut expected_sorted: Vec<&String> = expected.iter().collect();
    expected_sorted.sort();
    assert_eq!(
        paths, expected_sorted,
        "watched paths: every node but the last, nothing else"
    );
    for (path, sessions) in &watched {
        // The holder's node: its successor, and the holder's own lost-signal watch.
        let allowed = if *path == expected[0] { 1..=2 } else { 1..=1 };
        assert!(
            allowed.contains(sessions),
            "{path} watched by {sessions} sessions"
        );
    }

    let mut tokens = vec![first.token()];
    first.unlock().await.expect("unlock");
    for wait in waits {
        let guard: MutexGuard = wait.await.expect("join").expect("lock");
        tokens.push(guard.token());
        guard.unlock().await.expect("unlock");
    }
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens {tokens:?}");
    assert!(admin.children(&name).await.is_empty(), "no node left");
    wait_for("no watch left on the lock", PATIENCE, || async {
        let left = zk.watches_by_path();
        (!left.keys().any(|p| p.starts_with(&dir))).then_some(())
    })
    .await;
}
