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
    let ordered = Watched::Queue.order(children.unwrap_or_default());
    read_all(client, dir, ordered).await
}

/// What a watch follows: a queue's entries (the sequential nodes of the recipes, in queue
/// order, and the first one's value), or every child as a key (in name order, with every
/// child's value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Watched {
    Queue,
    Keys,
}

impl Watched {
    fn order(self, mut children: Vec<String>) -> Vec<String> {
        match self {
            Watched::Queue => layout::queue_order(children),
            Watched::Keys => {
                children.sort();
                children
            }
        }
    }
}

/// Reads the data of the `ordered` children of `dir` (those still there), in that order.
async fn read_all(client: &zk::Client, dir: &str, ordered: Vec<String>) -> Result<Vec<Kv>> {
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
/// data of the leader (a queue) or of every child (keys).
struct Watches {
    children: zk::OneshotWatcher,
    data: Vec<zk::OneshotWatcher>,
}

impl Watches {
    async fn fired(self) -> zk::WatchedEvent {
        if self.data.is_empty() {
            return self.children.changed().await;
        }
        let data = self.data.into_iter().map(|w| Box::pin(w.changed()));
        tokio::select! {
            e = self.children.changed() => e,
            (e, _, _) = futures_util::future::select_all(data) => e,
        }
    }
}

/// One consistent-enough reading of `dir`, with the watches that tell when it changes.
async fn snapshot(client: &zk::Client, dir: &str, watched: Watched) -> Result<(Vec<Kv>, Watches)> {
    loop {
        let children = match call_node("watch", client.get_and_watch_children(dir)).await? {
            Some((children, _, watcher)) => (children, watcher),
            None => match call("watch", client.check_and_watch_stat(dir)).await? {
                (None, watcher) => (Vec::new(), watcher),
                (Some(_), _) => continue, // Created meanwhile: list it.
            },
        };
        let (names, children) = children;
        let kvs = read_all(client, dir, watched.order(names)).await?;
        let with_values = match watched {
            Watched::Queue => &kvs[..kvs.len().min(1)],
            Watched::Keys => &kvs[..],
        };
        let mut data = Vec::with_capacity(with_values.len());
        for kv in with_values {
            match call_node("watch", client.get_and_watch_data(&kv.key)).await? {
                Some((value, _, w)) if value == kv.value => data.push(w),
                _ => break, // Changed while we read: read again.
            }
        }
        if data.len() < with_values.len() {
            continue;
        }
        return Ok((kvs, Watches { children, data }));
    }
}

/// The entries of `dir` now, and every change seen after.
pub(super) async fn watch_prefix(
    client: zk::Client,
    dir: String,
    watched: Watched,
) -> Result<PrefixWatch> {
    let (initial, watches) = snapshot(&client, &dir, watched).await?;
    let (tx, changes) = mpsc::unbounded_channel();
    tokio::spawn(follow(client, dir, watched, initial.clone(), watches, tx));
    Ok(PrefixWatch { initial, changes })
}

async fn follow(
    client: zk::Client,
    dir: String,
    watched: Watched,
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
        let (now, next) = match with_backoff(ATTEMPTS, || snapshot(&client, &dir, watched)).await {
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
