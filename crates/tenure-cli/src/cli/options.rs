//! Global options (accepted before or after the subcommand) and value parsers.

use std::time::Duration;

use clap::{ArgAction, Args};

/// Shown under `tenure --help`: the URL forms (from the library, so they stay in step) and
/// what a duration looks like.
pub fn global_help() -> String {
    format!(
        "URL forms: {}.\n`lock` needs a shared store; mem:// is for demo and bench.\n\
         Durations: 500ms, 10s, 2m, 1h30m.\n\
         Examples:\n  tenure lock --url etcd://127.0.0.1:2379 backups -- ./backup.sh\n  \
         tenure demo all\n  tenure bench --url etcd://127.0.0.1:2379",
        tenure::url::VALID_FORMS
    )
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Store: etcd://HOST:PORT[,HOST:PORT...], etcds://... (TLS), mem://[NAME] (demo, bench)
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
}

/// Parses a human duration (`500ms`, `10s`, `2m`); clap turns an error into exit 2.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{e}; expected a duration with a unit such as 500ms, 10s, 2m or 1h30m")
    })
}

/// A comma-separated list of positive counts, e.g. `1,5,50`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts(pub Vec<usize>);

/// Parses [`Counts`].
pub fn parse_counts(s: &str) -> Result<Counts, String> {
    let counts = s
        .split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{part:?} is not a positive whole number; expected a list such as 1,5,50"
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
