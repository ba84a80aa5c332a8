//! What is held and awaited under a prefix, for operators (`tenure status`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backend::observe::{first, Kv};
use crate::backend::semaphore::{recorded, LEASES, LOCKS};
use crate::{Leader, Result, Tenure};

/// One lock, election or semaphore as the store shows it.
///
/// With the `serde` feature it is one flat object, the holder's fields beside the name, the
/// TTL in whole milliseconds (`null` when the store does not report it) — the shape of
/// `tenure status --json`: `{"name": "jobs", "key": "jobs/694d…", "value": "host-a:8080",
/// "token": 7, "waiters": 2, "ttl_ms": 9400}`. A semaphore's row adds `"permits"` (when
/// recorded) and `"holders"` (an array of `{"key", "value", "token"}`, oldest first); a lock's
/// or election's row has neither.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// let _guard = tenure.session().await?.mutex("jobs/nightly")?.with_value("cron-3").lock().await?;
/// for row in tenure.status("jobs/").await? {
///     let holder = String::from_utf8_lossy(&row.holder.value);
///     println!("{}: held by {holder}, {} waiting, TTL left {:?}", row.name, row.waiters, row.holder_ttl);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LockStatus {
    /// The lock or election name, as it was given (see [`Tenure::status`] for ZooKeeper).
    pub name: String,
    /// The holder (for a mutex) or leader (for an election), with its key, token and value.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub holder: Leader,
    /// How many sessions wait behind the holder.
    pub waiters: usize,
    /// The holder's lease TTL left, where the store reports it.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "ttl_ms", default, with = "crate::serialize::millis")
    )]
    pub holder_ttl: Option<Duration>,
    /// Whether this is a read/write lock ([`crate::RwLock`]).
    #[cfg_attr(feature = "serde", serde(default))]
    pub rwlock: bool,
    /// How many hold a read/write lock shared, the holder among them (0: held by its writer,
    /// or not a read/write lock); `waiters` are the others queued behind them.
    #[cfg_attr(feature = "serde", serde(default))]
    pub readers: usize,
    /// For a semaphore, its permit count as its holders recorded it (`None` where none did:
    /// Curator's `InterProcessSemaphoreV2`), else `None`.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub permits: Option<u32>,
    /// For a semaphore, every holder of a permit, oldest first (`holder` is the first of
    /// them); empty for a lock or an election.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub holders: Vec<Leader>,
    /// Whether this row is a key registered with [`crate::Session::put_ephemeral`] (`name` is
    /// the key, `holder` its value), not a lock.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_false"))]
    pub registered: bool,
}

/// A permit entry as status shows it: its value without the recorded count.
fn permit_holder(kv: &Kv) -> Leader {
    let mut holder = Leader::from(kv);
    if let Some((_, value)) = recorded(&kv.value) {
        holder.value = value.to_vec();
    }
    holder
}

/// Whether the entries under `<X>/leases` are a semaphore's permits: ours record a count,
/// Curator's are named `…-lease-<seq>`.
fn is_permits(kvs: &[Kv]) -> bool {
    kvs.iter()
        .any(|kv| recorded(&kv.value).is_some() || kv.key.contains("-lease-"))
}

/// The holders of a semaphore's permit entries (oldest first; a head waiter's entry past the
/// recorded count is not a holder), that count, and the oldest holder's lease.
fn semaphore_holders(mut kvs: Vec<Kv>) -> (Option<u32>, Vec<Leader>, u64) {
    kvs.sort_by_key(|kv| kv.create_rev);
    let permits = kvs
        .iter()
        .find_map(|kv| recorded(&kv.value).map(|(n, _)| n));
    let held = permits.map_or(kvs.len(), |n| kvs.len().min(n as usize));
    let lease = kvs.first().map_or(0, |kv| kv.lease);
    (
        permits,
        kvs[..held].iter().map(permit_holder).collect(),
        lease,
    )
}

/// A read/write lock entry's lock name and side, from its key: etcd's and the embedded
/// store's `N/read/<id>` and `N/write/<id>`, ZooKeeper's `N/_c_…-__READ__…` and `…-__WRIT__…`
/// (kazoo's `__rlock__` readers too). `None`: a mutex or election entry.
fn rw_entry(key: &str) -> Option<(&str, bool)> {
    let (parent, node) = key.rsplit_once('/')?;
    if let Some(name) = parent.strip_suffix("/read") {
        return Some((name, true));
    }
    if let Some(name) = parent.strip_suffix("/write") {
        return Some((name, false));
    }
    if node.contains("__READ__") || node.contains("__rlock__") {
        return Some((parent, true));
    }
    node.contains("__WRIT__").then_some((parent, false))
}

/// What ZooKeeper's downgraded writer's data starts with (backend/zookeeper/rw.rs).
const ZK_DOWNGRADED: &[u8] = b"\0tenure:downgraded\0";

/// The downgrade markers among `entries` (`N\0downgraded/<id>` → the write entry
/// `N/write/<id>` and its token), which make a writer count as a reader.
fn downgraded(entries: &[Kv]) -> BTreeMap<String, Vec<u8>> {
    entries
        .iter()
        .filter_map(|kv| {
            let (name, id) = kv.key.split_once("\0downgraded/")?;
            Some((format!("{name}/write/{id}"), kv.value.clone()))
        })
        .collect()
}

/// How many of `kvs` hold a read/write lock shared: the readers (and downgraded writers)
/// before its first writer in queue order.
fn shared_holders(kvs: &mut [Kv], markers: &BTreeMap<String, Vec<u8>>) -> usize {
    kvs.sort_by_key(|kv| kv.create_rev);
    kvs.iter_mut()
        .take_while(|kv| {
            let reader = rw_entry(&kv.key).is_some_and(|(_, reader)| reader);
            let marked = markers
                .get(&kv.key)
                .is_some_and(|token| *token == kv.create_rev.to_string().into_bytes());
            reader || marked || kv.value.starts_with(ZK_DOWNGRADED)
        })
        .map(|kv| {
            if let Some(value) = kv.value.strip_prefix(ZK_DOWNGRADED) {
                kv.value = value.to_vec();
            }
        })
        .count()
}

#[cfg(feature = "serde")]
fn is_false(b: &bool) -> bool {
    !b
}

/// Groups queue entries (keys held under a lease) by name: the key up to its last `/`, or a
/// read/write lock's name for its readers and writers.
fn by_name(entries: Vec<Kv>) -> BTreeMap<String, Vec<Kv>> {
    let mut names: BTreeMap<String, Vec<Kv>> = BTreeMap::new();
    // Keys with NUL are not queue entries (no name contains it): withdrawn and downgrade
    // markers.
    let entries = entries
        .into_iter()
        .filter(|kv| kv.lease != 0 && !kv.key.contains('\0'));
    for kv in entries {
        let name = match rw_entry(&kv.key) {
            Some((name, _)) => Some(name.to_string()),
            None => kv.key.rsplit_once('/').map(|(name, _)| name.to_string()),
        };
        if let Some(name) = name {
            names.entry(name).or_default().push(kv);
        }
    }
    names
}

impl Tenure {
    /// Every lock and election whose name starts with `prefix` (empty: all), each once, with
    /// its holder or leader (key, token and value: a mutex holder's
    /// [`Mutex::with_value`](crate::Mutex::with_value), `HOST:PID` by default; an election's
    /// proposal), how many wait behind it, and the holder lease's remaining TTL where the store
    /// reports it (etcd, `mem://`). A read/write lock is one entry whatever its layout, with
    /// how many hold it shared ([`LockStatus::readers`]; the holder is the oldest of them).
    ///
    /// Keys registered with [`crate::Session::put_ephemeral`] under `prefix` are rows too
    /// ([`LockStatus::registered`]: the key as `name`, its value and its session's TTL left).
    ///
    /// Names are shown as they were given. ZooKeeper cannot tell `a` from `/a` (one znode), so
    /// there a name is shown without a leading `/` unless `prefix` starts with one. One Redis
    /// instance lists only registered keys: it keeps no index of locks, semaphores or
    /// read/write locks, which are left out. Redlock: [`crate::Error::Unsupported`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let _guard = tenure.session().await?.mutex("jobs/nightly")?.lock().await?;
    /// let status = tenure.status("jobs/").await?;
    /// assert_eq!((status.len(), status[0].name.as_str(), status[0].waiters), (1, "jobs/nightly", 0));
    /// # Ok(()) }
    /// ```
    pub async fn status(&self, prefix: &str) -> Result<Vec<LockStatus>> {
        let backend = self.backend_ref();
        let entries = backend.entries_under(prefix).await?;
        let unrooted = backend.rooted_names() && !prefix.starts_with('/');
        let shown = |name: String| match name.strip_prefix('/') {
            Some(given) if unrooted => given.to_string(),
            _ => name,
        };
        let markers = downgraded(&entries);
        let (registered, entries): (Vec<Kv>, Vec<Kv>) = entries
            .into_iter()
            .partition(|kv| backend.is_registered(kv));
        let mut names = by_name(entries);
        // A semaphore `X` is its permits `X/leases/…` and its internal lock `X/locks/…`.
        let semaphores: Vec<String> = names
            .iter()
            .filter_map(|(name, kvs)| {
                let base = name.strip_suffix(&format!("/{LEASES}"))?;
                is_permits(kvs).then(|| base.to_string())
            })
            .collect();
        let mut out = Vec::new();
        for base in semaphores {
            let kvs = names
                .remove(&format!("{base}/{LEASES}"))
                .unwrap_or_default();
            let waiting = names
                .remove(&format!("{base}/{LOCKS}"))
                .map_or(0, |l| l.len());
            let (permits, holders, lease) = semaphore_holders(kvs);
            let Some(holder) = holders.first().cloned() else {
                continue;
            };
            out.push(LockStatus {
                name: shown(base),
                holder_ttl: backend.lease_ttl(lease).await?,
                holder,
                waiters: waiting,
                permits,
                holders,
                rwlock: false,
                readers: 0,
                registered: false,
            });
        }
        for (name, mut kvs) in names {
            let rwlock = kvs.iter().any(|kv| rw_entry(&kv.key).is_some());
            let readers = if rwlock {
                shared_holders(&mut kvs, &markers)
            } else {
                0
            };
            let Some(holder) = first(&kvs) else { continue };
            let holder_ttl = backend.lease_ttl(holder.lease).await?;
            out.push(LockStatus {
                holder: Leader::from(holder),
                waiters: kvs.len() - readers.max(1),
                name: shown(name),
                holder_ttl,
                permits: None,
                holders: Vec::new(),
                rwlock,
                readers,
                registered: false,
            });
        }
        for kv in registered {
            out.push(LockStatus {
                name: shown(kv.key.clone()),
                holder_ttl: backend.lease_ttl(kv.lease).await?,
                holder: Leader::from(&kv),
                waiters: 0,
                permits: None,
                holders: Vec::new(),
                rwlock: false,
                readers: 0,
                registered: true,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shows_holders_and_waiters() {
        let t = Tenure::connect("mem://status-test").await.unwrap();
        let a = t.session().await.unwrap();
        let g = a.mutex("app/jobs").unwrap().lock().await.unwrap();
        let b = t.session().await.unwrap();
        let waiter =
            tokio::spawn(async move { b.mutex("app/jobs").unwrap().lock().await.map(|_| ()) });
        let l = a
            .election("app/primary")
            .unwrap()
            .campaign("me")
            .await
            .unwrap();
        t.write([crate::Write::put("app/plain", "not a lock")])
            .await
            .unwrap();
        let queued = async {
            loop {
                let st = t.status("app/").await.unwrap();
                if st.iter().any(|s| s.waiters == 1) {
                    return st;
                }
                tokio::task::yield_now().await;
            }
        };
        let st = tokio::time::timeout(std::time::Duration::from_secs(30), queued)
            .await
            .expect("waiter queued");
        assert_eq!(st.len(), 2);
        assert_eq!((st[0].name.as_str(), st[0].waiters), ("app/jobs", 1));
        assert_eq!(st[0].holder.key, g.key());
        assert_eq!(st[0].holder.value, crate::host_pid().into_bytes());
        assert_eq!(
            (st[1].name.as_str(), st[1].holder.value.as_slice()),
            ("app/primary", &b"me"[..])
        );
        assert!(st[1]
            .holder_ttl
            .is_some_and(|ttl| ttl <= crate::DEFAULT_TTL));
        drop((g, l));
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shows_read_write_locks_as_one_with_their_readers() {
        let t = Tenure::connect("mem://status-rw-test").await.unwrap();
        let mut readers = Vec::new();
        for _ in 0..3 {
            let s = t.session().await.unwrap();
            readers.push(s.rwlock("app/config").unwrap().read().await.unwrap());
        }
        let s = t.session().await.unwrap();
        let writer = tokio::spawn(async move {
            let g = s.rwlock("app/config").unwrap().write().await.unwrap();
            g.downgrade().await.map(|_| ())
        });
        let queued = async {
            loop {
                let st = t.status("app/").await.unwrap();
                if st.iter().any(|s| s.waiters == 1) {
                    return st;
                }
                tokio::task::yield_now().await;
            }
        };
        let st = tokio::time::timeout(std::time::Duration::from_secs(30), queued)
            .await
            .expect("writer queued");
        assert_eq!(st.len(), 1, "{st:?}");
        assert_eq!((st[0].name.as_str(), st[0].rwlock), ("app/config", true));
        assert_eq!((st[0].readers, st[0].waiters), (3, 1));
        assert_eq!(st[0].holder.key, readers[0].key());
        drop(readers);
        writer.await.unwrap().unwrap();
    }
}
