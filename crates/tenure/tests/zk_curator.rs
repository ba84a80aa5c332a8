//! Interoperability with Apache Curator 5.4 (issue 5 item 6), against the shared ZooKeeper of
//! `scripts/test` and a Curator peer compiled from `tests/java/CuratorPeer.java`:
//! Curator holds → our try_lock fails and our lock waits, then gets it; we hold → Curator's
//! `acquire(timeout)` fails; a LeaderLatch and our election agree on one leader.
//!
//! Needs `TENURE_TEST_ZK_URL` and `TENURE_TEST_ZK_CLASSPATH` (skipped with a visible line
//! otherwise, failed instead under `TENURE_REQUIRE_SERVERS=1`).

#![cfg(all(feature = "zookeeper", feature = "etcd"))]

#[allow(unused_macros, unused_imports)]
mod support;
mod zk_support;

use support::{unique, within, PATIENCE};
use tenure::{Error, Tenure};
use zk_support::{Admin, Curator};

/// The shared server, its operator view and the Curator peer, or `None` when skipped.
/// `node` has the shape of a protected Curator lock node under `dir`:
/// `<dir>/_c_<uuid>-lock-<sequence>`.
fn assert_curator_lock_node(node: &str, dir: &str) {
    assert!(node.starts_with(&format!("{dir}/_c_")), "{node}");
    assert!(node.contains("-lock-"), "{node}");
}

async fn setup(test: &str) -> Option<(Tenure, Admin, Curator)> {
    let url = zk_support::url_from_env(test)?;
    let classpath = zk_support::classpath_from_env(test)?;
    let tenure = Tenure::connect(&url).await.expect("connect");
    let admin = Admin::connect(&url).await;
    Some((tenure, admin, Curator::new(&classpath, &url)))
}

/// Curator's InterProcessMutex holds → our try_lock fails naming its node, our lock() queues
/// behind it (one `-lock-` node each), and gets the lock only once Curator releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curator_holds_our_try_lock_fails_and_lock_waits() {
    let Some((tenure, admin, curator)) = setup("curator_holds_our_try_lock_fails").await else {
        return;
    };
    let name = unique("curator-holds");
    let path = format!("/{name}");
    // Curator releases once two participants are queued: itself and our waiter.
    let mut peer = curator.spawn("hold", &path, &["2"]);
    let line = peer
        .line_where(PATIENCE, |l| l.starts_with("HOLDING"))
        .await;
    let curator_node = line["HOLDING ".len()..].trim().to_string();
    assert_curator_lock_node(&curator_node, &path);

    let session = tenure.session().await.expect("session");
    let mutex = session.mutex(&name).expect("mutex");
    match mutex.try_lock().await {
        Err(Error::Locked { holder, .. }) => assert_eq!(holder.as_deref(), Some(&*curator_node)),
        other => panic!("expected Locked while Curator holds, got {other:?}"),
    }
    assert_eq!(
        admin.children(&name).await.len(),
        1,
        "try_lock left no trace"
    );

    let guard = within("our lock after Curator's release", PATIENCE, mutex.lock())
        .await
        .expect("lock");
    // Our grant came after Curator began releasing (it prints before it deletes its node).
    let releasing = peer.line_where(PATIENCE, |l| l == "RELEASING").await;
    assert_eq!(releasing, "RELEASING");
    assert_curator_lock_node(guard.key(), &path);
    assert_eq!(admin.czxid(guard.key()).await, guard.token().0);
    assert!(!admin.exists(&curator_node).await);
    guard.unlock().await.expect("unlock");
    peer.wait(PATIENCE).await;
}

/// We hold → Curator's `acquire(500 ms)` times out; after our unlock it acquires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_hold_curator_acquire_times_out() {
    let Some((tenure, admin, curator)) = setup("we_hold_curator_acquire_times_out").await else {
        return;
    };
    let name = unique("we-hold");
    let path = format!("/{name}");
    let session = tenure.session().await.expect("session");
    let guard = session.mutex(&name).unwrap().lock().await.expect("lock");

    let mut peer = curator.spawn("try", &path, &["500"]);
    assert_eq!(peer.line(PATIENCE).await, "TIMEOUT");
    peer.wait(PATIENCE).await;
    assert_eq!(
        admin.children(&name).await.len(),
        1,
        "Curator withdrew its node"
    );

    guard.unlock().await.expect("unlock");
    let mut peer = curator.spawn("try", &path, &["10000"]);
    assert_eq!(peer.line(PATIENCE).await, "ACQUIRED");
    peer.wait(PATIENCE).await;
}

/// Our election leads → a LeaderLatch started after it sees our value as the leader id and
/// waits; we resign → the latch leads and our `leader()` reports its node and id; a new
/// candidate of ours queues behind it and leads once the latch closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_latch_and_our_election_agree() {
    let Some((tenure, admin, curator)) = setup("leader_latch_and_our_election_agree").await else {
        return;
    };
    let name = unique("latch");
    let path = format!("/{name}");
    let session = tenure.session().await.expect("session");
    let election = session.election(&name).expect("election");
    let leadership = election.campaign("rust-leader").await.expect("campaign");
    assert!(leadership.key().contains("-latch-"), "{}", leadership.key());

    let mut peer = curator.spawn("latch", &path, &["java-peer", "60000", "2"]);
    let started = peer
        .line_where(PATIENCE, |l| l.starts_with("STARTED"))
        .await;
    let latch_node = started["STARTED ".len()..].trim().to_string();
    assert!(latch_node.contains("-latch-"), "{latch_node}");
    assert_eq!(peer.line(PATIENCE).await, "SEES rust-leader");
    let now = election
        .leader()
        .await
        .expect("leader")
        .expect("someone leads");
    assert_eq!(now.key, leadership.key());
    assert_eq!(admin.children(&name).await.len(), 2);

    leadership.resign().await.expect("resign");
    assert_eq!(peer.line(PATIENCE).await, "LEADER");
    assert_eq!(peer.line(PATIENCE).await, "SEES java-peer");
    let now = election
        .leader()
        .await
        .expect("leader")
        .expect("someone leads");
    assert_eq!(
        (now.key.as_str(), now.value.as_slice()),
        (&*latch_node, &b"java-peer"[..])
    );

    let successor = tenure.session().await.expect("session");
    let next = successor.election(&name).expect("election");
    let next = within(
        "our candidate after the latch",
        PATIENCE,
        next.campaign("rust-next"),
    )
    .await
    .expect("campaign");
    assert_eq!(peer.line(PATIENCE).await, "CLOSING");
    assert!(!admin.exists(&latch_node).await);
    let now = election
        .leader()
        .await
        .expect("leader")
        .expect("someone leads");
    assert_eq!(
        (now.key.as_str(), now.value.as_slice()),
        (next.key(), &b"rust-next"[..])
    );
    next.resign().await.expect("resign");
    peer.wait(PATIENCE).await;
}

/// `zk://host:port/CHROOT`: names live under the chroot (created when missing), where a
/// Curator client connected with the same chroot meets them; outside it they do not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroot_is_shared_with_curator() {
    let Some((_, admin, _)) = setup("chroot_is_shared_with_curator").await else {
        return;
    };
    // Both are set: `setup` returned.
    let url = std::env::var("TENURE_TEST_ZK_URL").expect("ZooKeeper URL");
    let classpath = std::env::var("TENURE_TEST_ZK_CLASSPATH").expect("classpath");
    let chroot = format!("/{}", unique("chroot"));
    let chrooted = format!("{url}{chroot}");
    let tenure = Tenure::connect(&chrooted)
        .await
        .expect("connect with chroot");
    let session = tenure.session().await.expect("session");
    let guard = session
        .mutex("jobs/nightly")
        .unwrap()
        .lock()
        .await
        .expect("lock");
    assert!(
        guard.key().starts_with("/jobs/nightly/_c_"),
        "{}",
        guard.key()
    );
    assert!(admin.exists(&format!("{chroot}{}", guard.key())).await);

    let mut peer = Curator::new(&classpath, &chrooted).spawn("try", "/jobs/nightly", &["300"]);
    assert_eq!(peer.line(PATIENCE).await, "TIMEOUT");
    peer.wait(PATIENCE).await;
    guard.unlock().await.expect("unlock");
}
