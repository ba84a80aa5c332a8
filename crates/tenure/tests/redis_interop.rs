//! Interop with redis-py's `Lock` (the redis.io single-instance pattern) on the same key, in
//! both directions: redis-py holds → our `try_lock` fails and our `lock` waits, then gets it;
//! we hold → redis-py's non-blocking and `blocking_timeout` acquires fail, and a blocking one
//! gets the lock once we unlock.
//!
//! Needs `TENURE_TEST_REDIS_URL` and redis-py (`TENURE_TEST_REDIS_PY_PATH`, a PYTHONPATH entry
//! that `scripts/servers install` fills); skipped with a visible line otherwise.

mod redis_support;
mod support;

use std::process::Stdio;

use support::{skip, PATIENCE};
use tenure::{Error, Tenure};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A redis-py peer driven line by line over stdin/stdout.
const PEER: &str = r#"
import sys, redis
r = redis.Redis.from_url(sys.argv[1])
lock = None
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "hold":      # hold NAME TIMEOUT: blocking acquire
        lock = r.lock(cmd[1], timeout=float(cmd[2]))
        print("held" if lock.acquire(blocking=True) else "failed", flush=True)
    elif cmd[0] == "try":     # try NAME: non-blocking acquire
        l = r.lock(cmd[1], timeout=10)
        ok = l.acquire(blocking=False)
        if ok: lock = l
        print(ok, flush=True)
    elif cmd[0] == "wait":    # wait NAME BLOCKING_TIMEOUT
        l = r.lock(cmd[1], timeout=10)
        ok = l.acquire(blocking=True, blocking_timeout=float(cmd[2]))
        if ok: lock = l
        print(ok, flush=True)
    elif cmd[0] == "owned":
        print(lock.owned(), flush=True)
    elif cmd[0] == "release":
        lock.release()
        print("released", flush=True)
"#;

struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    async fn start(url: &str, py_path: Option<String>) -> Peer {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", PEER, url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(p) = py_path {
            cmd.env("PYTHONPATH", p);
        }
        let mut child = cmd.spawn().expect("spawn python3");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut peer = Peer {
            child,
            stdin,
            lines,
        };
        assert_eq!(peer.read().await, "ready");
        peer
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to peer");
    }

    async fn read(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("peer answers")
            .expect("read peer")
            .expect("peer exited")
    }

    async fn ask(&mut self, line: &str) -> String {
        self.send(line).await;
        self.read().await
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The test server and redis-py, or `None` (skipped).
async fn setup(test: &str) -> Option<(String, Peer)> {
    let Ok(url) = std::env::var("TENURE_TEST_REDIS_URL") else {
        return skip(test, "TENURE_TEST_REDIS_URL not set");
    };
    let py_path = std::env::var("TENURE_TEST_REDIS_PY_PATH").ok();
    let mut check = std::process::Command::new("python3");
    check.args(["-c", "import redis"]);
    if let Some(p) = &py_path {
        check.env("PYTHONPATH", p);
    }
    if !check.status().is_ok_and(|s| s.success()) {
        return skip(test, "redis-py not importable (TENURE_TEST_REDIS_PY_PATH)");
    }
    let peer = Peer::start(&url, py_path).await;
    Some((url, peer))
}

fn unique(what: &str) -> String {
    format!("tenure-test/interop-{what}-{:08x}", fastrand_u32())
}

fn fastrand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ std::process::id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_holds_we_fail_then_wait() {
    let Some((url, mut py)) = setup("redis_py_holds_we_fail_then_wait").await else {
        return;
    };
    let name = unique("py-holds");
    let tenure = Tenure::connect(&url).await.unwrap();
    let session = tenure.session().await.unwrap();
    assert_eq!(py.ask(&format!("hold {name} 5")).await, "held");
    match session.mutex(&name).unwrap().try_lock().await {
        Err(Error::Locked { holder, .. }) => assert_eq!(holder.as_deref(), Some(name.as_str())),
        other => panic!("expected Locked, got {other:?}"),
    }
    let waiter = tokio::spawn({
        let m = session.mutex(&name).unwrap();
        async move { m.lock().await }
    });
    // redis-py still owns its lock while we wait: we did not take it over.
    assert_eq!(py.ask("owned").await, "True");
    assert!(!waiter.is_finished());
    assert_eq!(py.ask("release").await, "released");
    let guard = tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("we get the lock after redis-py releases it")
        .unwrap()
        .unwrap();
    assert_eq!(py.ask(&format!("try {name}")).await, "False");
    guard.unlock().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_hold_redis_py_fails_then_gets_it() {
    let Some((url, mut py)) = setup("we_hold_redis_py_fails_then_gets_it").await else {
        return;
    };
    let name = unique("we-hold");
    let tenure = Tenure::connect(&url).await.unwrap();
    let session = tenure.session().await.unwrap();
    let guard = session.mutex(&name).unwrap().lock().await.unwrap();
    assert_eq!(py.ask(&format!("try {name}")).await, "False");
    assert_eq!(py.ask(&format!("wait {name} 0.5")).await, "False");
    // A blocking redis-py acquire gets it once we unlock.
    py.send(&format!("wait {name} 20")).await;
    guard.unlock().await.unwrap();
    assert_eq!(py.read().await, "True");
    assert_eq!(py.ask("owned").await, "True");
    assert!(matches!(
        session.mutex(&name).unwrap().try_lock().await,
        Err(Error::Locked { .. })
    ));
    assert_eq!(py.ask("release").await, "released");
    let again = session.mutex(&name).unwrap().try_lock().await.unwrap();
    again.unlock().await.unwrap();
}
