//! `tenure::blocking` (issue 16, item 5) on every backend `scripts/test` provides, from plain
//! threads with no runtime of the test's own: mutual exclusion across threads and sessions,
//! guarded writes, release on drop before the drop returns, a session's drop revoking its
//! lease (where ephemeral keys show it), elections where the store has them; semaphores and read/write locks on the stores
//! that have them.

mod support;

use std::sync::{Arc, Mutex as StdMutex};
use std::thread;

use support::unique;
use tenure::blocking::Tenure;
use tenure::{Error, Write};

/// The URL of `var` from `scripts/servers`, or `None` after a SKIPPED line.
fn url(test: &str, var: &str) -> Option<String> {
    support::env_or_skip(test, var)
}

/// Four threads, each with its own session, add to a counter under the lock; the lock is
/// exclusive, a dropped guard frees it before the drop returns, and a dropped session takes
/// its grants with it.
fn mutex_excludes_across_threads(url: &str) {
    let tenure = Tenure::connect(url).expect("connect");
    let (name, counter) = (unique("blocking"), unique("blocking-counter"));
    let log = Arc::new(StdMutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (tenure, name, counter, log) =
                (tenure.clone(), name.clone(), counter.clone(), log.clone());
            thread::spawn(move || {
                let session = tenure.session().expect("session");
                for _ in 0..5 {
                    let guard = session.mutex(&name).unwrap().lock().expect("lock");
                    let n: u64 = tenure
                        .read(&counter)
                        .expect("read")
                        .map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
                    guard
                        .write([Write::put(counter.as_str(), (n + 1).to_string())])
                        .expect("guarded write");
                    log.lock().unwrap().push((i, guard.token().get()));
                    guard.unlock().expect("unlock");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(
        tenure.read(&counter).unwrap(),
        Some(b"20".to_vec()),
        "no lost update"
    );
    let tokens: Vec<u64> = log.lock().unwrap().iter().map(|(_, t)| *t).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");

    let (a, b) = (tenure.session().unwrap(), tenure.session().unwrap());
    let held = a.mutex(&name).unwrap().lock().unwrap();
    assert!(matches!(
        b.mutex(&name).unwrap().try_lock(),
        Err(Error::Locked { .. })
    ));
    drop(held);
    let next = b
        .mutex(&name)
        .unwrap()
        .try_lock()
        .expect("free once the drop returned");
    next.unlock().expect("unlock");
}

/// A session dropped (its last clone, no guard left) has revoked its lease when the drop
/// returns: its ephemeral key is gone.
fn dropped_session_is_revoked(url: &str) {
    let tenure = Tenure::connect(url).expect("connect");
    let key = unique("blocking-registered");
    let session = tenure.session().unwrap();
    session.put_ephemeral(&key, "here").expect("put");
    assert_eq!(tenure.read(&key).unwrap(), Some(b"here".to_vec()));
    drop(session);
    assert_eq!(tenure.read(&key).unwrap(), None);
}

fn election_hands_over(url: &str) {
    let tenure = Tenure::connect(url).expect("connect");
    let name = unique("blocking-election");
    let (a, b) = (tenure.session().unwrap(), tenure.session().unwrap());
    let leading = a.election(&name).unwrap().campaign("a").expect("campaign");
    let follower = {
        let b = b.clone();
        let name = name.clone();
        thread::spawn(move || b.election(&name).unwrap().campaign("b").map(|l| l.value()))
    };
    leading.proclaim("a2").expect("proclaim");
    assert_eq!(
        tenure.leader(&name).unwrap().map(|l| l.value),
        Some(b"a2".to_vec())
    );
    leading.resign().expect("resign");
    assert_eq!(follower.join().unwrap().expect("b leads"), b"b".to_vec());
}

fn semaphore_and_rwlock(url: &str) {
    let tenure = Tenure::connect(url).expect("connect");
    let session = tenure.session().unwrap();
    let other = tenure.session().unwrap();
    let pool = unique("blocking-pool");
    let permits: Vec<_> = (0..2)
        .map(|_| {
            session
                .semaphore(&pool, 2)
                .unwrap()
                .acquire()
                .expect("permit")
        })
        .collect();
    assert!(matches!(
        other.semaphore(&pool, 2).unwrap().try_acquire(),
        Err(Error::Locked { .. })
    ));
    drop(permits);
    let freed = other.semaphore(&pool, 2).unwrap().try_acquire();
    freed
        .expect("freed by the drops")
        .release()
        .expect("release");

    let rw = unique("blocking-rw");
    let r1 = session.rwlock(&rw).unwrap().read().expect("read");
    let r2 = other.rwlock(&rw).unwrap().read().expect("readers share");
    assert!(matches!(
        tenure.session().unwrap().rwlock(&rw).unwrap().try_write(),
        Err(Error::Locked { .. })
    ));
    drop((r1, r2));
    let w = session.rwlock(&rw).unwrap().write().expect("write");
    let r = w.downgrade().expect("downgrade");
    other
        .rwlock(&rw)
        .unwrap()
        .read()
        .expect("shares with the downgraded")
        .unlock()
        .unwrap();
    r.unlock().unwrap();
}

#[test]
fn mem() {
    mutex_excludes_across_threads("mem://blocking-test");
    dropped_session_is_revoked("mem://blocking-test");
    election_hands_over("mem://blocking-test");
    semaphore_and_rwlock("mem://blocking-test");
}

#[test]
fn etcd34() {
    if let Some(url) = url("blocking::etcd34", "TENURE_TEST_ETCD34_URL") {
        mutex_excludes_across_threads(&url);
        dropped_session_is_revoked(&url);
        election_hands_over(&url);
        semaphore_and_rwlock(&url);
    }
}

#[test]
fn etcd35() {
    if let Some(url) = url("blocking::etcd35", "TENURE_TEST_ETCD35_URL") {
        mutex_excludes_across_threads(&url);
        dropped_session_is_revoked(&url);
        election_hands_over(&url);
        semaphore_and_rwlock(&url);
    }
}

#[test]
fn zookeeper() {
    if let Some(url) = url("blocking::zookeeper", "TENURE_TEST_ZK_URL") {
        mutex_excludes_across_threads(&url);
        dropped_session_is_revoked(&url);
        election_hands_over(&url);
    }
}

#[test]
fn redis() {
    if let Some(url) = url("blocking::redis", "TENURE_TEST_REDIS_URL") {
        mutex_excludes_across_threads(&url);
        dropped_session_is_revoked(&url);
    }
}
