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
fn failover_demo_says_it_is_not_available_yet() {
    usage_error(&["demo", "failover"], "not");
}

#[test]
fn unreachable_store_exits_69() {
    // Port 1 on loopback: nothing listens, so the connection is refused at once.
    let out = run(tenure_at("etcd://127.0.0.1:1").args(["lock", "jobs", "--", "true"]));
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
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
