//! `tenure lock` end to end against real etcd servers (3.4 and 3.5 from `scripts/test`), every
//! participant a separate process: tenure, the commands it runs, and etcdctl as operator and
//! as a peer locking the same names.

mod support;

use std::process::Command;

use support::{
    assert_serial, code, etcd, per_version, process_gone, run, spawn, stderr, unique,
    wait_for_file, wait_until, Etcd, TempDir, HOLD_UNTIL_RELEASED,
};

per_version!(
    two_processes_exclude_each_other,
    no_wait_and_wait_timeout_give_the_conflict_code,
    exit_codes_pass_through,
    signals_reach_the_command,
    lost_lock_stops_the_command_and_exits_75,
    lost_lock_kills_a_command_that_ignores_sigterm,
    interrupt_while_waiting_leaves_no_key,
    session_lost_while_waiting_queues_again,
    holds_without_a_command_until_signalled,
    tenure_and_etcdctl_lock_exclude_each_other,
    bad_names_are_usage_errors,
);

/// A script that appends `start WHO TOKEN` and `end WHO TOKEN` to `$LOG`, taking the token
/// from the variable `var`, with a pause between for any other holder to (wrongly) get in.
fn log_token(who: &str, var: &str) -> String {
    let line = |what| format!(r#"echo "{what} {who} ${var}" >> "$LOG""#);
    format!("{}; sleep 0.1; {}", line("start"), line("end"))
}

/// `tenure lock OPTS NAME -- sh -c SCRIPT`.
fn lock_sh(etcd: &Etcd, opts: &[&str], name: &str, script: &str) -> Command {
    let mut cmd = etcd.tenure();
    cmd.arg("lock")
        .args(opts)
        .arg(name)
        .args(["--", "sh", "-c", script]);
    cmd
}

fn two_processes_exclude_each_other(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("exclude"));
    let log = dir.path("log");
    let procs: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = lock_sh(
                &etcd,
                &[],
                &name,
                &log_token("tenure", "TENURE_FENCING_TOKEN"),
            );
            spawn(cmd.env("LOG", &log))
        })
        .collect();
    for p in procs {
        let out = p.finish();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(&log).expect("log");
    assert_serial(&text, 4);
    assert!(etcd.keys(&format!("{name}/")).is_empty());
}

/// Holds `name` in a separate tenure process until the returned release file is created.
fn hold(etcd: &Etcd, dir: &TempDir, name: &str) -> (support::Proc, std::path::PathBuf) {
    let (ready, release) = (dir.path("ready"), dir.path("release"));
    let holder = spawn(
        lock_sh(etcd, &[], name, HOLD_UNTIL_RELEASED)
            .env("READY", &ready)
            .env("RELEASE", &release),
    );
    wait_for_file(&ready);
    (holder, release)
}

fn no_wait_and_wait_timeout_give_the_conflict_code(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("conflict"));
    let (holder, release) = hold(&etcd, &dir, &name);
    for (opts, expected, says) in [
        (&["-n"][..], 1, "locked by another session"),
        (&["-n", "-E", "42"][..], 42, "locked by another session"),
        (&["-w", "300ms"][..], 1, "timed out"),
        (
            &["--wait", "300ms", "--conflict-exit-code", "5"][..],
            5,
            "timed out",
        ),
        (&["-w", "0s"][..], 1, "locked by another session"),
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
    // Nothing left behind by the ones that gave up: only the holder's key.
    assert_eq!(etcd.keys(&format!("{name}/")).len(), 1);
    std::fs::write(&release, "").expect("release");
    assert_eq!(code(&holder.finish()), 0);
}

fn exit_codes_pass_through(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let dir = TempDir::new("tenure-cli-it");
    let name = unique("codes");
    for (script, expected) in [
        ("exit 0", 0),
        ("exit 7", 7),
        ("kill -TERM $$", 143),
        ("kill -KILL $$", 137),
    ] {
        let out = run(&mut lock_sh(&etcd, &[], &name, script));
        assert_eq!(code(&out), expected, "{script}: {}", stderr(&out));
    }
    let missing = run(etcd
        .tenure()
        .args(["lock", &name, "--", "/nonexistent/tenure-test-cmd"]));
    assert_eq!(code(&missing), 127, "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
    let not_executable = dir.path("plain-file");
    std::fs::write(&not_executable, "echo hi\n").expect("write");
    let out = run(etcd
        .tenure()
        .arg("lock")
        .arg(&name)
        .arg("--")
        .arg(&not_executable));
    assert_eq!(code(&out), 126, "{}", stderr(&out));
    assert!(etcd.keys(&format!("{name}/")).is_empty());
}

fn signals_reach_the_command(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    for (sig, sig_name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
    ] {
        let (dir, name) = (TempDir::new("tenure-cli-it"), unique("forward"));
        let (ready, trapped) = (dir.path("ready"), dir.path("trapped"));
        let script = format!(
            r#"trap 'echo {sig_name} > "$TRAPPED"; exit 9' {sig_name}; touch "$READY"; while :; do sleep 0.02; done"#
        );
        let p = spawn(
            lock_sh(&etcd, &[], &name, &script)
                .env("READY", &ready)
                .env("TRAPPED", &trapped),
        );
        wait_for_file(&ready);
        p.signal(sig);
        let out = p.finish();
        assert_eq!(code(&out), 9, "SIG{sig_name}: {}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(&trapped).expect("trap ran").trim(),
            sig_name
        );
        assert!(etcd.keys(&format!("{name}/")).is_empty());
    }
}

fn lost_lock_stops_the_command_and_exits_75(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("lost"));
    let (keyfile, ready, stopped) = (dir.path("key"), dir.path("ready"), dir.path("stopped"));
    let script = r#"echo "$TENURE_LOCK_KEY" > "$KEYFILE"; trap 'touch "$STOPPED"; exit 0' TERM; touch "$READY"; while :; do sleep 0.02; done"#;
    let p = spawn(
        lock_sh(&etcd, &[], &name, script)
            .env("KEYFILE", &keyfile)
            .env("READY", &ready)
            .env("STOPPED", &stopped),
    );
    wait_for_file(&ready);
    let key = std::fs::read_to_string(&keyfile).expect("key file");
    etcd.revoke_lease_of(key.trim());
    let out = p.finish();
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(stderr(&out).contains("was lost"), "{}", stderr(&out));
    assert!(stopped.exists(), "the command got no SIGTERM");
}

fn lost_lock_kills_a_command_that_ignores_sigterm(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("lost-kill"));
    let (keyfile, ready, pids) = (dir.path("key"), dir.path("ready"), dir.path("pids"));
    // The shell and a background child of it both ignore SIGTERM; both must still end.
    let script = r#"trap '' TERM; sleep 1000 & echo "$$ $!" > "$PIDS"; echo "$TENURE_LOCK_KEY" > "$KEYFILE"; touch "$READY"; while :; do sleep 0.02; done"#;
    let p = spawn(
        lock_sh(&etcd, &["--grace", "300ms"], &name, script)
            .env("KEYFILE", &keyfile)
            .env("READY", &ready)
            .env("PIDS", &pids),
    );
    wait_for_file(&ready);
    let key = std::fs::read_to_string(&keyfile).expect("key file");
    etcd.revoke_lease_of(key.trim());
    let out = p.finish();
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(stderr(&out).contains("SIGKILL"), "{}", stderr(&out));
    for pid in std::fs::read_to_string(&pids)
        .expect("pids")
        .split_whitespace()
    {
        let pid: i32 = pid.parse().expect("pid");
        wait_until(&format!("process {pid} to end"), || process_gone(pid));
    }
}

fn interrupt_while_waiting_leaves_no_key(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("interrupt"));
    let (holder, release) = hold(&etcd, &dir, &name);
    let prefix = format!("{name}/");
    let waiter = spawn(&mut lock_sh(
        &etcd,
        &[],
        &name,
        "echo must not run; exit 99",
    ));
    wait_until("the waiter to queue", || etcd.keys(&prefix).len() == 2);
    waiter.signal(libc::SIGINT);
    let out = waiter.finish();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(
        etcd.keys(&prefix).len(),
        1,
        "the waiter's key was left behind"
    );
    std::fs::write(&release, "").expect("release");
    assert_eq!(code(&holder.finish()), 0);
    assert!(etcd.keys(&prefix).is_empty());
}

/// A session lost while still waiting is not "lost while held": the waiter opens a new
/// session, queues again, and runs its command once the holder lets go — never exit 75 for a
/// command that never started (issue 11). Before, it exited 75 at once.
fn session_lost_while_waiting_queues_again(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("requeue"));
    let (holder, release) = hold(&etcd, &dir, &name);
    let prefix = format!("{name}/");
    let ran = dir.path("ran");
    let waiter =
        spawn(lock_sh(&etcd, &[], &name, r#"echo "$TENURE_LOCK_KEY" > "$RAN""#).env("RAN", &ran));
    wait_until("the waiter to queue", || etcd.keys(&prefix).len() == 2);
    let first = etcd.keys(&prefix)[1].clone();
    etcd.revoke_lease_of(&first);
    wait_until("the waiter to queue again on a new session", || {
        let keys = etcd.keys(&prefix);
        keys.len() == 2 && keys[1] != first
    });
    std::fs::write(&release, "").expect("release");
    assert_eq!(code(&holder.finish()), 0);
    let out = waiter.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ran_under = std::fs::read_to_string(&ran).expect("the command ran");
    assert_ne!(ran_under.trim(), first, "ran under the lost session's key");
    assert!(etcd.keys(&prefix).is_empty());
}

fn holds_without_a_command_until_signalled(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let name = unique("hold");
    for (sig, expected) in [(Some(libc::SIGTERM), 0), (None, 75)] {
        let mut p = spawn(etcd.tenure().args(["--json", "lock", &name]));
        let line = p.first_line();
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        let key = v["key"].as_str().expect("key").to_string();
        assert!(v["token"].as_u64().is_some_and(|t| t > 0), "{v}");
        assert_eq!(etcd.keys(&format!("{name}/")), vec![key.clone()]);
        match sig {
            Some(sig) => p.signal(sig),
            None => etcd.revoke_lease_of(&key),
        }
        let out = p.finish();
        assert_eq!(code(&out), expected, "{}", stderr(&out));
        assert!(etcd.keys(&format!("{name}/")).is_empty());
    }
}

fn tenure_and_etcdctl_lock_exclude_each_other(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("interop"));
    let log = dir.path("log");
    // etcdctl holds: tenure -n fails; tenure holds: etcdctl waits in the same queue.
    let (ready, release) = (dir.path("ready"), dir.path("release"));
    let etcdctl_holder = spawn(
        etcd.etcdctl()
            .args(["lock", &name, "--", "sh", "-c", HOLD_UNTIL_RELEASED])
            .env("READY", &ready)
            .env("RELEASE", &release),
    );
    wait_for_file(&ready);
    let out = run(&mut lock_sh(&etcd, &["-n"], &name, "exit 99"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    std::fs::write(&release, "").expect("release");
    assert!(etcdctl_holder.finish().status.success());
    // A mixed crowd of both takes turns, with increasing revisions.
    // Both export ETCD_LOCK_REV, but etcdctl's is the store revision when it was granted
    // while ours is the key's create revision (the fencing token), so each increases only
    // among its own kind.
    let (ours_sh, theirs_sh) = (
        log_token("tenure", "ETCD_LOCK_REV"),
        log_token("etcdctl", "ETCD_LOCK_REV"),
    );
    let procs: Vec<_> = (0..3)
        .flat_map(|_| {
            let mut ours = lock_sh(&etcd, &[], &name, &ours_sh);
            let mut theirs = etcd.etcdctl();
            theirs.args(["lock", &name, "--", "sh", "-c", &theirs_sh]);
            [spawn(ours.env("LOG", &log)), spawn(theirs.env("LOG", &log))]
        })
        .collect();
    for p in procs {
        let out = p.finish();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    assert_serial(&std::fs::read_to_string(&log).expect("log"), 6);
    assert!(etcd.keys(&format!("{name}/")).is_empty());
}

fn bad_names_are_usage_errors(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let long = "x".repeat(600);
    for (name, says) in [
        ("", "must not be empty"),
        (long.as_str(), "longer than"),
        ("a\nb", "control"),
    ] {
        let out = run(etcd.tenure().args(["lock", name, "--", "true"]));
        assert_eq!(code(&out), 2, "{name:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{name:?}: {}", stderr(&out));
    }
}
