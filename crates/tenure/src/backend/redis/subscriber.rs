//! One subscriber connection per Redis server, shared by every queued waiter of a client
//! (`waiting.rs`; Redlock's and read/write locks' racing waiters keep one each).
//!
//! Opening a pub/sub connection per wait (TCP connect, `HELLO`/`AUTH`, `SUBSCRIBE`, then a
//! close) cost more than the hand-off it waited for, on both ends. Here the first waiter opens
//! the server's subscriber connection and later ones only add their channels to it; a reader
//! task hands each message to the waiters registered on its channel.
//!
//! A channel that loses its last waiter stays subscribed for a while ([`IDLE_KEPT`] of them,
//! oldest dropped first), so that the same session waiting for the same lock again (its channel
//! is `tenure:wake:<name>:<session>`) sends no `SUBSCRIBE`, and can even join before its
//! acquire attempt ([`Subscriber::join`]), when no wake-up can be missed in between.
//!
//! When the connection drops (a server restart, a network fault), every registered waiter is
//! told (its receiver ends) and its wait looks again and subscribes anew, which reconnects; the
//! waiters' PTTL-bounded fallback covers a server that stays away, as it covers a lost message.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, Weak};

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::AbortHandle;

use super::node::{map_err, Node};
use crate::{Error, Result};

/// Channels kept subscribed with no waiter on them, per server.
const IDLE_KEPT: usize = 256;

/// The subscriber connection of one server (lazily opened).
#[derive(Default)]
pub(crate) struct Subscriber {
    /// Held while connecting, so that concurrent first waiters open one connection.
    connecting: tokio::sync::Mutex<()>,
    shared: Arc<StdMutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    live: Option<Live>,
    /// Counts connections; a subscription belongs to the one it was made on.
    generation: u64,
    next_id: u64,
    routes: HashMap<String, Route>,
    /// Channels with no waiter, by when they became idle (oldest first).
    idle: BTreeMap<u64, String>,
    next_stamp: u64,
}

struct Live {
    sink: PubSubSink,
    generation: u64,
    reader: AbortHandle,
}

#[derive(Default)]
struct Route {
    waiters: Vec<(u64, UnboundedSender<Vec<u8>>)>,
    /// The server confirmed the subscription on the current connection.
    confirmed: bool,
    /// Its key in [`Shared::idle`] while nobody waits on it.
    idle: Option<u64>,
}

fn lock(shared: &StdMutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // The reader task owns the connection: stopping it closes the connection.
        if let Some(live) = lock(&self.shared).live.take() {
            live.reader.abort();
        }
    }
}

/// One waiter's registration on some channels; the messages published on them.
pub(crate) struct Subscription {
    shared: Arc<StdMutex<Shared>>,
    channels: Vec<String>,
    id: u64,
    rx: UnboundedReceiver<Vec<u8>>,
}

impl Subscription {
    /// The next message's payload; `None` once the connection is gone (a message may have
    /// been lost: look again, and subscribe anew).
    pub(crate) async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// A message already received, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Vec<u8>> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        let mut evict = Vec::new();
        for channel in &self.channels {
            let Some(route) = s.routes.get_mut(channel) else {
                continue;
            };
            route.waiters.retain(|(id, _)| *id != self.id);
            if !route.waiters.is_empty() || route.idle.is_some() {
                continue;
            }
            let stamp = s.next_stamp;
            s.next_stamp += 1;
            if let Some(route) = s.routes.get_mut(channel) {
                route.idle = Some(stamp);
            }
            s.idle.insert(stamp, channel.clone());
        }
        while s.idle.len() > IDLE_KEPT {
            let Some((_, channel)) = s.idle.pop_first() else {
                break;
            };
            s.routes.remove(&channel);
            evict.push(channel);
        }
        let Some(live) = &s.live else { return };
        if evict.is_empty() {
            return;
        }
        let (sink, generation) = (live.sink.clone(), live.generation);
        drop(s);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(unsubscribe(self.shared.clone(), sink, generation, evict));
    }
}

/// Drops idle channels from the connection. A waiter may have registered one of them again
/// meanwhile, and its `SUBSCRIBE` may have reached the server before this `UNSUBSCRIBE`: such
/// a channel is subscribed again, and its waiters told to look (a message may have fallen in
/// the gap).
async fn unsubscribe(
    shared: Arc<StdMutex<Shared>>,
    mut sink: PubSubSink,
    generation: u64,
    channels: Vec<String>,
) {
    if sink.unsubscribe(&channels).await.is_err() {
        return; // The connection is gone, and with it every subscription.
    }
    let again: Vec<String> = {
        let mut s = lock(&shared);
        if s.generation != generation {
            return;
        }
        let again: Vec<String> = channels
            .into_iter()
            .filter(|c| s.routes.contains_key(c))
            .collect();
        for channel in &again {
            if let Some(route) = s.routes.get_mut(channel) {
                route.confirmed = false;
                for (_, tx) in &route.waiters {
                    let _ = tx.send(Vec::new());
                }
            }
        }
        again
    };
    if !again.is_empty() && sink.subscribe(&again).await.is_ok() {
        let mut s = lock(&shared);
        if s.generation == generation {
            for channel in &again {
                if let Some(route) = s.routes.get_mut(channel) {
                    route.confirmed = true;
                }
            }
        }
    }
}

/// Hands each message to the waiters on its channel; when the connection ends, forgets it
/// and every route, which ends every waiter's receiver.
async fn read(mut stream: PubSubStream, shared: Weak<StdMutex<Shared>>, generation: u64) {
    while let Some(msg) = stream.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let s = lock(&shared);
        if let Some(route) = s.routes.get(msg.get_channel_name()) {
            for (_, tx) in &route.waiters {
                let _ = tx.send(msg.get_payload_bytes().to_vec());
            }
        }
    }
    tracing::debug!("subscriber connection closed; waiters look again and resubscribe");
    if let Some(shared) = shared.upgrade() {
        forget(&shared, generation);
    }
}

/// Forgets connection `generation` and every route on it: each registered waiter's receiver
/// ends, and the next subscription opens a new connection.
fn forget(shared: &StdMutex<Shared>, generation: u64) {
    let mut s = lock(shared);
    if s.live.as_ref().is_some_and(|l| l.generation == generation) {
        if let Some(live) = s.live.take() {
            live.reader.abort();
        }
        s.routes.clear();
        s.idle.clear();
    }
}

impl Subscriber {
    /// Registers a waiter on `channels` without any request, if the current connection has
    /// them all subscribed already: a message published from now on reaches it. `None`
    /// otherwise (then [`Subscriber::subscribe`] after the attempt).
    pub(crate) fn join(&self, channels: &[String]) -> Option<Subscription> {
        let mut s = lock(&self.shared);
        s.live.as_ref()?;
        if !channels
            .iter()
            .all(|c| s.routes.get(c).is_some_and(|r| r.confirmed))
        {
            return None;
        }
        Some(self.register(&mut s, channels))
    }

    fn register(&self, s: &mut Shared, channels: &[String]) -> Subscription {
        let (tx, rx) = unbounded_channel();
        let id = s.next_id;
        s.next_id += 1;
        for channel in channels {
            let route = s.routes.entry(channel.clone()).or_default();
            route.waiters.push((id, tx.clone()));
            if let Some(stamp) = route.idle.take() {
                s.idle.remove(&stamp);
            }
        }
        Subscription {
            shared: self.shared.clone(),
            channels: channels.to_vec(),
            id,
            rx,
        }
    }

    /// Registers a waiter on `channels` and has them subscribed on the server's connection
    /// (opening it if need be) before returning: a message published from the return on
    /// reaches the waiter.
    pub(crate) async fn subscribe(&self, node: &Node, channels: &[String]) -> Result<Subscription> {
        // A connection that broke before its reader noticed is dropped and opened once more.
        let mut again = true;
        loop {
            let (mut sink, generation) = self.connection(node).await?;
            let sub = {
                let mut s = lock(&self.shared);
                if s.live.as_ref().map(|l| l.generation) != Some(generation) {
                    return Err(closed(node));
                }
                self.register(&mut s, channels)
            };
            // Sent even for a channel already subscribed (the server just confirms it), so
            // that the return waits for the server to have it, whoever asked first.
            match tokio::time::timeout(node.timeout, sink.subscribe(channels)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if again && (e.is_connection_dropped() || e.is_io_error()) => {
                    again = false;
                    self.forget(generation);
                    continue;
                }
                Ok(Err(e)) => return Err(map_err("subscribe", &e)),
                Err(_) => {
                    self.forget(generation);
                    return Err(closed(node));
                }
            }
            let mut s = lock(&self.shared);
            if s.generation == generation {
                for channel in channels {
                    if let Some(route) = s.routes.get_mut(channel) {
                        route.confirmed = true;
                    }
                }
            }
            return Ok(sub);
        }
    }

    /// Forgets connection `generation` (broken, or silent) and every route on it.
    fn forget(&self, generation: u64) {
        forget(&self.shared, generation);
    }

    /// The live connection's sink, opening the connection if there is none.
    async fn connection(&self, node: &Node) -> Result<(PubSubSink, u64)> {
        if let Some(l) = &lock(&self.shared).live {
            return Ok((l.sink.clone(), l.generation));
        }
        let _connecting = self.connecting.lock().await;
        if let Some(l) = &lock(&self.shared).live {
            return Ok((l.sink.clone(), l.generation));
        }
        let (sink, stream) = node.pubsub().await?.split();
        let mut s = lock(&self.shared);
        s.generation += 1;
        let generation = s.generation;
        // Spawned under the lock, so that a connection that ends at once is forgotten only
        // after it was recorded.
        let reader = tokio::spawn(read(stream, Arc::downgrade(&self.shared), generation));
        s.live = Some(Live {
            sink: sink.clone(),
            generation,
            reader: reader.abort_handle(),
        });
        Ok((sink, generation))
    }
}

fn closed(node: &Node) -> Error {
    Error::Transient {
        op: "subscribe",
        message: format!(
            "the subscriber connection to {} closed or gave no answer within {:?}",
            node.addr, node.timeout
        ),
        source: None,
    }
}
