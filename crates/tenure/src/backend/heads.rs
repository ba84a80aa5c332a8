//! Which queue entries a client knows to have been first in their queue: granted here, or
//! seen first by a read. A waiter whose predecessor was first and is now deleted is first
//! itself if its own entry is still there (nothing is ever queued ahead of an existing entry),
//! so it confirms its own entry alone instead of reading the whole queue again
//! ([`QueueStore::ahead_after`](super::queue::QueueStore::ahead_after)). Without this, the
//! waiter just behind a holder that was itself deep in the queue when it enqueued reads a
//! queue as long as the queue on every hand-off (docs/contract.md, Performance rules).
//!
//! The fair-queue recipe keeps it for the stores that offer one ([`QueueStore::heads`]): it
//! records each entry granted (but readers, granted beside others) and each a store read shows
//! first ([`Ahead::First`]), tells the store at a deletion whether the deleted entry is one
//! ([`Released::first`]), and forgets it once its successor has taken over.
//!
//! [`QueueStore::heads`]: super::queue::QueueStore::heads
//! [`Ahead::First`]: super::queue::Ahead::First
//! [`Released::first`]: super::queue::Released::first
//!
//! An entry is named by its key and its incarnation (the store's create revision, where one
//! key can be made again: an etcd session's entry under a name is always the same key). A
//! stale "first" for a later incarnation of the same key would grant a waiter with others
//! still ahead of it (C1), so an incarnation must never be mistaken for another.

use std::collections::HashSet;
use std::sync::Mutex;

/// Most heads remembered; past it they are forgotten all at once. A forgotten head costs its
/// successor one read of the queue, nothing else.
const MAX_HEADS: usize = 4096;

/// The set of entries (key, incarnation) known to have been first; one per client.
#[derive(Debug, Default)]
pub(crate) struct Heads {
    known: Mutex<HashSet<(String, u64)>>,
}

impl Heads {
    /// Remembers that the entry `key` of `incarnation` is, or was, first in its queue.
    pub(crate) fn record(&self, key: &str, incarnation: u64) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MAX_HEADS {
            known.clear();
        }
        known.insert((key.to_string(), incarnation));
    }

    /// Whether the entry `key` of `incarnation` is known to have been first.
    pub(crate) fn was_first(&self, key: &str, incarnation: u64) -> bool {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.contains(&(key.to_string(), incarnation))
    }

    /// Forgets an entry (deleted, and its successor told).
    pub(crate) fn forget(&self, key: &str, incarnation: u64) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.remove(&(key.to_string(), incarnation));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incarnation_is_never_taken_for_another() {
        let heads = Heads::default();
        heads.record("jobs/1f", 7);
        assert!(heads.was_first("jobs/1f", 7));
        assert!(
            !heads.was_first("jobs/1f", 9),
            "a later entry under the same key"
        );
        heads.forget("jobs/1f", 7);
        assert!(!heads.was_first("jobs/1f", 7));
    }

    #[test]
    fn past_the_bound_everything_is_forgotten() {
        let heads = Heads::default();
        for i in 0..MAX_HEADS as u64 {
            heads.record("k", i);
        }
        assert!(heads.was_first("k", 0));
        heads.record("k", MAX_HEADS as u64);
        assert!(!heads.was_first("k", 0));
        assert!(heads.was_first("k", MAX_HEADS as u64));
    }
}
