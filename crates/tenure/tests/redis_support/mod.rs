//! Helpers for the Redis tests: which servers the environment provides (and the SKIPPED line
//! when it provides none), private `redis-server` processes on free loopback ports that are
//! killed on drop, and a tiny RESP client for an operator's view. Skipping and waiting are
//! `tests/support`'s.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use super::support::skip;

/// Sends one inline command (space-separated words without spaces inside) to a Redis server
/// at `127.0.0.1:port` and returns the first reply line, or `None` if nobody answers.
pub fn resp(port: u16, command: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut line = String::new();
    let mut r = BufReader::new(s);
    r.read_line(&mut line).ok()?;
    if line.starts_with('$') && line.trim() != "$-1" {
        line.clear();
        r.read_line(&mut line).ok()?;
    }
    Some(line.trim_end().to_string())
}

/// How many commands the server at `port` has run, by its own count (`INFO commandstats`:
/// the sum of every command's `calls`, commands run by scripts included).
pub fn commands_run(port: u16) -> Option<u64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"INFO commandstats\r\n").ok()?;
    let mut r = BufReader::new(s);
    let mut header = String::new();
    r.read_line(&mut header).ok()?;
    let len: usize = header.trim_end().strip_prefix('$')?.parse().ok()?;
    let mut body = vec![0; len];
    std::io::Read::read_exact(&mut r, &mut body).ok()?;
    let text = String::from_utf8(body).ok()?;
    let calls = text.lines().filter(|l| l.starts_with("cmdstat_")).map(|l| {
        l.split(&[':', ','][..])
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    });
    Some(calls.sum())
}

/// Whether `key` exists on the server at `port`.
pub fn exists(port: u16, key: &str) -> bool {
    resp(port, &format!("EXISTS {key}")).as_deref() == Some(":1")
}

/// Makes the server at `port` a replica of a master that does not exist (port 1 on loopback,
/// where nobody listens): it keeps its data and answers reads, but refuses every write, and
/// every script that writes, with `READONLY` — a transient fault that is never applied, so a
/// client retries it. [`accept_writes`] undoes it; the data is untouched (a replica flushes
/// only once it has synced with its master, which never answers).
pub fn refuse_writes(port: u16) {
    assert_eq!(
        resp(port, "REPLICAOF 127.0.0.1 1").as_deref(),
        Some("+OK"),
        "REPLICAOF on {port}"
    );
}

/// Makes the server at `port` a master again after [`refuse_writes`].
pub fn accept_writes(port: u16) {
    assert_eq!(
        resp(port, "REPLICAOF NO ONE").as_deref(),
        Some("+OK"),
        "REPLICAOF NO ONE on {port}"
    );
}

/// A `redis-server` this test started; killed (and reaped) on drop.
pub struct RedisProcess {
    pub port: u16,
    child: Option<Child>,
    bin: String,
    extra: Vec<String>,
}

impl RedisProcess {
    /// The server's process id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server now, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts it again on the same port, empty (no persistence: as a
    /// master that crashed and came back without its data); waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn().await,
            "redis-server did not come back on port {}",
            self.port
        );
    }

    /// Starts the server on its port; whether it answers PING within 10 s.
    async fn spawn(&mut self) -> bool {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A password-protected server answers PING with -NOAUTH: up all the same.
            if resp(self.port, "PING").is_some_and(|l| l == "+PONG" || l.starts_with("-NOAUTH")) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `redis-server` binary: `TENURE_TEST_REDIS_BIN`, else the one on `PATH`; else `None`
/// after a SKIPPED line.
pub fn redis_bin_or_skip(test: &str) -> Option<String> {
    redis_bin().or_else(|| {
        skip(
            test,
            "no redis-server (TENURE_TEST_REDIS_BIN unset, none on PATH)",
        )
    })
}

fn redis_bin() -> Option<String> {
    if let Ok(b) = std::env::var("TENURE_TEST_REDIS_BIN") {
        return Some(b);
    }
    let out = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Starts `n` Redis servers on free loopback ports and waits until each answers PING.
pub async fn start_servers(bin: &str, n: usize) -> Vec<RedisProcess> {
    start_servers_with(bin, n, &[]).await
}

/// Like [`start_servers`], with extra `redis-server` arguments (e.g. `--requirepass`).
pub async fn start_servers_with(bin: &str, n: usize, extra: &[&str]) -> Vec<RedisProcess> {
    let mut servers = Vec::new();
    while servers.len() < n {
        let mut p = RedisProcess {
            port: free_port(),
            child: None,
            bin: bin.to_string(),
            extra: extra.iter().map(ToString::to_string).collect(),
        };
        if p.spawn().await {
            servers.push(p);
        } else {
            p.kill(); // lost the port race; try another
        }
    }
    servers
}
