//! The entry point: a connection to one store, chosen by URL.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::session::{check_ttl, DEFAULT_TTL};
use crate::url::{parse, redact, Target};
use crate::{Error, Result, Session};

/// How long [`Tenure::connect`] waits for the store before [`Error::Unreachable`].
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
#[derive(Debug, Clone)]
pub struct Builder {
    url: String,
    ttl: Duration,
    connect_timeout: Duration,
}

impl Builder {
    /// Session TTL (default [`DEFAULT_TTL`], 10 s). On etcd it is rounded up to whole seconds.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long to wait for the store to answer (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects, checking that the store answers.
    pub async fn connect(self) -> Result<Tenure> {
        let target = parse(&self.url)?;
        let backend = open(target, self.connect_timeout).await?;
        check_ttl(self.ttl, backend.ttl_range())?;
        Ok(Tenure {
            backend,
            url: redact(&self.url),
            ttl: self.ttl,
        })
    }
}

async fn open(target: Target, timeout: Duration) -> Result<Arc<dyn Backend>> {
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
        Target::Mem { name } => Ok(Arc::new(crate::backend::embedded::MemBackend::new(&name))),
        #[cfg(not(feature = "embedded"))]
        Target::Mem { .. } => Err(Error::BackendDisabled {
            scheme: "mem".into(),
            feature: "embedded",
        }),
        #[cfg(feature = "etcd")]
        Target::Etcd { endpoints, tls } => Ok(Arc::new(
            crate::backend::etcd::EtcdBackend::connect(&endpoints, tls, timeout).await?,
        )),
        #[cfg(not(feature = "etcd"))]
        Target::Etcd { .. } => Err(Error::BackendDisabled {
            scheme: "etcd".into(),
            feature: "etcd",
        }),
        #[cfg(feature = "zookeeper")]
        Target::Zk { hosts, chroot } => {
            crate::backend::zookeeper::connect(&hosts, chroot.as_deref(), timeout).await
        }
        #[cfg(not(feature = "zookeeper"))]
        Target::Zk { .. } => Err(Error::BackendDisabled {
            scheme: "zk".into(),
            feature: "zookeeper",
        }),
        #[cfg(feature = "redis")]
        Target::Redis(node) => crate::backend::redis::connect(&[node], false, timeout).await,
        #[cfg(feature = "redis")]
        Target::Redlock { nodes } => crate::backend::redis::connect(&nodes, true, timeout).await,
        #[cfg(not(feature = "redis"))]
        Target::Redis(_) | Target::Redlock { .. } => Err(Error::BackendDisabled {
            scheme: "redis".into(),
            feature: "redis",
        }),
    }
}

impl Tenure {
    /// Connects to the store at `url` with default options. See [`crate::url::VALID_FORMS`].
    pub async fn connect(url: &str) -> Result<Tenure> {
        Tenure::builder(url).connect().await
    }

    /// Options before connecting.
    pub fn builder(url: &str) -> Builder {
        Builder {
            url: url.to_string(),
            ttl: DEFAULT_TTL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The URL connected to, with any password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn backend_ref(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The backend's short name: `"etcd"` or `"mem"`.
    pub fn backend(&self) -> &'static str {
        self.backend.kind()
    }

    /// Opens a session with the configured TTL: one lease grant.
    pub async fn session(&self) -> Result<Session> {
        self.session_with_ttl(self.ttl).await
    }

    /// Opens a session with its own TTL.
    pub async fn session_with_ttl(&self, ttl: Duration) -> Result<Session> {
        check_ttl(ttl, self.backend.ttl_range())?;
        let inner = self.backend.open_session(ttl).await?;
        Ok(Session::new(inner, self.backend.clone(), ttl))
    }

    /// Reads one key (linearizably), e.g. the value a lock protects.
    pub async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        crate::name::validate(key)?;
        self.backend.read(key).await
    }

    /// Applies `ops` atomically *without* any lock: the store's plain write, the floor that
    /// benchmarks compare against. Use [`crate::MutexGuard::write`] for writes a lock protects.
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
