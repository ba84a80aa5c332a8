//! The sessions of one client renew their leases on one keep-alive stream (issue 15, item 4):
//! etcd's own counters show one stream for many sessions; a lease revoked behind the client's
//! back loses only its own session; a frozen server suspends every session on the stream and,
//! thawed in time, resumes every one of them (docs/contract.md, C7). On etcd 3.4 and 3.5.

mod support;

use std::time::Duration;

use support::{
    etcd_bin_from_env, etcd_metric, within, Admin, PrivateEtcd, SharedEtcd, Version, PATIENCE,
};
use tenure::{LostReason, Session, SessionEvent, Tenure};

const SESSIONS: usize = 50;

/// Short, so that a few rounds of renewals pass quickly (one a second).
const TTL: Duration = Duration::from_secs(3);

/// Streams started on the server, of etcd's Lease/LeaseKeepAlive method.
const KEEP_ALIVE_STREAMS: &str = "grpc_server_started_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"}";

async fn sessions(tenure: &Tenure, n: usize) -> Vec<Session> {
    let mut opened = Vec::with_capacity(n);
    for _ in 0..n {
        opened.push(tenure.session().await.expect("session"));
    }
    opened
}

async fn one_stream_many_leases(v: Version, test: &str) {
    let Some(etcd) = SharedEtcd::from_env(v, test) else {
        return;
    };
    let tenure = Tenure::builder(&etcd.url)
        .ttl(TTL)
        .connect()
        .await
        .expect("connect");
    let admin = etcd.admin().await;
    let streams_before = etcd_metric(&etcd.endpoint, KEEP_ALIVE_STREAMS).await;
    let open = sessions(&tenure, SESSIONS).await;
    outlive_the_ttl(&admin, &open).await;
    let streams = etcd_metric(&etcd.endpoint, KEEP_ALIVE_STREAMS).await - streams_before;
    // Other tests may share the server and open streams of their own meanwhile; a stream per
    // session would be at least 50.
    assert!(
        streams < SESSIONS as f64 / 2.0,
        "{streams} keep-alive streams for {SESSIONS} sessions of one client"
    );

    let (doomed, kept) = open.split_at(1);
    etcd.etcdctl
        .run(&["lease", "revoke", &format!("{:x}", doomed[0].id())])
        .await;
    let reason = within("the revoked session is lost", PATIENCE, doomed[0].lost()).await;
    assert_eq!(reason, LostReason::LeaseExpired);
    // The answer for the revoked lease went to its session only.
    outlive_the_ttl(&admin, kept).await;
    for s in kept {
        assert!(
            !s.is_lost(),
            "session {:x} lost with another's lease",
            s.id()
        );
    }
    let mutex = kept[0].mutex(&support::unique("keep-alive")).unwrap();
    mutex.lock().await.expect("lock").unlock().await.unwrap();
    for s in kept.iter().cloned() {
        s.close().await.expect("close");
    }
}

/// Waits twice the TTL, then checks that every lease of `open` is still there: none could be
/// without renewals.
async fn outlive_the_ttl(admin: &Admin, open: &[Session]) {
    tokio::time::sleep(2 * TTL).await;
    for s in open {
        let ttl = admin.lease_ttl(s.id() as i64).await;
        assert!(ttl > 0, "lease {:x} was not renewed (TTL {ttl})", s.id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_sessions_share_one_stream_and_lose_only_their_own_lease() {
    const TEST: &str = "etcd34_sessions_share_one_stream_and_lose_only_their_own_lease";
    one_stream_many_leases(Version::V34, TEST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_sessions_share_one_stream_and_lose_only_their_own_lease() {
    const TEST: &str = "etcd35_sessions_share_one_stream_and_lose_only_their_own_lease";
    one_stream_many_leases(Version::V35, TEST).await;
}

/// Frozen until every session on the stream is suspended, then thawed: every one resumes
/// and none is lost (a 10 s TTL leaves seconds between the last suspension and the deadline).
async fn frozen_suspends_all(v: Version, test: &str) {
    let Some(bin) = etcd_bin_from_env(v, test) else {
        return;
    };
    let mut etcd = PrivateEtcd::start(&bin).await;
    let tenure = Tenure::builder(&etcd.url)
        .ttl(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect");
    let open = sessions(&tenure, 20).await;
    let mut events: Vec<_> = open.iter().map(Session::events).collect();
    for e in &mut events {
        let first = within("first event", PATIENCE, e.next()).await;
        assert_eq!(first, Some(SessionEvent::Connected));
    }
    etcd.freeze();
    for e in &mut events {
        let suspended = within("suspended while frozen", PATIENCE, e.next()).await;
        assert_eq!(suspended, Some(SessionEvent::Suspended));
    }
    etcd.thaw();
    for e in &mut events {
        let resumed = within("resumed once thawed", PATIENCE, e.next()).await;
        assert_eq!(resumed, Some(SessionEvent::Resumed));
    }
    for s in &open {
        assert!(!s.is_lost());
    }
    let guard = open[0].mutex("keep-alive/after-thaw").unwrap();
    guard.lock().await.expect("lock").unlock().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_frozen_server_suspends_and_resumes_every_session_on_the_stream() {
    const TEST: &str = "etcd34_frozen_server_suspends_and_resumes_every_session_on_the_stream";
    frozen_suspends_all(Version::V34, TEST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_frozen_server_suspends_and_resumes_every_session_on_the_stream() {
    const TEST: &str = "etcd35_frozen_server_suspends_and_resumes_every_session_on_the_stream";
    frozen_suspends_all(Version::V35, TEST).await;
}
