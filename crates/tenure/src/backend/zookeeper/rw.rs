//! Read/write locks on ZooKeeper, in the layout of Curator's `InterProcessReadWriteLock`: lock
//! `/N`'s readers are `_c_<uuid>-__READ__<seq>`, its writers `_c_<uuid>-__WRIT__<seq>`,
//! ephemeral sequential children of `/N`, both kinds ordered together by sequence number (as
//! Curator's sorting driver does: the two lock names have the same length). A writer holds
//! when it is first; a reader when no child ahead of it is a writer (Curator: `ourIndex <
//! firstWriteIndex`). Any child that is not a reader counts as a writer for us.
//!
//! Downgrade keeps the `__WRIT__` node where it is, so every writer queued behind it keeps
//! waiting (Curator's own downgrade, read lock then release of the write node, lets the
//! writer queued behind the write node in: CURATOR-621), and marks it in its data, which no
//! Curator recipe reads: our readers take a marked writer for a reader; Curator's readers keep
//! taking it for a writer and wait for its deletion, which is only longer, never unsafe.
//! A reader waits on the newest writer ahead of it (Curator's waits on the first), with a data
//! watch, which fires on the node's deletion and on its downgrade.

use zookeeper_client as zk;

use super::{call, call_node, layout, ZkSession};
use crate::backend::queue::{Ahead, Enqueued, QueueEntry, QueueStore, Role, Ticket};
use crate::liveness::LostReason;
use crate::{Error, Result};

/// What a downgraded writer's node data starts with (its value follows).
const DOWNGRADED: &[u8] = b"\0tenure:downgraded\0";

/// How often a reader's check is redone when the writer in its way vanished under it.
const PASSES: usize = 8;

/// Readers: Curator's `__READ__` nodes, and kazoo's `ReadLock` nodes (`<hex>__rlock__<seq>`),
/// which share with ours when kazoo is told our patterns (see docs/contract.md,
/// Interoperability).
fn is_reader(node: &str) -> bool {
    node.contains("__READ__") || node.contains("__rlock__")
}

fn is_rw_writer(node: &str) -> bool {
    node.contains("__WRIT__")
}

impl ZkSession {
    /// The writer that keeps out a reader standing after `ahead` (children in queue order
    /// before it), or `None`. Reads the newest writer's data (one request) when it could be a
    /// downgraded one; `Ok(Err(()))` when that writer vanished meanwhile: list again.
    async fn writer_in_the_way(
        &self,
        client: &zk::Client,
        dir: &str,
        ahead: &[String],
    ) -> Result<std::result::Result<Option<String>, ()>> {
        let Some(writer) = ahead.iter().rev().find(|c| !is_reader(c)) else {
            return Ok(Ok(None));
        };
        let path = layout::child(dir, writer);
        if !is_rw_writer(writer) {
            return Ok(Ok(Some(path)));
        }
        match call_node("wait", client.get_data(&path)).await? {
            None => Ok(Err(())),
            Some((data, _)) if data.starts_with(DOWNGRADED) => Ok(Ok(None)),
            Some(_) => Ok(Ok(Some(path))),
        }
    }

    /// What keeps our reader `me` (a node name under `dir`) out, or `None`. `SessionLost` when
    /// our node is gone.
    async fn reader_blocker(&self, dir: &str, me: &str) -> Result<Option<String>> {
        let client = self.client()?;
        for _ in 0..PASSES {
            let children = self.children(&client, dir).await?;
            let Some(pos) = children.iter().position(|c| c == me) else {
                let reason = self.liveness.reason().unwrap_or(LostReason::EntryDeleted);
                return Err(Error::SessionLost { reason });
            };
            if let Ok(found) = self
                .writer_in_the_way(&client, dir, &children[..pos])
                .await?
            {
                return Ok(found);
            }
        }
        Err(Error::Transient {
            op: "wait",
            message: "the writers ahead kept vanishing while being read".into(),
            source: None,
        })
    }

    /// Creates our `__READ__` or `__WRIT__` node and tells whether it is granted at once.
    pub(super) async fn enqueue_rw(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Enqueued> {
        let mut enq = self.enqueue_role(prefix, value, role, ticket).await?;
        if role == Role::Read && !enq.first {
            let dir = layout::dir_of(prefix)?;
            let me = layout::node_name(&enq.mine.key).to_string();
            enq.first = self.reader_blocker(&dir, &me).await?.is_none();
        }
        Ok(enq)
    }

    /// Takes the lock only if granted at once: lists the children first (nothing written when
    /// something is in the way), else creates our node and checks it is granted; a loser of a
    /// race deletes its node at once and names what is in the way. A node with our ticket's
    /// uuid left by an earlier attempt is withdrawn before "held" is answered (C13).
    pub(super) async fn try_enqueue_rw(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        let dir = layout::dir_of(prefix)?;
        let client = self.client()?;
        let uuid = layout::uuid_of_ticket(ticket);
        let children = self.children(&client, &dir).await?;
        // Only what stands ahead of a node an earlier attempt of ours made (its create answer
        // lost) counts: that node is ours, and granted if nothing ahead keeps it out (C13).
        let ahead: Vec<String> = children
            .iter()
            .take_while(|c| layout::uuid_of(c) != Some(uuid.as_str()))
            .cloned()
            .collect();
        let in_the_way = if role == Role::Read {
            // A vanished writer is no obstacle any more; the create below re-checks.
            self.writer_in_the_way(&client, &dir, &ahead)
                .await?
                .unwrap_or(None)
        } else {
            ahead.first().map(|c| layout::child(&dir, c))
        };
        if let Some(holder) = in_the_way {
            if let Some(mine) = children.iter().find(|c| layout::uuid_of(c) == Some(&uuid)) {
                let path = layout::child(&dir, mine);
                call_node("withdraw", client.delete(&path, None)).await?;
                self.remember(&dir, &uuid, false);
            }
            return Ok(Err(Some(holder)));
        }
        let mut enq = self.enqueue_role(prefix, value, role, ticket).await?;
        if role == Role::Read && !enq.first {
            let me = layout::node_name(&enq.mine.key).to_string();
            enq.first = self.reader_blocker(&dir, &me).await?.is_none();
        }
        if enq.first {
            return Ok(Ok(enq));
        }
        let me = layout::node_name(&enq.mine.key).to_string();
        let children = self.children(&client, &dir).await?;
        let ahead: Vec<String> = children.iter().take_while(|c| **c != me).cloned().collect();
        self.remove(&enq.mine).await?;
        let holder = if role == Role::Read {
            ahead.iter().rev().find(|c| !is_reader(c))
        } else {
            ahead.first()
        };
        Ok(Err(holder.map(|h| layout::child(&dir, h))))
    }

    pub(super) async fn ahead_of_reader_rw(
        &self,
        prefix: &str,
        mine: &QueueEntry,
    ) -> Result<Ahead> {
        let dir = layout::dir_of(prefix)?;
        let me = layout::node_name(&mine.key);
        Ok(match self.reader_blocker(&dir, me).await? {
            Some(key) => Ahead::Entry {
                key,
                token: 0,
                rev: 0,
            },
            None => Ahead::Nobody { rev: 0 },
        })
    }

    /// Watches the writer's data: the watch fires when it is deleted or downgraded (or
    /// otherwise changed; the caller then checks again).
    pub(super) async fn wait_released_rw(&self, key: &str) -> Result<()> {
        let client = self.client()?;
        let watched = call_node("watch", client.get_and_watch_data(key)).await?;
        drop(client);
        let Some((data, _, watcher)) = watched else {
            return Ok(());
        };
        if data.starts_with(DOWNGRADED) {
            return Ok(());
        }
        let event = watcher.changed().await;
        match event.event_type {
            zk::EventType::Session => {
                Err(crate::backend::zookeeper::state_err(event.session_state))
            }
            _ => Ok(()),
        }
    }

    /// Marks our `__WRIT__` node downgraded in its data, keeping its value after the mark;
    /// compare-and-set on the data version, so a repeat finds the mark already there.
    pub(super) async fn downgrade_rw(&self, mine: &QueueEntry) -> Result<bool> {
        let client = self.client()?;
        for _ in 0..PASSES {
            let Some((data, stat)) = call_node("downgrade", client.get_data(&mine.key)).await?
            else {
                return Ok(false);
            };
            if stat.czxid as u64 != mine.token {
                return Ok(false);
            }
            if data.starts_with(DOWNGRADED) {
                return Ok(true);
            }
            let marked = [DOWNGRADED, &data].concat();
            let set = call("downgrade", async {
                match client
                    .set_data(&mine.key, &marked, Some(stat.version))
                    .await
                {
                    Ok(_) => Ok(Some(true)),
                    Err(zk::Error::NoNode) => Ok(Some(false)),
                    Err(zk::Error::BadVersion) => Ok(None),
                    Err(e) => Err(e),
                }
            });
            if let Some(done) = set.await? {
                return Ok(done);
            }
        }
        Err(Error::Transient {
            op: "downgrade",
            message: "the node's data kept changing".into(),
            source: None,
        })
    }
}
