//! Guarded writes (C10): store writes that commit only while a lock is still held.

/// One write in a guarded batch; see [`crate::MutexGuard::write`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// use tenure::Write;
/// let guard = tenure.session().await?.mutex("accounts/42")?.lock().await?;
/// guard.write([Write::put("accounts/42/balance", "100"), Write::delete("accounts/42/pending")]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Write {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Delete `key` (no error if absent).
    Delete {
        /// The key.
        key: String,
    },
}

impl Write {
    /// A put of `value` at `key`.
    ///
    /// ```
    /// let op = tenure::Write::put("jobs/last-run", "today");
    /// assert_eq!(op, tenure::Write::Put { key: "jobs/last-run".into(), value: b"today".to_vec() });
    /// ```
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Write::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A delete of `key`.
    ///
    /// ```
    /// let op = tenure::Write::delete("jobs/draft");
    /// assert_eq!(op, tenure::Write::Delete { key: "jobs/draft".into() });
    /// ```
    pub fn delete(key: impl Into<String>) -> Self {
        Write::Delete { key: key.into() }
    }
}
