//! Helpers for tests that run the real `tenure` binary as separate processes: which etcd
//! servers `scripts/test` provides (and the SKIPPED line when it provides none), `etcdctl` as
//! an operator, child processes that cannot hang a test, and waiting for observable outcomes.
//!
//! Waiting is always for an outcome (a file appearing, a key in the store, a process exiting),
//! polled with a bound far above the expected time, so the bound only stops a hang.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unused_macros, unused_imports)]

#[path = "../../../tenure/tests/support/scratch.rs"]
mod scratch;
#[path = "../../../tenure/tests/support/skip.rs"]
mod skip;

pub use scratch::TempDir;
pub use skip::{env_or_skip, skip};

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bounds every wait; far above any expected time, so it only stops a hang.
pub const PATIENCE: Duration = Duration::from_secs(60);

const POLL: Duration = Duration::from_millis(20);

/// Defines, for each listed `fn scenario(tag: &str, test: &str)`, one test per etcd version:
/// `etcd34::scenario` and `etcd35::scenario`.
macro_rules! per_version {
    ($($scenario:ident),* $(,)?) => {
        mod etcd34 {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario("34", concat!("etcd34::", stringify!($scenario)))
                }
            )*
        }
        mod etcd35 {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario("35", concat!("etcd35::", stringify!($scenario)))
                }
            )*
        }
    };
}
pub(crate) use per_version;

/// One etcd server from `scripts/test`, and `etcdctl` to inspect it as an operator would.
pub struct Etcd {
    /// `etcd://127.0.0.1:PORT`, for `tenure --url`.
    pub url: String,
    /// `http://127.0.0.1:PORT`, for etcdctl's `--endpoints`.
    pub endpoint: String,
    /// Path of the matching etcdctl.
    pub etcdctl: String,
}

/// The etcd of version `tag` (`34` or `35`) with its etcdctl, or `None` (skipped).
pub fn etcd(tag: &str, test: &str) -> Option<Etcd> {
    Some(Etcd {
        url: env_or_skip(test, &format!("TENURE_TEST_ETCD{tag}_URL"))?,
        endpoint: env_or_skip(test, &format!("TENURE_TEST_ETCD{tag}_ENDPOINT"))?,
        etcdctl: env_or_skip(test, &format!("TENURE_TEST_ETCDCTL{tag}"))?,
    })
}

impl Etcd {
    /// `tenure --url <this etcd>`.
    pub fn tenure(&self) -> Command {
        tenure_at(&self.url)
    }

    /// `etcdctl --endpoints <this etcd>`, speaking v3 whatever the environment says.
    pub fn etcdctl(&self) -> Command {
        let mut cmd = Command::new(&self.etcdctl);
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.endpoint);
        cmd
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = run(self
            .etcdctl()
            .args(["get", "--prefix", prefix, "--keys-only"]));
        assert!(out.status.success(), "etcdctl get: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Revokes the lease whose id is the hex suffix of a holder key (`NAME/<lease hex>`).
    pub fn revoke_lease_of(&self, key: &str) {
        let lease = key.rsplit('/').next().unwrap_or_default();
        let out = run(self.etcdctl().args(["lease", "revoke", lease]));
        assert!(
            out.status.success(),
            "etcdctl lease revoke: {}",
            stderr(&out)
        );
    }
}

/// The `tenure` binary under test, pointed at `url` and deaf to the caller's TENURE_URL.
pub fn tenure_at(url: &str) -> Command {
    let mut cmd = tenure();
    cmd.arg("--url").arg(url);
    cmd
}

/// The `tenure` binary under test, with no URL from the environment.
pub fn tenure() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tenure"));
    cmd.env_remove("TENURE_URL").env_remove("RUST_LOG");
    cmd
}

/// A random suffix.
pub fn random() -> u64 {
    RandomState::new().hash_one(Instant::now())
}

/// A lock name unique to this run: `tenure-cli-it/<what>-<random>`.
pub fn unique(what: &str) -> String {
    format!("tenure-cli-it/{what}-{:016x}", random())
}

/// Runs `cmd` to completion (bounded), capturing its output.
pub fn run(cmd: &mut Command) -> Output {
    spawn(cmd).finish()
}

/// A running process with captured stdout/stderr; killed if the test panics.
pub struct Proc {
    child: Option<Child>,
    pub pid: i32,
}

pub fn spawn(cmd: &mut Command) -> Proc {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = i32::try_from(child.id()).expect("pid");
    Proc {
        child: Some(child),
        pid,
    }
}

impl Proc {
    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0, "kill {}", self.pid);
    }

    /// Waits (bounded) for the process to exit, returning its output.
    pub fn finish(mut self) -> Output {
        let child = self.child.take().expect("not finished yet");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(out) => out.expect("wait"),
            Err(_) => {
                // SAFETY: as above.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                panic!("process {} did not exit within {PATIENCE:?}", self.pid);
            }
        }
    }

    /// The first line the process prints on stdout (bounded).
    pub fn first_line(&mut self) -> String {
        self.lines().next()
    }
}

/// The lines a process prints on stdout, read as they come.
pub struct Lines(mpsc::Receiver<String>);

impl Lines {
    /// The next line (bounded); panics if the process closed stdout first.
    pub fn next(&self) -> String {
        self.0.recv_timeout(PATIENCE).expect("a line on stdout")
    }
}

impl Proc {
    /// Its stdout as lines; call once, instead of [`Proc::first_line`].
    pub fn lines(&mut self) -> Lines {
        let stdout = self
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }
}

/// Stdout and stderr together, for looking for what must never be printed.
pub fn all_output(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The exit code as a shell reports it: the code, or 128+N for death by signal N.
pub fn code(out: &Output) -> i32 {
    match (out.status.code(), out.status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => unreachable!("a finished process has a code or a signal"),
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first row of the table a command printed (the line after its header; empty if none).
pub fn first_row(out: &Output) -> String {
    stdout(out).lines().nth(1).unwrap_or_default().to_string()
}

/// Polls `cond` until it holds; panics after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(POLL);
    }
}

/// Waits until `path` exists.
pub fn wait_for_file(path: &Path) {
    wait_until(&format!("{} to appear", path.display()), || path.exists());
}

/// Whether process `pid` is gone (or only a zombie nobody has reaped yet).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Checks a log of `start WHO N` / `end WHO N` lines: each start is followed by its own end
/// before any other start (no two holders at once), and each WHO's numbers strictly increase.
pub fn assert_serial(log: &str, holders: usize) {
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2 * holders, "log:\n{log}");
    let mut last: HashMap<&str, u64> = HashMap::new();
    for pair in lines.chunks(2) {
        let start = log_entry(pair[0], "start", log);
        assert_eq!(
            start,
            log_entry(pair[1], "end", log),
            "interleaved holders; log:\n{log}"
        );
        let (who, n) = start;
        let previous = last.insert(who, n);
        assert!(
            previous.map_or(true, |p| p < n),
            "{who}'s numbers do not increase; log:\n{log}"
        );
    }
}

/// Parses `WHAT WHO N`.
fn log_entry<'a>(line: &'a str, what: &str, log: &str) -> (&'a str, u64) {
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        [w, who, n] if w == what => match n.parse() {
            Ok(n) => (who, n),
            Err(_) => panic!("bad number in {line:?}; log:\n{log}"),
        },
        _ => panic!("unexpected line {line:?}; log:\n{log}"),
    }
}

/// A shell snippet that says it holds (touches `$READY`), then holds until `$RELEASE` exists.
pub const HOLD_UNTIL_RELEASED: &str =
    r#"touch "$READY"; while [ ! -e "$RELEASE" ]; do sleep 0.02; done"#;
