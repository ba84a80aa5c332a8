//! Walking the node tree under a prefix, for `Tenure::status`.
//!
//! ZooKeeper has no range read: a name's entries are the children of its node, and the names
//! under a prefix are found by listing directory after directory. Each level of the tree is
//! read with multi-reads (in batches), so a walk costs round trips by the tree's depth, not by
//! its number of nodes.

use std::collections::HashSet;

use zookeeper_client as zk;

use super::{call, call_node, layout};
use crate::backend::observe::Kv;
use crate::Result;

/// Operations per multi-read: keeps each answer well under the server's `jute.maxbuffer`.
const BATCH: usize = 128;

/// Every queue entry (sequential child) and every ephemeral key (`Session::put_ephemeral`: a
/// non-sequential ephemeral node) whose path starts with `prefix` (with or without its
/// leading `/`), as a key range would list them: `app/` lists `app/jobs` and `app/jobs/x`,
/// `app/jo` lists `app/jobs`, and `app/jobs/` lists `app/jobs` itself. The empty prefix
/// lists the whole tree but `/zookeeper`. Nodes removed meanwhile, and subtrees our identity
/// may not read (another service's ACL), are left out.
pub(super) async fn entries_under(client: &zk::Client, prefix: &str) -> Result<Vec<Kv>> {
    let Some((start, partial)) = layout::walk_start(prefix) else {
        // The prefix's directory is no valid path, so no name can start with it.
        return Ok(Vec::new());
    };
    let top = call_node("list", client.list_children(&start))
        .await?
        .unwrap_or_default();
    let mut level = if partial.is_empty() && start != "/" {
        vec![(start, top)]
    } else {
        let dirs = top
            .into_iter()
            .filter(|c| c.starts_with(partial) && !(start == "/" && c == "zookeeper"))
            .map(|c| layout::child(&start, &c))
            .collect();
        list_all(client, dirs).await?
    };
    let mut found = Vec::new();
    while !level.is_empty() {
        let sequential: Vec<String> = level
            .iter()
            .flat_map(|(dir, children)| {
                layout::queue_order(children.clone())
                    .into_iter()
                    .map(|c| layout::child(dir, &c))
            })
            .collect();
        let mut entries = read_all(client, sequential).await?;
        let others: Vec<String> = level
            .iter()
            .flat_map(|(dir, children)| {
                children
                    .iter()
                    .filter(|c| layout::sequence(c).is_none())
                    .map(|c| layout::child(dir, c))
            })
            .collect();
        // Of the other children, the ephemeral ones are registered keys.
        let registered = read_all(client, others).await?;
        entries.extend(registered.into_iter().filter(|kv| kv.lease != 0));
        // Ephemeral nodes (queue entries, registered keys) cannot have children.
        let ephemeral: HashSet<&str> = entries
            .iter()
            .filter(|kv| kv.lease != 0)
            .map(|kv| kv.key.as_str())
            .collect();
        let below = level
            .iter()
            .flat_map(|(dir, children)| children.iter().map(|c| layout::child(dir, c)))
            .filter(|path| !ephemeral.contains(path.as_str()))
            .collect();
        found.extend(entries);
        level = list_all(client, below).await?;
    }
    Ok(found)
}

/// The children of each of `dirs` that is still there and readable.
async fn list_all(client: &zk::Client, dirs: Vec<String>) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::with_capacity(dirs.len());
    for batch in dirs.chunks(BATCH) {
        let mut reader = client.new_multi_reader();
        for dir in batch {
            reader
                .add_get_children(dir)
                .map_err(|e| super::map_err("list", e))?;
        }
        for (dir, result) in batch.iter().zip(call("list", reader.commit()).await?) {
            match result {
                zk::MultiReadResult::Children { children } => out.push((dir.clone(), children)),
                zk::MultiReadResult::Error { err } => skip_or_fail(err)?,
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The nodes at `paths` that are still there and readable, with their data.
async fn read_all(client: &zk::Client, paths: Vec<String>) -> Result<Vec<Kv>> {
    let mut out = Vec::with_capacity(paths.len());
    for batch in paths.chunks(BATCH) {
        let mut reader = client.new_multi_reader();
        for path in batch {
            reader
                .add_get_data(path)
                .map_err(|e| super::map_err("list", e))?;
        }
        for (key, result) in batch.iter().zip(call("list", reader.commit()).await?) {
            match result {
                zk::MultiReadResult::Data { data, stat } => out.push(Kv {
                    key: key.clone(),
                    value: data,
                    create_rev: stat.czxid,
                    lease: stat.ephemeral_owner as u64,
                }),
                zk::MultiReadResult::Error { err } => skip_or_fail(err)?,
                _ => {}
            }
        }
    }
    Ok(out)
}

/// A node deleted since its parent was listed, or one whose ACL does not let us read it, is
/// left out of the walk; any other failure ends it.
fn skip_or_fail(err: zk::Error) -> Result<()> {
    match err {
        zk::Error::NoNode | zk::Error::NoAuth => Ok(()),
        e => Err(super::map_err("list", e)),
    }
}
