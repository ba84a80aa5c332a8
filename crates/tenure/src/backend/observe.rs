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
