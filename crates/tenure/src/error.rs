//! The one error type of the library.

use std::time::Duration;

use crate::LostReason;

/// Everything that can go wrong, each variant saying what happened and what to do.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be parsed or names an unknown backend.
    #[error("invalid URL {url:?}: {reason}; valid forms: {forms}", forms = crate::url::VALID_FORMS)]
    InvalidUrl {
        /// The URL as given, with any password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The backend named by the URL is not compiled into this build.
    #[error("backend {scheme:?} is not enabled in this build; enable the cargo feature {feature:?} of the tenure crate")]
    BackendDisabled {
        /// URL scheme.
        scheme: String,
        /// Cargo feature that enables it.
        feature: &'static str,
    },

    /// A lock or election name is not usable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given (truncated when very long).
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A TTL or other duration option is out of range.
    #[error("invalid {what} {value:?}: must be between {min:?} and {max:?}")]
    InvalidDuration {
        /// Which option.
        what: &'static str,
        /// The value given.
        value: Duration,
        /// Smallest accepted value.
        min: Duration,
        /// Largest accepted value.
        max: Duration,
    },

    /// No endpoint of the store answered in time.
    #[error(
        "cannot reach {endpoint}: {reason}; check that the server runs and the address is right"
    )]
    Unreachable {
        /// Endpoint(s) tried, redacted.
        endpoint: String,
        /// What the transport said.
        reason: String,
    },

    /// `try_lock` found the lock held.
    #[error("{name:?} is locked by another session{}", holder.as_ref().map(|h| format!(" (holder key {h})")).unwrap_or_default())]
    Locked {
        /// The lock name.
        name: String,
        /// The holder's key, where the store knows it.
        holder: Option<String>,
    },

    /// `lock_timeout` (or another bounded wait) ran out before the grant.
    #[error("timed out after {waited:?} waiting for {name:?}; it is still held by someone else")]
    Timeout {
        /// The lock name.
        name: String,
        /// How long we waited.
        waited: Duration,
    },

    /// The session's lease is gone (or can no longer be trusted), so nothing can be held on it.
    #[error("session lost: {reason}; open a new session")]
    SessionLost {
        /// Why the session was lost.
        reason: LostReason,
    },

    /// The grant was lost before it was released; nothing else was touched.
    #[error("lock {key:?} was lost before unlock ({reason}); whatever it protected may have been touched by another holder")]
    LockLost {
        /// The holder key that was lost.
        key: String,
        /// Why.
        reason: LostReason,
    },

    /// A guarded write was refused because the lock is no longer held.
    #[error("guarded write refused: lock {key:?} is no longer held; nothing was written")]
    NotHeld {
        /// The holder key.
        key: String,
    },

    /// An election operation that needs leadership was made by a non-leader.
    #[error("not the leader of {name:?}: {reason}")]
    NotLeader {
        /// Election name.
        name: String,
        /// Why leadership is not held.
        reason: String,
    },

    /// An observe stream's watch broke; restart observing.
    #[error("observation of {name:?} ended: {reason}; call observe() again")]
    ObserveEnded {
        /// Election name.
        name: String,
        /// Why.
        reason: String,
    },

    /// The store refused the request for lack of permission or authentication.
    #[error(
        "permission denied by the store: {message}; check the user's roles/ACLs and credentials"
    )]
    PermissionDenied {
        /// The store's message.
        message: String,
    },

    /// This backend cannot do what was asked.
    #[error("{what} is not supported by the {backend} backend: {advice}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// The operation.
        what: &'static str,
        /// What to use instead.
        advice: &'static str,
    },

    /// A transient store failure (leader change, lost connection, timeout) that outlived its retries.
    #[error(
        "store temporarily unavailable during {op}: {message}; retry later or raise the deadline"
    )]
    Transient {
        /// The operation.
        op: &'static str,
        /// The store's message.
        message: String,
    },

    /// The store answered with an error that retrying will not fix.
    #[error("store error during {op}: {message}")]
    Store {
        /// The operation.
        op: &'static str,
        /// The store's message.
        message: String,
    },
}

impl Error {
    /// Whether retrying the same request may succeed (C11).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. } | Error::Unreachable { .. })
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
