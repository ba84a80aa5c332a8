//! `tenure lock --permits N` (a semaphore: GNU parallel's `sem -j N` across machines),
//! `tenure status` on a semaphore and `tenure demo semaphore`, end to end against real etcd
//! servers (3.4 and 3.5 from `scripts/test`), every participant a separate process.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{
    code, etcd, per_version, run, spawn, stderr, stdout, tenure, unique, wait_for_file, Etcd, Proc,
    TempDir, HOLD_UNTIL_RELEASED,
};

per_version!(
    permits_bound_the_commands_running_at_once,
    every_permit_held_gives_the_conflict_code,
    status_shows_holders_and_permits,
);

/// `tenure lock --permits N OPTS NAME -- sh -c SCRIPT`.
fn sem_sh(etcd: &Etcd, permits: u32, opts: &[&str], name: &str, script: &str) -> Command {
    let mut cmd = etcd.tenure();
    cmd.arg("lock")
        .arg("--permits")
        .arg(permits.to_string())
        .args(opts)
        .arg(name)
        .args(["--", "sh", "-c", script]);
    cmd
}

/// The most `start` lines of `log` not yet followed by their `end` at any point.
fn most_at_once(log: &str) -> usize {
    let (mut now, mut most) = (0usize, 0);
    for line in log.lines() {
        if line.starts_with("start") {
            now += 1;
            most = most.max(now);
        } else if line.starts_with("end") {
            now -= 1;
        }
    }
    most
}

/// Six commands under `--permits 2`: never more than two run at once (each logs `start`
/// after its permit was granted and `end` before it gives it back), each sees its permit in
/// its environment, tokens all differ, and nothing is left in the store.
fn permits_bound_the_commands_running_at_once(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-sem"), unique("sem"));
    let log = dir.path("log");
    let script = r#"echo "start $TENURE_FENCING_TOKEN $TENURE_PERMITS" >> "$LOG"; sleep 0.2; echo "end $TENURE_FENCING_TOKEN" >> "$LOG""#;
    let procs: Vec<Proc> = (0..6)
        .map(|_| spawn(sem_sh(&etcd, 2, &[], &name, script).env("LOG", &log)))
        .collect();
    for p in procs {
        let out = p.finish();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(text.lines().count(), 12, "{text}");
    let most = most_at_once(&text);
    assert!((1..=2).contains(&most), "{most} at once:\n{text}");
    let mut tokens: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("start"))
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(parts.get(2), Some(&"2"), "TENURE_PERMITS: {l}");
            parts[1]
        })
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 6, "{text}");
    assert!(etcd.keys(&format!("{name}/")).is_empty());
}

/// Holds one permit of `name` (of `permits`) in a separate process until its release file
/// is created.
fn hold(etcd: &Etcd, dir: &TempDir, name: &str, permits: u32, who: &str) -> (Proc, PathBuf) {
    let (ready, release) = (
        dir.path(&format!("{who}-ready")),
        dir.path(&format!("{who}-release")),
    );
    let holder = spawn(
        sem_sh(etcd, permits, &["--value", who], name, HOLD_UNTIL_RELEASED)
            .env("READY", &ready)
            .env("RELEASE", &release),
    );
    wait_for_file(&ready);
    (holder, release)
}

/// Both permits held: `-n` exits 1 (or `-E`'s code), `-w` exits 1 once it runs out, a client
/// with another count exits 2, and none leaves a key; once a permit is free, `-n` runs.
fn every_permit_held_gives_the_conflict_code(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-sem"), unique("sem-full"));
    let held = [
        hold(&etcd, &dir, &name, 2, "a"),
        hold(&etcd, &dir, &name, 2, "b"),
    ];
    let keys = etcd.keys(&format!("{name}/"));
    assert_eq!(keys.len(), 2, "{keys:?}");
    for (opts, expected) in [
        (&["-n"][..], 1),
        (&["-n", "-E", "7"][..], 7),
        (&["-w", "300ms"][..], 1),
    ] {
        let out = run(&mut sem_sh(&etcd, 2, opts, &name, "true"));
        assert_eq!(code(&out), expected, "{opts:?}: {}", stderr(&out));
    }
    let out = run(&mut sem_sh(&etcd, 3, &["-n"], &name, "true"));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("permits"), "{}", stderr(&out));
    assert_eq!(etcd.keys(&format!("{name}/")), keys, "nothing left behind");
    let out = run(&mut sem_sh(&etcd, 0, &[], &name, "true"));
    assert_eq!(code(&out), 2, "--permits 0: {}", stderr(&out));

    let [(a, release_a), (b, release_b)] = held;
    std::fs::write(&release_a, "").expect("release a");
    assert_eq!(code(&a.finish()), 0);
    let out = run(&mut sem_sh(&etcd, 2, &["-n"], &name, "exit 3"));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    std::fs::write(&release_b, "").expect("release b");
    assert_eq!(code(&b.finish()), 0);
}

/// `tenure status` shows a semaphore as one row: its oldest holder, HELD/N and its waiters;
/// `--json` has every holder with its value.
fn status_shows_holders_and_permits(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-sem"), unique("sem-status"));
    let held = [
        hold(&etcd, &dir, &name, 3, "a"),
        hold(&etcd, &dir, &name, 3, "b"),
    ];
    let out = run(etcd.tenure().args(["status", &name]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = stdout(&out);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with(&name), "{table}");
    assert!(row.ends_with("2/3"), "{table}");
    assert_eq!(
        table.lines().count(),
        2,
        "the internal lock is not a row:\n{table}"
    );

    let out = run(etcd.tenure().args(["--json", "status", &name]));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let row = &rows[0];
    assert_eq!(row["permits"], 3, "{rows}");
    let values: Vec<&str> = row["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| h["value"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(values, ["a", "b"], "{rows}");
    for (p, release) in held {
        std::fs::write(&release, "").expect("release");
        assert_eq!(code(&p.finish()), 0);
    }
}

/// `tenure demo semaphore` on the in-process store: 10 workers over 3 permits, never more
/// than 3 in use, and it says so.
#[test]
fn demo_semaphore_never_exceeds_three() {
    let out = run(tenure().args(["--json", "demo", "semaphore"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    let acquired = events.iter().filter(|e| e["event"] == "acquired").count();
    assert_eq!(acquired, 20, "{text}");
    for e in &events {
        let message = e["message"].as_str().unwrap_or_default();
        assert!(!message.contains("4 of 3"), "{message}");
    }
    let done = events.last().expect("events");
    assert_eq!(done["event"], "done");
    assert!(
        done["message"]
            .as_str()
            .is_some_and(|m| m.contains("of 3 permits in use at once")),
        "{done}"
    );
}
