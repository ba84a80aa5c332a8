//! Validation of lock and election names (C12).

use crate::{Error, Result};

/// Longest accepted name in bytes: keys stay well inside every store's limits.
///
/// ```
/// let name = format!("jobs/{}", "x".repeat(tenure::MAX_NAME_LEN));
/// assert!(matches!(tenure::validate_name(&name), Err(tenure::Error::InvalidName { .. })));
/// ```
pub const MAX_NAME_LEN: usize = 512;

/// Checks a lock or election name against the rules every backend shares: non-empty, at
/// most [`MAX_NAME_LEN`] bytes, no control characters (NUL included). Lets a program reject a
/// bad name before connecting; a backend may add rules of its own (ZooKeeper paths).
///
/// ```
/// assert!(tenure::validate_name("jobs/nightly").is_ok());
/// assert!(matches!(tenure::validate_name(""), Err(tenure::Error::InvalidName { .. })));
/// ```
pub fn validate(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "a name must not be empty".to_string()
    } else if name.len() > MAX_NAME_LEN {
        format!(
            "{} bytes is longer than the {MAX_NAME_LEN}-byte limit",
            name.len()
        )
    } else if name.chars().any(char::is_control) {
        "a name must not contain control characters such as NUL or newline".to_string()
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.chars().take(64).collect(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_etcdctl_style_names() {
        for ok in ["jobs", "jobs/nightly", "a", "/x/y", "ünïcode"] {
            validate(ok).unwrap();
        }
    }

    #[test]
    fn rejects_bad_names() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "a\0b", "a\nb", long.as_str()] {
            assert!(
                matches!(validate(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }
}
