//! # Tenure: distributed locks and leases
//!
//! Processes on many machines need one shared answer to "who may act now?". Tenure answers it
//! with leases in a strongly consistent store: every grant lives under a [`Session`] (a lease
//! that keeps itself alive and dies with its holder), carries a [`FencingToken`], and tells its
//! holder the moment it can no longer be sure it holds it ([`MutexGuard::lost`]).
//!
//! Backends are chosen by URL (see [`url::VALID_FORMS`]), each a cargo feature, all on by default:
//!
//! | URL | backend | shares locks with |
//! |---|---|---|
//! | `mem://[NAME]` | in-process, no server (`embedded`) | tasks of this process |
//! | `etcd://h:p[,…]`, `etcds://…` | etcd v3 (`etcd`) | Go `clientv3/concurrency`, `etcdctl lock/elect` |
//! | `zk://h:p[,…][/chroot]` | ZooKeeper (`zookeeper`) | Curator `InterProcessMutex`, `LeaderLatch` |
//! | `redis://…`, `redlock://h1,h2,h3` | Redis, Redlock (`redis`) | redis-py `Lock`, redsync (same key) |
//!
//! Redis is weaker than the others and says so: waiting is not FIFO, elections are refused
//! with [`Error::Unsupported`], and a lock taken over by someone else is noticed at the next
//! renewal rather than at once.
//!
//! ```
//! use tenure::{Tenure, Write};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
//! let tenure = Tenure::connect("mem://").await?;     // or "etcd://127.0.0.1:2379"
//! let session = tenure.session().await?;             // a lease, renewed in the background
//! let guard = session.mutex("jobs/nightly")?.lock().await?;
//! println!("holding {} with fencing token {}", guard.key(), guard.token());
//! tokio::select! {
//!     reason = guard.lost() => eprintln!("lost the lock: {reason}; stop now"),
//!     _ = async { guard.write([Write::put("jobs/last-run", "today")]).await } => {}
//! }
//! guard.unlock().await?;                             // owner-only; reports errors
//! # Ok(()) }
//! ```
//!
//! The contract every backend keeps (exclusion, fencing, FIFO waiting, cancellation safety,
//! crash safety, the lost signal, owner-only release, guarded writes, idempotent retries) is
//! stated clause by clause in the repository's `docs/contract.md`, with what each backend is
//! exempt from and why, documented on the types, and tested clause by clause in the
//! conformance suite.

#![warn(missing_docs)]

mod backend;
mod client;
mod election;
mod error;
mod held;
mod host;
mod liveness;
mod mutex;
mod name;
mod retry;
mod security;
mod session;
mod status;
mod token;
pub mod url;
mod waiting;
mod write;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod fuzz;

pub use client::{Builder, Tenure, DEFAULT_CONNECT_TIMEOUT};
pub use election::{Election, Leader, Leadership, Observer};
pub use error::{Error, Result, TlsProblem};
pub use host::host_pid;
pub use liveness::LostReason;
pub use mutex::{Mutex, MutexGuard};
pub use name::{validate as validate_name, MAX_NAME_LEN};
pub use security::Secret;
pub use session::{Session, DEFAULT_TTL};
pub use status::LockStatus;
pub use token::FencingToken;
pub use waiting::Waiting;
pub use write::Write;

/// The README's examples, compiled as doc tests so they cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
