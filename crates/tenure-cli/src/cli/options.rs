//! Global options (accepted before or after the subcommand) and value parsers.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

/// Shown under `tenure --help`: the URL forms (from the library, so they stay in step) and
/// what a duration looks like.
pub fn global_help() -> String {
    format!(
        "URL forms: {}.\n`lock`, `elect`, `leader` and `status` need a shared store; mem:// is for \
         demo and bench.\n\
         Password: from the environment variable TENURE_PASSWORD or --password-file, never a \
         flag.\n\
         Durations: 500ms, 10s, 2m, 1h30m.\n\
         Examples:\n  tenure lock --url etcd://127.0.0.1:2379 backups -- ./backup.sh\n  \
         tenure elect --url etcd://127.0.0.1:2379 scheduler -- ./scheduler\n  \
         tenure status --url etcd://127.0.0.1:2379\n  \
         tenure demo all\n  tenure bench --url etcd://127.0.0.1:2379\n\
         Exit codes: see `tenure lock --help` and `tenure elect --help`; 77 means the store \
         refused our credentials, certificate or permissions.",
        tenure::url::VALID_FORMS
    )
}

/// Options every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// Store: etcd://HOST:PORT[,...], etcds://... (TLS), zk://..., redis://..., postgres://USER@HOST:PORT/DB, mem:// (demo, bench)
    #[arg(long, global = true, env = "TENURE_URL", value_name = "URL")]
    pub url: Option<String>,

    /// Session (lease) TTL: how long a crashed holder keeps others waiting [default: 10s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,

    /// Machine-readable output (JSON) on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Log to stderr: -v info, -vv debug, -vvv trace [default: warnings only]
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(flatten)]
    pub security: SecurityOpts,
}

/// TLS and authentication. The password comes only from the environment (`TENURE_PASSWORD`)
/// or a file, never from the command line, where `ps` and shell history would show it.
#[derive(Debug, Clone, Args)]
pub struct SecurityOpts {
    /// PEM file of the CA(s) that signed the server's certificate (etcds://, rediss://)
    #[arg(long, global = true, value_name = "PATH", help_heading = "Security")]
    pub ca_file: Option<PathBuf>,

    /// PEM client certificate, for servers that require one (mutual TLS); needs --client-key
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        requires = "client_key",
        help_heading = "Security"
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of --client-cert
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        requires = "client_cert",
        help_heading = "Security"
    )]
    pub client_key: Option<PathBuf>,

    /// Name the server's certificate must carry, when it differs from the URL's host
    #[arg(long, global = true, value_name = "NAME", help_heading = "Security")]
    pub tls_server_name: Option<String>,

    /// User for the store's authentication; the password comes from TENURE_PASSWORD or
    /// --password-file
    #[arg(
        long,
        global = true,
        env = "TENURE_USER",
        value_name = "NAME",
        help_heading = "Security"
    )]
    pub user: Option<String>,

    /// Read the password from the first line of this file (instead of TENURE_PASSWORD)
    #[arg(long, global = true, value_name = "PATH", help_heading = "Security")]
    pub password_file: Option<PathBuf>,
}

/// The longest duration any option takes: 100 years as humantime counts them (365.25 days).
/// Longer ones parse but overflow a deadline (`Instant + Duration`) and panic where they are
/// used, e.g. `bench --max-time 500000000000y`.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses a human duration (`500ms`, `10s`, `2m`) of at most [`MAX_DURATION`]; clap turns an
/// error into exit 2.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let hint = "expected a duration with a unit such as 500ms, 10s, 2m or 1h30m";
    match humantime::parse_duration(s.trim()) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        Ok(_) => Err(format!("longer than 100 years; {hint}")),
        Err(e) => Err(format!("{e}; {hint}")),
    }
}

/// The largest count in a [`Counts`] list: as many sessions as `demo --workers` allows. A
/// larger one would try to open that many sessions (`bench --workers 18446744073709551615`).
pub const MAX_COUNT: usize = 10_000;

/// A comma-separated list of counts from 1 to [`MAX_COUNT`], e.g. `1,5,50`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts(pub Vec<usize>);

/// Parses [`Counts`].
pub fn parse_counts(s: &str) -> Result<Counts, String> {
    let counts = s
        .split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
            _ => Err(format!(
                "{part:?} is not a positive whole number up to {MAX_COUNT}; expected a list \
                 such as 1,5,50"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Counts(counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_human() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "10", "ten seconds", "-1s", "5x"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("500ms"), "{bad}: {err}");
        }
    }

    #[test]
    fn counts_are_positive() {
        assert_eq!(parse_counts("1, 5,50"), Ok(Counts(vec![1, 5, 50])));
        for bad in ["", "0", "1,,2", "-3", "x"] {
            assert!(parse_counts(bad).is_err(), "{bad}");
        }
    }
}
