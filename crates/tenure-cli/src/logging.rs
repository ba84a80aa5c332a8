//! Diagnostics on stderr, so stdout stays clean for scripts and `--json`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Warnings by default; `-v` info, `-vv` debug, `-vvv` trace. Without `-v`, `RUST_LOG` is
/// honoured for finer filters.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = match verbose {
        0 => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        _ => EnvFilter::new(level),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .try_init();
}
