//! Freezing the test server as if its machine hung: every process of that one cluster
//! stopped with SIGSTOP, its connections left open.

use std::process::Command;
use std::time::{Duration, Instant};

use super::skip;

/// The postmaster of `scripts/servers`' cluster (`TENURE_TEST_POSTGRES_PID`), or `None` after
/// a SKIPPED line.
pub fn postmaster_from_env(test: &str) -> Option<u32> {
    let pid = skip::env_or_skip(test, "TENURE_TEST_POSTGRES_PID")?;
    match pid.parse() {
        Ok(pid) => Some(pid),
        Err(_) => skip::skip(test, &format!("TENURE_TEST_POSTGRES_PID={pid:?} is no pid")),
    }
}

/// The cluster's processes, stopped. Dropping it (also while unwinding from a failed
/// assertion) resumes them: the server is shared by the test binaries that run after this one.
pub struct Frozen {
    pids: Vec<u32>,
}

/// Stops the postmaster first, so that it forks no new backend, then every process it
/// started: each backend calls setsid(), so the postmaster's process group does not reach
/// them, and a postmaster alone stopped leaves its backends answering.
pub fn freeze(postmaster: u32) -> Frozen {
    let mut frozen = Frozen {
        pids: vec![postmaster],
    };
    kill("STOP", &frozen.pids);
    // SIGSTOP lands asynchronously: a postmaster not yet stopped could still fork.
    wait_stopped(postmaster);
    let children = children_of(postmaster);
    frozen.pids.extend(&children);
    if !children.is_empty() {
        kill("STOP", &children);
    }
    // Until a backend has stopped it may still answer a query sent "after" the freeze.
    for &pid in &children {
        wait_stopped(pid);
    }
    frozen
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // A child that exited meanwhile makes kill(1) fail for it alone; the rest resume.
        let _ = Command::new("kill")
            .args(["-s", "CONT"])
            .args(self.pids.iter().map(u32::to_string))
            .status();
    }
}

fn kill(sig: &str, pids: &[u32]) {
    let status = Command::new("kill")
        .args(["-s", sig])
        .args(pids.iter().map(u32::to_string))
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {sig} {pids:?} failed");
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| stat_field(child, 1).is_some_and(|ppid| ppid == pid.to_string()))
        .collect()
}

/// Field `n` after the command name of /proc/PID/stat (0: state, 1: parent pid).
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(n).map(str::to_string)
}

/// Waits until `pid` is in the stopped state (`T`), or has exited.
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match stat_field(pid, 0).as_deref() {
            None | Some("T" | "t") => return,
            Some(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL process {pid} did not stop"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
