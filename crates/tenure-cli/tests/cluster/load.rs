//! The load: N workers, each running `tenure --url URL --ttl 2s lock NAME -- <this binary>
//! record` in a loop, as a user's cron jobs or scripts would; and the recorder that is the
//! critical section.
//!
//! The recorder logs `start ID TOKEN T`, reads the shared counter, holds the lock a moment,
//! writes the counter back incremented, and logs `end ID TOKEN T`: the end line acknowledges
//! the increment, so the checker can tell a lost acknowledged write from an interrupted one.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::history::{parse_sections, History, Invocation};

/// How long a critical section holds the lock.
const HOLD: Duration = Duration::from_millis(30);

/// Nanoseconds of CLOCK_MONOTONIC: one clock for every process on the machine.
pub fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    u64::try_from(ts.tv_sec).expect("non-negative") * 1_000_000_000
        + u64::try_from(ts.tv_nsec).expect("non-negative")
}

/// Appends one line with one write(2) on an O_APPEND file, so that lines of concurrent
/// writers never interleave.
fn append(path: &Path, line: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// The critical section (`<this binary> record`, run by `tenure lock`).
pub fn record() -> ExitCode {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let (id, token) = (var("CLUSTER_SECTION_ID"), var("TENURE_FENCING_TOKEN"));
    let (log, counter) = (
        PathBuf::from(var("CLUSTER_HISTORY")),
        PathBuf::from(var("CLUSTER_COUNTER")),
    );
    if id.is_empty() || token.is_empty() || log.as_os_str().is_empty() {
        eprintln!(
            "record: CLUSTER_SECTION_ID, TENURE_FENCING_TOKEN and CLUSTER_HISTORY must be set"
        );
        return ExitCode::from(2);
    }
    let step = || -> std::io::Result<()> {
        append(&log, &format!("start {id} {token} {}\n", now()))?;
        let mut text = String::new();
        match std::fs::File::open(&counter) {
            Ok(mut f) => {
                f.read_to_string(&mut text)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let n: u64 = text.trim().parse().unwrap_or(0);
        std::thread::sleep(HOLD);
        // Replaced whole (rename), so a section stopped mid-write never leaves half a number.
        let tmp = counter.with_extension(format!("tmp-{id}"));
        std::fs::write(&tmp, format!("{}\n", n + 1))?;
        std::fs::rename(&tmp, &counter)?;
        append(&log, &format!("end {id} {token} {}\n", now()))
    };
    match step() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("record: {e}");
            ExitCode::from(3)
        }
    }
}

/// N workers taking turns on one lock until [`Load::finish`].
pub struct Load {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    invocations: Arc<Mutex<Vec<Invocation>>>,
    /// Pids of the `tenure` processes running now, to kill if a worker hangs.
    running: Arc<Mutex<Vec<u32>>>,
}

impl Load {
    /// Starts `n` workers against `url`, keeping their history in `dir`.
    pub fn start(url: &str, dir: &Path, name: &str, n: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let invocations = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(Mutex::new(Vec::new()));
        let exe = std::env::current_exe().expect("current exe");
        let workers = (0..n)
            .map(|w| {
                let (stop, invocations, running) =
                    (stop.clone(), invocations.clone(), running.clone());
                let (url, name, exe, dir) = (
                    url.to_string(),
                    name.to_string(),
                    exe.clone(),
                    dir.to_path_buf(),
                );
                std::thread::spawn(move || {
                    let mut seq = 0;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        let id = format!("w{w}-{seq}");
                        let inv = invoke(&url, &name, &exe, &dir, &id, &running);
                        let failed = ![0, 75].contains(&inv.code);
                        invocations.lock().expect("lock").push(inv);
                        if failed {
                            // As a retrying script would: not a hot loop against a dead store.
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                })
            })
            .collect();
        Load {
            dir: dir.to_path_buf(),
            stop,
            workers,
            invocations,
            running,
        }
    }

    /// Stops starting new invocations, waits (bounded) for the running ones, and returns the
    /// history without faults or stretches filled in.
    pub fn finish(self) -> History {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.workers.iter().any(|w| !w.is_finished()) {
            if std::time::Instant::now() > deadline {
                for pid in self.running.lock().expect("lock").iter() {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for w in self.workers {
            w.join().expect("worker thread");
        }
        let log = std::fs::read_to_string(self.dir.join("history")).unwrap_or_default();
        let counter = std::fs::read_to_string(self.dir.join("counter"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let invocations = std::mem::take(&mut *self.invocations.lock().expect("lock"));
        History {
            sections: parse_sections(&log),
            invocations,
            faults: Vec::new(),
            counter,
            baseline: (0, 0),
            faulted: (0, 0),
        }
    }
}

/// One `tenure lock` run to its end.
fn invoke(
    url: &str,
    name: &str,
    exe: &Path,
    dir: &Path,
    id: &str,
    running: &Mutex<Vec<u32>>,
) -> Invocation {
    let child = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .env_remove("TENURE_URL")
        .env_remove("RUST_LOG")
        .args([
            "--url", url, "--ttl", "2s", "lock", "--wait", "40s", name, "--",
        ])
        .arg(exe)
        .arg("record")
        .env("CLUSTER_SECTION_ID", id)
        .env("CLUSTER_HISTORY", dir.join("history"))
        .env("CLUSTER_COUNTER", dir.join("counter"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tenure");
    let pid = child.id();
    running.lock().expect("lock").push(pid);
    let out = child.wait_with_output().expect("wait for tenure");
    let exited = now();
    running.lock().expect("lock").retain(|p| *p != pid);
    let code = match (out.status.code(), out.status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    Invocation {
        id: id.to_string(),
        exited,
        code,
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
    }
}
