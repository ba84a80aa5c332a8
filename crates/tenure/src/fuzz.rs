//! Property tests of the parsers that take user input — backend URLs, lock and election names,
//! TTLs and timeouts — fed arbitrary and generated input (C12 in docs/contract.md: a typed
//! error, never a panic, a hang or a silently substituted default).
//!
//! Each property runs [`DEFAULT_CASES`] inputs under plain `cargo test`; `TENURE_FUZZ_CASES=N`
//! runs N instead. A failure prints the smallest input proptest shrank it to: add that input
//! to the property's list of regressions, which run on every test run.

mod name;
mod ttl;
mod url;

use proptest::test_runner::Config;

/// Enough to reach the corner cases of every grammar in well under a second per property.
const DEFAULT_CASES: u32 = 1000;

/// The proptest configuration of every property here: `TENURE_FUZZ_CASES` cases or the
/// default, and no regression files written into the source tree (regressions are kept as
/// explicit cases in the tests instead, where a reader sees them).
pub(crate) fn config() -> Config {
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
