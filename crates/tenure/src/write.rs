//! Guarded writes (C10): store writes that commit only while a lock is still held.

/// One write in a guarded batch; see [`crate::MutexGuard::write`].
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
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Write::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A delete of `key`.
    pub fn delete(key: impl Into<String>) -> Self {
        Write::Delete { key: key.into() }
    }
}
