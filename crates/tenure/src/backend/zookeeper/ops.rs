//! Plain and guarded writes as one ZooKeeper multi-op (C10).
//!
//! ZooKeeper has no "put": a key that exists is set, one that does not is created. Each
//! attempt reads which keys exist (with their versions), then commits one multi-op that sets
//! exactly those versions and creates exactly the missing keys, after a check that the holder
//! node still exists when guarded. A concurrent writer makes the multi fail as a whole; it is
//! then planned and tried again.

use zookeeper_client as zk;

use super::{call, call_node, layout, OP_TIMEOUT};
use crate::{Error, Result, Write};

/// Attempts before concurrent writers to the same keys are reported.
const ATTEMPTS: u32 = 5;

/// One planned operation.
enum Step {
    Set {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    Create {
        path: String,
        data: Vec<u8>,
    },
    Delete {
        path: String,
        version: i32,
    },
}

/// The version of `path`, or `None` when it does not exist.
async fn version(client: &zk::Client, path: &str) -> Result<Option<i32>> {
    Ok(call_node("exists", client.check_stat(path))
        .await?
        .flatten()
        .map(|stat| stat.version))
}

/// Creates the parents of `path` that are missing.
async fn ensure_parent(client: &zk::Client, acls: zk::Acls<'_>, path: &str) -> Result<()> {
    let parent = layout::parent(path);
    if parent == "/" || version(client, parent).await?.is_some() {
        return Ok(());
    }
    let persistent = zk::CreateMode::Persistent.with_acls(acls);
    call("create parents", client.mkdir(parent, &persistent)).await
}

async fn plan(client: &zk::Client, acls: zk::Acls<'_>, ops: &[Write]) -> Result<Vec<Step>> {
    let mut steps = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Write::Put { key, value } => {
                let path = layout::path_of(key)?;
                let data = value.clone();
                match version(client, &path).await? {
                    Some(version) => steps.push(Step::Set {
                        path,
                        data,
                        version,
                    }),
                    None => {
                        ensure_parent(client, acls, &path).await?;
                        steps.push(Step::Create { path, data });
                    }
                }
            }
            Write::Delete { key } => {
                let path = layout::path_of(key)?;
                if let Some(version) = version(client, &path).await? {
                    steps.push(Step::Delete { path, version });
                }
            }
        }
    }
    Ok(steps)
}

fn add(
    writer: &mut zk::MultiWriter<'_>,
    persistent: &zk::CreateOptions<'_>,
    step: &Step,
) -> std::result::Result<(), zk::Error> {
    match step {
        Step::Set {
            path,
            data,
            version,
        } => writer.add_set_data(path, data, Some(*version)),
        Step::Create { path, data } => writer.add_create(path, data, persistent),
        Step::Delete { path, version } => writer.add_delete(path, Some(*version)),
    }
}

/// Applies `ops` atomically; when `guard` is a holder node's path, only while it exists.
/// Nodes created get `acls`. `Ok(false)`: the guard node is gone and nothing was written.
pub(super) async fn commit(
    client: &zk::Client,
    acls: zk::Acls<'_>,
    guard: Option<&str>,
    ops: &[Write],
) -> Result<bool> {
    let persistent = zk::CreateMode::Persistent.with_acls(acls);
    for _ in 0..ATTEMPTS {
        let steps = plan(client, acls, ops).await?;
        if guard.is_none() && steps.is_empty() {
            return Ok(true);
        }
        let mut writer = client.new_multi_writer();
        let mut build = || -> std::result::Result<(), zk::Error> {
            if let Some(holder) = guard {
                writer.add_check_version(holder, -1)?;
            }
            steps
                .iter()
                .try_for_each(|s| add(&mut writer, &persistent, s))
        };
        build().map_err(|e| super::map_err("write", e))?;
        let Ok(committed) = tokio::time::timeout(OP_TIMEOUT, writer.commit()).await else {
            return Err(Error::Transient {
                op: "write",
                message: format!("no answer within {OP_TIMEOUT:?}"),
                source: None,
            });
        };
        match committed.map_err(|e| classify(e, guard.is_some())) {
            Ok(_) => return Ok(true),
            Err(Outcome::NotHeld) => return Ok(false),
            Err(Outcome::Raced) => continue,
            Err(Outcome::Failed(e)) => return Err(e),
        }
    }
    Err(Error::Transient {
        op: "write",
        message: "the keys kept changing under concurrent writers".into(),
        source: None,
    })
}

enum Outcome {
    NotHeld,
    Raced,
    Failed(Error),
}

/// What a failed multi-op means: the guard failed, a concurrent writer won, or an error.
fn classify(e: zk::MultiWriteError, guarded: bool) -> Outcome {
    use zk::MultiWriteError as M;
    match e {
        M::OperationFailed { index: 0, .. } if guarded => Outcome::NotHeld,
        M::OperationFailed {
            source: zk::Error::NoNode | zk::Error::NodeExists | zk::Error::BadVersion,
            ..
        } => Outcome::Raced,
        M::OperationFailed { source, .. } | M::RequestFailed { source } => {
            Outcome::Failed(super::map_err("write", source))
        }
    }
}
