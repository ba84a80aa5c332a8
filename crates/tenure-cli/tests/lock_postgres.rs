//! `tenure lock`, `tenure status` and `tenure elect` end to end against the PostgreSQL of
//! `scripts/test`, every participant a separate process, the password from `TENURE_PASSWORD`.

mod support;

use std::process::Command;

use support::{
    assert_serial, code, env_or_skip, run, spawn, stderr, stdout, unique, wait_for_file, TempDir,
    HOLD_UNTIL_RELEASED,
};

struct Pg {
    url: String,
    password: String,
}

fn pg(test: &str) -> Option<Pg> {
    Some(Pg {
        url: env_or_skip(test, "TENURE_TEST_POSTGRES_URL")?,
        password: env_or_skip(test, "TENURE_TEST_POSTGRES_PASSWORD")?,
    })
}

impl Pg {
    fn tenure(&self) -> Command {
        let mut cmd = support::tenure_at(&self.url);
        cmd.env("TENURE_PASSWORD", &self.password);
        cmd
    }
}

/// Four `tenure lock` processes on one name take turns, each seeing a larger token.
#[test]
fn processes_exclude_each_other_with_increasing_tokens() {
    let Some(pg) = pg("processes_exclude_each_other_with_increasing_tokens") else {
        return;
    };
    let (dir, name) = (TempDir::new("tenure-cli-pg"), unique("pg-exclude"));
    let log = dir.path("log");
    let script = r#"echo "start tenure $TENURE_FENCING_TOKEN" >> "$LOG"; sleep 0.1; echo "end tenure $TENURE_FENCING_TOKEN" >> "$LOG""#;
    let procs: Vec<_> = (0..4)
        .map(|_| {
            spawn(
                pg.tenure()
                    .args(["lock", &name, "--", "sh", "-c", script])
                    .env("LOG", &log),
            )
        })
        .collect();
    for p in procs {
        let out = p.finish();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    assert_serial(&std::fs::read_to_string(&log).expect("log"), 4);
}

/// While a `tenure lock` holds a name, `tenure status --json` lists it with its value, a
/// second `tenure lock --no-wait` gives the conflict code, and elections are refused as a
/// usage error (exit 2) naming the stores that offer them.
#[test]
fn status_lists_holder_and_elections_are_refused() {
    let Some(pg) = pg("status_lists_holder_and_elections_are_refused") else {
        return;
    };
    let (dir, name) = (TempDir::new("tenure-cli-pg"), unique("pg-status"));
    let (ready, release) = (dir.path("ready"), dir.path("release"));
    let holder = spawn(
        pg.tenure()
            .args(["lock", &name, "--value", "web-1:8080", "--", "sh", "-c"])
            .arg(HOLD_UNTIL_RELEASED)
            .env("READY", &ready)
            .env("RELEASE", &release),
    );
    wait_for_file(&ready);
    let out = run(pg.tenure().args(["--json", "status", &name]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed: serde_json::Value =
        serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let rows = listed.as_array().expect("a list");
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["name"], name.as_str());
    assert_eq!(rows[0]["value"], "web-1:8080");
    assert!(rows[0]["token"].as_u64().is_some_and(|t| t > 0), "{listed}");
    let busy = run(pg.tenure().args(["lock", "--no-wait", &name, "--", "true"]));
    assert_ne!(code(&busy), 0, "{}", stderr(&busy));
    std::fs::write(&release, b"").expect("release");
    assert_eq!(code(&holder.finish()), 0);
    let elect = run(pg
        .tenure()
        .args(["elect", &unique("pg-elect"), "--", "true"]));
    assert_eq!(code(&elect), 2, "{}", stderr(&elect));
    assert!(stderr(&elect).contains("etcd://"), "{}", stderr(&elect));
}

/// Six `tenure lock --permits 3` processes on PostgreSQL: never more than three run at once
/// (each logs `start` once granted and `end` before it gives its permit back), each with its
/// own token and `TENURE_PERMITS=3`, and `tenure status` lists nothing afterwards.
#[test]
fn permits_bound_the_commands_running_at_once() {
    let Some(pg) = pg("permits_bound_the_commands_running_at_once") else {
        return;
    };
    let (dir, name) = (TempDir::new("tenure-cli-pg"), unique("pg-sem"));
    let log = dir.path("log");
    let script = r#"echo "start $TENURE_FENCING_TOKEN $TENURE_PERMITS" >> "$LOG"; sleep 0.2; echo "end $TENURE_FENCING_TOKEN" >> "$LOG""#;
    let procs: Vec<_> = (0..6)
        .map(|_| {
            spawn(
                pg.tenure()
                    .args(["lock", "--permits", "3", &name, "--", "sh", "-c", script])
                    .env("LOG", &log),
            )
        })
        .collect();
    for p in procs {
        let out = p.finish();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(text.lines().count(), 12, "{text}");
    let (mut now, mut most) = (0usize, 0);
    let mut tokens = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts[0] == "start" {
            assert_eq!(parts.get(2), Some(&"3"), "TENURE_PERMITS: {line}");
            tokens.push(parts[1].to_string());
            now += 1;
            most = most.max(now);
        } else {
            now -= 1;
        }
    }
    assert!((1..=3).contains(&most), "{most} at once:\n{text}");
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 6, "{text}");
    let out = run(pg.tenure().args(["--json", "status", &name]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[]", "{}", stdout(&out));
}
