//! A 3-member cluster for one test, through `scripts/cluster` (the same script a developer uses
//! by hand): brought up on free ports in a scratch directory, torn down when dropped — also
//! while unwinding from a failed assertion.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::TempDir;

pub struct Cluster {
    /// `scripts/cluster`'s DIR.
    dir: PathBuf,
    env: HashMap<String, String>,
    // Dropped after `Drop::drop` has stopped the members.
    _scratch: TempDir,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster")
}

/// Runs `scripts/cluster ARGS...`, returning its stdout; panics with its stderr on failure.
fn cluster(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("run scripts/cluster");
    assert!(
        out.status.success(),
        "scripts/cluster {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of an `export NAME='VALUE'` line (`'\''` stands for a quote).
fn unquote(v: &str) -> String {
    v.strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(v)
        .replace("'\\''", "'")
}

impl Cluster {
    /// `scripts/cluster up --free-ports DIR KIND`.
    pub fn up(kind: &str) -> Cluster {
        let scratch = TempDir::new("tenure-cluster-it");
        let dir = scratch.path("cluster");
        let mut cluster = Cluster {
            dir,
            env: HashMap::new(),
            _scratch: scratch,
        };
        cluster.run(&["up", "--free-ports", cluster.dir_str(), kind]);
        let env = std::fs::read_to_string(cluster.dir.join("env")).expect("DIR/env");
        for line in env.lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                cluster.env.insert(k.to_string(), unquote(v));
            }
        }
        cluster
    }

    fn dir_str(&self) -> &str {
        self.dir.to_str().expect("utf-8 temp dir")
    }

    fn run(&self, args: &[&str]) -> String {
        cluster(args)
    }

    fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from DIR/env"))
    }

    /// The URL of all three members, for `tenure --url`.
    pub fn url(&self) -> &str {
        self.var("TENURE_CLUSTER_URL")
    }

    /// Whether `isolate` works here (a private network namespace, run as root).
    pub fn partitions(&self) -> bool {
        self.var("TENURE_CLUSTER_PARTITIONS") == "1"
    }

    pub fn leader(&self) -> String {
        self.verb("leader", &[]).trim().to_string()
    }

    /// Some member other than the leader.
    pub fn follower(&self) -> String {
        let leader = self.leader();
        ["m1", "m2", "m3"]
            .into_iter()
            .find(|m| *m != leader)
            .map(str::to_string)
            .expect("three members")
    }

    fn verb(&self, verb: &str, rest: &[&str]) -> String {
        let mut args = vec![verb, self.dir_str()];
        args.extend_from_slice(rest);
        self.run(&args)
    }

    pub fn kill(&self, m: &str) {
        self.verb("kill", &[m]);
    }
    pub fn start(&self, m: &str) {
        self.verb("start", &[m]);
    }
    pub fn stop(&self, m: &str) {
        self.verb("stop", &[m]);
    }
    pub fn cont(&self, m: &str) {
        self.verb("cont", &[m]);
    }
    pub fn isolate(&self, m: &str, from: &str) {
        self.verb("isolate", &[m, from]);
    }
    pub fn heal(&self) {
        self.verb("heal", &[]);
    }
    /// Makes `m` the leader (etcd only).
    pub fn move_leader(&self, m: &str) {
        self.verb("move-leader", &[m]);
    }
    pub fn restart_all(&self) {
        self.verb("restart-all", &[]);
    }

    /// `scripts/cluster status`: member → the rest of its line (`up role=... term=...`).
    pub fn status(&self) -> HashMap<String, String> {
        self.verb("status", &[])
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(m, rest)| (m.to_string(), rest.to_string()))
            .collect()
    }

    /// Waits (bounded) until `m` no longer follows any leader: proof that a cut really cuts.
    pub fn wait_leaderless(&self, m: &str) {
        self.wait(&format!("{m} to lose its leader"), || {
            self.status()
                .get(m)
                .is_some_and(|s| s.contains("role=none"))
        });
    }

    /// Waits (bounded) until the leader is someone other than `old`.
    pub fn wait_new_leader(&self, old: &str) {
        self.wait(&format!("a leader other than {old}"), || {
            let out = Command::new(script())
                .args(["leader", self.dir_str()])
                .output()
                .expect("run scripts/cluster");
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() != old
        });
    }

    fn wait(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "cluster: {what}: not within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["down", self.dir_str()])
            .output();
    }
}
