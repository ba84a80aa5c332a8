//! The one error type of the library, and the store error it keeps as its cause.

use std::sync::Arc;
use std::time::Duration;

use crate::LostReason;

/// Everything that can go wrong, each variant saying what happened and what to do.
///
/// Errors that come from the store keep the store client's own error as their `source`
/// ([`std::error::Error::source`]): an `etcd_client::Error`, a `zookeeper_client::Error`, a
/// `redis::RedisError` or a `std::io::Error`. Messages already include its words; the source is
/// there for code that wants the client's own codes:
///
/// ```
/// use std::error::Error as _;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let err = tenure::Tenure::builder("etcd://127.0.0.1:2379")
///     .user("app1")
///     .password_file("/nonexistent/password")
///     .connect()
///     .await
///     .unwrap_err();
/// let io = err.source().and_then(|s| s.downcast_ref::<std::io::Error>());
/// assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
/// # }
/// ```
///
/// Two errors are equal when they are the same variant with equal fields; sources compare by
/// their messages (store errors have no equality of their own).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be parsed or names an unknown backend.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// match tenure::Tenure::connect("etcd//127.0.0.1:2379").await {
    ///     Err(tenure::Error::InvalidUrl { reason, .. }) => eprintln!("fix the URL: {reason}"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("invalid URL {url:?}: {reason}; valid forms: {forms}", forms = crate::url::VALID_FORMS)]
    InvalidUrl {
        /// The URL as given, with any password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The backend named by the URL is not compiled into this build.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// match tenure::Tenure::connect("zk://127.0.0.1:2181").await {
    ///     Err(tenure::Error::BackendDisabled { feature, .. }) => {
    ///         eprintln!("this build lacks ZooKeeper: rebuild with --features {feature}")
    ///     }
    ///     other => drop(other?),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("backend {scheme:?} is not enabled in this build; enable the cargo feature {feature:?} of the tenure crate")]
    BackendDisabled {
        /// URL scheme.
        scheme: String,
        /// Cargo feature that enables it.
        feature: &'static str,
    },

    /// A lock or election name is not usable.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let err = session.mutex("jobs\nnightly").unwrap_err(); // control characters are refused
    /// assert!(matches!(err, tenure::Error::InvalidName { .. }), "{err}");
    /// # Ok(()) }
    /// ```
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given (truncated when very long).
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A TTL or other duration option is out of range.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let err = tenure.session_with_ttl(std::time::Duration::ZERO).await.unwrap_err();
    /// if let tenure::Error::InvalidDuration { min, max, .. } = err {
    ///     println!("choose a TTL between {min:?} and {max:?}");
    /// }
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = loop {
    ///     match tenure::Tenure::connect("etcd://127.0.0.1:2379").await {
    ///         Err(tenure::Error::Unreachable { endpoint, .. }) => {
    ///             eprintln!("{endpoint} is down; retrying");
    ///             tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    ///         }
    ///         other => break other?,
    ///     }
    /// };
    /// # Ok(()) }
    /// ```
    #[error(
        "cannot reach {endpoint}: {reason}; check that the server runs and the address is right"
    )]
    Unreachable {
        /// Endpoint(s) tried, redacted.
        endpoint: String,
        /// What the transport said.
        reason: String,
        /// The error behind this one, if any (see [`Cause`]).
        source: Option<Cause>,
    },

    /// `try_lock` found the lock held.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let _held = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// match tenure.session().await?.mutex("jobs")?.try_lock().await {
    ///     Err(tenure::Error::Locked { name, holder }) => println!("{name} held by {holder:?}"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("{name:?} is locked by another session{}", holder.as_ref().map(|h| format!(" (holder key {h})")).unwrap_or_default())]
    Locked {
        /// The lock name.
        name: String,
        /// The holder's key, where the store knows it.
        holder: Option<String>,
    },

    /// `lock_timeout` (or another bounded wait) ran out before the grant.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let _held = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// let jobs = tenure.session().await?.mutex("jobs")?;
    /// match jobs.lock_timeout(std::time::Duration::from_millis(20)).await {
    ///     Err(tenure::Error::Timeout { waited, waiting, .. }) => println!("gave up after {waited:?}: {waiting}"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("timed out after {waited:?} waiting for {name:?}: {waiting}")]
    Timeout {
        /// The lock name.
        name: String,
        /// How long we waited.
        waited: Duration,
        /// What the wait was doing when it ran out: queued behind a holder, or retrying a
        /// store that kept failing (with its last error), or another.
        waiting: crate::Waiting,
    },

    /// The session's lease is gone (or can no longer be trusted), so nothing can be held on it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let jobs = session.mutex("jobs")?;
    /// session.close().await?;
    /// match jobs.lock().await {
    ///     Err(tenure::Error::SessionLost { reason }) => println!("{reason}: open a new session"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("session lost: {reason}; open a new session")]
    SessionLost {
        /// Why the session was lost.
        reason: LostReason,
    },

    /// The grant was lost before it was released; nothing else was touched.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let guard = session.mutex("jobs")?.lock().await?;
    /// session.close().await?;
    /// match guard.unlock().await {
    ///     Err(tenure::Error::LockLost { reason, .. }) => eprintln!("lost before unlock ({reason}): check the work"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("lock {key:?} was lost before unlock ({reason}); whatever it protected may have been touched by another holder")]
    LockLost {
        /// The holder key that was lost.
        key: String,
        /// Why.
        reason: LostReason,
    },

    /// A guarded write was refused because the lock is no longer held.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// use tenure::Write;
    /// let guard = tenure.session().await?.mutex("jobs")?.lock().await?;
    /// match guard.write([Write::put("jobs/result", "done")]).await {
    ///     Ok(()) => println!("written under the lock"),
    ///     Err(tenure::Error::NotHeld { key }) => eprintln!("{key} lost: nothing written, redo the job"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("guarded write refused: lock {key:?} is no longer held; nothing was written")]
    NotHeld {
        /// The holder key.
        key: String,
    },

    /// An election operation that needs leadership was made by a non-leader.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let leadership = tenure.session().await?.election("primary")?.campaign("host-a").await?;
    /// match leadership.proclaim("host-a:9090").await {
    ///     Ok(()) => println!("followers see the new address"),
    ///     Err(tenure::Error::NotLeader { reason, .. }) => eprintln!("deposed ({reason}): campaign again"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("not the leader of {name:?}: {reason}")]
    NotLeader {
        /// Election name.
        name: String,
        /// Why leadership is not held.
        reason: String,
    },

    /// An observe stream's watch broke; restart observing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let mut leaders = tenure.observe("primary")?;
    /// while let Some(change) = leaders.next().await {
    ///     match change {
    ///         Ok(leader) => { println!("leader: {leader:?}"); break }
    ///         Err(tenure::Error::ObserveEnded { .. }) => leaders = tenure.observe("primary")?,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    #[error("observation of {name:?} ended: {reason}; observe or watch it again")]
    ObserveEnded {
        /// Election name.
        name: String,
        /// Why.
        reason: String,
    },

    /// The store refused the request for lack of permission or authentication.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::builder("etcd://127.0.0.1:2379").user("app1").password("pw").connect().await?;
    /// match tenure.session().await?.mutex("other-team/jobs")?.lock().await {
    ///     Err(tenure::Error::PermissionDenied { message, .. }) => eprintln!("grant app1 the key range: {message}"),
    ///     other => drop(other?),
    /// }
    /// # Ok(()) }
    /// ```
    #[error(
        "permission denied by the store: {message}; check the user's roles/ACLs and credentials"
    )]
    PermissionDenied {
        /// The store's message.
        message: String,
        /// The error behind this one, if any (see [`Cause`]).
        source: Option<Cause>,
    },

    /// The store refused our credentials: wrong user name or password, none given to a store
    /// that requires them, or an expired token that could not be renewed. Authorization
    /// failures of a known user (a key outside its roles/ACLs) are [`Error::PermissionDenied`].
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// match tenure::Tenure::builder("etcd://127.0.0.1:2379").user("app1").password("wrong").connect().await {
    ///     Err(tenure::Error::AuthFailed { message, .. }) => eprintln!("check the credentials: {message}"),
    ///     other => drop(other?),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("authentication failed: {message}; check the user name and password")]
    AuthFailed {
        /// What the store (or the connector) said; never contains the password.
        message: String,
        /// The error behind this one, if any (see [`Cause`]).
        source: Option<Cause>,
    },

    /// TLS with the store could not be set up; `problem` says which side is at fault.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// match tenure::Tenure::builder("etcds://127.0.0.1:2379").ca_file("ca.pem").connect().await {
    ///     Err(tenure::Error::Tls { problem: tenure::TlsProblem::ServerNameMismatch, .. }) => {
    ///         eprintln!("set tls_server_name to a name the certificate carries")
    ///     }
    ///     other => drop(other?),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("TLS with {endpoint} failed: {problem} ({detail})")]
    Tls {
        /// Endpoint(s) tried.
        endpoint: String,
        /// Which problem it is.
        problem: TlsProblem,
        /// What the TLS library said.
        detail: String,
        /// The error behind this one, if any (see [`Cause`]).
        source: Option<Cause>,
    },

    /// A connection option cannot be used: an unreadable certificate, key or password file,
    /// a password without a user name, TLS options on a plaintext URL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// // mem:// takes no credentials: refused, never ignored.
    /// match tenure::Tenure::builder("mem://").user("app1").connect().await {
    ///     Err(tenure::Error::InvalidOption { option, reason, .. }) => println!("{option}: {reason}"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option (`ca_file`, `client_cert`, `password_file`, `credentials`, ...).
        option: &'static str,
        /// What is wrong with it.
        reason: String,
        /// The error behind this one, if any (see [`Cause`]).
        source: Option<Cause>,
    },

    /// This backend cannot do what was asked.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::connect("redis://127.0.0.1:6379").await?;
    /// match tenure.session().await?.election("primary") {
    ///     Err(tenure::Error::Unsupported { advice, .. }) => eprintln!("{advice}"),
    ///     other => drop(other?),
    /// }
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// use tenure::Write;
    /// // The library already retried; a caller may try again later, here twice more.
    /// let mut tries = 0;
    /// loop {
    ///     match tenure.write([Write::put("jobs/heartbeat", "now")]).await {
    ///         Err(e @ tenure::Error::Transient { .. }) if tries < 2 => {
    ///             eprintln!("{e}; retrying");
    ///             tries += 1;
    ///         }
    ///         other => break other?,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    #[error(
        "store temporarily unavailable during {op}: {message}; retry later or raise the deadline"
    )]
    Transient {
        /// The operation.
        op: &'static str,
        /// The store's message.
        message: String,
        /// The error behind this one, if any (see [`Cause`]).
        source: Option<Cause>,
    },

    /// A semaphore's permit count is out of range (zero, or more than
    /// [`crate::MAX_PERMITS`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// let err = session.semaphore("pools/db", 0).unwrap_err();
    /// assert!(matches!(err, tenure::Error::InvalidPermits { permits: 0, .. }), "{err}");
    /// # Ok(()) }
    /// ```
    #[error("invalid permit count {permits} for semaphore {name:?}: must be between 1 and {max}")]
    InvalidPermits {
        /// The semaphore name.
        name: String,
        /// The count given.
        permits: u64,
        /// The largest count accepted.
        max: u32,
    },

    /// Clients disagree on a semaphore's permit count: a current holder or waiter recorded
    /// another count than this caller's. Nothing was acquired; use one count for one name (or
    /// wait until every holder of the old count has released it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let _p = tenure.session().await?.semaphore("pools/db", 2)?.acquire().await?;
    /// let other = tenure.session().await?.semaphore("pools/db", 3)?;
    /// match other.acquire().await {
    ///     Err(tenure::Error::PermitsDisagree { recorded, .. }) => println!("use {recorded} permits"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("semaphore {name:?} has {recorded} permits recorded by {holder}, but this caller asked for {permits}; every client of one semaphore must use the same count")]
    PermitsDisagree {
        /// The semaphore name.
        name: String,
        /// The count this caller asked for.
        permits: u32,
        /// The count recorded by another holder or waiter.
        recorded: u32,
        /// The key of the entry that recorded it.
        holder: String,
    },

    /// The store answered with an error that retrying will not fix.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// match tenure.read("jobs/last-run").await {
    ///     Ok(value) => println!("{value:?}"),
    ///     Err(tenure::Error::Store { op, message, .. }) => eprintln!("{op} failed for good: {message}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    #[error("store error during {op}: {message}")]
    Store {
        /// The operation.
        op: &'static str,
        /// The store's message.
        message: String,
        /// The error behind this one, if any (see [`Cause`]).
        source: Option<Cause>,
    },
}

/// The error behind an [`Error`]: the store client's, an I/O error, or the [`Error`] that one
/// sums up (an observation that ended, the first failure of a Redlock majority).
///
/// It dereferences to the error itself, and [`Error`]'s `source()` returns that error (not this
/// wrapper), so `err.source()?.downcast_ref::<redis::RedisError>()` finds it. Cloning shares it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// use std::error::Error as _;
/// let builder = tenure::Tenure::builder("etcd://127.0.0.1:2379").user("app1");
/// let err = builder.password_file("/nonexistent/pw").connect().await.unwrap_err();
/// if let tenure::Error::InvalidOption { source: Some(cause), .. } = &err {
///     println!("cause: {cause}");
/// }
/// // Error::source() returns the wrapped error itself, ready to downcast.
/// let io = err.source().and_then(|s| s.downcast_ref::<std::io::Error>());
/// assert!(io.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Wraps `error`.
    ///
    /// ```
    /// let cause = tenure::Cause::new(std::io::Error::other("disk full"));
    /// assert_eq!(cause.to_string(), "disk full");
    /// ```
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(error))
    }

    /// The wrapped error, if it is an `E`.
    ///
    /// ```
    /// let cause = tenure::Cause::new(std::io::Error::from(std::io::ErrorKind::TimedOut));
    /// let io = cause.downcast_ref::<std::io::Error>();
    /// assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::TimedOut));
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

// Not `impl std::error::Error for Cause`: thiserror would then return the wrapper from
// `Error::source`, and downcasting that to the client's error type would fail. Through `Deref`
// it returns the wrapped error itself.
impl std::ops::Deref for Cause {
    type Target = dyn std::error::Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// Which side of a failed TLS handshake is at fault, so the fix is obvious.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// use tenure::{Error, TlsProblem};
/// match tenure::Tenure::builder("etcds://127.0.0.1:2379").ca_file("ca.pem").connect().await {
///     Err(Error::Tls { problem: TlsProblem::UntrustedServerCertificate, .. }) => {
///         eprintln!("ca.pem did not sign the server's certificate")
///     }
///     Err(Error::Tls { problem, .. }) => eprintln!("{problem}"),
///     other => drop(other?),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The server's certificate is not signed by a CA we trust.
    UntrustedServerCertificate,
    /// The server's certificate does not name the host we connect to.
    ServerNameMismatch,
    /// The server requires a client certificate and we sent none.
    ClientCertificateRequired,
    /// The server refused the client certificate we sent.
    ClientCertificateRejected,
    /// Anything else (not TLS on that port, no common protocol version, ...).
    Handshake,
}

impl std::fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsProblem::UntrustedServerCertificate => {
                "untrusted server certificate: it is not signed by the CA in ca_file"
            }
            TlsProblem::ServerNameMismatch => {
                "the server certificate does not name this host; set tls_server_name to a name it carries"
            }
            TlsProblem::ClientCertificateRequired => {
                "the server requires a client certificate; set client_cert(cert, key)"
            }
            TlsProblem::ClientCertificateRejected => {
                "the server rejected our client certificate; is it signed by the CA the server trusts?"
            }
            TlsProblem::Handshake => "TLS handshake failed; does this port speak TLS?",
        })
    }
}

impl Error {
    /// Whether retrying the same request may succeed (C11).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// use std::time::Duration;
    /// let session = loop {
    ///     match tenure.session().await {
    ///         Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(100)).await,
    ///         other => break other?,
    ///     }
    /// };
    /// # Ok(()) }
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. } | Error::Unreachable { .. })
    }

    /// Whether this is an authentication or permission failure, in either direction: the
    /// store refused our credentials ([`Error::AuthFailed`]) or a key ([`Error::PermissionDenied`]),
    /// or a certificate was refused ([`Error::Tls`] other than [`TlsProblem::Handshake`]).
    /// Never transient; the CLI exits 77 (EX_NOPERM) for these.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let connecting = tenure::Tenure::builder("etcd://127.0.0.1:2379").user("app1").password("pw");
    /// match connecting.connect().await {
    ///     Err(e) if e.is_permission() => {
    ///         eprintln!("{e}"); // retrying will not help: fix the credentials or roles
    ///         std::process::exit(77);
    ///     }
    ///     other => drop(other?),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_permission(&self) -> bool {
        match self {
            Error::AuthFailed { .. } | Error::PermissionDenied { .. } => true,
            Error::Tls { problem, .. } => *problem != TlsProblem::Handshake,
            _ => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// async fn nightly_job(tenure: &tenure::Tenure) -> tenure::Result<()> {
///     let guard = tenure.session().await?.mutex("jobs/nightly")?.lock().await?;
///     guard.unlock().await
/// }
/// nightly_job(&tenure).await?;
/// # Ok(()) }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;
