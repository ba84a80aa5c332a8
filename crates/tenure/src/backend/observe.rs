//! Watching a queue's prefix in revision order, for `leader()` and `observe()` (elections).

use tokio::sync::mpsc;

use crate::Result;

/// One entry under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_rev: i64,
    /// The lease (etcd) or session (ZooKeeper) the entry lives under; 0: none.
    pub lease: u64,
}

/// One change under a watched prefix.
#[cfg_attr(
    not(any(feature = "etcd", feature = "embedded", feature = "zookeeper")),
    allow(dead_code)
)]
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Put(Kv),
    Delete(String),
}

/// A consistent snapshot of a prefix and every change after it, in revision order. The
/// channel yields an error, then closes, when the store's watch breaks.
pub(crate) struct PrefixWatch {
    pub initial: Vec<Kv>,
    pub changes: mpsc::UnboundedReceiver<Result<Change>>,
}

/// The entry with the lowest create revision: the owner of a queue, the leader of an election.
pub(crate) fn first(entries: &[Kv]) -> Option<&Kv> {
    entries.iter().min_by_key(|kv| kv.create_rev)
}

/// Whether `kv` is a key put under a lease with `Session::put_ephemeral`, in the key-range
/// layouts (etcd, the embedded store): every queue entry's last segment starts with its
/// lease's hex id (`<name>/<lease hex>`, `<name>/leases/<lease hex>-<ticket>`), except Go's
/// RWMutex entries (`<name>/read/<nanos>`, `<name>/write/<nanos>`); markers hold a NUL.
#[cfg_attr(not(any(feature = "etcd", feature = "embedded")), allow(dead_code))]
pub(crate) fn leased_key(kv: &Kv) -> bool {
    let Some((parent, last)) = kv.key.rsplit_once('/') else {
        return kv.lease != 0 && !kv.key.contains('\0');
    };
    kv.lease != 0
        && !kv.key.contains('\0')
        && !parent.ends_with("/read")
        && !parent.ends_with("/write")
        && !last.starts_with(&format!("{:x}", kv.lease))
}

/// Applies one change to a prefix's entries.
pub(crate) fn apply(entries: &mut Vec<Kv>, change: Change) {
    match change {
        Change::Put(kv) => match entries.iter_mut().find(|e| e.key == kv.key) {
            Some(e) => *e = kv,
            None => entries.push(kv),
        },
        Change::Delete(key) => entries.retain(|e| e.key != key),
    }
}
