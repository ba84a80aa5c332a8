//! `tenure register` and `tenure status` end to end against the Redis server of
//! `scripts/test` (one instance): the key is there while the command runs and gone when it
//! ends, `status` lists it as registered, a killed tenure's key goes with its session's
//! heartbeat (within the TTL), and a key that is not ours is refused with exit 1.

#[path = "../../tenure/tests/redis_support/mod.rs"]
mod redis_support;
mod support;

use std::os::unix::process::ExitStatusExt;

use redis_support::{exists, resp};
use support::{
    code, env_or_skip, spawn, stderr, tenure_at, unique, wait_for_file, wait_until, TempDir,
    HOLD_UNTIL_RELEASED,
};

/// The shared server's URL and port, or `None` (skipped).
fn redis(test: &str) -> Option<(String, u16)> {
    let url = env_or_skip(test, "TENURE_TEST_REDIS_URL")?;
    let port = url.rsplit(':').next()?.trim_end_matches('/').parse().ok()?;
    Some((url, port))
}

#[test]
fn key_lives_while_the_command_runs() {
    let Some((url, port)) = redis("register_redis::key_lives_while_the_command_runs") else {
        return;
    };
    let (dir, key) = (TempDir::new("tenure-cli-it"), unique("services/web-1"));
    let (ready, release) = (dir.path("ready"), dir.path("release"));
    let script = format!(
        r#"[ "$TENURE_REGISTERED_KEY" = "{key}" ] || exit 9; {HOLD_UNTIL_RELEASED}; exit 3"#
    );
    let p = spawn(
        tenure_at(&url)
            .args(["register", &key, "10.0.0.5:8080", "--", "sh", "-c", &script])
            .env("READY", &ready)
            .env("RELEASE", &release),
    );
    wait_for_file(&ready);
    assert_eq!(
        resp(port, &format!("GET {key}")).as_deref(),
        Some("10.0.0.5:8080")
    );
    let status = support::run(tenure_at(&url).args(["status", &key]));
    assert_eq!(code(&status), 0, "{}", stderr(&status));
    let row = support::first_row(&status);
    assert!(
        row.starts_with(&key) && row.contains("10.0.0.5:8080") && row.ends_with("registered"),
        "{row}"
    );
    assert!(
        stderr(&status).contains("locks"),
        "status says what Redis cannot list: {}",
        stderr(&status)
    );
    std::fs::write(&release, "").expect("release");
    let out = p.finish();
    assert_eq!(code(&out), 3, "the command's code: {}", stderr(&out));
    assert!(!exists(port, &key), "deregistered at exit");
}

#[test]
fn killed_tenure_is_deregistered_within_the_ttl() {
    let Some((url, port)) = redis("register_redis::killed_tenure_is_deregistered_within_the_ttl")
    else {
        return;
    };
    let key = unique("services/killed");
    let mut p =
        spawn(tenure_at(&url).args(["--ttl", "2s", "--json", "register", &key, "10.0.0.5:8080"]));
    let line = p.first_line();
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["key"], key.as_str(), "{v}");
    assert!(exists(port, &key));
    p.signal(libc::SIGKILL);
    let out = p.finish();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL));
    wait_until(
        "the key expires with the killed process's heartbeat",
        || !exists(port, &key),
    );
}

#[test]
fn a_key_that_is_not_ours_is_refused() {
    let Some((url, port)) = redis("register_redis::a_key_that_is_not_ours_is_refused") else {
        return;
    };
    let key = unique("services/taken");
    assert_eq!(
        resp(port, &format!("SET {key} someone-else")).as_deref(),
        Some("+OK")
    );
    let out = support::run(tenure_at(&url).args(["register", &key, "me", "--", "true"]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&key), "{}", stderr(&out));
    assert_eq!(
        resp(port, &format!("GET {key}")).as_deref(),
        Some("someone-else"),
        "left alone"
    );
    resp(port, &format!("DEL {key}"));
}
