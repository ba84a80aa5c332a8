//! Property tests of what the command line takes: human durations, count lists, and whole
//! argument vectors through clap (`Cli::try_parse_from`), fed arbitrary and generated input.
//!
//! Every input parses or is refused with a message (clap's error, exit 2 in `main`), never a
//! panic; what parses holds the invariants the commands rely on (durations usable as
//! deadlines, bounded counts, options that need each other present together); and commands
//! generated from the grammar parse to what they say. Each property runs [`DEFAULT_CASES`]
//! inputs under `cargo test`; `TENURE_FUZZ_CASES=N` runs N instead.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use clap::Parser;
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::cli::options::{parse_counts, parse_duration, Counts, MAX_COUNT, MAX_DURATION};
use crate::{Cli, Command};

/// Enough to reach the corner cases of every grammar in well under a second per property.
const DEFAULT_CASES: u32 = 1000;

/// `TENURE_FUZZ_CASES` cases or the default; no regression files written into the source tree
/// (regressions are explicit cases below, where a reader sees them).
fn config() -> Config {
    let cases = match std::env::var("TENURE_FUZZ_CASES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("TENURE_FUZZ_CASES={v:?} is not a number of cases")),
        Err(_) => DEFAULT_CASES,
    };
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn check_duration(s: &str) {
    match parse_duration(s) {
        Ok(d) => {
            assert!(d <= MAX_DURATION, "{s:?} → {d:?}");
            assert!(
                Instant::now().checked_add(d).is_some(),
                "{s:?}: no deadline"
            );
        }
        Err(e) => assert!(e.contains("500ms"), "{s:?}: {e}"),
    }
}

fn check_counts(s: &str) {
    match parse_counts(s) {
        Ok(Counts(counts)) => {
            assert!(!counts.is_empty());
            assert!(counts.iter().all(|n| (1..=MAX_COUNT).contains(n)), "{s:?}");
        }
        Err(e) => assert!(e.contains("1,5,50"), "{s:?}: {e}"),
    }
}

fn durationish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,22}(ns|us|ms|s|m|h|d|w|M|y|sec|min|hours|x|)",
        "( ?[0-9]{1,12} ?(ns|ms|s|m|h|d|y)){1,6}",
        "[-+ .0-9a-z\u{0}\u{e9}\u{1F600}]{0,20}",
    ]
}

fn countish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[-+ ,0-9]{0,30}",
        prop::collection::vec("[0-9]{1,25}", 1..6).prop_map(|v| v.join(",")),
    ]
}

/// One argument: a word the CLI knows, a value it might take, or anything at all (non-UTF-8
/// bytes included).
fn argument() -> impl Strategy<Value = OsString> {
    let words = prop::sample::select(vec![
        "lock",
        "elect",
        "leader",
        "status",
        "demo",
        "bench",
        "counter",
        "all",
        "--url",
        "mem://",
        "etcd://127.0.0.1:2379",
        "--ttl",
        "--json",
        "-v",
        "-vvv",
        "-n",
        "--no-wait",
        "-w",
        "--wait",
        "-E",
        "--grace",
        "--value",
        "--observe",
        "register",
        "--workers",
        "--cycles",
        "--max-time",
        "--ca-file",
        "--client-cert",
        "--client-key",
        "--tls-server-name",
        "--user",
        "--password-file",
        "--password",
        "--help",
        "-h",
        "--version",
        "-V",
        "--",
        "-",
        "",
        "10s",
        "0",
        "255",
        "256",
        "99999999999999999999y",
        "1,5,50",
        "jobs/nightly",
    ]);
    prop_oneof![
        4 => words.prop_map(OsString::from),
        1 => any::<String>().prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(OsString::from_vec),
    ]
}

/// What every parsed command line must satisfy, whatever it was.
fn check_parsed(cli: &Cli) {
    let sec = &cli.global.security;
    assert_eq!(sec.client_cert.is_some(), sec.client_key.is_some());
    let durations: Vec<Duration> = match &cli.command {
        Command::Lock(a) => {
            assert!(!(a.no_wait && a.wait.is_some()), "-n with -w");
            a.wait.into_iter().chain([a.grace]).collect()
        }
        Command::Elect(a) => {
            if a.observe {
                assert!(a.value.is_none() && a.command.is_empty());
            }
            vec![a.grace]
        }
        Command::Bench(a) => {
            let counts = [&a.workers, &a.waiters, &Some(a.tasks.clone())];
            for list in counts.into_iter().flatten() {
                assert!(list.0.iter().all(|n| (1..=MAX_COUNT).contains(n)));
            }
            assert!(a.locks.is_none_or(|n| n >= 1));
            assert!(a.cycles >= 1);
            vec![a.max_time]
        }
        Command::Demo(a) => {
            assert!((1..=10_000).contains(&a.workers));
            vec![]
        }
        Command::Register(a) => vec![a.grace],
        Command::Leader(_) | Command::Status(_) => vec![],
    };
    for d in durations.into_iter().chain(cli.global.ttl) {
        assert!(d <= MAX_DURATION, "{d:?}");
    }
}

fn check_args(args: &[OsString]) {
    let argv = std::iter::once(OsString::from("tenure")).chain(args.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(cli) => check_parsed(&cli),
        // Rendering is what `main` does with it (help, version or a usage error).
        Err(e) => assert!(!e.render().to_string().is_empty(), "{args:?}"),
    }
}

/// A `lock` command line from the grammar: the arguments, and what each must parse to.
#[derive(Debug, Clone)]
struct LockLine {
    name: String,
    wait: Option<(String, Duration)>,
    no_wait: bool,
    code: Option<u8>,
    grace: Option<(String, Duration)>,
    command: Vec<String>,
}

fn written_duration() -> impl Strategy<Value = (String, Duration)> {
    (
        0u64..100_000,
        prop::sample::select(vec![
            ("ms", 1u64),
            ("s", 1000),
            ("m", 60_000),
            ("h", 3_600_000),
        ]),
    )
        .prop_map(|(n, (unit, ms))| (format!("{n}{unit}"), Duration::from_millis(n * ms)))
}

fn lock_line() -> impl Strategy<Value = LockLine> {
    (
        "[a-z][a-z0-9/._-]{0,20}",
        prop::option::of(written_duration()),
        any::<bool>(),
        prop::option::of(any::<u8>()),
        prop::option::of(written_duration()),
        prop::collection::vec("[ -~]{0,10}", 0..4),
    )
        .prop_map(|(name, wait, no_wait, code, grace, command)| LockLine {
            no_wait: no_wait && wait.is_none(),
            name,
            wait,
            code,
            grace,
            command,
        })
}

impl LockLine {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["tenure".to_string(), "lock".to_string()];
        if let Some((w, _)) = &self.wait {
            args.extend(["-w".to_string(), w.clone()]);
        }
        if self.no_wait {
            args.push("-n".to_string());
        }
        if let Some(c) = self.code {
            args.extend(["-E".to_string(), c.to_string()]);
        }
        if let Some((g, _)) = &self.grace {
            args.extend(["--grace".to_string(), g.clone()]);
        }
        // The name last among the options, so that a name starting with `-` is impossible here.
        args.push(self.name.clone());
        if !self.command.is_empty() {
            args.push("--".to_string());
            args.extend(self.command.iter().cloned());
        }
        args
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn durations_parse_to_usable_deadlines_or_explain(s in durationish()) {
        check_duration(&s);
    }

    #[test]
    fn written_durations_parse_exactly((s, d) in written_duration()) {
        prop_assert_eq!(parse_duration(&s), Ok(d));
        prop_assert_eq!(parse_duration(&format!(" {s} ")), Ok(d));
    }

    #[test]
    fn formatted_durations_read_back(ms in 0u64..(MAX_DURATION.as_millis() as u64)) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&humantime::format_duration(d).to_string()), Ok(d));
    }

    #[test]
    fn count_lists_are_bounded_or_explain(s in countish()) {
        check_counts(&s);
    }

    #[test]
    fn arbitrary_argument_vectors_parse_or_are_usage_errors(
        args in prop::collection::vec(argument(), 0..12)
    ) {
        check_args(&args);
    }

    #[test]
    fn lock_lines_parse_to_what_they_say(line in lock_line()) {
        let cli = Cli::try_parse_from(line.args()).map_err(|e| {
            TestCaseError::fail(format!("{:?}: {}", line.args(), e.render()))
        })?;
        let Command::Lock(a) = cli.command else {
            return Err(TestCaseError::fail("not a lock command"));
        };
        prop_assert_eq!(&a.name, &line.name);
        prop_assert_eq!(a.wait, line.wait.map(|(_, d)| d));
        prop_assert_eq!(a.no_wait, line.no_wait);
        prop_assert_eq!(a.conflict_exit_code, line.code.unwrap_or(crate::exit::CONFLICT));
        prop_assert_eq!(a.grace, line.grace.map_or(Duration::from_secs(10), |(_, d)| d));
        let command: Vec<OsString> = line.command.iter().map(OsString::from).collect();
        prop_assert_eq!(a.command, command);
    }
}

/// Inputs that were accepted and then panicked (or would run away) where they were used.
#[test]
fn regressions() {
    for args in [
        // `Instant + Duration` overflowed: "overflow when adding duration to instant".
        &["bench", "--url", "mem://", "--max-time", "500000000000y"][..],
        &["lock", "--grace", "500000000000y", "x"][..],
        // Opened (or tried to) 2^64 - 1 sessions.
        &[
            "bench",
            "--url",
            "mem://",
            "--workers",
            "18446744073709551615",
        ][..],
    ] {
        let argv = std::iter::once("tenure").chain(args.iter().copied());
        let err = Cli::try_parse_from(argv).expect_err(&args.join(" "));
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::ValueValidation,
            "{args:?}"
        );
    }
    check_duration("500000000000y");
    check_counts("18446744073709551615");
}
