//! One ZooKeeper session and the queue operations made under it (Curator's recipes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use zookeeper_client as zk;

use super::shared::{self, Shared};
use super::state::{spawn_state_follower, Slot, ZkRenewer};
use super::{call, call_node, layout, ops, Ensemble, OP_TIMEOUT};
use crate::backend::heads::Heads;
use crate::backend::lease::spawn_keep_alive;
use crate::backend::observe::Kv;
use crate::backend::queue::{
    Ahead, Enqueued, QueueEntry, QueueStore, Released, Role, Ticket, Witness,
};
use crate::liveness::{Liveness, LostReason};
use crate::{Error, Result, Write};

#[path = "rw.rs"]
mod rw;

/// Tries of one protected create before a transient fault goes back to the recipe.
const CREATE_TRIES: u32 = 5;

pub(super) struct ZkSession {
    ensemble: Ensemble,
    slot: Slot,
    info: zk::SessionInfo,
    timeout: Duration,
    liveness: Liveness,
    tasks: [AbortHandle; 3],
    /// The `_c_<uuid>` prefixes this session created nodes with, per queue directory, until
    /// the node is removed: how `own_entries` finds an entry whose create answer was lost.
    uuids: Mutex<HashMap<String, Vec<String>>>,
    /// Shared with the other sessions of the backend: where waiters list their queues.
    shared: Arc<Shared>,
}

impl Drop for ZkSession {
    fn drop(&mut self) {
        self.tasks.iter().for_each(AbortHandle::abort);
    }
}

impl ZkSession {
    /// Opens a session asking for `ttl` as its timeout; the server's answer is the TTL used.
    pub(super) async fn open(
        ensemble: Ensemble,
        ttl: Duration,
        shared: Arc<Shared>,
    ) -> Result<Arc<Self>> {
        let started = Instant::now();
        let client = ensemble.connect(ttl, ttl.max(OP_TIMEOUT)).await?;
        let timeout = client.session_timeout();
        let liveness = Liveness::new();
        let follower = spawn_state_follower(client.state_watcher(), liveness.clone());
        let renewer = ZkRenewer::new(client.clone(), timeout);
        let keep_alive = spawn_keep_alive(renewer, liveness.clone(), timeout, started, "zk");
        #[cfg(test)]
        super::test_support::register(&ensemble, client.session(), timeout, &liveness);
        Ok(Arc::new_cyclic(|me| ZkSession {
            ensemble,
            info: client.session().clone(),
            slot: Slot::new(client),
            timeout,
            tasks: [
                follower,
                keep_alive,
                spawn_end_on_loss(me.clone(), liveness.clone()),
            ],
            liveness,
            uuids: Mutex::new(HashMap::new()),
            shared,
        }))
    }

    /// Ends the ZooKeeper session: drops our client (no more pings) and closes the session
    /// from a second connection, so that its nodes go at once rather than at expiry.
    async fn end(&self) {
        let Some(client) = self.slot.take() else {
            return;
        };
        // Let our connection close first, so that the session never holds two at once (the
        // server caps connections per client address: maxClientCnxns).
        let mut states = client.state_watcher();
        drop(client);
        let closed = async { while !states.changed().await.is_terminated() {} };
        let _ = tokio::time::timeout(OP_TIMEOUT, closed).await;
        self.ensemble
            .close_session(self.info.clone(), self.timeout)
            .await;
    }

    fn client(&self) -> Result<zk::Client> {
        self.slot.get(&self.liveness)
    }

    /// Resolves once `key` is deleted, watching it alone (Curator's predecessor watch).
    async fn until_deleted(&self, key: &str) -> Result<()> {
        loop {
            // The client and the answer live in a block: dropped (or moved) only, they would
            // still take room in the future all the time a queued waiter waits.
            let watcher = {
                let client = self.client()?;
                // Boxed: a waiter's future lives as long as it waits, and would otherwise keep
                // room for this request's whole state machine (tens of KB) the entire time.
                let (stat, watcher) =
                    Box::pin(call("watch", client.check_and_watch_stat(key))).await?;
                if stat.is_none() {
                    return Ok(());
                }
                watcher
            };
            let event = watcher.changed().await;
            match event.event_type {
                zk::EventType::NodeDeleted => return Ok(()),
                zk::EventType::Session => return Err(super::state_err(event.session_state)),
                _ => {}
            }
        }
    }

    fn remember(&self, dir: &str, uuid: &str, keep: bool) {
        let mut map = self.uuids.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(dir.to_string()).or_default();
        list.retain(|u| u != uuid);
        if keep {
            list.push(uuid.to_string());
        }
        if list.is_empty() {
            map.remove(dir);
        }
    }

    fn remembered(&self, dir: &str) -> Vec<String> {
        let map = self.uuids.lock().unwrap_or_else(|e| e.into_inner());
        map.get(dir).cloned().unwrap_or_default()
    }

    /// Creates our node for `role` under `dir` (Curator's protected mode): parents are made as
    /// containers when missing, and a create whose answer was lost is found by its uuid —
    /// within this call, and in a later call with the same `ticket` (the recipe's retry, C13).
    async fn create_node(
        &self,
        dir: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<QueueEntry> {
        let client = self.client()?;
        // Owned by our identity with credentials (parents too: ZooKeeper checks the right to
        // delete a node on its parent), open without; see the module docs of `zookeeper`.
        let acls = self.ensemble.acls();
        let ephemeral_sequential = zk::CreateMode::EphemeralSequential.with_acls(acls);
        let container = zk::CreateMode::Container.with_acls(acls);
        let uuid = layout::uuid_of_ticket(ticket);
        if self.remembered(dir).contains(&uuid) {
            if let Some(found) = self.find_own(&client, dir, &uuid).await? {
                return Ok(found);
            }
        }
        self.remember(dir, &uuid, true);
        let base = layout::child(dir, &layout::node_base(&uuid, role));
        let mut last = None;
        for _ in 0..CREATE_TRIES {
            let created = tokio::time::timeout(
                OP_TIMEOUT,
                client.create(&base, value, &ephemeral_sequential),
            )
            .await;
            let e = match created {
                Ok(Ok((stat, seq))) => return Ok(entry(format!("{base}{seq}"), &stat)),
                Ok(Err(zk::Error::NoNode)) => {
                    // Missing parents, or an empty container the server just reaped.
                    call("create parents", client.mkdir(dir, &container)).await?;
                    continue;
                }
                Ok(Err(e)) => super::map_err("lock", e),
                Err(_) => Error::Transient {
                    op: "lock",
                    message: format!("no answer within {OP_TIMEOUT:?}"),
                    source: None,
                },
            };
            if !e.is_transient() {
                return Err(e);
            }
            // Protected mode: the node may exist although the answer was lost.
            if let Some(found) = self.find_own(&client, dir, &uuid).await? {
                return Ok(found);
            }
            last = Some(e);
        }
        Err(last.unwrap_or(Error::Transient {
            op: "lock",
            message: "the lock's parent node kept vanishing".into(),
            source: None,
        }))
    }

    /// Creates the ephemeral node `path` (and its parents, as containers), or finds it exists.
    /// A create applied whose answer was lost is found as existing, and as ours, on retry.
    async fn create_ephemeral(
        &self,
        client: &zk::Client,
        path: &str,
        value: &[u8],
    ) -> Result<Created> {
        let acls = self.ensemble.acls();
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(acls);
        let container = zk::CreateMode::Container.with_acls(acls);
        for _ in 0..CREATE_TRIES {
            let created = call("put ephemeral", async {
                match client.create(path, value, &ephemeral).await {
                    Ok(_) => Ok(Some(Created::Yes)),
                    Err(zk::Error::NodeExists) => Ok(Some(Created::Exists)),
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(e) => Err(e),
                }
            });
            if let Some(created) = created.await? {
                return Ok(created);
            }
            if let Some((parent, _)) = path.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
                call("create parents", client.mkdir(parent, &container)).await?;
            }
        }
        Err(Error::Transient {
            op: "put ephemeral",
            message: "the key's parent node kept vanishing".into(),
            source: None,
        })
    }

    /// Our node among `dir`'s children, by its uuid (after a lost create answer).
    async fn find_own(
        &self,
        client: &zk::Client,
        dir: &str,
        uuid: &str,
    ) -> Result<Option<QueueEntry>> {
        let children = self.children(client, dir).await?;
        let Some(node) = children.iter().find(|c| layout::uuid_of(c) == Some(uuid)) else {
            return Ok(None);
        };
        let path = layout::child(dir, node);
        let stat = call_node("exists", client.check_stat(&path))
            .await?
            .flatten();
        Ok(stat.map(|s| entry(path, &s)))
    }

    /// `dir`'s children in queue order (none when `dir` does not exist).
    async fn children(&self, client: &zk::Client, dir: &str) -> Result<Vec<String>> {
        let children = call_node("list", client.list_children(dir)).await?;
        Ok(layout::queue_order(children.unwrap_or_default()))
    }

    async fn enqueue_role(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Enqueued> {
        let dir = layout::dir_of(prefix)?;
        let mine = self.create_node(&dir, value, role, ticket).await?;
        // The listing already names the node ahead: a waiter needs no second listing.
        let ahead = self.place_of(&dir, &mine, None).await?;
        Ok(Enqueued {
            rev: mine.token as i64,
            first: matches!(ahead, Ahead::Nobody { .. }),
            mine,
            ahead: Some(ahead),
        })
    }

    /// What stands ahead of `mine` in `dir`, from a listing that shows `mine` and no longer
    /// shows `released` (the predecessor our session saw deleted): the backend's shared
    /// listing when it is that current, else one on our own session (why either is sound:
    /// the module docs of `shared`). Fails with [`Error::SessionLost`] when `mine` is gone.
    async fn place_of(
        &self,
        dir: &str,
        mine: &QueueEntry,
        released: Option<&str>,
    ) -> Result<Ahead> {
        let me = layout::node_name(&mine.key);
        let released = released.map(layout::node_name);
        for synced in [false, true] {
            let Some(listing) = self.shared.list(dir, synced).await else {
                break;
            };
            let place = shared::place(&listing, me, released);
            if place.found && !place.released_listed {
                return Ok(Self::ahead_in(dir, &place));
            }
        }
        // Rare (a member behind the leader, or the shared session failing): this listing
        // grows our own session's receive buffer to the queue's size.
        let client = self.client()?;
        let children = call_node("list", client.list_children(dir)).await?;
        let children = children.unwrap_or_default();
        let place = shared::place(&children, me, None);
        if !place.found {
            let reason = self.liveness.reason().unwrap_or(LostReason::EntryDeleted);
            return Err(Error::SessionLost { reason });
        }
        Ok(Self::ahead_in(dir, &place))
    }

    /// `place` as the recipe's [`Ahead`] (which remembers an entry it shows first).
    fn ahead_in(dir: &str, place: &shared::Place<'_>) -> Ahead {
        let Some(node) = place.ahead else {
            return Ahead::Nobody { rev: 0 };
        };
        let key = layout::child(dir, node);
        // A node's path is never made again: every incarnation is 0.
        if place.ahead_is_first {
            Ahead::First {
                key,
                token: 0,
                rev: 0,
            }
        } else {
            Ahead::Entry {
                key,
                token: 0,
                rev: 0,
            }
        }
    }
}

/// Once the session is lost locally (the deadline passed while cut off, or the server said
/// Expired), makes sure it is gone on the server too: without this, a client that reconnects
/// after a freeze would keep alive a session whose holders were already told they lost it.
fn spawn_end_on_loss(me: Weak<ZkSession>, liveness: Liveness) -> AbortHandle {
    tokio::spawn(async move {
        let reason = liveness.lost().await;
        tracing::debug!(%reason, "ZooKeeper session lost; ending it");
        if let Some(session) = me.upgrade() {
            session.end().await;
        }
    })
    .abort_handle()
}

/// An entry: the node's path, and its czxid as the fencing token (C2).
/// Whether an ephemeral create made the node or found it there.
enum Created {
    Yes,
    Exists,
}

fn entry(path: String, stat: &zk::Stat) -> QueueEntry {
    QueueEntry {
        key: path,
        token: stat.czxid as u64,
    }
}

#[async_trait]
impl QueueStore for ZkSession {
    fn heads(&self) -> Option<&Heads> {
        Some(&self.shared.heads)
    }

    /// A node's path is never made again (its sequence number grows), and listings show no
    /// tokens: every entry's incarnation is 0.
    fn incarnation(&self, _token: u64) -> u64 {
        0
    }

    async fn enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Enqueued> {
        if role == Role::Read {
            return self.enqueue_rw(prefix, value, role, ticket).await;
        }
        self.enqueue_role(prefix, value, role, ticket).await
    }

    async fn try_enqueue(
        &self,
        prefix: &str,
        value: &[u8],
        role: Role,
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        self.try_enqueue_rw(prefix, value, role, ticket).await
    }

    async fn ahead_of_reader(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead> {
        self.ahead_of_reader_rw(prefix, mine).await
    }

    async fn wait_released(&self, key: &str, _rev: i64) -> Result<()> {
        self.wait_released_rw(key).await
    }

    async fn downgrade(&self, mine: &QueueEntry) -> Result<bool> {
        self.downgrade_rw(mine).await
    }

    /// ZooKeeper cannot create "only if no sibling exists" in one request, so this lists the
    /// children first (one round trip; nothing written when the lock is held), and only when
    /// there are none creates a node and checks it came first; a racing loser deletes its
    /// node at once and reports the winner. A first node with our ticket's uuid is ours (an
    /// earlier attempt's create was applied, its answer lost).
    async fn enqueue_if_empty(
        &self,
        prefix: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<Result<Enqueued, Option<String>>> {
        let dir = layout::dir_of(prefix)?;
        let client = self.client()?;
        let uuid = layout::uuid_of_ticket(ticket);
        let children = self.children(&client, &dir).await?;
        if let Some(holder) = children.first() {
            if layout::uuid_of(holder) != Some(uuid.as_str()) {
                // An earlier attempt of this ticket may have left a node behind the holder
                // (its check or delete unanswered): withdraw it, so "held" leaves nothing.
                if let Some(mine) = children.iter().find(|c| layout::uuid_of(c) == Some(&uuid)) {
                    let path = layout::child(&dir, mine);
                    call_node("withdraw", client.delete(&path, None)).await?;
                    self.remember(&dir, &uuid, false);
                }
                return Ok(Err(Some(layout::child(&dir, holder))));
            }
        }
        let enq = self.enqueue_role(prefix, value, Role::Lock, ticket).await?;
        if enq.first {
            return Ok(Ok(enq));
        }
        self.remove(&enq.mine).await?;
        let holder = self.children(&client, &dir).await?.first().cloned();
        Ok(Err(holder.map(|h| layout::child(&dir, &h))))
    }

    async fn ahead(&self, prefix: &str, mine: &QueueEntry) -> Result<Ahead> {
        let dir = layout::dir_of(prefix)?;
        self.place_of(&dir, mine, None).await
    }

    /// No listing when `released` had been first: it was just ahead of `mine` in a listing
    /// that showed both, nothing was ahead of it once it was first, and entries only leave a
    /// queue (new ones come last), so nothing is ahead of `mine` now. Our own session then
    /// confirms that `mine` is still there, as the recipe's read after every release does
    /// (someone may have deleted it while we waited), with one read of constant size: a
    /// hand-off costs the same whatever the queue's length (docs/contract.md, C3).
    async fn ahead_after(
        &self,
        prefix: &str,
        mine: &QueueEntry,
        released: &Released,
    ) -> Result<Ahead> {
        if !released.first {
            let dir = layout::dir_of(prefix)?;
            return self.place_of(&dir, mine, Some(&released.key)).await;
        }
        let client = self.client()?;
        let stat = call_node("exists", client.check_stat(&mine.key)).await?;
        if stat.flatten().is_none() {
            let reason = self.liveness.reason().unwrap_or(LostReason::EntryDeleted);
            return Err(Error::SessionLost { reason });
        }
        Ok(Ahead::Nobody { rev: 0 })
    }

    /// Watches `key` alone (Curator's predecessor watch): one watcher per waiter.
    async fn wait_deleted(&self, key: &str, _rev: i64) -> Result<()> {
        self.until_deleted(key).await
    }

    /// Overridden only so that a waiter's wait is one box, not the default's box around
    /// [`QueueStore::wait_deleted`]'s (docs/contract.md, Performance rules).
    async fn wait_deleted_seen(&self, key: &str, _rev: i64) -> Result<Witness> {
        self.until_deleted(key).await.map(|()| Witness::default())
    }

    async fn remove(&self, mine: &QueueEntry) -> Result<bool> {
        let client = self.client()?;
        let removed = call_node("unlock", client.delete(&mine.key, None)).await?;
        let node = layout::node_name(&mine.key);
        if let Some(uuid) = layout::uuid_of(node) {
            self.remember(layout::parent(&mine.key), uuid, false);
        }
        Ok(removed.is_some())
    }

    async fn own_entries(&self, prefix: &str) -> Result<Vec<QueueEntry>> {
        let dir = layout::dir_of(prefix)?;
        let client = self.client()?;
        let uuids = self.remembered(&dir);
        let mut found = Vec::new();
        for uuid in &uuids {
            match self.find_own(&client, &dir, uuid).await? {
                Some(entry) => found.push(entry),
                // Never created, or already gone: nothing left to withdraw for it.
                None => self.remember(&dir, uuid, false),
            }
        }
        Ok(found)
    }

    /// Curator's `_c_<uuid>-lease-<seq>` node under `<name>/leases` (InterProcessSemaphoreV2),
    /// then the directory's entries; a create whose answer was lost is found by its uuid.
    async fn add_lease(
        &self,
        dir: &str,
        value: &[u8],
        ticket: Ticket,
    ) -> Result<(QueueEntry, Vec<Kv>)> {
        let dir = layout::dir_of(dir)?;
        let mine = self.create_node(&dir, value, Role::Lease, ticket).await?;
        let client = self.client()?;
        let all = super::observe::entries(&client, &dir).await?;
        Ok((mine, all))
    }

    async fn leases(&self, dir: &str) -> Result<Vec<Kv>> {
        let dir = layout::dir_of(dir)?;
        super::observe::entries(&self.client()?, &dir).await
    }

    async fn own_lease(&self, dir: &str, ticket: Ticket) -> Result<Option<QueueEntry>> {
        let dir = layout::dir_of(dir)?;
        let uuid = layout::uuid_of_ticket(ticket);
        self.find_own(&self.client()?, &dir, &uuid).await
    }

    async fn guarded_write(&self, mine: &QueueEntry, ops: &[Write]) -> Result<bool> {
        let client = self.client()?;
        ops::commit(&client, self.ensemble.acls(), Some(&mine.key), ops).await
    }

    async fn proclaim(&self, mine: &QueueEntry, value: &[u8]) -> Result<bool> {
        let client = self.client()?;
        let set = call_node("proclaim", client.set_data(&mine.key, value, None)).await?;
        Ok(set.is_some())
    }

    async fn put_ephemeral(&self, key: &str, value: &[u8]) -> Result<bool> {
        let client = self.client()?;
        let path = layout::path_of(key)?;
        for _ in 0..CREATE_TRIES {
            match self.create_ephemeral(&client, &path, value).await? {
                Created::Yes => return Ok(true),
                Created::Exists => {}
            }
            let Some((_, stat)) = call_node("put ephemeral", client.get_data(&path)).await? else {
                continue; // gone meanwhile: create it
            };
            if stat.ephemeral_owner != self.info.id().0 {
                return Ok(false);
            }
            let set = call("put ephemeral", async {
                match client.set_data(&path, value, Some(stat.version)).await {
                    Ok(_) => Ok(true),
                    // Changed or deleted meanwhile (by an administrator): look again.
                    Err(zk::Error::BadVersion | zk::Error::NoNode) => Ok(false),
                    Err(e) => Err(e),
                }
            });
            if set.await? {
                return Ok(true);
            }
        }
        Err(Error::Transient {
            op: "put ephemeral",
            message: "the key kept changing under concurrent writers".into(),
            source: None,
        })
    }

    async fn close(&self) -> Result<()> {
        self.tasks.iter().for_each(AbortHandle::abort);
        self.liveness.lose(LostReason::SessionClosed);
        self.end().await;
        Ok(())
    }

    /// Stops the session's pings without closing it, as a crashed process would: the client
    /// handle is dropped (it is detached, so no CloseSession is sent) and the server expires
    /// the session after its timeout.
    fn abandon(&self) {
        self.tasks.iter().for_each(AbortHandle::abort);
        drop(self.slot.take());
    }

    fn lease_id(&self) -> u64 {
        self.info.id().0 as u64
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    fn granted_ttl(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}
