//! `tenure lock --shared` / `--exclusive` end to end against real etcd servers (3.4 and 3.5
//! from `scripts/test`), every participant a separate process: shared holders overlap, an
//! exclusive one is alone, the plain mutex of the same name is excluded by readers, and the
//! usual options and exit codes hold on both sides.

mod support;

use std::process::Command;

use support::{
    code, etcd, per_version, run, spawn, stderr, stdout, unique, wait_for_file, wait_until, Etcd,
    TempDir, HOLD_UNTIL_RELEASED,
};

per_version!(
    shared_holders_overlap_and_exclusive_waits,
    exclusive_is_alone_and_gives_the_conflict_code,
    interrupted_shared_waiter_leaves_no_key,
    shared_and_exclusive_together_is_a_usage_error,
);

/// `tenure lock OPTS NAME -- sh -c SCRIPT`.
fn lock_sh(etcd: &Etcd, opts: &[&str], name: &str, script: &str) -> Command {
    let mut cmd = etcd.tenure();
    cmd.arg("lock")
        .args(opts)
        .arg(name)
        .args(["--", "sh", "-c", script]);
    cmd
}

/// Holds `name` with `opts` in a separate tenure process until the release file exists.
fn hold(
    etcd: &Etcd,
    dir: &TempDir,
    tag: &str,
    opts: &[&str],
    name: &str,
) -> (support::Proc, std::path::PathBuf) {
    let (ready, release) = (
        dir.path(&format!("{tag}-ready")),
        dir.path(&format!("{tag}-release")),
    );
    let holder = spawn(
        lock_sh(etcd, opts, name, HOLD_UNTIL_RELEASED)
            .env("READY", &ready)
            .env("RELEASE", &release),
    );
    wait_for_file(&ready);
    (holder, release)
}

/// Two `--shared` holders at once (the second one's `-n` succeeds beside the first); an
/// `--exclusive` waiter queued behind them runs only after both left, and a `--shared` that
/// arrives behind it waits for it (arrival order).
fn shared_holders_overlap_and_exclusive_waits(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("shared"));
    let prefix = format!("{name}/");
    let (first, release_first) = hold(&etcd, &dir, "first", &["--shared"], &name);
    let (second, release_second) = hold(&etcd, &dir, "second", &["-s", "-n"], &name);
    let log = dir.path("log");
    let writer = spawn(
        lock_sh(
            &etcd,
            &["--exclusive"],
            &name,
            r#"echo "writer $TENURE_FENCING_TOKEN" >> "$LOG""#,
        )
        .env("LOG", &log),
    );
    wait_until("the writer to queue", || etcd.keys(&prefix).len() == 3);
    let late_reader = spawn(
        lock_sh(
            &etcd,
            &["--shared"],
            &name,
            r#"echo "reader $TENURE_FENCING_TOKEN" >> "$LOG""#,
        )
        .env("LOG", &log),
    );
    wait_until("the late reader to queue", || etcd.keys(&prefix).len() == 4);
    assert!(!log.exists(), "someone ran beside the shared holders");
    std::fs::write(&release_first, "").expect("release");
    assert_eq!(code(&first.finish()), 0);
    std::fs::write(&release_second, "").expect("release");
    assert_eq!(code(&second.finish()), 0);
    let out = writer.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = late_reader.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("writer ") && lines[1].starts_with("reader "),
        "{text}"
    );
    let token = |line: &str| -> u64 {
        line.split(' ')
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    assert!(token(lines[0]) < token(lines[1]), "{text}");
    assert!(etcd.keys(&prefix).is_empty());
}

/// An `--exclusive` holder keeps everyone out: `--shared -n`, `--exclusive -n`, the plain
/// mutex `-n` and `--shared -w` all exit with the conflict code, leaving no key; a plain
/// mutex holder keeps `--shared` out too.
fn exclusive_is_alone_and_gives_the_conflict_code(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("exclusive"));
    let prefix = format!("{name}/");
    let (holder, release) = hold(&etcd, &dir, "writer", &["-x"], &name);
    for (opts, expected, says) in [
        (&["--shared", "-n"][..], 1, "locked by another session"),
        (
            &["--exclusive", "-n", "-E", "42"][..],
            42,
            "locked by another session",
        ),
        (&["-n"][..], 1, "locked by another session"),
        (&["--shared", "-w", "300ms"][..], 1, "timed out"),
    ] {
        let out = run(&mut lock_sh(
            &etcd,
            opts,
            &name,
            "echo must not run; exit 99",
        ));
        assert_eq!(code(&out), expected, "{opts:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{opts:?}: {}", stderr(&out));
    }
    assert_eq!(etcd.keys(&prefix).len(), 1, "only the holder's key");
    std::fs::write(&release, "").expect("release");
    assert_eq!(code(&holder.finish()), 0);
    // The plain mutex (etcdctl lock's) keeps readers out as a writer would.
    let (mutex, release) = hold(&etcd, &dir, "mutex", &[], &name);
    let out = run(&mut lock_sh(&etcd, &["-s", "-n"], &name, "exit 99"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    std::fs::write(&release, "").expect("release");
    assert_eq!(code(&mutex.finish()), 0);
    let out = run(&mut lock_sh(
        &etcd,
        &["-s", "-n"],
        &name,
        "echo $TENURE_LOCK_KEY",
    ));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("{name}/read/")),
        "{}",
        stdout(&out)
    );
    assert!(etcd.keys(&prefix).is_empty());
}

/// A `--shared` waiter interrupted while queued behind an `--exclusive` holder exits 130 and
/// leaves no key.
fn interrupted_shared_waiter_leaves_no_key(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("interrupt-shared"));
    let prefix = format!("{name}/");
    let (holder, release) = hold(&etcd, &dir, "writer", &["--exclusive"], &name);
    let waiter = spawn(&mut lock_sh(&etcd, &["--shared"], &name, "exit 99"));
    wait_until("the reader to queue", || etcd.keys(&prefix).len() == 2);
    waiter.signal(libc::SIGINT);
    let out = waiter.finish();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(
        etcd.keys(&prefix).len(),
        1,
        "the reader's key was left behind"
    );
    std::fs::write(&release, "").expect("release");
    assert_eq!(code(&holder.finish()), 0);
    assert!(etcd.keys(&prefix).is_empty());
}

fn shared_and_exclusive_together_is_a_usage_error(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let name = unique("both");
    let out = run(&mut lock_sh(
        &etcd,
        &["--shared", "--exclusive"],
        &name,
        "exit 99",
    ));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(etcd.keys(&format!("{name}/")).is_empty());
}
