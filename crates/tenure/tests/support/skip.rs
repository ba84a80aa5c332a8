//! The one rule for a test whose server or tool is missing, shared by the test suites of both
//! crates (`tenure-cli`'s includes this file by path): say so on the terminal, past the
//! harness's capture, and pass; or fail when `scripts/test` promised everything
//! (`TENURE_REQUIRE_SERVERS=1`).

use std::io::Write as _;

/// `None` after a `SKIPPED <test>: <why>` line, so that callers can write
/// `let Some(..) = .. else { return }`. Panics instead when `TENURE_REQUIRE_SERVERS=1`.
pub fn skip<T>(test: &str, why: &str) -> Option<T> {
    if std::env::var_os("TENURE_REQUIRE_SERVERS").is_some_and(|v| v == "1") {
        panic!("{test}: {why}, but TENURE_REQUIRE_SERVERS=1; run scripts/test");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    None
}

/// The value of `var`, or [`skip`] with `<var> not set`.
pub fn env_or_skip(test: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => skip(test, &format!("{var} not set")),
    }
}
