//! Interoperability of our read/write lock with kazoo's `ReadLock` and `WriteLock` (Python),
//! which meet Curator's layout when told its node names: a kazoo reader with
//! `extra_lock_patterns=["__WRIT__"]`, a kazoo writer with `["__READ__", "__WRIT__"]`
//! (docs/contract.md, Interoperability). Our readers take kazoo's `__rlock__` nodes for
//! readers and its `__lock__` nodes for writers. kazoo holds → ours is kept out (writer) or
//! shares (reader); we hold → kazoo's `acquire(timeout)` times out (writer) or succeeds
//! (reader beside our reader).
//!
//! Needs `TENURE_TEST_ZK_URL` and kazoo (`TENURE_TEST_KAZOO_PATH`); skipped with a visible
//! line otherwise, failed instead under `TENURE_REQUIRE_SERVERS=1`.

#![cfg(all(feature = "zookeeper", feature = "etcd"))]

#[allow(unused_macros, unused_imports)]
mod support;
mod zk_support;

use std::process::Command;

use support::{env_or_skip, unique, within, Process, PATIENCE};
use tenure::{Error, Tenure};
use zk_support::Admin;

/// `hold PATH read|write`: acquire, print `HOLDING <node>`, release on SIGTERM and print
/// `RELEASED`. `try PATH read|write SECONDS`: print `ACQUIRED` (then release) or `TIMEOUT`.
const PEER: &str = r#"
import signal, sys
from kazoo.client import KazooClient
from kazoo.exceptions import LockTimeout
mode, hosts, path, side = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
zk = KazooClient(hosts=hosts)
zk.start(timeout=30)
if side == "read":
    lock = zk.ReadLock(path, "kazoo-reader", extra_lock_patterns=["__WRIT__"])
else:
    lock = zk.WriteLock(path, "kazoo-writer", extra_lock_patterns=["__READ__", "__WRIT__"])
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
        lock.acquire(timeout=float(sys.argv[5]))
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
    fn spawn(&self, mode: &str, path: &str, side: &str, extra: &[&str]) -> Process {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(PEER)
            .args([mode, &self.hosts, path, side])
            .args(extra)
            .env("PYTHONPATH", &self.python_path);
        Process::spawn(&format!("kazoo {mode} {side}"), cmd)
    }

    async fn holding(&self, path: &str, side: &str) -> (Process, String) {
        let mut p = self.spawn("hold", path, side, &[]);
        let line = p.line_where(PATIENCE, |l| l.starts_with("HOLDING")).await;
        let node = line["HOLDING ".len()..].trim().to_string();
        (p, node)
    }

    async fn tries(&self, path: &str, side: &str, seconds: &str) -> String {
        let mut p = self.spawn("try", path, side, &[seconds]);
        let line = p
            .line_where(PATIENCE, |l| l == "ACQUIRED" || l == "TIMEOUT")
            .await;
        p.wait(PATIENCE).await;
        line
    }
}

async fn release(p: &mut Process) {
    p.signal("TERM");
    p.line_where(PATIENCE, |l| l == "RELEASED").await;
    p.wait(PATIENCE).await;
}

async fn setup(test: &str) -> Option<(Tenure, Admin, Kazoo)> {
    let url = zk_support::url_from_env(test)?;
    let python_path = env_or_skip(test, "TENURE_TEST_KAZOO_PATH")?;
    let tenure = Tenure::connect(&url).await.expect("connect");
    let admin = Admin::connect(&url).await;
    let hosts = zk_support::hosts(&url).to_string();
    Some((tenure, admin, Kazoo { hosts, python_path }))
}

/// kazoo's writer holds: our try_read and try_write fail naming its node, our reader waits
/// and gets in once kazoo releases; kazoo's reader shares with ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_writer_excludes_ours_and_readers_share() {
    let Some((tenure, admin, kazoo)) = setup("kazoo_writer_excludes_ours").await else {
        return;
    };
    let name = unique("kazoo-rw");
    let path = format!("/{name}");
    let (mut writer, node) = kazoo.holding(&path, "write").await;
    assert!(node.contains("__lock__"), "{node}");
    let ours = tenure.session().await.unwrap().rwlock(&name).unwrap();
    for tried in [
        ours.try_read().await.map(|_| ()),
        ours.try_write().await.map(|_| ()),
    ] {
        match tried {
            Err(Error::Locked { holder, .. }) => assert_eq!(holder.as_deref(), Some(&*node)),
            other => panic!("expected Locked while kazoo's writer holds, got {other:?}"),
        }
    }
    let reader = tokio::spawn({
        let ours = ours.clone();
        async move { ours.read().await }
    });
    admin.wait_children(&name, 2).await;
    release(&mut writer).await;
    let r = within("our reader after kazoo's writer", PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();
    // kazoo's reader joins ours; kazoo's writer is kept out.
    assert_eq!(kazoo.tries(&path, "read", "10").await, "ACQUIRED");
    assert_eq!(kazoo.tries(&path, "write", "0.5").await, "TIMEOUT");
    r.unlock().await.unwrap();
    assert_eq!(kazoo.tries(&path, "write", "10").await, "ACQUIRED");
    assert!(admin.children(&name).await.is_empty());
}

/// Our writer holds: kazoo's reader and writer time out; after our unlock both get in. And
/// a kazoo reader holding lets our reader in at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_writer_excludes_kazoo() {
    let Some((tenure, admin, kazoo)) = setup("our_writer_excludes_kazoo").await else {
        return;
    };
    let name = unique("kazoo-rw-ours");
    let path = format!("/{name}");
    let ours = tenure.session().await.unwrap().rwlock(&name).unwrap();
    let w = ours.write().await.unwrap();
    assert_eq!(kazoo.tries(&path, "read", "0.5").await, "TIMEOUT");
    assert_eq!(kazoo.tries(&path, "write", "0.5").await, "TIMEOUT");
    w.unlock().await.unwrap();
    let (mut reader, node) = kazoo.holding(&path, "read").await;
    assert!(node.contains("__rlock__"), "{node}");
    let r = ours.try_read().await.expect("our reader beside kazoo's");
    r.unlock().await.unwrap();
    assert!(matches!(ours.try_write().await, Err(Error::Locked { .. })));
    release(&mut reader).await;
    ours.try_write().await.unwrap().unlock().await.unwrap();
    assert!(admin.children(&name).await.is_empty());
}
