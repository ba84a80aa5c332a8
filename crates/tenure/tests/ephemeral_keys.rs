//! Ephemeral keys and prefix watches (issue 16, item 3) against the shared servers of
//! `scripts/test`: a process that registers a key and is killed with SIGKILL loses the key
//! within its TTL, and a watcher of the prefix sees the put and then the delete; a key that is
//! another session's is left alone; a session's own key is replaced and goes with the session.
//! On etcd 3.4 and 3.5, ZooKeeper and one Redis instance (which needs no keyspace
//! notifications: the shared server runs without them); Redlock refuses both with
//! `Unsupported`.

mod redis_support;
mod support;
mod zk_support;

use std::process::Command;
use std::time::Duration;

use support::{unique, within, Process, SharedEtcd, Version, PATIENCE};
use tenure::{Error, KeyEvent, KeyWatcher, Tenure};

/// The registering child's session TTL: the key must go within it once the child is killed.
const CHILD_TTL: Duration = Duration::from_secs(2);
const ROLE: &str = "TENURE_EPHEMERAL_CHILD";
const REGISTERED: &str = "TENURE_CHILD_REGISTERED";

/// In a process started by [`spawn_registrant`]: registers `KEY` = `VALUE` and waits to be
/// killed. In an ordinary test run: returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrant_entry_point() {
    let Ok(spec) = std::env::var(ROLE) else {
        return;
    };
    let mut parts = spec.splitn(3, ' ');
    let (url, key, value) = (parts.next(), parts.next(), parts.next());
    let (Some(url), Some(key), Some(value)) = (url, key, value) else {
        panic!("bad child spec {spec:?}");
    };
    let tenure = Tenure::builder(url).ttl(CHILD_TTL).connect().await.unwrap();
    let session = tenure.session().await.unwrap();
    session.put_ephemeral(key, value).await.unwrap();
    println!("{REGISTERED}");
    std::future::pending::<()>().await;
}

async fn spawn_registrant(url: &str, key: &str, value: &str) -> Process {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["registrant_entry_point", "--exact", "--nocapture"])
        .env(ROLE, format!("{url} {key} {value}"));
    let mut child = Process::spawn("registering process", cmd);
    child.line_where(PATIENCE, |l| l.contains(REGISTERED)).await;
    child
}

/// A watch on `services/` that has seen `services/a` registered, and the session that
/// registered it.
async fn watched_registration(tenure: &Tenure) -> (KeyWatcher, tenure::Session) {
    let mut live = tenure.watch_prefix("services/").await.expect("watch");
    let session = tenure.session().await.expect("session");
    session.put_ephemeral("services/a", "1").await.expect("put");
    let put = KeyEvent::Put {
        key: "services/a".into(),
        value: b"1".to_vec(),
    };
    assert_eq!(next(&mut live, "the registration").await, put);
    (live, session)
}

async fn next(watch: &mut KeyWatcher, what: &str) -> KeyEvent {
    within(what, PATIENCE, watch.next())
        .await
        .unwrap_or_else(|| panic!("{what}: the watch ended"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The scenario on one store: `prefix` names a directory (`tenure-it/…/`). `lists_locks`:
/// whether `status` lists locks beside registered keys (not on Redis, which lists only the
/// latter).
async fn killed_registrant_is_deregistered(url: &str, lists_locks: bool) {
    let tenure = Tenure::connect(url).await.expect("connect");
    let prefix = format!("{}/", unique("services"));
    let key = format!("{prefix}web-1");
    let mut live = tenure.watch_prefix(&prefix).await.expect("watch");

    let mut child = spawn_registrant(url, &key, "10.0.0.5:8080").await;
    let put = KeyEvent::Put {
        key: key.clone(),
        value: b"10.0.0.5:8080".to_vec(),
    };
    assert_eq!(next(&mut live, "the registration").await, put);
    let listed = tenure.status(&prefix).await.expect("status");
    assert!(
        listed
            .iter()
            .any(|s| s.registered && s.name == key && s.holder.value == b"10.0.0.5:8080"),
        "status lists the registered key: {listed:?}"
    );
    // A lock beside it (outside the watched prefix) is still a lock, not a registered key.
    let base = prefix.trim_end_matches('/');
    let (locker, lock_name) = (
        tenure.session().await.expect("session"),
        format!("{base}-lock"),
    );
    let lock = locker.mutex(&lock_name).unwrap().lock().await.unwrap();
    let listed = tenure.status(base).await.expect("status");
    assert_eq!(
        listed.iter().filter(|s| s.registered).count(),
        1,
        "{listed:?}"
    );
    assert_eq!(
        listed.iter().any(|s| !s.registered && s.name == lock_name),
        lists_locks,
        "{listed:?}"
    );
    lock.unlock().await.unwrap();

    // Someone else's key is left alone; the live set is unchanged.
    let other = tenure.session().await.expect("session");
    assert!(matches!(
        other.put_ephemeral(&key, "impostor").await,
        Err(Error::Locked { .. })
    ));
    assert_eq!(
        tenure.read(&key).await.expect("read"),
        Some(b"10.0.0.5:8080".to_vec())
    );

    child.signal("KILL");
    child.wait(PATIENCE).await;
    let gone = KeyEvent::Deleted { key: key.clone() };
    assert_eq!(
        next(&mut live, "the killed process's key going").await,
        gone
    );
    assert_eq!(tenure.read(&key).await.expect("read"), None);

    // A session's own key: replaced by a second put, gone when the session closes.
    other
        .put_ephemeral(&key, "10.0.0.6:8080")
        .await
        .expect("put");
    other
        .put_ephemeral(&key, "10.0.0.6:9090")
        .await
        .expect("re-put");
    let replaced = KeyEvent::Put {
        key: key.clone(),
        value: b"10.0.0.6:9090".to_vec(),
    };
    let mut seen = next(&mut live, "our registration").await;
    if seen != replaced {
        seen = next(&mut live, "our re-registration").await;
    }
    assert_eq!(seen, replaced);
    other.close().await.expect("close");
    assert_eq!(next(&mut live, "deregistered at close").await, gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd34_killed_registrant_is_deregistered() {
    let test = "etcd34_killed_registrant_is_deregistered";
    if let Some((url, _)) = SharedEtcd::url_from_env(Version::V34, test) {
        killed_registrant_is_deregistered(&url, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd35_killed_registrant_is_deregistered() {
    let test = "etcd35_killed_registrant_is_deregistered";
    if let Some((url, _)) = SharedEtcd::url_from_env(Version::V35, test) {
        killed_registrant_is_deregistered(&url, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_killed_registrant_is_deregistered() {
    if let Some(url) = zk_support::url_from_env("zk_killed_registrant_is_deregistered") {
        killed_registrant_is_deregistered(&url, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_killed_session_is_deregistered() {
    // One process: a crashed session (renewals stopped) stands in for the killed process.
    let tenure = Tenure::builder("mem://ephemeral-crash")
        .ttl(CHILD_TTL)
        .connect()
        .await
        .expect("connect");
    let (mut live, session) = watched_registration(&tenure).await;
    session.simulate_crash();
    let gone = KeyEvent::Deleted {
        key: "services/a".into(),
    };
    assert_eq!(next(&mut live, "expired with the lease").await, gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_registrant_is_deregistered() {
    let test = "redis_killed_registrant_is_deregistered";
    if let Some(url) = support::env_or_skip(test, "TENURE_TEST_REDIS_URL") {
        killed_registrant_is_deregistered(&url, false).await;
    }
}

/// Redis without the killed process: a crashed session (renewals stopped) loses its key with
/// its heartbeat, and a watcher that starts after the crash lists it until then and sees the
/// delete too; a watch of a narrower prefix sees nothing of it; a key the session holds as a
/// lock is not turned into an ephemeral key; the empty prefix lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crashed_session_is_deregistered() {
    let test = "redis_crashed_session_is_deregistered";
    let Some(url) = support::env_or_skip(test, "TENURE_TEST_REDIS_URL") else {
        return;
    };
    let tenure = Tenure::builder(&url)
        .ttl(CHILD_TTL)
        .connect()
        .await
        .expect("connect");
    let prefix = format!("{}/", unique("services"));
    let key = format!("{prefix}a");
    let mut early = tenure.watch_prefix(&prefix).await.expect("watch");
    let mut elsewhere = tenure
        .watch_prefix(&format!("{prefix}b"))
        .await
        .expect("watch");
    let session = tenure.session().await.expect("session");
    session.put_ephemeral(&key, "1").await.expect("put");
    let put = KeyEvent::Put {
        key: key.clone(),
        value: b"1".to_vec(),
    };
    assert_eq!(next(&mut early, "the registration").await, put);
    let mut late = tenure.watch_prefix(&prefix).await.expect("watch");
    assert_eq!(next(&mut late, "listed at the start").await, put);
    let all = tenure.status("").await.expect("status");
    assert!(all.iter().any(|s| s.registered && s.name == key), "{all:?}");

    let lock = session.mutex(&format!("{prefix}lock")).unwrap();
    let held = lock.lock().await.expect("lock");
    assert!(matches!(
        session.put_ephemeral(held.key(), "x").await,
        Err(Error::Locked { .. })
    ));
    held.unlock().await.expect("unlock");

    let crashed = std::time::Instant::now();
    session.simulate_crash();
    let gone = KeyEvent::Deleted { key: key.clone() };
    assert_eq!(next(&mut early, "expired with the heartbeat").await, gone);
    // For the record (not asserted: the bound is the TTL after the last renewal).
    eprintln!(
        "redis: crashed session's key reported deleted {:?} after the crash (TTL {CHILD_TTL:?})",
        crashed.elapsed()
    );
    assert_eq!(next(&mut late, "expired with the heartbeat").await, gone);
    assert_eq!(tenure.read(&key).await.expect("read"), None);
    let listed = tenure.status(&prefix).await.expect("status");
    assert!(listed.is_empty(), "{listed:?}");
    assert!(
        futures_util::FutureExt::now_or_never(elsewhere.next()).is_none(),
        "a narrower prefix saw a change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_refuses_ephemeral_keys_and_watches() {
    let test = "redlock_refuses_ephemeral_keys_and_watches";
    let Some(bin) = redis_support::redis_bin_or_skip(test) else {
        return;
    };
    let servers = redis_support::start_servers(&bin, 3).await;
    let masters: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let url = format!("redlock://{}", masters.join(","));
    let tenure = Tenure::connect(&url).await.expect("connect");
    let session = tenure.session().await.expect("session");
    let put = session.put_ephemeral(&unique("services/a"), "1").await;
    assert!(
        matches!(&put, Err(Error::Unsupported { advice, .. }) if advice.contains("independent")),
        "{put:?}"
    );
    let watch = tenure.watch_prefix("services/").await;
    assert!(matches!(watch, Err(Error::Unsupported { .. })), "{watch:?}");
}

/// Pub/sub drops messages across a reconnect without saying so: a Redis watch whose
/// subscription breaks (the server restarts) ends with `ObserveEnded` instead of going on with
/// a gap, and a new watch lists afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_watch_ends_when_its_subscription_breaks() {
    let test = "redis_watch_ends_when_its_subscription_breaks";
    let Some(bin) = redis_support::redis_bin_or_skip(test) else {
        return;
    };
    let mut server = redis_support::start_servers(&bin, 1).await.remove(0);
    let url = format!("redis://127.0.0.1:{}", server.port);
    let tenure = Tenure::connect(&url).await.expect("connect");
    let (mut live, _session) = watched_registration(&tenure).await;
    server.restart().await;
    let ended = within("the watch ending", PATIENCE, live.next()).await;
    assert!(
        matches!(ended, Some(Err(Error::ObserveEnded { .. }))),
        "{ended:?}"
    );
    assert!(within("the end", PATIENCE, live.next()).await.is_none());
    let mut again = tenure.watch_prefix("services/").await.expect("watch again");
    let other = tenure.session().await.expect("session");
    other.put_ephemeral("services/b", "2").await.expect("put");
    let put = KeyEvent::Put {
        key: "services/b".into(),
        value: b"2".to_vec(),
    };
    assert_eq!(
        next(&mut again, "a registration after the restart").await,
        put
    );
}
