//! What the ZooKeeper sessions of one `Tenure` share, so that a queued waiter costs its own
//! session next to nothing (docs/contract.md, Performance rules):
//!
//! - **Listings.** A queue's listing grows with the queue (about 60 bytes a waiter), and the
//!   ZooKeeper client keeps its receive buffer as large as the largest answer its session ever
//!   had. Listed on every waiter's own session, 10,000 waiters would each keep a buffer the
//!   size of a 10,000-entry listing. So waiters list on the backend's session instead, and
//!   waiters that ask for the same queue at the same time share one listing: one buffer per
//!   `Tenure`, and one request per burst of enqueues.
//! - **Heads.** Which entries are known to have been first in their queue (granted here, or
//!   first in a listing; [`Heads`]). A waiter whose predecessor was first and is now deleted
//!   is first itself, and needs no listing at all (see [`ZkSession::ahead_after`]). A node's
//!   path is never made again (its sequence number grows), so its incarnation is always 0.
//!
//! [`ZkSession::ahead_after`]: super::session::ZkSession
//!
//! # Why a listing on another session may be used
//!
//! A read on the backend's session is not ordered after our own session's writes and events:
//! in a 3-member ensemble the two sessions may be served by different members, and the
//! backend's may not have applied our create, or our predecessor's delete, yet. Each member
//! applies the leader's transactions in one order, so any listing is the queue as it was at
//! some transaction, and we only use one that shows our own entry, i.e. taken at or after
//! our create. In such a listing, "nothing ahead of us" stays true for good: every entry
//! ahead of ours was created before it (sequence numbers grow with the parent's child
//! version, and the CONTAINER parent cannot be reaped and made anew while our entry is in
//! it), and a deleted node never comes back. "P is just ahead" may be stale, but then our
//! own session's exists-watch on P answers at once that it is gone, and we ask again. So a
//! lagging member costs time, never a wrong grant. A listing that lacks our entry, or still
//! shows the predecessor our session saw deleted, is asked again after a `sync` (which makes
//! the backend's member catch up with the leader as of the sync), and if it is still behind
//! (a member that lost the leader without knowing it yet answers `sync` from its own state:
//! ZOOKEEPER-1675), on our own session, whose reads follow its own writes and events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use zookeeper_client as zk;

use super::OP_TIMEOUT;
use crate::backend::heads::Heads;

/// A queue's children as listed, shared by the waiters that asked together; `None` when the
/// listing failed (they then list on their own sessions, which report the error).
type Listing = Option<Arc<Vec<String>>>;

/// Requesters of the next listing of a directory, `synced` or not.
type Pending = HashMap<(String, bool), Vec<oneshot::Sender<Listing>>>;

pub(super) struct Shared {
    client: zk::Client,
    /// Present while a task lists that directory: it takes the requesters queued here as one
    /// batch, lists once for them, and ends when none are left.
    pending: Mutex<Pending>,
    pub(super) heads: Heads,
}

impl Shared {
    pub(super) fn new(client: zk::Client) -> Arc<Self> {
        Arc::new(Shared {
            client,
            pending: Mutex::new(HashMap::new()),
            heads: Heads::default(),
        })
    }

    /// `dir`'s children (empty when it does not exist), from a listing sent after this call
    /// began; with `synced`, after a `sync` of `dir`. Cancelling the call leaves the listing
    /// to the other requesters.
    pub(super) async fn list(self: &Arc<Self>, dir: &str, synced: bool) -> Listing {
        let (tx, rx) = oneshot::channel();
        let key = (dir.to_string(), synced);
        let start = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.get_mut(&key) {
                Some(next) => {
                    next.push(tx);
                    false
                }
                None => {
                    pending.insert(key.clone(), vec![tx]);
                    true
                }
            }
        };
        if start {
            tokio::spawn(self.clone().serve(key));
        }
        rx.await.ok().flatten()
    }

    async fn serve(self: Arc<Self>, key: (String, bool)) {
        let (dir, synced) = &key;
        loop {
            let batch = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let next = pending
                    .get_mut(&key)
                    .map(std::mem::take)
                    .unwrap_or_default();
                if next.is_empty() {
                    pending.remove(&key);
                    return;
                }
                next
            };
            let listing = tokio::time::timeout(OP_TIMEOUT, async {
                if *synced {
                    self.client.sync(dir).await.ok()?;
                }
                match self.client.list_children(dir).await {
                    Ok(children) => Some(Arc::new(children)),
                    Err(zk::Error::NoNode) => Some(Arc::new(Vec::new())),
                    Err(e) => {
                        tracing::debug!(%dir, error = %e, "shared listing failed");
                        None
                    }
                }
            })
            .await
            .ok()
            .flatten();
            for tx in batch {
                let _ = tx.send(listing.clone());
            }
        }
    }
}

/// Where one entry stands in a listing, in queue order (lowest sequence first).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Place<'a> {
    /// The listing shows the entry.
    pub(super) found: bool,
    /// The entry just ahead of it, if any.
    pub(super) ahead: Option<&'a str>,
    /// Whether that entry is first in the listing.
    pub(super) ahead_is_first: bool,
    /// The listing still shows `released`.
    pub(super) released_listed: bool,
}

/// Finds `me` in `children` in one pass, without sorting the listing (Curator's order:
/// by sequence number, then by name; names without one are no queue entries).
pub(super) fn place<'a>(children: &'a [String], me: &str, released: Option<&str>) -> Place<'a> {
    let Some(my_seq) = super::layout::sequence(me) else {
        return Place {
            found: false,
            ahead: None,
            ahead_is_first: false,
            released_listed: false,
        };
    };
    let mine = (my_seq, me);
    let mut found = false;
    let mut released_listed = false;
    let mut ahead: Option<(u64, &str)> = None;
    let mut first: Option<(u64, &str)> = None;
    for c in children {
        let Some(seq) = super::layout::sequence(c) else {
            continue;
        };
        let key = (seq, c.as_str());
        found |= c == me;
        released_listed |= released == Some(c.as_str());
        if first.map_or(true, |f| key < f) {
            first = Some(key);
        }
        if key < mine && ahead.map_or(true, |a| key > a) {
            ahead = Some(key);
        }
    }
    Place {
        found,
        ahead: ahead.map(|(_, c)| c),
        ahead_is_first: ahead.is_some() && ahead == first,
        released_listed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uuid: char, seq: u64) -> String {
        format!("_c_{}-lock-{seq:010}", uuid.to_string().repeat(36))
    }

    #[test]
    fn place_finds_the_predecessor_without_sorting() {
        let (a, b, c) = (node('a', 3), node('b', 7), node('c', 12));
        let children = vec![c.clone(), "not-a-queue-entry".into(), a.clone(), b.clone()];
        assert_eq!(
            place(&children, &c, None),
            Place {
                found: true,
                ahead: Some(b.as_str()),
                ahead_is_first: false,
                released_listed: false,
            }
        );
        let second = place(&children, &b, Some(&a));
        assert_eq!(second.ahead, Some(a.as_str()));
        assert!(second.ahead_is_first && second.released_listed);
        let first = place(&children, &a, None);
        assert!(first.found && first.ahead.is_none() && !first.ahead_is_first);
        assert!(!place(&children, &node('d', 20), None).found);
    }
}
