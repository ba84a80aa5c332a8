//! What is held and awaited under a prefix, for operators (`tenure status`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backend::observe::{first, Kv};
use crate::{Leader, Result, Tenure};

/// One lock or election as the store shows it.
///
/// With the `serde` feature it is one flat object, the holder's fields beside the name, the
/// TTL in whole milliseconds (`null` when the store does not report it) — the shape of
/// `tenure status --json`: `{"name": "jobs", "key": "jobs/694d…", "value": "host-a:8080",
/// "token": 7, "waiters": 2, "ttl_ms": 9400}`.
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
}

/// Groups queue entries (keys held under a lease) by name: the key up to its last `/`.
fn by_name(entries: Vec<Kv>) -> BTreeMap<String, Vec<Kv>> {
    let mut names: BTreeMap<String, Vec<Kv>> = BTreeMap::new();
    // Keys with NUL are not queue entries (no name contains it): withdrawn markers.
    let entries = entries
        .into_iter()
        .filter(|kv| kv.lease != 0 && !kv.key.contains('\0'));
    for kv in entries {
        if let Some((name, _)) = kv.key.rsplit_once('/') {
            names.entry(name.to_string()).or_default().push(kv);
        }
    }
    names
}

impl Tenure {
    /// Every lock and election whose name starts with `prefix` (empty: all), each once, with
    /// its holder or leader (key, token and value: a mutex holder's
    /// [`Mutex::with_value`](crate::Mutex::with_value), `HOST:PID` by default; an election's
    /// proposal), how many wait behind it, and the holder lease's remaining TTL where the store
    /// reports it (etcd, `mem://`).
    ///
    /// Names are shown as they were given. ZooKeeper cannot tell `a` from `/a` (one znode), so
    /// there a name is shown without a leading `/` unless `prefix` starts with one. Redis keeps
    /// nothing for waiters and cannot list: [`crate::Error::Unsupported`].
    pub async fn status(&self, prefix: &str) -> Result<Vec<LockStatus>> {
        let backend = self.backend_ref();
        let entries = backend.entries_under(prefix).await?;
        let unrooted = backend.rooted_names() && !prefix.starts_with('/');
        let mut out = Vec::new();
        for (name, kvs) in by_name(entries) {
            let Some(holder) = first(&kvs) else { continue };
            let holder_ttl = backend.lease_ttl(holder.lease).await?;
            let name = match name.strip_prefix('/') {
                Some(given) if unrooted => given.to_string(),
                _ => name,
            };
            out.push(LockStatus {
                holder: Leader::from(holder),
                waiters: kvs.len() - 1,
                name,
                holder_ttl,
            });
        }
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
}
