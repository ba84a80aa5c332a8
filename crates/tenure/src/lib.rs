//! # Tenure: distributed locks and leases
//!
//! Processes on many machines need one shared answer to "who may act now?". Tenure answers it
//! with leases in a strongly consistent store: every grant lives under a [`Session`] (a lease
//! that keeps itself alive and dies with its holder), carries a [`FencingToken`], and tells its
//! holder the moment it can no longer be sure it holds it ([`Hold::lost`], which every guard dereferences to).
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
//! Besides mutexes and elections, [`Session::semaphore`] gives counting semaphores: at most N
//! [`Permit`]s of a name at once, each fenced, crash-safe and cancellation-safe like a lock
//! (on ZooKeeper, Curator's `InterProcessSemaphoreV2`).
//!
//! Redis is weaker than the others and says so: waiting is FIFO only among Tenure clients on
//! one instance (not on Redlock, nor for semaphores), elections are refused
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
//!
//! ## JSON and other formats (`serde` feature)
//!
//! With the cargo feature `serde` (off by default) the data types a program logs, stores or
//! sends implement serde's `Serialize` and `Deserialize`, in this shape, which stays stable:
//!
//! | type | shape (as JSON) |
//! |---|---|
//! | [`FencingToken`] | a number: `7` |
//! | [`LostReason`] | a snake-case string: `"lease_expired"`, `"renewal_deadline"`, `"entry_deleted"`, `"session_closed"` |
//! | [`Leader`] | `{"key": "jobs/694d…", "value": "host-a:8080", "token": 7}`; `value` is a string when it is UTF-8, else an array of byte values |
//! | [`LockStatus`] | flat, the holder's fields beside the name, the holder's TTL left in whole milliseconds (`null` if unknown): `{"name": "jobs", "key": "jobs/694d…", "value": "host-a:8080", "token": 7, "waiters": 2, "ttl_ms": 9400}` — what `tenure status --json` prints; a semaphore's adds `"permits": 3` and `"holders": [{"key", "value", "token"}, …]` |
//! | [`Waiting`] | tagged by `state`: `{"state": "queued", "ahead": "jobs/694d…"}`, `{"state": "retrying", "last_error": "…"}`, `{"state": "local_queue"}`, `{"state": "store"}` |
//!
//! A future variant of a (non-exhaustive) enum is a new string or state. Tokens can reach
//! 2^64 − 1; readers that keep JSON numbers as doubles are exact only up to 2^53.
//!
//! ```
//! # #[cfg(feature = "serde")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tenure::{Leader, LockStatus, Tenure};
//!
//! let tenure = Tenure::connect("mem://serde-example").await?;
//! let session = tenure.session().await?;
//! let guard = session.mutex("jobs")?.lock().await?;
//! let status: Vec<LockStatus> = tenure.status("").await?;
//! let json = serde_json::to_string(&status)?;
//! assert!(json.starts_with(r#"[{"name":"jobs","key":"jobs/"#), "{json}");
//! let back: Vec<LockStatus> = serde_json::from_str(&json)?;
//! assert_eq!(back[0].holder, status[0].holder); // the TTL comes back in whole milliseconds
//!
//! let leader: Leader = serde_json::from_str(r#"{"key":"a/1","value":"host-a:8080","token":7}"#)?;
//! assert_eq!((leader.value.as_slice(), leader.token.get()), (&b"host-a:8080"[..], 7));
//! guard.unlock().await?;
//! # Ok(()) }
//! # #[cfg(not(feature = "serde"))]
//! # fn main() {}
//! ```
//!
//! ## Metrics (`metrics` feature)
//!
//! With the cargo feature `metrics` (off by default) Tenure records acquire waits by outcome,
//! hold times, hand-offs, losses by reason, queued waiters, leadership, open sessions and lease
//! renewals through the [`metrics`](https://docs.rs/metrics) facade; the program installs the
//! exporter. Lock names become labels only with `Builder::metrics_name_label(true)`. The
//! README's "Metrics" section lists every metric and label; `describe_metrics` registers their
//! descriptions.

#![warn(missing_docs)]

mod backend;
#[cfg(feature = "blocking")]
pub mod blocking;
mod client;
mod election;
mod ephemeral;
mod error;
mod events;
mod hold;
mod host;
mod liveness;
mod metrics;
mod mutex;
mod name;
mod retry;
mod rwlock;
mod security;
mod semaphore;
#[cfg(feature = "serde")]
mod serialize;
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

#[cfg(feature = "metrics")]
pub use crate::metrics::describe_metrics;
#[cfg(feature = "postgres")]
pub use backend::postgres::key::advisory_key as postgres_advisory_key;
pub use client::{Builder, Tenure, DEFAULT_CONNECT_TIMEOUT};
pub use election::{Election, Leader, Leadership, Observer};
pub use ephemeral::{KeyEvent, KeyWatcher};
pub use error::{Cause, Error, Result, TlsProblem};
pub use events::{SessionEvent, SessionEvents};
pub use hold::Hold;
pub use host::host_pid;
pub use liveness::LostReason;
pub use mutex::{Mutex, MutexGuard};
pub use name::{validate as validate_name, MAX_NAME_LEN};
pub use rwlock::{ReadGuard, RwLock, WriteGuard};
pub use security::Secret;
pub use semaphore::{Permit, Semaphore, MAX_PERMITS};
pub use session::{Session, DEFAULT_TTL};
pub use status::LockStatus;
pub use token::FencingToken;
pub use waiting::Waiting;
pub use write::Write;

/// The README's examples, compiled as doc tests so they cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
