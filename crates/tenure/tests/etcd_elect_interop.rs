//! Interoperability with the real `etcdctl elect` (Go's `clientv3/concurrency` Election) of
//! both etcd versions `scripts/test` provides. Every scenario runs once per version.
//!
//! `etcdctl elect NAME VALUE` prints the leader key and value once it leads and leads until
//! SIGINT (then it resigns). It has no `--ttl` (its session lease is Go's 60 s default), so
//! "etcdctl dies" is exercised by revoking its lease, which is what its expiry would do.
//! `etcdctl elect -l NAME` prints the key and value of every leader it observes.

mod support;

use support::Version;
use support::{per_version, unique, within, Etcdctl, Process, SharedEtcd, PATIENCE};

per_version!(
    etcdctl_leads_we_wait_then_lead_when_it_resigns,
    etcdctl_leader_dies_we_take_over,
    we_lead_etcdctl_observes_our_value_and_proclaims,
);

/// `etcdctl elect NAME VALUE`, returned once it leads, with its key.
async fn etcdctl_leader(etcdctl: &Etcdctl, name: &str, value: &str) -> (Process, String) {
    let mut leader = Process::spawn(
        &format!("etcdctl elect {name}"),
        etcdctl.command(&["elect", name, value]),
    );
    let key = leader.line(PATIENCE).await;
    assert!(key.starts_with(&format!("{name}/")), "leader key {key:?}");
    assert_eq!(leader.line(PATIENCE).await, value);
    (leader, key)
}

/// etcdctl leads → our `leader()` reports it and our campaign queues behind it; on SIGINT
/// etcdctl resigns and we lead, with a larger token.
async fn etcdctl_leads_we_wait_then_lead_when_it_resigns(v: Version, test: &'static str) {
    let Some(etcd) = SharedEtcd::from_env(v, test) else {
        return;
    };
    let admin = etcd.admin().await;
    let name = unique("elect-resign");
    let (mut theirs, their_key) = etcdctl_leader(&etcd.etcdctl, &name, "go-leader").await;
    let tenure = etcd.tenure().await;
    let election = tenure.session().await.unwrap().election(&name).unwrap();
    let leader = election.leader().await.unwrap().expect("etcdctl leads");
    assert_eq!(
        (leader.key.as_str(), leader.value.as_slice()),
        (their_key.as_str(), &b"go-leader"[..])
    );
    let campaign = tokio::spawn({
        let election = election.clone();
        async move { election.campaign("rust").await }
    });
    admin.wait_queue_len(&name, 2).await;
    assert!(
        !campaign.is_finished(),
        "we must not lead while etcdctl leads"
    );
    theirs.signal("INT");
    let ours = within("our campaign", PATIENCE, campaign)
        .await
        .unwrap()
        .unwrap();
    assert!(ours.token().get() as i64 > leader.token.get() as i64);
    let now = election.leader().await.unwrap().expect("we lead");
    assert_eq!(
        (now.key.as_str(), now.value.as_slice()),
        (ours.key(), &b"rust"[..])
    );
    ours.resign().await.unwrap();
    theirs.wait(PATIENCE).await;
}

/// etcdctl's lease ends (what its death leads to) → our waiting campaign leads.
async fn etcdctl_leader_dies_we_take_over(v: Version, test: &'static str) {
    let Some(etcd) = SharedEtcd::from_env(v, test) else {
        return;
    };
    let admin = etcd.admin().await;
    let name = unique("elect-dies");
    let (_theirs, their_key) = etcdctl_leader(&etcd.etcdctl, &name, "doomed").await;
    let lease = admin.queue(&name).await[0].lease;
    let tenure = etcd.tenure().await;
    let election = tenure.session().await.unwrap().election(&name).unwrap();
    let campaign = tokio::spawn({
        let election = election.clone();
        async move { election.campaign("survivor").await }
    });
    admin.wait_queue_len(&name, 2).await;
    etcd.etcdctl
        .run(&["lease", "revoke", &format!("{lease:x}")])
        .await;
    let ours = within("our campaign", PATIENCE, campaign)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(ours.key(), their_key);
    assert_eq!(
        election.leader().await.unwrap().map(|l| l.value),
        Some(b"survivor".to_vec())
    );
}

/// We lead with a value → `etcdctl elect -l` shows our key and value, then our proclaimed
/// value; a queued `etcdctl elect` candidate leads after we resign.
async fn we_lead_etcdctl_observes_our_value_and_proclaims(v: Version, test: &'static str) {
    let Some(etcd) = SharedEtcd::from_env(v, test) else {
        return;
    };
    let admin = etcd.admin().await;
    let name = unique("elect-observed");
    let tenure = etcd.tenure().await;
    let ours = tenure
        .session()
        .await
        .unwrap()
        .election(&name)
        .unwrap()
        .campaign("first")
        .await
        .unwrap();
    let mut observer = Process::spawn(
        "etcdctl elect -l",
        etcd.etcdctl.command(&["elect", "-l", &name]),
    );
    assert_eq!(observer.line(PATIENCE).await, ours.key());
    assert_eq!(observer.line(PATIENCE).await, "first");
    ours.proclaim("second").await.unwrap();
    assert_eq!(observer.line(PATIENCE).await, ours.key());
    assert_eq!(observer.line(PATIENCE).await, "second");
    let mut candidate = Process::spawn(
        "etcdctl elect (candidate)",
        etcd.etcdctl.command(&["elect", &name, "go-next"]),
    );
    admin.wait_queue_len(&name, 2).await;
    assert!(
        candidate.try_line().is_none(),
        "etcdctl must not lead while we do"
    );
    ours.resign().await.unwrap();
    let their_key = candidate.line(PATIENCE).await;
    assert_eq!(candidate.line(PATIENCE).await, "go-next");
    assert_eq!(observer.line(PATIENCE).await, their_key);
    assert_eq!(observer.line(PATIENCE).await, "go-next");
    candidate.signal("INT");
    candidate.wait(PATIENCE).await;
}
