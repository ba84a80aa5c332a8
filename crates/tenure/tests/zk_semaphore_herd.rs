//! Herd-free semaphore waiting (docs/contract.md, Semaphores, S3) on ZooKeeper, read from the
//! server's own watch table (`wchp`) on a private server: with every permit held and 20
//! acquisitions waiting, only the head of the line watches the holders' lease nodes; every
//! other waiter watches its predecessor in the internal lock's line; nobody watches a
//! directory. The permits then pass down the line in order, leaving no node and no watch.

#![cfg(all(feature = "zookeeper", feature = "etcd"))]

#[allow(unused_macros, unused_imports)]
mod support;
mod zk_support;

use support::{report, unique, wait_for, PATIENCE};
use tenure::Tenure;
use zk_support::{Admin, PrivateZk};

const WAITERS: usize = 20;
const PERMITS: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_head_of_the_line_watches_the_holders() {
    const TEST: &str = "only_the_head_of_the_line_watches_the_holders";
    let Some(classpath) = zk_support::classpath_from_env(TEST) else {
        return;
    };
    let zk = PrivateZk::start(&classpath).await;
    let tenure = Tenure::connect(&zk.url).await.expect("connect");
    let admin = Admin::connect(&zk.url).await;
    let name = unique("sem-herd");
    let (leases, locks) = (format!("{name}/leases"), format!("{name}/locks"));

    let holder = tenure.session().await.expect("session");
    let pool = holder.semaphore(&name, PERMITS).expect("semaphore");
    let mut held = Vec::new();
    for _ in 0..PERMITS {
        held.push(pool.acquire().await.expect("acquire"));
    }
    let mut sessions = Vec::new();
    let mut waits = Vec::new();
    for queued in 1..=WAITERS {
        let session = tenure.session().await.expect("session");
        let pool = session.semaphore(&name, PERMITS).expect("semaphore");
        waits.push(tokio::spawn(async move {
            pool.acquire().await.map(|p| p.token())
        }));
        // In line: one internal-lock node each (the head also has its lease node).
        admin.wait_children(&locks, queued).await;
        sessions.push(session);
    }
    let holders: Vec<String> = held.iter().map(|p| p.key().to_string()).collect();
    let mut line = admin.children(&locks).await;
    line.sort_by_key(|n| n.rsplit('-').next().map(str::to_string));
    // The head watches the 3 holders; waiters 2..20 their predecessors (lock nodes 1..19).
    let watched = wait_for("the head's and the line's watches", PATIENCE, || async {
        let all = zk.watches_by_path();
        let on_holders = holders.iter().all(|h| all.get(h).is_some_and(|n| *n >= 2));
        let on_line = line[..WAITERS - 1]
            .iter()
            .all(|n| all.contains_key(&format!("/{locks}/{n}")));
        (on_holders && on_line).then_some(all)
    })
    .await;
    let total: usize = watched.values().sum();
    report(
        TEST,
        format!(
            "{WAITERS} waiters, {PERMITS} permits: {total} watches on {} paths",
            watched.len()
        ),
    );
    for (path, sessions) in &watched {
        assert!(
            !path.ends_with(&leases) && !path.ends_with(&locks) && *path != format!("/{name}"),
            "a directory is watched: {path}"
        );
        if holders.contains(path) {
            // Its holder's own lost-signal watch, and the head of the line's.
            assert_eq!(*sessions, 2, "{path} watched by {sessions} sessions");
        } else {
            // A lock node: its successor's watch, plus the internal lock holder's own.
            assert!(
                (1..=2).contains(sessions),
                "{path} watched by {sessions} sessions"
            );
        }
    }
    let on_leases = watched.keys().filter(|p| p.contains("/leases/")).count();
    assert_eq!(
        on_leases, PERMITS as usize,
        "only the holders' leases are watched"
    );

    let mut tokens: Vec<u64> = held.iter().map(|p| p.token().get()).collect();
    for p in held {
        p.release().await.expect("release");
    }
    for wait in waits {
        tokens.push(wait.await.expect("join").expect("acquire").get());
    }
    let granted = &tokens[PERMITS as usize..];
    assert!(
        granted.windows(2).all(|w| w[0] < w[1]),
        "arrival order: {tokens:?}"
    );
    wait_for("no node left", PATIENCE, || async {
        let left = admin.children(&leases).await.len() + admin.children(&locks).await.len();
        (left == 0).then_some(())
    })
    .await;
}
