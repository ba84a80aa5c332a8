//! Lock names → PostgreSQL advisory lock keys (one `bigint` each).
//!
//! A name is mapped exactly as sqlx's `PgAdvisoryLock::new(name)` maps it, so that a Rust
//! service locking with sqlx and one locking with Tenure exclude each other: HKDF (RFC 5869)
//! with SHA-256, no salt, the name's UTF-8 bytes as input key material, the info string
//! `SQLx (Rust) Postgres advisory lock`, 8 bytes of output read as a little-endian `i64`
//! (sqlx's own example: `"my first Postgres advisory lock!"` → `-5560419505042474287`).
//!
//! Any other peer can use the same number: `SELECT pg_advisory_lock(<key>)` in `psql`, or
//! `pg_try_advisory_lock`. A name of the form `advisory:<i64>` (`advisory:42`,
//! `advisory:-7`) is that key itself, for peers that picked their numbers another way.
//! Keys in the two-`int4` key space (`pg_advisory_lock(a, b)`) are separate in PostgreSQL and
//! are not reachable from Tenure.

use ring::hkdf;

/// HKDF's `info` input, the one sqlx uses: it is what makes our keys sqlx's.
const SQLX_INFO: &[u8] = b"SQLx (Rust) Postgres advisory lock";
/// Names that carry their key as a number.
pub(crate) const NUMERIC_PREFIX: &str = "advisory:";

struct Eight;

impl hkdf::KeyType for Eight {
    fn len(&self) -> usize {
        8
    }
}

/// The PostgreSQL advisory lock key of lock `name` on `postgres://`: the key sqlx's
/// `PgAdvisoryLock::new(name)` uses, or the number itself for a name `advisory:<i64>`. Another
/// client that runs `SELECT pg_advisory_lock(<key>)` (or `pg_try_advisory_lock`) excludes Tenure
/// and is excluded by it.
///
/// ```
/// assert_eq!(tenure::postgres_advisory_key("my first Postgres advisory lock!"), -5560419505042474287);
/// assert_eq!(tenure::postgres_advisory_key("advisory:42"), 42);
/// ```
pub fn advisory_key(name: &str) -> i64 {
    if let Some(k) = numeric(name) {
        return k;
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(name.as_bytes());
    let mut out = [0u8; 8];
    // Eight bytes is far below HKDF's limit of 255 × 32, the one way expand or fill can fail.
    if let Ok(okm) = prk.expand(&[SQLX_INFO], Eight) {
        let _ = okm.fill(&mut out);
    }
    i64::from_le_bytes(out)
}

/// The key of an `advisory:<i64>` name, exactly as written (no sign or digits beyond an
/// `i64`'s, no leading `+`), else `None`.
pub(crate) fn numeric(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(NUMERIC_PREFIX)?;
    let unsigned = digits.strip_prefix('-').unwrap_or(digits);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The tag of semaphore `name`: the first half (`classid`) of the two-`int4` advisory keys of
/// its permit slots, `(tag, 0)` … `(tag, permits - 1)`. The low 32 bits of the key of
/// `<name>#semaphore` (hashed even for an `advisory:` name): the two-`int4` key space is
/// separate from the one-`bigint` one of mutexes, read/write locks and sqlx, so no permit
/// slot is ever any lock's key. Two names whose tags collide (32 bits) share slots, which can
/// only let fewer holders in, never more.
pub(crate) fn semaphore_tag(name: &str) -> i32 {
    // Never numeric (`#` is no digit), so always hashed, `advisory:` names too.
    advisory_key(&format!("{name}#semaphore")) as i32
}

/// A permit slot's key as `pg_locks` shows it (`classid << 32 | objid`).
pub(crate) fn slot_key(tag: i32, slot: i32) -> i64 {
    (i64::from(tag as u32) << 32) | i64::from(slot as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_keys_as_sqlx() {
        // The example in sqlx's documentation of PgAdvisoryLock::new.
        assert_eq!(
            advisory_key("my first Postgres advisory lock!"),
            -5560419505042474287
        );
    }

    #[test]
    fn numeric_names_are_their_key() {
        assert_eq!(advisory_key("advisory:42"), 42);
        assert_eq!(advisory_key("advisory:-9223372036854775808"), i64::MIN);
        for hashed in [
            "advisory:",
            "advisory:+1",
            "advisory:1x",
            "advisory:99999999999999999999",
        ] {
            assert_eq!(numeric(hashed), None, "{hashed}");
        }
    }
}
