//! Writing results to stdout: human lines, or one JSON object per line with `--json`.
//!
//! Errors (a closed pipe, say) are returned rather than panicking as `println!` would.

use std::fmt::Display;
use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

/// One line of human-readable output.
pub fn line(text: impl Display) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// One JSON object on one line.
pub fn json(value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(value).context("encoding JSON")?;
    line(text)
}

/// Milliseconds with sub-millisecond precision, for tables and JSON.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
