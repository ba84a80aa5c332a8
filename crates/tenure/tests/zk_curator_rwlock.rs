//! Interoperability of our read/write lock with Apache Curator 5.4's
//! `InterProcessReadWriteLock` (issue 14), on the shared ZooKeeper of `scripts/test`, with a
//! peer compiled from `tests/java/CuratorRwPeer.java`.
//!
//! Both ways: Curator's writer excludes our readers and writers, ours excludes Curator's;
//! Curator's readers share with ours; our downgrade lets no Curator writer in (Curator's own
//! downgrade does: CURATOR-621). Each holder reads a state node that writers set while they
//! hold (`curator-writer`, `ours`) and set back to `free` before they release: anyone who
//! ever reads anything but `free` (or nothing) was let in beside a writer.
//!
//! Needs `TENURE_TEST_ZK_URL` and `TENURE_TEST_ZK_CLASSPATH` (skipped with a visible line
//! otherwise, failed instead under `TENURE_REQUIRE_SERVERS=1`).

#![cfg(all(feature = "zookeeper", feature = "etcd"))]

#[allow(unused_macros, unused_imports)]
mod support;
mod zk_support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use support::{unique, within, Process, PATIENCE};
use tenure::{Error, Tenure, Write};
use zk_support::Admin;

/// The Curator read/write peer, compiled once per test run.
struct Peer {
    classpath: String,
    connect: String,
}

impl Peer {
    fn new(classpath: &str, url: &str) -> Peer {
        static CLASSES: OnceLock<PathBuf> = OnceLock::new();
        let classes = CLASSES.get_or_init(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("curator-rw-peer");
            std::fs::create_dir_all(&out).expect("create class dir");
            let source =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/java/CuratorRwPeer.java");
            let status = Command::new("javac")
                .arg("-cp")
                .arg(classpath)
                .arg("-d")
                .arg(&out)
                .arg(&source)
                .status()
                .expect("run javac (Debian: default-jdk-headless)");
            assert!(status.success(), "javac {} failed", source.display());
            out
        });
        Peer {
            classpath: format!("{}:{classpath}", classes.display()),
            connect: zk_support::hosts(url).to_string(),
        }
    }

    /// A Curator holder of `mode` on lock `/name`, reading (and as a writer setting) node
    /// `/state`, released once node `/release` exists.
    fn spawn(&self, name: &str, mode: &str, state: &str, release: &str) -> Process {
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(&self.classpath)
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg("CuratorRwPeer")
            .args([&self.connect, &format!("/{name}"), mode])
            .args([&format!("/{state}"), &format!("/{release}")]);
        Process::spawn(&format!("Curator {mode}er"), cmd)
    }
}

struct Setup {
    tenure: Tenure,
    admin: Admin,
    peer: Peer,
}

async fn setup(test: &str) -> Option<Setup> {
    let url = zk_support::url_from_env(test)?;
    let classpath = zk_support::classpath_from_env(test)?;
    Some(Setup {
        tenure: Tenure::connect(&url).await.expect("connect"),
        admin: Admin::connect(&url).await,
        peer: Peer::new(&classpath, &url),
    })
}

/// One Curator holder and the node that releases it.
struct Holder {
    process: Process,
    release: String,
}

impl Setup {
    fn curator(&self, name: &str, mode: &str, state: &str) -> Holder {
        let release = unique("release");
        Holder {
            process: self.peer.spawn(name, mode, state, &release),
            release,
        }
    }

    async fn state(&self, key: &str) -> String {
        let v = self.tenure.read(key).await.expect("read state");
        String::from_utf8_lossy(&v.unwrap_or_default()).into_owned()
    }
}

impl Holder {
    /// Waits until Curator holds; what it read in the state node (`-`: nothing).
    async fn held(&mut self) -> String {
        let line = self
            .process
            .line_where(PATIENCE, |l| l.starts_with("HELD"))
            .await;
        line["HELD".len()..].trim().to_string()
    }

    async fn release(&mut self, tenure: &Tenure) {
        tenure
            .write([Write::put(self.release.clone(), "")])
            .await
            .expect("create the release node");
        self.process.line_where(PATIENCE, |l| l == "RELEASED").await;
        self.process.wait(PATIENCE).await;
    }
}

/// Curator's writer holds: our try_read and try_write fail naming its `__WRIT__` node; our
/// reader and writer queue behind it and are granted only after it left (they read `free`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curator_writer_excludes_ours() {
    let Some(s) = setup("curator_writer_excludes_ours").await else {
        return;
    };
    let (name, state) = (unique("curator-writer"), unique("curator-writer-state"));
    let mut curator = s.curator(&name, "write", &state);
    assert_eq!(curator.held().await, "-");
    let node = s.admin.wait_children(&name, 1).await.remove(0);
    assert!(
        node.starts_with("_c_") && node.contains("-__WRIT__"),
        "{node}"
    );
    let node = format!("/{name}/{node}");
    let ours = s.tenure.session().await.unwrap().rwlock(&name).unwrap();
    for tried in [
        ours.try_read().await.map(|_| ()),
        ours.try_write().await.map(|_| ()),
    ] {
        match tried {
            Err(Error::Locked { holder, .. }) => assert_eq!(holder.as_deref(), Some(&*node)),
            other => panic!("expected Locked while Curator's writer holds, got {other:?}"),
        }
    }
    assert_eq!(s.admin.children(&name).await.len(), 1, "tries left nothing");
    let read_state = |lock: tenure::RwLock, write: bool| {
        let (tenure, state) = (s.tenure.clone(), state.clone());
        tokio::spawn(async move {
            let seen = if write {
                let g = lock.write().await.unwrap();
                let seen = tenure.read(&state).await.unwrap();
                g.write([Write::put(state.clone(), "free")]).await.unwrap();
                g.unlock().await.unwrap();
                seen
            } else {
                let g = lock.read().await.unwrap();
                let seen = tenure.read(&state).await.unwrap();
                g.unlock().await.unwrap();
                seen
            };
            String::from_utf8_lossy(&seen.unwrap_or_default()).into_owned()
        })
    };
    let reader = read_state(ours.clone(), false);
    s.admin.wait_children(&name, 2).await;
    let other = s.tenure.session().await.unwrap().rwlock(&name).unwrap();
    let writer = read_state(other, true);
    let queue = s.admin.wait_children(&name, 3).await;
    assert!(queue[1].contains("-__READ__") && queue[2].contains("-__WRIT__"));
    assert_eq!(s.state(&state).await, "curator-writer");
    curator.release(&s.tenure).await;
    assert_eq!(
        within("our reader", PATIENCE, reader).await.unwrap(),
        "free"
    );
    assert_eq!(
        within("our writer", PATIENCE, writer).await.unwrap(),
        "free"
    );
    assert!(s.admin.children(&name).await.is_empty());
}

/// Our writer holds: Curator's reader and writer queue behind it and are granted only after
/// it left, the reader first; Curator's writer waits for Curator's reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_writer_excludes_curator() {
    let Some(s) = setup("our_writer_excludes_curator").await else {
        return;
    };
    let (name, state) = (unique("our-writer"), unique("our-writer-state"));
    let ours = s.tenure.session().await.unwrap().rwlock(&name).unwrap();
    let w = ours.write().await.unwrap();
    w.write([Write::put(state.clone(), "ours")]).await.unwrap();
    let mut reader = s.curator(&name, "read", &state);
    s.admin.wait_children(&name, 2).await;
    let mut writer = s.curator(&name, "write", &state);
    s.admin.wait_children(&name, 3).await;
    w.write([Write::put(state.clone(), "free")]).await.unwrap();
    w.unlock().await.unwrap();
    assert_eq!(reader.held().await, "free");
    assert_eq!(
        s.state(&state).await,
        "free",
        "Curator's writer waits for its reader"
    );
    reader.release(&s.tenure).await;
    assert_eq!(writer.held().await, "free");
    assert!(matches!(ours.try_read().await, Err(Error::Locked { .. })));
    writer.release(&s.tenure).await;
    assert!(s.admin.children(&name).await.is_empty());
}

/// Readers share across both: Curator's reader holds, ours joins at once, and another Curator
/// reader joins while ours holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_share_with_curator() {
    let Some(s) = setup("readers_share_with_curator").await else {
        return;
    };
    let (name, state) = (unique("shared"), unique("shared-state"));
    let mut first = s.curator(&name, "read", &state);
    assert_eq!(first.held().await, "-");
    let ours = s.tenure.session().await.unwrap().rwlock(&name).unwrap();
    let r = ours.try_read().await.expect("our reader beside Curator's");
    assert!(r.key().contains("-__READ__"), "{}", r.key());
    let mut second = s.curator(&name, "read", &state);
    assert_eq!(second.held().await, "-", "Curator's reader beside ours");
    first.release(&s.tenure).await;
    second.release(&s.tenure).await;
    r.unlock().await.unwrap();
    assert!(s.admin.children(&name).await.is_empty());
}

/// Our downgrade lets no Curator writer in (CURATOR-621 is Curator's own downgrade letting
/// the writer queued behind the write node in): ours holds the write side, Curator's writer
/// queues directly behind it; we downgrade, write `downgraded` as a reader, then `free`, and
/// leave; Curator's writer reads `free`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_keeps_curator_writer_out() {
    let Some(s) = setup("downgrade_keeps_curator_writer_out").await else {
        return;
    };
    let (name, state) = (unique("downgrade"), unique("downgrade-state"));
    let ours = s.tenure.session().await.unwrap().rwlock(&name).unwrap();
    let w = ours.write().await.unwrap();
    let mut writer = s.curator(&name, "write", &state);
    s.admin.wait_children(&name, 2).await;
    let r = w.downgrade().await.unwrap();
    r.write([Write::put(state.clone(), "downgraded")])
        .await
        .unwrap();
    let other = s.tenure.session().await.unwrap().rwlock(&name).unwrap();
    assert!(
        matches!(other.try_read().await, Err(Error::Locked { .. })),
        "no reader jumps the waiting writer"
    );
    assert_eq!(s.admin.children(&name).await.len(), 2);
    r.write([Write::put(state.clone(), "free")]).await.unwrap();
    r.unlock().await.unwrap();
    assert_eq!(writer.held().await, "free");
    writer.release(&s.tenure).await;
    assert!(s.admin.children(&name).await.is_empty());
}
