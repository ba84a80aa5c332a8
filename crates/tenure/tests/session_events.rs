//! `Session::events()` against real servers (issue 16, item 2): a store frozen with SIGSTOP
//! suspends the session, thawed before the deadline it resumes it, and frozen past the
//! deadline it loses it, after which the stream ends — on etcd 3.4 and 3.5, ZooKeeper and
//! Redis, each a private server of the test's own, and PostgreSQL, the cluster of
//! `scripts/servers` (no other test in this binary uses it, and test binaries run one at a
//! time). (`mem://` is covered in the crate's unit tests, with a scripted renewal fault.)
//!
//! Two clients share each server: one with a 10 s TTL, suspended when a renewal goes
//! unanswered (after at most two thirds of the TTL) and resumed when the server is thawed,
//! well before its deadline; one with a 2 s TTL, whose session the same freeze outlasts.

// Both include tests/support/skip.rs by path: two copies of the same small module.
#[allow(clippy::duplicate_mod)]
mod postgres_support;
mod redis_support;
mod support;
mod zk_support;

use std::time::Duration;

use support::{etcd_bin_from_env, signal, within, PrivateEtcd, Version, PATIENCE};
use tenure::{LostReason, SessionEvent, SessionEvents, Tenure};
use zk_support::PrivateZk;

const LONG_TTL: Duration = Duration::from_secs(10);
const SHORT_TTL: Duration = Duration::from_secs(2);

async fn client(url: &str, password: Option<&str>, ttl: Duration) -> Tenure {
    let builder = Tenure::builder(url).ttl(ttl);
    match password {
        Some(password) => builder.password(password),
        None => builder,
    }
    .connect()
    .await
    .expect("connect")
}

async fn next(events: &mut SessionEvents, what: &str) -> SessionEvent {
    within(what, PATIENCE, events.next())
        .await
        .unwrap_or_else(|| panic!("{what}: the stream ended"))
}

/// Freezes the server (`frozen(true)`) and checks both sessions' streams, then thaws it
/// (`frozen(false)`).
async fn suspend_resume_and_lose(url: &str, password: Option<&str>, mut frozen: impl FnMut(bool)) {
    let (long, short) = (
        client(url, password, LONG_TTL).await,
        client(url, password, SHORT_TTL).await,
    );
    let (kept, doomed) = (
        long.session().await.expect("session"),
        short.session().await.expect("session"),
    );
    let (mut kept_events, mut doomed_events) = (kept.events(), doomed.events());
    assert_eq!(
        next(&mut kept_events, "first event").await,
        SessionEvent::Connected
    );
    assert_eq!(
        next(&mut doomed_events, "first event").await,
        SessionEvent::Connected
    );

    frozen(true);
    // The short session may or may not be seen suspended before its deadline passes.
    let mut last = next(&mut doomed_events, "short session, frozen").await;
    if last == SessionEvent::Suspended {
        last = next(&mut doomed_events, "short session, after suspended").await;
    }
    let kept_suspended = next(&mut kept_events, "long session, frozen").await;
    frozen(false);
    assert_eq!(last, SessionEvent::Lost(LostReason::RenewalDeadline));
    assert!(doomed.is_lost());
    assert_eq!(
        within("the stream ends after Lost", PATIENCE, doomed_events.next()).await,
        None
    );

    assert_eq!(kept_suspended, SessionEvent::Suspended);
    assert_eq!(
        next(&mut kept_events, "long session, thawed").await,
        SessionEvent::Resumed
    );
    assert!(
        !kept.is_lost(),
        "resumed in time: the lease held throughout"
    );
    let guard = kept.mutex("events/after-thaw").unwrap().try_lock().await;
    guard
        .expect("the resumed session still locks")
        .unlock()
        .await
        .unwrap();
    kept.close().await.expect("close");
    assert_eq!(
        next(&mut kept_events, "long session, closed").await,
        SessionEvent::Lost(LostReason::SessionClosed)
    );
}

async fn etcd(v: Version, test: &str) {
    let Some(bin) = etcd_bin_from_env(v, test) else {
        return;
    };
    let mut etcd = PrivateEtcd::start(&bin).await;
    let url = etcd.url.clone();
    suspend_resume_and_lose(
        &url,
        None,
        |stop| if stop { etcd.freeze() } else { etcd.thaw() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_frozen_suspends_thawed_resumes_expired_loses() {
    etcd(
        Version::V34,
        "etcd34_frozen_suspends_thawed_resumes_expired_loses",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_frozen_suspends_thawed_resumes_expired_loses() {
    etcd(
        Version::V35,
        "etcd35_frozen_suspends_thawed_resumes_expired_loses",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_frozen_suspends_thawed_resumes_expired_loses() {
    const TEST: &str = "zk_frozen_suspends_thawed_resumes_expired_loses";
    let Some(classpath) = zk_support::classpath_from_env(TEST) else {
        return;
    };
    let zk = PrivateZk::start(&classpath).await;
    let pid = zk.pid();
    suspend_resume_and_lose(&zk.url, None, |stop| {
        signal(pid, if stop { "STOP" } else { "CONT" })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_suspends_thawed_resumes_expired_loses() {
    const TEST: &str = "redis_frozen_suspends_thawed_resumes_expired_loses";
    let Some(bin) = redis_support::redis_bin_or_skip(TEST) else {
        return;
    };
    let server = redis_support::start_servers(&bin, 1).await.remove(0);
    let url = format!("redis://127.0.0.1:{}", server.port);
    let pid = server.pid();
    suspend_resume_and_lose(&url, None, |stop| {
        signal(pid, if stop { "STOP" } else { "CONT" })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frozen_suspends_thawed_resumes_expired_loses() {
    const TEST: &str = "postgres_frozen_suspends_thawed_resumes_expired_loses";
    let (Some(pg), Some(postmaster)) = (
        postgres_support::Pg::from_env(TEST),
        postgres_support::freeze::postmaster_from_env(TEST),
    ) else {
        return;
    };
    // Held here, so that a failed assertion while frozen thaws the server on the way out.
    let mut frozen = None;
    suspend_resume_and_lose(&pg.url, Some(&pg.password), |stop| {
        frozen = stop.then(|| postgres_support::freeze::freeze(postmaster));
    })
    .await;
}

/// The other way a PostgreSQL session ends: its control connection's server process is
/// terminated (an operator's `pg_terminate_backend`, a failover, an idle-session reaper); the
/// session is lost at once, not at the deadline, and so is every lock under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_control_connection_terminated_loses() {
    const TEST: &str = "postgres_control_connection_terminated_loses";
    let Some(pg) = postgres_support::Pg::from_env(TEST) else {
        return;
    };
    let tenure = client(&pg.url, Some(&pg.password), LONG_TTL).await;
    let session = tenure.session().await.expect("session");
    let guard = session
        .mutex("events/terminated")
        .unwrap()
        .lock()
        .await
        .expect("lock");
    let mut events = session.events();
    assert_eq!(
        next(&mut events, "first event").await,
        SessionEvent::Connected
    );

    // Session::id is the control connection's pg_backend_pid().
    let terminated = pg
        .query(&format!("SELECT pg_terminate_backend({})", session.id()))
        .await;
    assert_eq!(terminated, ["t"], "the control connection's backend");

    assert_eq!(
        next(&mut events, "control connection terminated").await,
        SessionEvent::Lost(LostReason::LeaseExpired)
    );
    assert_eq!(
        within("the stream ends after Lost", PATIENCE, events.next()).await,
        None
    );
    assert!(session.is_lost());
    assert_eq!(
        within("the lock is lost with its session", PATIENCE, guard.lost()).await,
        LostReason::LeaseExpired
    );
    // The lock's own connection is let go with the session: the next holder need not wait
    // for a TTL.
    let next_holder = tenure.session().await.expect("a new session");
    next_holder
        .mutex("events/terminated")
        .unwrap()
        .lock_timeout(PATIENCE)
        .await
        .expect("the lost session's lock is free again")
        .unlock()
        .await
        .unwrap();
}
