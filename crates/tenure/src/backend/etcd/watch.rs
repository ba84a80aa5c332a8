//! One watch stream per client, shared by every waiter and holder in the process
//! (docs/contract.md, Performance rules).
//!
//! etcd puts a watch that starts at or below its current revision in the *unsynced* group and
//! catches it up only every 100 ms — the delay that makes Go's Mutex slow to hand over. A
//! start revision of "header + 1" is not enough under contention: any write between the read
//! and the watch's creation makes that revision old. So waiters' watches start at the current
//! revision, and the caller re-reads once after etcd confirms the watch: a deletion before
//! that read is seen by the read, one after it by the watch.
//!
//! Even "current revision" can be late on etcd 3.4: its gRPC layer reads the revision before
//! the store lock is taken, so a write committing in that gap leaves the new watch unsynced.
//! The confirmation carries the revision etcd read; a re-read that finds a newer one means
//! writes were in flight, and the caller adds a second watch (see [`DeleteWatch::hedge`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use std::time::Duration;

use etcd_client::{
    EventType, WatchFilterType, WatchOptions, WatchRequestSender, WatchResponseStream,
};
use futures_channel::mpsc as events;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::members::{Members, ATTEMPT_TIMEOUT};
use super::revision;
use crate::backend::queue::Witness;

/// How often the member under a stream with watches on it is checked (C14). A member that
/// stopped (SIGSTOP, a hung machine) keeps its connection open and says nothing; one cut off
/// from its peers keeps the stream open and answers progress requests from its stale store,
/// but delivers no new events. Both fail a linearizable read, which needs the leader and
/// carries require-leader: a stopped one by silence, a leaderless one by refusing. A failed
/// check passes the member over and breaks the stream, so every waiter on it re-watches
/// elsewhere and re-reads.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How long the check may take. A count-only read answers in milliseconds on a healthy
/// cluster; a false alarm costs one re-watch and one read per waiter.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// A check of one member in flight: resolves to whether it answered.
type MemberCheck = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Whether member `index` answers a linearizable read in time (a refusal by permission is an
/// answer too).
async fn member_answers(members: Arc<Members>, index: usize) -> bool {
    let Ok(member) = members.member_at(index).await else {
        return false;
    };
    let mut kv = member.client.kv_client();
    let read = kv.get("\0", Some(etcd_client::GetOptions::new().with_count_only()));
    match tokio::time::timeout(CHECK_TIMEOUT, read).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => super::map_err("check", e).is_permission(),
        Err(_) => false,
    }
}

/// What a deletion watch reports, in order: `Created` (with the revision etcd created the
/// watch at and the member it is on), then `Deleted` (with the member that sent it and the
/// revision it was sent at) or `Broken`.
#[derive(Debug)]
pub(super) enum WatchEvent {
    Created(Witness),
    Deleted(Witness),
    Broken(String),
}

enum Cmd {
    Watch {
        id: i64,
        key: String,
        from: Option<i64>,
        /// Report a put as a change too (see [`WatchHub::watch_put`]).
        puts: bool,
        events: events::UnboundedSender<WatchEvent>,
    },
    Cancel {
        id: i64,
    },
}

/// The handle the rest of the backend uses; the stream itself lives in a driver task.
#[derive(Clone)]
pub(super) struct WatchHub {
    tx: mpsc::UnboundedSender<Cmd>,
    next_id: Arc<AtomicI64>,
}

/// One registered deletion watch; cancels itself on the stream when dropped.
pub(super) struct DeleteWatch {
    hub: WatchHub,
    id: i64,
    /// A channel that allocates per message, not a block of slots up front: every queued
    /// waiter holds one for as long as it waits, and receives two or three messages in all.
    events: events::UnboundedReceiver<WatchEvent>,
}

impl Drop for DeleteWatch {
    fn drop(&mut self) {
        let _ = self.hub.tx.send(Cmd::Cancel { id: self.id });
    }
}

impl DeleteWatch {
    async fn next(&mut self) -> WatchEvent {
        self.events
            .next()
            .await
            .unwrap_or_else(|| WatchEvent::Broken("watch driver stopped".into()))
    }

    /// Waits until etcd confirms the watch and returns the revision it was created at (the
    /// watch sees every deletion after it) and the member it is on. `Err` with the reason if
    /// it broke instead.
    pub(super) async fn created(&mut self) -> Result<Witness, String> {
        match self.next().await {
            WatchEvent::Created(at) => Ok(at),
            WatchEvent::Deleted(_) => Ok(Witness::default()),
            WatchEvent::Broken(why) => Err(why),
        }
    }

    /// Adds a second watch on `key` when a read at revision `read_rev` shows that writes
    /// committed after this watch's creation revision `created_rev`: one of them may have
    /// landed between etcd 3.4 fixing the watch's start and registering it, leaving this
    /// watch unsynced. Both being unsynced is rare; this one still covers the revisions
    /// before the second starts. Measured on etcd 3.4, 5 workers: 0.45× → 0.85× of the
    /// uncontended rate, acquire p99 95 ms → 10 ms.
    pub(super) fn hedge(&self, key: &str, created_rev: i64, read_rev: i64) -> Option<DeleteWatch> {
        (read_rev > created_rev).then(|| self.hub.watch_delete(key, None))
    }

    /// Waits for the deletion, saying where it was seen; `Err` with the reason if the watch
    /// broke instead.
    pub(super) async fn deleted(&mut self) -> Result<Witness, String> {
        loop {
            match self.next().await {
                WatchEvent::Created(_) => continue,
                WatchEvent::Deleted(seen) => return Ok(seen),
                WatchEvent::Broken(why) => return Err(why),
            }
        }
    }

    /// Waits for the deletion as seen by this watch or by `hedge`, whichever reports first.
    pub(super) async fn deleted_or(
        &mut self,
        hedge: Option<DeleteWatch>,
    ) -> Result<Witness, String> {
        match hedge {
            None => self.deleted().await,
            Some(mut hedge) => tokio::select! {
                seen = self.deleted() => seen,
                seen = hedge.deleted() => seen,
            },
        }
    }
}

impl WatchHub {
    pub(super) fn spawn(members: Arc<Members>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(drive(members, rx));
        WatchHub {
            tx,
            next_id: Default::default(),
        }
    }

    /// Registers a watch for the deletion of `key`: from etcd's current revision on (`None`;
    /// synced, prompt), or from a given revision (may be caught up only every 100 ms, which
    /// suits the holder's own lost-signal watch, not hand-offs).
    pub(super) fn watch_delete(&self, key: &str, from: Option<i64>) -> DeleteWatch {
        self.register(key, from, false)
    }

    /// Registers a watch, from etcd's current revision on, that reports a put of `key` as well
    /// as its deletion (both as [`WatchEvent::Deleted`]): a read/write lock's reader waits
    /// for its writer's downgrade marker to appear.
    pub(super) fn watch_put(&self, key: &str) -> DeleteWatch {
        self.register(key, None, true)
    }

    fn register(&self, key: &str, from: Option<i64>, puts: bool) -> DeleteWatch {
        let id = 1 + self.next_id.fetch_add(1, Ordering::Relaxed);
        let (events_tx, events) = events::unbounded();
        let cmd = Cmd::Watch {
            id,
            key: key.to_string(),
            from,
            puts,
            events: events_tx,
        };
        if let Err(mpsc::error::SendError(Cmd::Watch { events, .. })) = self.tx.send(cmd) {
            let _ = events.unbounded_send(WatchEvent::Broken("watch driver stopped".into()));
        }
        DeleteWatch {
            hub: self.clone(),
            id,
            events,
        }
    }
}

struct Driver {
    members: Arc<Members>,
    /// The stream, and the member it is on.
    stream: Option<(usize, WatchRequestSender, WatchResponseStream)>,
    watching: HashMap<i64, events::UnboundedSender<WatchEvent>>,
    /// The watches that report puts too.
    puts: std::collections::HashSet<i64>,
}

impl Driver {
    async fn watch(
        &mut self,
        id: i64,
        key: String,
        from: Option<i64>,
        puts: bool,
    ) -> Result<(), String> {
        let mut opts = WatchOptions::new().with_watch_id(id);
        if puts {
            self.puts.insert(id);
        } else {
            opts = opts.with_filters([WatchFilterType::NoPut]);
        }
        if let Some(rev) = from {
            opts = opts.with_start_revision(rev);
        }
        match &mut self.stream {
            Some((_, sender, _)) => sender
                .watch(key, Some(opts))
                .await
                .map_err(|e| e.to_string()),
            None => {
                let member = self.members.member().await.map_err(|e| e.to_string())?;
                let mut watches = member.client.watch_client();
                let opened = watches.watch(key, Some(opts));
                let stream = match tokio::time::timeout(ATTEMPT_TIMEOUT, opened).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        self.members.failed(member.index);
                        return Err(e.to_string());
                    }
                    Err(_) => {
                        self.members.failed(member.index);
                        return Err(format!("no watch stream within {ATTEMPT_TIMEOUT:?}"));
                    }
                };
                let (sender, responses) = stream.split();
                self.stream = Some((member.index, sender, responses));
                Ok(())
            }
        }
    }

    /// The member to check now: the stream's, while watches depend on it.
    fn member_to_check(&self) -> Option<usize> {
        let (member, ..) = self.stream.as_ref()?;
        (!self.watching.is_empty()).then_some(*member)
    }

    /// A check of `member` failed: if the stream is still on it, move.
    fn member_failed(&mut self, member: usize) {
        if matches!(self.stream, Some((m, ..)) if m == member) {
            self.members.failed(member);
            self.break_all(
                "the etcd member under the watch stream stopped answering or lost its leader",
            );
        }
    }

    fn tell(&mut self, id: i64, event: WatchEvent) {
        if let Some(events) = self.watching.get(&id) {
            let _ = events.unbounded_send(event);
        }
    }

    fn break_all(&mut self, why: &str) {
        self.stream = None;
        self.puts.clear();
        for (_, events) in self.watching.drain() {
            let _ = events.unbounded_send(WatchEvent::Broken(why.to_string()));
        }
    }

    async fn cancel(&mut self, id: i64) {
        self.puts.remove(&id);
        if self.watching.remove(&id).is_some() {
            if let Some((_, sender, _)) = &mut self.stream {
                let _ = sender.cancel(id).await;
            }
        }
    }

    fn on_response(&mut self, resp: etcd_client::WatchResponse) -> Option<i64> {
        let id = resp.watch_id();
        let member = self.stream.as_ref().map(|(member, ..)| *member);
        if resp.created() {
            let at = Witness {
                member,
                rev: revision(resp.header()),
            };
            self.tell(id, WatchEvent::Created(at));
        }
        if resp.canceled() {
            let why = format!("watch canceled by etcd: {}", resp.cancel_reason());
            self.tell(id, WatchEvent::Broken(why));
            self.watching.remove(&id);
            self.puts.remove(&id);
            return None;
        }
        let puts = self.puts.contains(&id);
        let deleted = resp
            .events()
            .iter()
            .any(|e| e.event_type() == EventType::Delete || puts);
        if deleted {
            // etcd sends an event only once the member has applied it; a response's header
            // carries the revision of its events (or a later one).
            let seen = Witness {
                member,
                rev: revision(resp.header()),
            };
            self.tell(id, WatchEvent::Deleted(seen));
            return Some(id);
        }
        None
    }
}

async fn next_message(
    stream: &mut Option<(usize, WatchRequestSender, WatchResponseStream)>,
) -> Result<Option<etcd_client::WatchResponse>, etcd_client::Error> {
    match stream {
        Some((_, _, responses)) => responses.message().await,
        None => std::future::pending().await,
    }
}

async fn drive(members: Arc<Members>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut d = Driver {
        members,
        stream: None,
        watching: HashMap::new(),
        puts: Default::default(),
    };
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The check in flight, if any, and the member it checks; it runs beside the stream so that
    // waiting for its answer never holds up events.
    let mut check: Option<(usize, MemberCheck)> = None;
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Cmd::Watch { id, key, from, puts, events }) => {
                    d.watching.insert(id, events);
                    if let Err(e) = d.watch(id, key, from, puts).await {
                        d.break_all(&e);
                    }
                }
                Some(Cmd::Cancel { id }) => d.cancel(id).await,
            },
            msg = next_message(&mut d.stream) => match msg {
                Ok(Some(resp)) => {
                    if let Some(done) = d.on_response(resp) {
                        d.cancel(done).await;
                    }
                }
                Ok(None) => d.break_all("watch stream closed"),
                Err(e) => {
                    if let Some((member, ..)) = d.stream {
                        d.members.failed(member);
                    }
                    d.break_all(&e.to_string());
                }
            },
            _ = tick.tick(), if check.is_none() => {
                if let Some(member) = d.member_to_check() {
                    check = Some((member, Box::pin(member_answers(d.members.clone(), member))));
                }
            }
            answered = async { check.as_mut().map(|(_, c)| c).expect("guarded").await }, if check.is_some() => {
                if let Some((member, _)) = check.take() {
                    if !answered {
                        d.member_failed(member);
                    }
                }
            }
        }
    }
}
