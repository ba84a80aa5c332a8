//! Interoperability with kazoo's `Lock` (Python), which shares a lock with Curator-layout
//! contenders when told their node pattern (`extra_lock_patterns=["-lock-"]`;
//! docs/contract.md, Interoperability): kazoo holds → our try_lock fails naming its node and
//! our lock waits, then gets it; we hold → kazoo's `acquire(timeout)` times out, and succeeds
//! once we unlock.
//!
//! Needs `TENURE_TEST_ZK_URL` and kazoo (`TENURE_TEST_KAZOO_PATH`, a PYTHONPATH entry that
//! `scripts/servers install` fills); skipped with a visible line otherwise, failed instead
//! under `TENURE_REQUIRE_SERVERS=1`.

#![cfg(all(feature = "zookeeper", feature = "etcd"))]

#[allow(unused_macros, unused_imports)]
mod support;
mod zk_support;

use std::process::Command;

use support::{env_or_skip, unique, within, Process, PATIENCE};
use tenure::{Error, Tenure};
use zk_support::Admin;

/// `hold PATH`: acquire, print `HOLDING <node path>`, release on SIGTERM and print
/// `RELEASED`. `try PATH SECONDS`: print `ACQUIRED` (then release) or `TIMEOUT`.
const PEER: &str = r#"
import signal, sys
from kazoo.client import KazooClient
from kazoo.exceptions import LockTimeout
mode, hosts, path = sys.argv[1], sys.argv[2], sys.argv[3]
zk = KazooClient(hosts=hosts)
zk.start(timeout=30)
lock = zk.Lock(path, "kazoo-peer", extra_lock_patterns=["-lock-"])
if mode == "hold":
    lock.acquire()
    print("HOLDING " + path + "/" + lock.node, flush=True)
    def release(*_):
        lock.release()
        print("RELEASED", flush=True)
        zk.stop()
        sys.exit(0)
    signal.signal(signal.SIGTERM, release)
    signal.pause()
else:
    try:
        lock.acquire(timeout=float(sys.argv[4]))
        print("ACQUIRED", flush=True)
        lock.release()
    except LockTimeout:
        print("TIMEOUT", flush=True)
    zk.stop()
"#;

struct Kazoo {
    hosts: String,
    python_path: String,
}

impl Kazoo {
    fn spawn(&self, args: &[&str]) -> Process {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(PEER)
            .arg(args[0])
            .arg(&self.hosts)
            .args(&args[1..])
            .env("PYTHONPATH", &self.python_path);
        Process::spawn(&format!("kazoo {}", args[0]), cmd)
    }
}

async fn setup(test: &str) -> Option<(Tenure, Admin, Kazoo)> {
    let url = zk_support::url_from_env(test)?;
    let python_path = env_or_skip(test, "TENURE_TEST_KAZOO_PATH")?;
    let tenure = Tenure::connect(&url).await.expect("connect");
    let admin = Admin::connect(&url).await;
    let hosts = zk_support::hosts(&url).to_string();
    Some((tenure, admin, Kazoo { hosts, python_path }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_holds_our_try_lock_fails_and_lock_waits() {
    let Some((tenure, admin, kazoo)) = setup("kazoo_holds_our_try_lock_fails").await else {
        return;
    };
    let name = unique("kazoo-holds");
    let mut peer = kazoo.spawn(&["hold", &format!("/{name}")]);
    let line = peer
        .line_where(PATIENCE, |l| l.starts_with("HOLDING"))
        .await;
    let kazoo_node = line["HOLDING ".len()..].trim().to_string();

    let session = tenure.session().await.expect("session");
    let mutex = session.mutex(&name).expect("mutex");
    match mutex.try_lock().await {
        Err(Error::Locked { holder, .. }) => assert_eq!(holder.as_deref(), Some(&*kazoo_node)),
        other => panic!("expected Locked while kazoo holds, got {other:?}"),
    }
    assert_eq!(
        admin.children(&name).await.len(),
        1,
        "try_lock left no trace"
    );

    let waiter = tokio::spawn(async move { mutex.lock().await });
    admin.wait_children(&name, 2).await;
    assert!(!waiter.is_finished(), "we must not hold while kazoo does");
    peer.signal("TERM");
    peer.line_where(PATIENCE, |l| l == "RELEASED").await;
    let guard = within("our lock after kazoo released", PATIENCE, waiter)
        .await
        .expect("waiter task")
        .expect("lock");
    assert_eq!(admin.children(&name).await.len(), 1);
    guard.unlock().await.expect("unlock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_hold_kazoo_times_out_then_acquires() {
    let Some((tenure, _admin, kazoo)) = setup("we_hold_kazoo_times_out").await else {
        return;
    };
    let name = unique("kazoo-waits");
    let path = format!("/{name}");
    let session = tenure.session().await.expect("session");
    let guard = support::locked(&session, &name).await;

    let mut blocked = kazoo.spawn(&["try", &path, "1"]);
    assert_eq!(blocked.line(PATIENCE).await, "TIMEOUT");
    guard.unlock().await.expect("unlock");
    let mut free = kazoo.spawn(&["try", &path, "20"]);
    assert_eq!(free.line(PATIENCE).await, "ACQUIRED");
}
