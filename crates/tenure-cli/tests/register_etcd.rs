//! `tenure register` end to end against real etcd servers (3.4 and 3.5 from `scripts/test`):
//! the key is there while the command runs and gone when it ends, the command's exit code
//! passes through, a killed tenure's key goes with its lease (within the TTL), a key that is
//! not ours is refused with exit 1, and a signal deregisters.

mod support;

use std::os::unix::process::ExitStatusExt;

use support::{
    code, etcd, per_version, spawn, stderr, unique, wait_for_file, wait_until, TempDir,
    HOLD_UNTIL_RELEASED,
};

per_version!(
    key_lives_while_the_command_runs,
    killed_tenure_is_deregistered_within_the_ttl,
    a_key_that_is_not_ours_is_refused,
    signal_deregisters,
);

fn key_lives_while_the_command_runs(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, key) = (TempDir::new("tenure-cli-it"), unique("services/web-1"));
    let (ready, release) = (dir.path("ready"), dir.path("release"));
    let script = format!(
        r#"[ "$TENURE_REGISTERED_KEY" = "{key}" ] || exit 9; {HOLD_UNTIL_RELEASED}; exit 3"#
    );
    let p = spawn(
        etcd.tenure()
            .args(["register", &key, "10.0.0.5:8080", "--", "sh", "-c", &script])
            .env("READY", &ready)
            .env("RELEASE", &release),
    );
    wait_for_file(&ready);
    assert_eq!(etcd.keys(&key), vec![key.clone()]);
    let value = support::run(etcd.etcdctl().args(["get", &key, "--print-value-only"]));
    assert_eq!(support::stdout(&value).trim(), "10.0.0.5:8080");
    let status = support::run(etcd.tenure().args(["status", &key]));
    let row = support::first_row(&status);
    assert!(
        row.starts_with(&key) && row.ends_with("registered"),
        "{row}"
    );
    std::fs::write(&release, "").expect("release");
    let out = p.finish();
    assert_eq!(code(&out), 3, "the command's code: {}", stderr(&out));
    assert!(etcd.keys(&key).is_empty(), "deregistered at exit");
}

fn killed_tenure_is_deregistered_within_the_ttl(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let key = unique("services/killed");
    let mut p =
        spawn(
            etcd.tenure()
                .args(["--ttl", "2s", "--json", "register", &key, "10.0.0.5:8080"]),
        );
    let line = p.first_line();
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["key"], key.as_str(), "{v}");
    assert_eq!(v["value"], "10.0.0.5:8080", "{v}");
    assert_eq!(etcd.keys(&key), vec![key.clone()]);
    p.signal(libc::SIGKILL);
    let out = p.finish();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL));
    wait_until("the key expires with the killed process's lease", || {
        etcd.keys(&key).is_empty()
    });
}

fn a_key_that_is_not_ours_is_refused(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let key = unique("services/taken");
    let put = support::run(etcd.etcdctl().args(["put", &key, "someone else"]));
    assert!(put.status.success(), "{}", stderr(&put));
    let out = support::run(etcd.tenure().args(["register", &key, "me", "--", "true"]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&key), "{}", stderr(&out));
    let value = support::run(etcd.etcdctl().args(["get", &key, "--print-value-only"]));
    assert_eq!(support::stdout(&value).trim(), "someone else", "left alone");
}

fn signal_deregisters(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let key = unique("services/signalled");
    let mut p = spawn(etcd.tenure().args(["register", &key, "v"]));
    assert_eq!(p.first_line(), format!("registered {key}"));
    p.signal(libc::SIGTERM);
    let out = p.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(etcd.keys(&key).is_empty());
}
