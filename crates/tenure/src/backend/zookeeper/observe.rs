//! Listing and watching a queue directory, for `leader()` and `observe()` (elections).
//!
//! ZooKeeper watches are one-shot and carry no data, so a watch is: list the children (with a
//! child watch) and read their data (with a data watch on the leader only), then, whenever one
//! of those watches fires, list and read again and report the difference, in order. What is
//! reported was true at the time it was read and never goes back in time; a leader (or value)
//! that held only between two re-lists can be missed. That is the limit of one-shot watches.

use tokio::sync::mpsc;
use zookeeper_client as zk;

use super::{call, call_node, layout, state_err};
use crate::backend::observe::{Change, Kv, PrefixWatch};
use crate::retry::with_backoff;
use crate::retry::ATTEMPTS;
use crate::{Error, Result};

/// The entries of `dir` now, in queue order.
pub(super) async fn entries(client: &zk::Client, dir: &str) -> Result<Vec<Kv>> {
    let children = call_node("list", client.list_children(dir)).await?;
    read_all(client, dir, children.unwrap_or_default()).await
}

/// Reads the data of `children` of `dir` (those still there), in queue order.
async fn read_all(client: &zk::Client, dir: &str, children: Vec<String>) -> Result<Vec<Kv>> {
    let ordered = layout::queue_order(children);
    if ordered.is_empty() {
        return Ok(Vec::new());
    }
    let mut reader = client.new_multi_reader();
    let paths: Vec<String> = ordered.iter().map(|c| layout::child(dir, c)).collect();
    for path in &paths {
        reader
            .add_get_data(path)
            .map_err(|e| super::map_err("list", e))?;
    }
    let results = call("list", reader.commit()).await?;
    let mut kvs = Vec::with_capacity(paths.len());
    for (key, result) in paths.into_iter().zip(results) {
        if let zk::MultiReadResult::Data { data, stat } = result {
            kvs.push(Kv {
                key,
                value: data,
                create_rev: stat.czxid,
                lease: stat.ephemeral_owner as u64,
            });
        }
    }
    Ok(kvs)
}

/// The watches one snapshot set: on the directory's children (or its creation), and on the
/// leader's data.
struct Watches {
    children: zk::OneshotWatcher,
    leader: Option<zk::OneshotWatcher>,
}

impl Watches {
    async fn fired(self) -> zk::WatchedEvent {
        match self.leader {
            None => self.children.changed().await,
            Some(leader) => tokio::select! {
                e = self.children.changed() => e,
                e = leader.changed() => e,
            },
        }
    }
}

/// One consistent-enough reading of `dir`, with the watches that tell when it changes.
async fn snapshot(client: &zk::Client, dir: &str) -> Result<(Vec<Kv>, Watches)> {
    loop {
        let children = match call_node("watch", client.get_and_watch_children(dir)).await? {
            Some((children, _, watcher)) => (children, watcher),
            None => match call("watch", client.check_and_watch_stat(dir)).await? {
                (None, watcher) => (Vec::new(), watcher),
                (Some(_), _) => continue, // Created meanwhile: list it.
            },
        };
        let (names, children) = children;
        let kvs = read_all(client, dir, names).await?;
        let leader = match kvs.first() {
            None => None,
            Some(first) => match call_node("watch", client.get_and_watch_data(&first.key)).await? {
                Some((data, _, w)) if data == first.value => Some(w),
                _ => continue, // The leader changed while we read: read again.
            },
        };
        return Ok((kvs, Watches { children, leader }));
    }
}

/// The entries of `dir` now, and every change seen after.
pub(super) async fn watch_prefix(client: zk::Client, dir: String) -> Result<PrefixWatch> {
    let (initial, watches) = snapshot(&client, &dir).await?;
    let (tx, changes) = mpsc::unbounded_channel();
    tokio::spawn(follow(client, dir, initial.clone(), watches, tx));
    Ok(PrefixWatch { initial, changes })
}

async fn follow(
    client: zk::Client,
    dir: String,
    mut seen: Vec<Kv>,
    mut watches: Watches,
    tx: mpsc::UnboundedSender<Result<Change>>,
) {
    loop {
        let event = tokio::select! {
            e = watches.fired() => e,
            () = tx.closed() => return,
        };
        if event.event_type == zk::EventType::Session {
            let _ = tx.send(Err(state_err(event.session_state)));
            return;
        }
        let (now, next) = match with_backoff(ATTEMPTS, || snapshot(&client, &dir)).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(ended(e)));
                return;
            }
        };
        for change in diff(&seen, &now) {
            if tx.send(Ok(change)).is_err() {
                return;
            }
        }
        (seen, watches) = (now, next);
    }
}

/// Why an observation ended; a refusal (NoAuth) keeps its own type, so that it is not retried.
fn ended(e: Error) -> Error {
    if e.is_permission() {
        return e;
    }
    Error::Transient {
        op: "observe",
        message: e.to_string(),
        source: Some(crate::Cause::new(e)),
    }
}

/// The changes that turn `old` into `new`: deletions first, then creations and value changes
/// in queue order.
fn diff(old: &[Kv], new: &[Kv]) -> Vec<Change> {
    let gone = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.key == o.key))
        .map(|o| Change::Delete(o.key.clone()));
    let put = new
        .iter()
        .filter(|n| !old.contains(n))
        .map(|n| Change::Put(n.clone()));
    gone.chain(put).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: i64) -> Kv {
        Kv {
            key: key.into(),
            value: value.into(),
            create_rev: rev,
            lease: 0,
        }
    }

    #[test]
    fn diff_deletes_then_puts_in_order() {
        let old = vec![kv("/a", "1", 1), kv("/b", "2", 2)];
        let new = vec![kv("/b", "3", 2), kv("/c", "4", 3)];
        let changes = diff(&old, &new);
        assert!(matches!(&changes[0], Change::Delete(k) if k == "/a"));
        assert!(matches!(&changes[1], Change::Put(k) if k.key == "/b" && k.value == b"3"));
        assert!(matches!(&changes[2], Change::Put(k) if k.key == "/c"));
        assert_eq!(changes.len(), 3);
    }
}
