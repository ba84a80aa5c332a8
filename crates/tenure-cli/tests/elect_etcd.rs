//! `tenure elect`, `tenure leader` and `tenure status` end to end against real etcd servers
//! (3.4 and 3.5 from `scripts/test`), every participant a separate process; and that a
//! password given to the CLI never shows in what it prints.

mod support;

use std::path::Path;
use std::process::Command;

use support::{
    all_output, code, etcd, per_version, run, spawn, stderr, stdout, unique, wait_for_file,
    wait_until, Etcd, TempDir, HOLD_UNTIL_RELEASED,
};

per_version!(
    elect_command_fails_over_to_the_next_process,
    elect_without_a_command_is_shown_by_leader,
    observe_prints_every_change_of_leader,
    interrupt_while_campaigning_leaves_no_key,
    lost_leadership_stops_the_command_and_exits_75,
    tenure_elect_waits_for_etcdctl_elect,
    status_shows_holder_and_waiters,
    passwords_never_show_in_output,
);

/// A command that records its token and election name, says it runs, and runs until
/// SIGTERM (then exits 0).
const LEAD: &str = r#"trap 'exit 0' TERM; echo "$TENURE_FENCING_TOKEN $TENURE_ELECTION_NAME $TENURE_LEADER_KEY" > "$OUT"; echo $$ > "$PIDFILE"; touch "$READY"; while :; do sleep 0.02; done"#;

/// `tenure [OPTS] elect NAME -- sh -c LEAD`, writing into `dir` under `who`.
fn elect_lead(etcd: &Etcd, opts: &[&str], name: &str, dir: &TempDir, who: &str) -> Command {
    let mut cmd = etcd.tenure();
    cmd.args(opts)
        .args(["elect", name, "--", "sh", "-c", LEAD])
        .env("OUT", dir.path(&format!("{who}.out")))
        .env("PIDFILE", dir.path(&format!("{who}.pid")))
        .env("READY", dir.path(&format!("{who}.ready")));
    cmd
}

/// What LEAD recorded: (token, election name, leader key).
fn recorded(dir: &TempDir, who: &str) -> (u64, String, String) {
    let text = std::fs::read_to_string(dir.path(&format!("{who}.out"))).expect("out file");
    match text.split_whitespace().collect::<Vec<_>>()[..] {
        [token, name, key] => (
            token.parse().expect("token"),
            name.to_string(),
            key.to_string(),
        ),
        _ => panic!("unexpected {text:?}"),
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn elect_command_fails_over_to_the_next_process(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("failover"));
    let prefix = format!("{name}/");
    // A short lease for the first, so its crash is noticed in seconds.
    let first = spawn(&mut elect_lead(&etcd, &["--ttl", "2s"], &name, &dir, "a"));
    wait_for_file(&dir.path("a.ready"));
    let second = spawn(&mut elect_lead(&etcd, &[], &name, &dir, "b"));
    wait_until("the second to campaign", || etcd.keys(&prefix).len() == 2);
    assert!(
        !dir.path("b.ready").exists(),
        "the second's command runs while the first leads"
    );
    // The first tenure dies without a chance to resign; its command (own process group)
    // goes too, as on a machine that died.
    first.signal(libc::SIGKILL);
    kill_group(&dir.path("a.pid"));
    // (Its output pipes close only once the command it started is gone too.)
    assert_eq!(code(&first.finish()), 137);
    wait_for_file(&dir.path("b.ready"));
    let (a_token, a_name, a_key) = recorded(&dir, "a");
    let (b_token, b_name, b_key) = recorded(&dir, "b");
    assert_eq!(
        (a_name.as_str(), b_name.as_str()),
        (name.as_str(), name.as_str())
    );
    assert!(b_token > a_token, "tokens {a_token} then {b_token}");
    assert_ne!(a_key, b_key);
    assert_eq!(etcd.keys(&prefix), vec![b_key]);
    second.signal(libc::SIGTERM);
    let out = second.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(etcd.keys(&prefix).is_empty(), "the second did not resign");
}

/// SIGKILL to the process group led by the pid in `pidfile`.
fn kill_group(pidfile: &Path) {
    let pid: i32 = std::fs::read_to_string(pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names a group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

fn elect_without_a_command_is_shown_by_leader(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let name = unique("leader");
    let mut elector =
        spawn(
            etcd.tenure()
                .args(["--json", "elect", &name, "--value", "host-a:8080"]),
        );
    let led = json(&elector.first_line());
    assert_eq!(led["name"], name.as_str(), "{led}");
    assert!(led["token"].as_u64().is_some_and(|t| t > 0), "{led}");
    let out = run(etcd.tenure().args(["--json", "leader", &name]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let shown = json(stdout(&out).trim());
    for field in ["name", "key", "token"] {
        assert_eq!(shown[field], led[field], "{field}: {shown} vs {led}");
    }
    assert_eq!(shown["value"], "host-a:8080", "{shown}");
    let key = led["key"].as_str().expect("key");
    let text = run(etcd.tenure().args(["leader", &name]));
    assert!(stdout(&text).contains(key), "{}", stdout(&text));
    elector.signal(libc::SIGTERM);
    let out = elector.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let none = run(etcd.tenure().args(["--json", "leader", &name]));
    assert_eq!(code(&none), 1, "{}", stderr(&none));
    let shown = json(stdout(&none).trim());
    assert!(
        shown["leader"].is_null() && shown["name"] == name.as_str(),
        "{shown}"
    );
}

fn observe_prints_every_change_of_leader(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let name = unique("observe");
    let elect = |value: &str| {
        let mut cmd = etcd.tenure();
        cmd.args(["--json", "elect", &name, "--value", value]);
        spawn(&mut cmd)
    };
    let mut a = elect("a");
    let a_led = json(&a.first_line());
    let mut observer = spawn(etcd.tenure().args(["--json", "elect", "--observe", &name]));
    let seen = observer.lines();
    let first = json(&seen.next());
    assert_eq!(
        (&first["key"], &first["value"]),
        (&a_led["key"], &"a".into())
    );
    let mut b = elect("b");
    wait_until("b to campaign", || {
        etcd.keys(&format!("{name}/")).len() == 2
    });
    a.signal(libc::SIGTERM);
    assert_eq!(code(&a.finish()), 0);
    let b_led = json(&b.first_line());
    let second = json(&seen.next());
    assert_eq!(second["key"], b_led["key"], "{second}");
    assert_eq!(second["value"], "b", "{second}");
    assert!(
        second["token"].as_u64() > first["token"].as_u64(),
        "{second}"
    );
    b.signal(libc::SIGTERM);
    assert_eq!(code(&b.finish()), 0);
    assert!(json(&seen.next())["leader"].is_null());
    observer.signal(libc::SIGINT);
    let out = observer.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

fn interrupt_while_campaigning_leaves_no_key(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("withdraw"));
    let prefix = format!("{name}/");
    let leader = spawn(&mut elect_lead(&etcd, &[], &name, &dir, "a"));
    wait_for_file(&dir.path("a.ready"));
    let candidate = spawn(
        etcd.tenure()
            .args(["elect", &name, "--", "sh", "-c", "exit 99"]),
    );
    wait_until("the candidate to campaign", || {
        etcd.keys(&prefix).len() == 2
    });
    candidate.signal(libc::SIGINT);
    let out = candidate.finish();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(etcd.keys(&prefix).len(), 1, "the candidate's key was left");
    leader.signal(libc::SIGTERM);
    assert_eq!(code(&leader.finish()), 0);
    assert!(etcd.keys(&prefix).is_empty());
}

fn lost_leadership_stops_the_command_and_exits_75(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("elect-lost"));
    let stopped = dir.path("stopped");
    let script = r#"echo "$TENURE_LEADER_KEY" > "$OUT"; trap 'touch "$STOPPED"; exit 0' TERM; touch "$READY"; while :; do sleep 0.02; done"#;
    let p = spawn(
        etcd.tenure()
            .args(["elect", &name, "--", "sh", "-c", script])
            .env("OUT", dir.path("key"))
            .env("READY", dir.path("ready"))
            .env("STOPPED", &stopped),
    );
    wait_for_file(&dir.path("ready"));
    let key = std::fs::read_to_string(dir.path("key")).expect("key file");
    etcd.revoke_lease_of(key.trim());
    let out = p.finish();
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(stderr(&out).contains("leadership"), "{}", stderr(&out));
    assert!(stopped.exists(), "the command got no SIGTERM");
    // Without a command, too.
    let mut leader = spawn(etcd.tenure().args(["--json", "elect", &name]));
    let led = json(&leader.first_line());
    etcd.revoke_lease_of(led["key"].as_str().expect("key"));
    let out = leader.finish();
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(etcd.keys(&format!("{name}/")).is_empty());
}

fn tenure_elect_waits_for_etcdctl_elect(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("interop-elect"));
    let prefix = format!("{name}/");
    let etcdctl_leader = spawn(etcd.etcdctl().args(["elect", &name, "etcdctl-proposal"]));
    wait_until("etcdctl to lead", || etcd.keys(&prefix).len() == 1);
    // tenure sees etcdctl's proposal as the leader's value...
    let out = run(etcd.tenure().args(["--json", "leader", &name]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(stdout(&out).trim())["value"], "etcdctl-proposal");
    // ...and campaigns behind it.
    let ours = spawn(&mut elect_lead(&etcd, &[], &name, &dir, "t"));
    wait_until("tenure to campaign", || etcd.keys(&prefix).len() == 2);
    assert!(
        !dir.path("t.ready").exists(),
        "tenure's command runs while etcdctl leads"
    );
    etcdctl_leader.signal(libc::SIGINT);
    etcdctl_leader.finish();
    wait_for_file(&dir.path("t.ready"));
    let (_, _, key) = recorded(&dir, "t");
    assert_eq!(etcd.keys(&prefix), vec![key]);
    ours.signal(libc::SIGTERM);
    assert_eq!(code(&ours.finish()), 0);
}

fn status_shows_holder_and_waiters(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("status"));
    let prefix = format!("{name}/");
    let (keyfile, ready, release) = (dir.path("key"), dir.path("ready"), dir.path("release"));
    let script = format!(
        r#"echo "$TENURE_LOCK_KEY $TENURE_FENCING_TOKEN" > "$KEYFILE"; {HOLD_UNTIL_RELEASED}"#
    );
    let holder = spawn(
        etcd.tenure()
            .args(["lock", &name, "--", "sh", "-c", &script])
            .env("KEYFILE", &keyfile)
            .env("READY", &ready)
            .env("RELEASE", &release),
    );
    wait_for_file(&ready);
    let waiter = spawn(etcd.tenure().args(["lock", &name, "--", "true"]));
    wait_until("the waiter to queue", || etcd.keys(&prefix).len() == 2);
    let held = std::fs::read_to_string(&keyfile).expect("key file");
    let (key, token) = held.trim().split_once(' ').expect("key and token");
    let out = run(etcd.tenure().args(["--json", "status", &name]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = json(stdout(&out).trim());
    let rows = rows.as_array().expect("a JSON array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["name"], name.as_str(), "{row}");
    assert_eq!(row["key"], key, "{row}");
    assert_eq!(row["token"].to_string(), token, "{row}");
    assert_eq!(row["waiters"], 1, "{row}");
    // The holder records HOST:PID of the `tenure lock` process by default.
    let me = tenure::host_pid();
    let (host, _) = me.rsplit_once(':').expect("HOST:PID");
    let value = format!("{host}:{}", holder.pid);
    assert_eq!(row["value"], value.as_str(), "{row}");
    assert!(
        row["ttl_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 10_000),
        "{row}"
    );
    let table = run(etcd.tenure().args(["status", &name]));
    let text = stdout(&table);
    assert!(text.starts_with("NAME"), "{text}");
    // The table cuts values to 32 characters (31 and an ellipsis).
    let shown: String = value.chars().take(31).collect();
    assert!(
        text.lines().any(|l| l.contains(key) && l.contains(&shown)),
        "{text}"
    );
    std::fs::write(&release, "").expect("release");
    assert_eq!(code(&holder.finish()), 0);
    assert_eq!(code(&waiter.finish()), 0);
    assert!(etcd.keys(&prefix).is_empty());
}

fn passwords_never_show_in_output(tag: &str, test: &str) {
    let Some(etcd) = etcd(tag, test) else { return };
    const PASSWORD: &str = "s3cr3t-xyz";
    let (dir, name) = (TempDir::new("tenure-cli-it"), unique("secret"));
    let password_file = dir.path("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
    let commands: [&[&str]; 3] = [
        &["-vvv", "status"],
        &["-vvv", "lock", "-n", &name, "--", "true"],
        &["-vvv", "elect", &name, "--", "true"],
    ];
    for args in commands {
        // This etcd has no authentication, so credentials are refused as a bad option (2)
        // rather than ignored; what matters is that the password is never printed.
        let mut from_env = etcd.tenure();
        from_env
            .args(["--user", "root"])
            .args(args)
            .env("TENURE_PASSWORD", PASSWORD);
        let mut from_file = etcd.tenure();
        from_file
            .args(["--user", "root", "--password-file"])
            .arg(&password_file)
            .args(args);
        for cmd in [&mut from_env, &mut from_file] {
            let out = run(cmd);
            let text = all_output(&out);
            assert_eq!(code(&out), 2, "{args:?}: {text}");
            assert!(
                !text.contains(PASSWORD),
                "{args:?} printed the password:\n{text}"
            );
            assert!(
                text.contains("connecting"),
                "{args:?}: -vvv logs nothing?\n{text}"
            );
        }
    }
    assert!(etcd.keys(&format!("{name}/")).is_empty());
}
