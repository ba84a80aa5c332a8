//! Semaphore interoperability with Apache Curator 5.4's `InterProcessSemaphoreV2` (issue 13),
//! against the shared ZooKeeper of `scripts/test` and the Curator peer of
//! `tests/java/CuratorPeer.java`: Curator holds every permit → our try fails and our acquire
//! waits, then gets one; we hold every permit → Curator's `acquire(timeout)` times out;
//! Curator and Tenure holders together never exceed the permits.
//!
//! Needs `TENURE_TEST_ZK_URL` and `TENURE_TEST_ZK_CLASSPATH` (skipped with a visible line
//! otherwise, failed instead under `TENURE_REQUIRE_SERVERS=1`).

#![cfg(all(feature = "zookeeper", feature = "etcd"))]

#[allow(unused_macros, unused_imports)]
mod support;
mod zk_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::{unique, within, PATIENCE};
use tenure::{Error, Tenure, Write};
use zk_support::{Admin, Curator};

async fn setup(test: &str) -> Option<(Tenure, Admin, Curator)> {
    let url = zk_support::url_from_env(test)?;
    let classpath = zk_support::classpath_from_env(test)?;
    let tenure = Tenure::connect(&url).await.expect("connect");
    let admin = Admin::connect(&url).await;
    Some((tenure, admin, Curator::new(&classpath, &url)))
}

/// `key` is a protected Curator lease node of semaphore `path`:
/// `<path>/leases/_c_<uuid>-lease-<sequence>`.
fn assert_curator_lease_node(key: &str, path: &str) {
    assert!(key.starts_with(&format!("{path}/leases/_c_")), "{key}");
    assert!(key.contains("-lease-"), "{key}");
}

/// Curator holds both permits → our try fails naming a Curator lease and leaves nothing; our
/// acquire waits (its lease node is the third participant) and is granted once Curator, told
/// by a file, returns its leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curator_holds_every_permit_ours_waits() {
    let Some((tenure, admin, curator)) = setup("curator_holds_every_permit_ours_waits").await
    else {
        return;
    };
    let name = unique("curator-sem");
    let path = format!("/{name}");
    let leases = format!("{name}/leases");
    let dir = support::TempDir::new("curator-sem");
    let release = dir.path("release");
    let release_arg = release.to_string_lossy().into_owned();
    let mut peer = curator.spawn("semhold", &path, &["2", "2", &release_arg]);
    assert_eq!(
        peer.line_where(PATIENCE, |l| l == "HOLDING").await,
        "HOLDING"
    );
    let curators = admin.children(&leases).await;
    assert_eq!(curators.len(), 2, "{curators:?}");

    let session = tenure.session().await.expect("session");
    let pool = session.semaphore(&name, 2).expect("semaphore");
    match pool.try_acquire().await {
        Err(Error::Locked {
            holder: Some(holder),
            ..
        }) => assert_curator_lease_node(&holder, &path),
        other => panic!("expected Locked while Curator holds, got {other:?}"),
    }
    assert_eq!(
        admin.children(&leases).await,
        curators,
        "the try left no lease"
    );
    assert!(admin.children(&format!("{name}/locks")).await.is_empty());

    let waiter = tokio::spawn(async move { pool.acquire().await });
    admin.wait_children(&leases, 3).await;
    std::fs::write(&release, "").expect("tell Curator to return its leases");
    assert_eq!(peer.line(PATIENCE).await, "RELEASING");
    let permit = within("our permit after Curator's", PATIENCE, waiter)
        .await
        .expect("join")
        .expect("acquire");
    assert_curator_lease_node(permit.key(), &path);
    assert_eq!(admin.czxid(permit.key()).await, permit.token().get());
    // Curator returns its two leases one after the other, and the first return frees the
    // permit we were granted: at the grant at most one of them may remain (never 3 holders).
    let mut remaining = 0;
    for c in &curators {
        remaining += usize::from(admin.exists(&format!("{path}/leases/{c}")).await);
    }
    assert!(remaining <= 1, "granted beside both of Curator's leases");
    permit.release().await.expect("release");
    peer.wait(PATIENCE).await;
    for c in &curators {
        assert!(!admin.exists(&format!("{path}/leases/{c}")).await);
    }
}

/// We hold both permits → Curator's `acquire(500 ms)` times out and withdraws its lease; once
/// we return one, Curator acquires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_hold_every_permit_curator_times_out() {
    let Some((tenure, admin, curator)) = setup("we_hold_every_permit_curator_times_out").await
    else {
        return;
    };
    let name = unique("ours-sem");
    let path = format!("/{name}");
    let session = tenure.session().await.expect("session");
    let pool = session.semaphore(&name, 2).expect("semaphore");
    let first = pool.acquire().await.expect("first");
    let second = pool.acquire().await.expect("second");
    assert_curator_lease_node(first.key(), &path);

    let mut peer = curator.spawn("semtry", &path, &["2", "500"]);
    assert_eq!(peer.line(PATIENCE).await, "TIMEOUT");
    peer.wait(PATIENCE).await;
    assert_eq!(admin.children(&format!("{name}/leases")).await.len(), 2);

    first.release().await.expect("release");
    let mut peer = curator.spawn("semtry", &path, &["2", "10000"]);
    assert_eq!(peer.line(PATIENCE).await, "ACQUIRED");
    peer.wait(PATIENCE).await;
    second.release().await.expect("release");
}

/// Two Curator processes and four Tenure sessions share one semaphore of 3 permits, each
/// holder marking itself under one directory while it holds: neither side ever counts more
/// than 3 marks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curator_and_tenure_holders_never_exceed_permits() {
    let Some((tenure, admin, curator)) =
        setup("curator_and_tenure_holders_never_exceed_permits").await
    else {
        return;
    };
    let name = unique("mixed-sem");
    let path = format!("/{name}");
    let marks = format!("/{name}-marks");
    let admin = Arc::new(admin);
    let peers: Vec<_> = (0..2)
        .map(|_| curator.spawn("semloop", &path, &["3", "25", &marks]))
        .collect();
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (tenure, admin, most) = (tenure.clone(), admin.clone(), most.clone());
        let (name, marks) = (name.clone(), marks.clone());
        tasks.push(tokio::spawn(async move {
            let session = tenure.session().await.expect("session");
            let pool = session.semaphore(&name, 3).expect("semaphore");
            for _ in 0..15 {
                let permit = pool.acquire().await.expect("acquire");
                let mark = format!("{marks}/rust-{:020}", permit.token().get());
                permit
                    .write([Write::put(mark.clone(), "1")])
                    .await
                    .expect("mark");
                let now = admin.children(&marks).await.len();
                most.fetch_max(now, Ordering::SeqCst);
                assert!(now <= 3, "{now} holders marked at once");
                permit.write([Write::delete(mark)]).await.expect("unmark");
                permit.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        within("tenure contender", PATIENCE * 4, t)
            .await
            .expect("contender");
    }
    for mut peer in peers {
        let done = peer
            .line_where(PATIENCE * 4, |l| {
                l.starts_with("DONE") || l.starts_with("OVER")
            })
            .await;
        assert!(done.starts_with("DONE"), "Curator saw {done}");
        let seen: usize = done["DONE ".len()..].trim().parse().expect("a count");
        assert!(seen <= 3, "Curator saw {seen}");
        peer.wait(PATIENCE).await;
    }
    assert!(most.load(Ordering::SeqCst) <= 3);
    assert!(admin.children(&format!("{name}/leases")).await.is_empty());
}
