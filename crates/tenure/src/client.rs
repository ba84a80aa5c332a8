//! The entry point: a connection to one store, chosen by URL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::security::{PasswordSource, Security};
use crate::session::{check_ttl, DEFAULT_TTL};
use crate::url::{parse, redact, Target};
use crate::{Error, Result, Secret, Session};

/// How long [`Tenure::connect`] waits for the store before [`Error::Unreachable`].
///
/// ```
/// // A start-up that should give up sooner than the default:
/// let builder = tenure::Tenure::builder("etcd://127.0.0.1:2379")
///     .connect_timeout(tenure::DEFAULT_CONNECT_TIMEOUT / 5);
/// assert!(format!("{builder:?}").contains("connect_timeout: 1s"));
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a store; cheap to clone. Open [`Session`]s from it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// let tenure = tenure::Tenure::builder("mem://")
///     .ttl(std::time::Duration::from_secs(5))
///     .connect()
///     .await?;
/// let session = tenure.session().await?;
/// assert_eq!(session.ttl().as_secs(), 5);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tenure {
    backend: Arc<dyn Backend>,
    url: String,
    ttl: Duration,
    metrics: crate::metrics::Options,
}

impl std::fmt::Debug for Tenure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenure")
            .field("url", &self.url)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Options for [`Tenure`]; start with [`Tenure::builder`].
///
/// TLS and credentials are backend-agnostic options; each backend uses what its store supports
/// and refuses, with [`Error::InvalidOption`], what it cannot honour (never ignores it).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// let tenure = tenure::Tenure::builder("etcds://etcd1:2379,etcd2:2379")
///     .ca_file("/etc/tenure/ca.pem")
///     .client_cert("/etc/tenure/client.pem", "/etc/tenure/client-key.pem")
///     .user("app1")
///     .password_file("/run/secrets/etcd-password")
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Builder {
    url: String,
    ttl: Duration,
    connect_timeout: Duration,
    security: Security,
    metrics: crate::metrics::Options,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("url", &redact(&self.url))
            .field("ttl", &self.ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("security", &self.security)
            .field("metrics", &self.metrics)
            .finish()
    }
}

impl Builder {
    /// Session TTL (default [`DEFAULT_TTL`], 10 s). On etcd it is rounded up to whole seconds.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::builder("mem://").ttl(Duration::from_secs(30)).connect().await?;
    /// assert_eq!(tenure.session().await?.ttl(), Duration::from_secs(30));
    /// // Out of the backend's range: refused when connecting.
    /// let err = tenure::Tenure::builder("mem://").ttl(Duration::ZERO).connect().await.unwrap_err();
    /// assert!(matches!(err, tenure::Error::InvalidDuration { .. }));
    /// # Ok(()) }
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long to wait for the store to answer (default 5 s).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// // Fail fast at start-up when the store is down, instead of after 5 s.
    /// let tenure = tenure::Tenure::builder("etcd://127.0.0.1:2379")
    ///     .connect_timeout(Duration::from_secs(1))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// PEM file of the CA(s) that signed the server's certificate (TLS URLs such as
    /// `etcds://`). Without it the system's CA bundle is used.
    ///
    /// ```
    /// let b = tenure::Tenure::builder("etcds://127.0.0.1:2379").ca_file("ca.pem");
    /// assert!(format!("{b:?}").contains("ca.pem"));
    /// ```
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.security.ca_file = Some(path.into());
        self
    }

    /// PEM files of the client certificate and its private key, for servers that require
    /// client certificates (mutual TLS, etcd's `--client-cert-auth`).
    ///
    /// ```
    /// let b = tenure::Tenure::builder("etcds://127.0.0.1:2379")
    ///     .client_cert("client.pem", "client-key.pem");
    /// assert!(format!("{b:?}").contains("client-key.pem"));
    /// ```
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.security.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// The name the server's certificate must carry, when it differs from the URL's host
    /// (connecting by IP address to a server whose certificate names its DNS name).
    ///
    /// ```
    /// let b = tenure::Tenure::builder("etcds://10.0.0.7:2379").tls_server_name("etcd.internal");
    /// assert!(format!("{b:?}").contains("etcd.internal"));
    /// ```
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.security.server_name = Some(name.into());
        self
    }

    /// User name and password for the store's authentication. The password is kept in a
    /// [`Secret`] and never printed.
    ///
    /// ```
    /// let b = tenure::Tenure::builder("etcd://127.0.0.1:2379").credentials("app1", "s3cret");
    /// let shown = format!("{b:?}");
    /// assert!(shown.contains("app1") && !shown.contains("s3cret"));
    /// ```
    pub fn credentials(self, user: impl Into<String>, password: impl Into<Secret>) -> Self {
        self.user(user).password(password)
    }

    /// User name for the store's authentication; pair it with [`Builder::password`] or
    /// [`Builder::password_file`].
    ///
    /// ```
    /// let b = tenure::Tenure::builder("etcd://127.0.0.1:2379").user("app1").password("s3cret");
    /// assert!(!format!("{b:?}").contains("s3cret")); // the password never shows
    /// ```
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.security.user = Some(user.into());
        self
    }

    /// Password for the store's authentication, kept in a [`Secret`].
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let password = std::env::var("TENURE_PASSWORD").unwrap_or_default();
    /// let tenure = tenure::Tenure::builder("postgres://app1@127.0.0.1:5432/app")
    ///     .password(password)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn password(mut self, password: impl Into<Secret>) -> Self {
        self.security.password = Some(PasswordSource::Value(password.into()));
        self
    }

    /// Reads the password from the first line of `path` (line ending removed) when
    /// connecting, so it never has to appear on a command line. A missing or empty file is
    /// [`Error::InvalidOption`] from [`Builder::connect`].
    ///
    /// ```
    /// let b = tenure::Tenure::builder("etcd://127.0.0.1:2379")
    ///     .user("app1")
    ///     .password_file("/run/secrets/etcd-password");
    /// assert!(format!("{b:?}").contains("/run/secrets/etcd-password"));
    /// ```
    pub fn password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.security.password = Some(PasswordSource::File(path.into()));
        self
    }

    /// Labels the per-lock metrics (acquire wait, hold time, hand-offs, losses, queued
    /// waiters, leader held) with the lock's name as well, `name="jobs/nightly"`. Off by
    /// default: every distinct name becomes a time series of its own in the metrics backend,
    /// so turn it on only when the program uses a small, fixed set of names (not one lock per
    /// user, order or job id). Session and renewal metrics never carry a name. Needs the cargo
    /// feature `metrics`; see the README, "Metrics".
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::builder("mem://name-label-doc")
    ///     .metrics_name_label(true)
    ///     .connect()
    ///     .await?;
    /// // Recorded with name="jobs/nightly" beside backend="mem", primitive="mutex".
    /// let guard = tenure.session().await?.mutex("jobs/nightly")?.lock().await?;
    /// guard.unlock().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics_name_label(mut self, on: bool) -> Self {
        self.metrics.name_label = on;
        self
    }

    /// Connects, checking that the store answers (and, with credentials, that it accepts them).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::builder("mem://").ttl(Duration::from_secs(5)).connect().await?;
    /// assert_eq!(tenure.backend(), "mem");
    /// # Ok(()) }
    /// ```
    pub async fn connect(self) -> Result<Tenure> {
        let target = parse(&self.url)?;
        let backend = open(target, &self.security, self.connect_timeout).await?;
        check_ttl(self.ttl, backend.ttl_range())?;
        Ok(Tenure {
            backend,
            url: redact(&self.url),
            ttl: self.ttl,
            metrics: self.metrics,
        })
    }
}

/// Refuses security options a backend's connector does not take yet, rather than ignore them.
#[allow(dead_code)] // unused when only etcd and mem are compiled in
fn no_security(security: &Security, backend: &str) -> Result<()> {
    if security.wants_tls() || security.user.is_some() || security.password.is_some() {
        return Err(crate::security::invalid(
            "tls/credentials",
            format!(
                "the {backend} backend does not take TLS or credential options in this version"
            ),
        ));
    }
    Ok(())
}

async fn open(target: Target, security: &Security, timeout: Duration) -> Result<Arc<dyn Backend>> {
    if timeout.is_zero() {
        return Err(Error::InvalidDuration {
            what: "connect timeout",
            value: timeout,
            min: Duration::from_millis(1),
            max: Duration::MAX,
        });
    }
    match target {
        #[cfg(feature = "embedded")]
        Target::Mem { name } => {
            no_security(security, "mem")?;
            Ok(Arc::new(crate::backend::embedded::MemBackend::new(&name)))
        }
        #[cfg(not(feature = "embedded"))]
        Target::Mem { .. } => Err(Error::BackendDisabled {
            scheme: "mem".into(),
            feature: "embedded",
        }),
        #[cfg(feature = "etcd")]
        Target::Etcd { endpoints, tls } => Ok(Arc::new(
            crate::backend::etcd::EtcdBackend::connect(&endpoints, tls, security, timeout).await?,
        )),
        #[cfg(not(feature = "etcd"))]
        Target::Etcd { .. } => Err(Error::BackendDisabled {
            scheme: "etcd".into(),
            feature: "etcd",
        }),
        #[cfg(feature = "zookeeper")]
        Target::Zk { hosts, chroot } => {
            crate::backend::zookeeper::connect(&hosts, chroot.as_deref(), security, timeout).await
        }
        #[cfg(not(feature = "zookeeper"))]
        Target::Zk { .. } => Err(Error::BackendDisabled {
            scheme: "zk".into(),
            feature: "zookeeper",
        }),
        #[cfg(feature = "redis")]
        Target::Redis(node) => {
            crate::backend::redis::connect(&[node], false, security, timeout).await
        }
        #[cfg(feature = "redis")]
        Target::Redlock { nodes } => {
            crate::backend::redis::connect(&nodes, true, security, timeout).await
        }
        #[cfg(not(feature = "redis"))]
        Target::Redis(_) | Target::Redlock { .. } => Err(Error::BackendDisabled {
            scheme: "redis".into(),
            feature: "redis",
        }),
        #[cfg(feature = "postgres")]
        Target::Postgres(t) => crate::backend::postgres::connect(&t, security, timeout).await,
        #[cfg(not(feature = "postgres"))]
        Target::Postgres(_) => Err(Error::BackendDisabled {
            scheme: "postgres".into(),
            feature: "postgres",
        }),
    }
}

impl Tenure {
    /// Connects to the store at `url` with default options. See [`crate::url::VALID_FORMS`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::connect("mem://").await?; // or "etcd://127.0.0.1:2379"
    /// assert!(matches!(
    ///     tenure::Tenure::connect("etcd//oops").await,
    ///     Err(tenure::Error::InvalidUrl { .. })
    /// ));
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Tenure> {
        Tenure::builder(url).connect().await
    }

    /// Options before connecting.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::builder("mem://")
    ///     .ttl(Duration::from_secs(15))
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: &str) -> Builder {
        Builder {
            url: url.to_string(),
            ttl: DEFAULT_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            security: Security::default(),
            metrics: Default::default(),
        }
    }

    /// The URL connected to, with any password redacted.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::connect("mem://url-doc").await?;
    /// assert_eq!(tenure.url(), "mem://url-doc");
    /// # Ok(()) }
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `mem://NAME` whose every store call may fault as `plan` says (tests of C8, C13).
    #[cfg(all(test, feature = "embedded"))]
    pub(crate) fn mem_with_faults(
        name: &str,
        plan: Arc<crate::backend::faulty::FaultPlan>,
    ) -> Tenure {
        Tenure {
            backend: Arc::new(crate::backend::embedded::MemBackend::with_faults(
                name, plan,
            )),
            url: format!("mem://{name}"),
            ttl: DEFAULT_TTL,
            metrics: Default::default(),
        }
    }

    pub(crate) fn backend_ref(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The backend's short name: `"etcd"` (also for `etcds://`), `"zk"`, `"redis"` (also for
    /// `rediss://`), `"redlock"`, `"postgres"` (also for `postgresql://`) or `"mem"`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::connect("mem://").await?;
    /// assert_eq!(tenure.backend(), "mem");
    /// # Ok(()) }
    /// ```
    pub fn backend(&self) -> &'static str {
        self.backend.kind()
    }

    /// Opens a session with the configured TTL: one lease grant.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let session = tenure.session().await?;
    /// assert_eq!(session.ttl(), tenure::DEFAULT_TTL);
    /// # Ok(()) }
    /// ```
    pub async fn session(&self) -> Result<Session> {
        self.session_with_ttl(self.ttl).await
    }

    /// Opens a session with its own TTL.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// // A long job: a longer lease, fewer renewals; a crash blocks others longer.
    /// let session = tenure.session_with_ttl(Duration::from_secs(60)).await?;
    /// assert_eq!(session.ttl(), Duration::from_secs(60));
    /// # Ok(()) }
    /// ```
    pub async fn session_with_ttl(&self, ttl: Duration) -> Result<Session> {
        check_ttl(ttl, self.backend.ttl_range())?;
        let inner = self.backend.open_session(ttl).await?;
        Ok(Session::new(inner, self.backend.clone(), ttl, self.metrics))
    }

    /// Reads one key (linearizably), e.g. the value a lock protects.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// assert_eq!(tenure.read("jobs/last-run").await?, None);
    /// tenure.write([tenure::Write::put("jobs/last-run", "2026-12-01")]).await?;
    /// assert_eq!(tenure.read("jobs/last-run").await?, Some(b"2026-12-01".to_vec()));
    /// # Ok(()) }
    /// ```
    pub async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        crate::name::validate(key)?;
        self.backend.read(key).await
    }

    /// Applies `ops` atomically *without* any lock: the store's plain write, the floor that
    /// benchmarks compare against. Use [`crate::MutexGuard::write`] for writes a lock protects.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// use tenure::Write;
    /// tenure.write([Write::put("a", "1"), Write::put("b", "2"), Write::delete("c")]).await?;
    /// assert_eq!(tenure.read("b").await?, Some(b"2".to_vec()));
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, ops: impl IntoIterator<Item = crate::Write>) -> Result<()> {
        let ops: Vec<crate::Write> = ops.into_iter().collect();
        for op in &ops {
            match op {
                crate::Write::Put { key, .. } | crate::Write::Delete { key } => {
                    crate::name::validate(key)?
                }
            }
        }
        self.backend.write(&ops).await
    }
}
