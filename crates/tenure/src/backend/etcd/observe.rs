//! A consistent snapshot of a prefix followed by its changes, for elections' `observe()`.

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::mpsc;

use super::members::Members;
use super::{map_err, revision};
use crate::backend::observe::{Change, Kv, PrefixWatch};
use crate::{Error, Result};

pub(super) fn kv_of(kv: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_rev: kv.create_revision(),
        lease: kv.lease() as u64,
    }
}

/// The entries under `prefix`, and the revision they were read at.
pub(super) async fn entries(members: &Members, prefix: &str) -> Result<(Vec<Kv>, i64)> {
    let opts = GetOptions::new().with_prefix();
    let resp = members
        .call("list", |c| async move {
            c.kv_client().get(prefix, Some(opts)).await
        })
        .await?;
    let rev = revision(resp.header());
    Ok((resp.kvs().iter().map(kv_of).collect(), rev))
}

/// Reads the prefix at one revision, then watches from the next one on a stream of its own,
/// so no change between the read and the watch is missed and none is seen twice.
pub(super) async fn watch_prefix(members: &Members, prefix: &str) -> Result<PrefixWatch> {
    let (initial, rev) = entries(members, prefix).await?;
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(rev + 1);
    let mut stream = members
        .call("observe", |c| async move {
            c.watch_client().watch(prefix, Some(opts)).await
        })
        .await?;
    let (tx, changes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                msg = stream.message() => msg,
                () = tx.closed() => return,
            };
            let broken = |message: String| Error::Transient {
                op: "observe",
                message,
                source: None,
            };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => return drop(tx.send(Err(broken("watch stream closed".into())))),
                Err(e) => return drop(tx.send(Err(map_err("observe", e)))),
            };
            if resp.canceled() {
                let why = format!("watch canceled by etcd: {}", resp.cancel_reason());
                return drop(tx.send(Err(broken(why))));
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let change = match ev.event_type() {
                    EventType::Put => Change::Put(kv_of(kv)),
                    EventType::Delete => Change::Delete(kv_of(kv).key),
                };
                if tx.send(Ok(change)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(PrefixWatch { initial, changes })
}
