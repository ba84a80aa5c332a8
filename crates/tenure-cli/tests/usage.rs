//! The `tenure` binary's answers to bad input, and the scenarios that need no server.
//! Every case runs the real binary as a separate process.

mod support;

use support::{code, run, stderr, stdout, tenure, tenure_at};

/// Runs `tenure` with `args` and expects exit 2 with `needle` in the message.
fn usage_error(args: &[&str], needle: &str) {
    let out = run(tenure().args(args));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn lock_without_a_url_lists_the_url_forms() {
    usage_error(&["lock", "jobs", "--", "true"], "--url");
    usage_error(&["lock", "jobs"], "etcd://HOST:PORT");
}

#[test]
fn lock_refuses_the_in_process_store() {
    usage_error(
        &["lock", "--url", "mem://", "jobs", "--", "true"],
        "cannot coordinate separate processes",
    );
}

#[test]
fn bad_urls_are_usage_errors_that_list_the_forms() {
    for url in [
        "localhost:2379",
        "http://x",
        "etcd://",
        "etcd://h:99999",
        "mem://a/b",
    ] {
        usage_error(&["lock", "--url", url, "jobs", "--", "true"], "invalid URL");
        usage_error(&["--url", url, "demo"], "etcd://HOST:PORT");
    }
}

#[test]
fn bad_durations_are_usage_errors() {
    for bad in [
        &["-w", "5x"][..],
        &["--wait", "soon"],
        &["--grace=-1s"],
        &["--ttl", "10"],
    ] {
        let mut args = vec!["lock", "--url", "etcd://127.0.0.1:1"];
        args.extend(bad);
        args.push("jobs");
        usage_error(&args, "expected a duration");
    }
    usage_error(&["demo", "--ttl", "ten"], "500ms");
}

#[test]
fn out_of_range_ttl_is_a_usage_error() {
    usage_error(
        &["--url", "mem://", "--ttl", "1ms", "demo", "expiry"],
        "session TTL",
    );
}

#[test]
fn conflicting_and_malformed_options_are_usage_errors() {
    usage_error(&["lock", "-n", "-w", "1s", "x"], "cannot be used with");
    usage_error(&["lock", "-E", "256", "x"], "256");
    usage_error(&["lock", "x", "cmd"], "unexpected argument");
    usage_error(
        &["bench", "--url", "mem://", "--workers", "1,0"],
        "positive",
    );
    usage_error(&["demo", "nonsense"], "counter");
}

#[test]
fn bench_needs_a_url() {
    usage_error(&["bench"], "--url");
}

#[test]
fn failover_demo_hands_over_in_process() {
    let out = run(tenure().args(["--json", "demo", "failover"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let at = |event: &str| {
        names
            .iter()
            .position(|n| *n == event)
            .unwrap_or_else(|| panic!("no {event} in {names:?}"))
    };
    // The standby leads only after the primary froze, and the primary was told it lost before
    // its late write was refused.
    assert!(at("primary_leads") < at("primary_frozen"), "{names:?}");
    assert!(at("primary_frozen") < at("standby_leads"), "{names:?}");
    assert!(at("primary_lost") < at("stale_write_refused"), "{names:?}");
    assert!(at("standby_leads") < at("primary_stopped"), "{names:?}");
    let token = |event: &str| -> u64 {
        let message = events[at(event)]["message"].as_str().expect("message");
        let (_, rest) = message.split_once("fencing token ").expect("a token");
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect("token")
    };
    assert!(
        token("standby_leads") > token("primary_leads"),
        "{events:?}"
    );
    assert!(events
        .iter()
        .all(|e| e["t"].as_f64().is_some() && e["demo"] == "failover"));
}

/// `tenure demo rwlock` in process: the readers overlap, the writer holds only after every
/// reader left, and the late reader (queued behind the writer) only after the downgrade.
#[test]
fn rwlock_demo_shows_readers_overlapping_and_the_writer_alone() {
    let out = run(tenure().args(["--json", "demo", "rwlock"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let all =
        |event: &str| -> Vec<usize> { (0..names.len()).filter(|i| names[*i] == event).collect() };
    let (holds, leaves) = (all("reader_holds"), all("reader_leaves"));
    assert_eq!((holds.len(), leaves.len()), (3, 3), "{names:?}");
    assert!(
        holds.iter().all(|h| leaves.iter().all(|l| h < l)),
        "{names:?}"
    );
    let writer = all("writer_holds");
    assert!(
        writer.len() == 1 && leaves.iter().all(|l| *l < writer[0]),
        "{names:?}"
    );
    let (downgrade, late) = (all("writer_downgrades"), all("late_reader_holds"));
    assert!(downgrade[0] < late[0], "{names:?}");
    assert!(events[holds[2]]["message"]
        .as_str()
        .is_some_and(|m| m.ends_with("readers inside: 3")));
}

#[test]
fn bad_names_exit_2_before_connecting() {
    // Port 1 on loopback: nothing listens; the name is refused before anything connects.
    let url = "etcd://127.0.0.1:1";
    for args in [
        &["lock", ""][..],
        &["lock", "", "--", "true"],
        &["elect", ""],
        &["elect", "a\nb", "--", "true"],
        &["elect", "--observe", ""],
        &["leader", ""],
    ] {
        let out = run(tenure_at(url).args(args));
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid name"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn elect_leader_and_status_need_a_shared_store() {
    for args in [
        &["elect", "primary"][..],
        &["elect", "--observe", "primary"],
        &["leader", "primary"],
        &["status"],
    ] {
        usage_error(args, "--url");
        let mut with_mem = vec!["--url", "mem://"];
        with_mem.extend(args);
        usage_error(&with_mem, "cannot coordinate separate processes");
    }
    usage_error(
        &["elect", "--observe", "x", "--", "true"],
        "cannot be used with",
    );
    usage_error(
        &["elect", "--observe", "--value", "v", "x"],
        "cannot be used with",
    );
}

#[test]
fn passwords_come_from_one_place_and_are_never_printed() {
    const PASSWORD: &str = "s3cr3t-xyz";
    usage_error(&["--password", "x", "status"], "unexpected argument");
    let out = run(tenure_at("etcd://127.0.0.1:1")
        .args(["--password-file", "/nonexistent", "status"])
        .env("TENURE_PASSWORD", PASSWORD));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("TENURE_PASSWORD"), "{}", stderr(&out));
    usage_error(&["--client-cert", "c.pem", "status"], "--client-key");
    // A password inside the URL: unreachable (69), bad (2), and under -vvv logging.
    for (url, expected) in [
        (format!("redis://u:{PASSWORD}@127.0.0.1:1"), 69),
        (format!("redis://u:{PASSWORD}@127.0.0.1:1/not-a-db"), 2),
    ] {
        for args in [
            &["-vvv", "status"][..],
            &["lock", "-n", "jobs", "--", "true"],
            &["elect", "jobs"],
        ] {
            let out = run(tenure_at(&url).args(args));
            let text = format!("{}{}", stdout(&out), stderr(&out));
            assert_eq!(code(&out), expected, "{url} {args:?}: {text}");
            assert!(
                !text.contains(PASSWORD),
                "{args:?} printed the password:\n{text}"
            );
        }
    }
}

#[test]
fn unreachable_store_exits_69() {
    // Port 1 on loopback: nothing listens, so the connection is refused at once.
    let out = run(tenure_at("etcd://127.0.0.1:1").args(["lock", "jobs", "--", "true"]));
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}

#[test]
fn elect_help_documents_the_exit_codes_and_variables() {
    let out = run(tenure().args(["elect", "--help"]));
    assert_eq!(code(&out), 0);
    let help = stdout(&out);
    for needle in [
        "75",
        "77",
        "69",
        "130",
        "TENURE_LEADER_KEY",
        "TENURE_FENCING_TOKEN",
    ] {
        assert!(
            help.contains(needle),
            "elect --help lacks {needle}:\n{help}"
        );
    }
    let out = run(tenure().arg("--help"));
    for needle in [
        "--ca-file",
        "--client-cert",
        "--tls-server-name",
        "--user",
        "--password-file",
        "TENURE_PASSWORD",
    ] {
        assert!(stdout(&out).contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let out = run(tenure().args(["lock", "--help"]));
    assert_eq!(code(&out), 0);
    let help = stdout(&out);
    for needle in [
        "75",
        "69",
        "126",
        "127",
        "TENURE_FENCING_TOKEN",
        "ETCD_LOCK_REV",
    ] {
        assert!(help.contains(needle), "lock --help lacks {needle}:\n{help}");
    }
}

#[test]
fn counter_demo_json_is_exact_with_the_lock() {
    // Global options before and after the subcommand.
    for args in [
        &["--json", "demo", "counter", "--workers", "30"][..],
        &["demo", "--workers", "30", "--json"][..],
    ] {
        let out = run(tenure().args(args));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 1, "exactly one JSON object: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["workers"], 30, "{v}");
        assert_eq!(v["expected"], 30, "{v}");
        assert_eq!(v["locked_count"], 30, "{v}");
        assert!(v["unlocked_count"].as_u64().is_some_and(|n| n <= 30), "{v}");
        assert!(v["seconds"].as_f64().is_some(), "{v}");
    }
}

#[test]
fn every_demo_runs_in_process() {
    let out = run(tenure().args(["demo", "all"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "100 of 100",
        "fires lost()",
        "gets the lock",
        "locked by another session",
        "takes over",
    ] {
        assert!(text.contains(needle), "demo all lacks {needle:?}:\n{text}");
    }
}

#[test]
fn bench_prints_one_json_line_per_worker_count() {
    let args = ["bench", "--workers", "1,3", "--cycles", "40", "--json"];
    let out = run(tenure_at("mem://").args(args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, workers) in rows.iter().zip([1, 3]) {
        assert_eq!(row["workers"], workers, "{row}");
        assert_eq!(row["cycles"], 40, "{row}");
        for field in [
            "cycles_per_s",
            "p50_ms",
            "p99_ms",
            "handoff_p50_ms",
            "floor_p50_ms",
        ] {
            assert!(row[field].as_f64().is_some(), "{field} missing: {row}");
        }
        for field in ["floor_p99_ms", "uncontended_p50_ms"] {
            assert!(row[field].as_f64().is_some(), "{field} missing: {row}");
        }
    }
}

#[test]
fn bench_many_locks_and_waiters_print_one_json_line_each() {
    let args = [
        "bench",
        "--locks",
        "50",
        "--tasks",
        "1,4",
        "--cycles",
        "40",
        "--waiters",
        "3",
        "--json",
    ];
    let out = run(tenure_at("mem://").args(args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    // No contended rounds unless --workers is given with --locks or --waiters.
    let workloads: Vec<&str> = rows.iter().filter_map(|r| r["workload"].as_str()).collect();
    assert_eq!(workloads, ["locks", "locks", "waiters"], "{rows:?}");
    for (row, tasks) in rows.iter().zip([1, 4]) {
        assert_eq!(row["tasks"], tasks, "{row}");
        assert_eq!(row["locks"], 50, "{row}");
        assert_eq!(row["cycles"], 40, "{row}");
        for field in [
            "cycles_per_s",
            "vs_uncontended",
            "p50_ms",
            "uncontended_cycles_per_s",
        ] {
            assert!(row[field].as_f64().is_some(), "{field} missing: {row}");
        }
    }
    let waiters = &rows[2];
    assert_eq!(waiters["waiters"], 3, "{waiters}");
    assert_eq!(waiters["handoffs"], 3, "{waiters}");
    for field in ["handoff_p50_ms", "handoff_p99_ms", "rss_bytes_per_waiter"] {
        assert!(
            waiters[field].as_f64().is_some(),
            "{field} missing: {waiters}"
        );
    }
    // The embedded store has no server counters to read.
    assert!(waiters["store_per_handoff"].is_null(), "{waiters}");
}

#[test]
fn tasks_need_locks() {
    usage_error(&["bench", "--url", "mem://", "--tasks", "4"], "--locks");
}
