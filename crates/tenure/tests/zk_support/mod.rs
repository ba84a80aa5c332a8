//! Helpers for the tests against a real ZooKeeper and real Curator: an operator's view of the
//! ensemble, a private ZooKeeper that a test may freeze, and the Curator peer (compiled with
//! `javac` from `tests/java/CuratorPeer.java` on first use).
//!
//! The general helpers (skipping, waiting for outcomes, child processes) are `tests/support`.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client as zk;

use crate::support::{env_or_skip, Process, PATIENCE};

/// The shared ZooKeeper of `scripts/test` (`zk://127.0.0.1:PORT`), or `None` after a
/// SKIPPED line.
pub fn url_from_env(test: &str) -> Option<String> {
    env_or_skip(test, "TENURE_TEST_ZK_URL")
}

/// The Java classpath that runs ZooKeeper and Curator, or `None` after a SKIPPED line.
pub fn classpath_from_env(test: &str) -> Option<String> {
    env_or_skip(test, "TENURE_TEST_ZK_CLASSPATH")
}

/// `host:port` of a `zk://` URL.
pub fn hosts(url: &str) -> &str {
    url.trim_start_matches("zk://")
}

/// An operator's view of the ensemble (`zkCli.sh`).
pub struct Admin(zk::Client);

impl Admin {
    /// Connects to the ensemble at `url`.
    pub async fn connect(url: &str) -> Admin {
        let client = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(hosts(url))
            .await
            .expect("admin connection to ZooKeeper");
        Admin(client)
    }

    /// The children of `/<name>`, in sequence order (node names).
    pub async fn children(&self, name: &str) -> Vec<String> {
        let path = format!("/{}", name.trim_start_matches('/'));
        let mut children = match self.0.list_children(&path).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => panic!("admin list {path}: {e}"),
        };
        children.sort_by_key(|c| c[c.len().saturating_sub(10)..].to_string());
        children
    }

    /// Waits until `/<name>` has `n` children; returns them.
    pub async fn wait_children(&self, name: &str, n: usize) -> Vec<String> {
        crate::support::wait_for(&format!("{n} children under {name}"), PATIENCE, || async {
            let c = self.children(name).await;
            (c.len() == n).then_some(c)
        })
        .await
    }

    /// Whether `path` exists.
    pub async fn exists(&self, path: &str) -> bool {
        self.0
            .check_stat(path)
            .await
            .expect("admin exists")
            .is_some()
    }

    /// The czxid of `path`.
    pub async fn czxid(&self, path: &str) -> u64 {
        let stat = self.0.check_stat(path).await.expect("admin exists");
        stat.expect("node exists").czxid as u64
    }

    /// Deletes `path`, as an administrator would.
    pub async fn delete(&self, path: &str) {
        self.0.delete(path, None).await.expect("admin delete");
    }
}

/// The Curator peer, compiled once per test run.
pub struct Curator {
    classpath: String,
    connect: String,
}

impl Curator {
    /// Compiles the peer (once) and prepares to run it against `url`.
    pub fn new(classpath: &str, url: &str) -> Curator {
        static CLASSES: OnceLock<PathBuf> = OnceLock::new();
        let classes = CLASSES.get_or_init(|| compile(classpath));
        Curator {
            classpath: format!("{}:{classpath}", classes.display()),
            connect: hosts(url).to_string(),
        }
    }

    /// Starts the peer in `mode` on lock or latch `path` with `args` (see CuratorPeer.java).
    pub fn spawn(&self, mode: &str, path: &str, args: &[&str]) -> Process {
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(&self.classpath)
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg("CuratorPeer")
            .args([mode, &self.connect, path])
            .args(args);
        Process::spawn(&format!("Curator peer ({mode})"), cmd)
    }
}

/// Compiles the peer into the target directory's scratch space (reused, not leaked, across
/// runs; javac overwrites it).
fn compile(classpath: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("curator-peer");
    std::fs::create_dir_all(&out).expect("create class dir");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/java/CuratorPeer.java");
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
}

/// A standalone ZooKeeper of this test's own, on a free loopback port in a temporary
/// directory, so that the test can freeze it (SIGSTOP) without disturbing other tests.
/// Dropping it (also while unwinding from a panic) resumes it, kills it and removes its
/// directory.
pub struct PrivateZk {
    child: Child,
    dir: PathBuf,
    /// `zk://127.0.0.1:PORT`
    pub url: String,
}

impl PrivateZk {
    /// Starts ZooKeeper with `classpath` and waits until it answers.
    pub async fn start(classpath: &str) -> PrivateZk {
        let dir = std::env::temp_dir().join(format!(
            "tenure-test-zk-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(dir.join("data")).expect("create temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind a loopback port")
            .port();
        let config = format!(
            "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n\
             4lw.commands.whitelist=wchp\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("zoo.cfg"), config).expect("write zoo.cfg");
        let log = std::fs::File::create(dir.join("zk.log")).expect("create log");
        let child = Command::new("java")
            .arg("-cp")
            .arg(classpath)
            .arg("-Dzookeeper.admin.enableServer=false")
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn ZooKeeper");
        let zk = PrivateZk {
            child,
            dir,
            url: format!("zk://127.0.0.1:{port}"),
        };
        zk.wait_ready().await;
        zk
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let probe = zk::Client::connector()
                .with_session_timeout(Duration::from_secs(2))
                .with_fail_eagerly()
                .connect(hosts(&self.url));
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private ZooKeeper not ready within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's watches by path (`wchp`): each watched path with the sessions watching it.
    pub fn watches_by_path(&self) -> std::collections::BTreeMap<String, usize> {
        use std::io::{Read as _, Write as _};
        let addr = hosts(&self.url).to_string();
        let mut conn = std::net::TcpStream::connect(&addr).expect("connect for wchp");
        conn.write_all(b"wchp").expect("send wchp");
        let mut text = String::new();
        conn.read_to_string(&mut text).expect("read wchp");
        let mut watches = std::collections::BTreeMap::new();
        let mut path = None;
        for line in text.lines() {
            if line.starts_with('/') {
                path = Some(line.to_string());
                watches.insert(line.to_string(), 0);
            } else if let (Some(p), false) = (&path, line.trim().is_empty()) {
                *watches.get_mut(p).expect("path seen") += 1;
            }
        }
        watches
    }

    /// The server's process id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PrivateZk {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-s", "CONT", &pid]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
