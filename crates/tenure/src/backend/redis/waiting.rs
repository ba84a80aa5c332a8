//! Waiting for a held lock without polling (docs/contract.md, Performance rules).
//!
//! **One instance (`redis://`): FIFO, one waiter woken per release.** A waiter refused by the
//! acquire script is appended to the lock's queue `tenure:queue:<name>` in the same script
//! (`scripts::ACQUIRE_QUEUED`), then subscribes to its session's channel for that lock,
//! `tenure:wake:<name>:<session id hex>`, and tries once more (a release between the two is not
//! missed; a channel still subscribed from the session's last wait for the lock is joined
//! before the attempt, and no second try is needed). Only the head of the queue may take a
//! free lock: a release hands it over to the head in the same script (sets the lock to the
//! head's value and publishes `<value> <token>` on its channel), so the woken waiter holds the
//! lock when the message arrives and sends nothing more (C3 holds among Tenure clients; a
//! hand-off costs the same few commands however many wait). All queued waiters of a client
//! share one subscriber connection per server (`subscriber.rs`). A waiter whose session
//! heartbeat is gone (its process crashed) is dropped from the head by whoever looks next; an
//! interrupted wait withdraws its own entry, or releases the lock if it was already handed
//! over to it (`session::InterruptedAcquire`, C5). Without a message — lost (the next look
//! then finds the lock holding the waiter's value: granted), or a release by a client that
//! does not queue (redis-py's `Lock`, redsync: they can take the lock ahead of our queue, since
//! they only `SET NX`) or an expiry — a waiter looks again when the holder's key would expire
//! (its PTTL, jittered) or, when the lock is free for an older client's head waiter (whose
//! heartbeat names no TTL to hand over with), when that head's heartbeat would; for a key
//! without expiry, after a jittered, doubling delay.
//!
//! **Redlock: not FIFO** (C3 is exempt). A queue on each master could order the same waiters
//! differently on each, and a grant needs a majority, so the head of one queue could be
//! refused by the others and nobody would hold the lock. Waiters subscribe to the lock's
//! release channel and its keyspace channel `__keyspace@<db>__:<name>` (which delivers
//! `del`/`expired` events only with `notify-keyspace-events` enabled), every one wakes on a
//! release, and the first script to arrive wins; the same PTTL fallback covers lost messages.
//! Messages that arrive during an attempt stay buffered, so no release is missed between an
//! attempt and the wait. These racing waiters (read/write locks' too) each keep a subscriber
//! connection of their own for the wait, as before the shared one. There is no fixed-period
//! sleep loop.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::PubSubStream;

use super::node::Node;
use super::redlock::Nodes;
use super::scripts::{release_channel, wake_channel};
use super::subscriber::Subscription;
use crate::retry::jitter;

/// Longest fallback wait for a key that never expires.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Look again (a release, a lost connection, or the fallback's time).
    Look,
    /// The release handed the lock over to this waiter, with this fencing token.
    Granted(u64),
}

/// Where a waiter's messages come from.
enum Source {
    /// A queued waiter's registration on the client's shared subscriber connection.
    Shared(Subscription),
    /// A racing waiter's own connection (Redlock, read/write locks: as before the shared
    /// connection; an operator counts these waiters by their subscriptions, one each).
    Own(PubSubStream),
}

impl Source {
    async fn recv(&mut self) -> Option<Vec<u8>> {
        match self {
            Source::Shared(s) => s.recv().await,
            Source::Own(s) => s.next().await.map(|m| m.get_payload_bytes().to_vec()),
        }
    }

    fn try_recv(&mut self) -> Option<Vec<u8>> {
        match self {
            Source::Shared(s) => s.try_recv(),
            Source::Own(s) => s
                .next()
                .now_or_never()
                .flatten()
                .map(|m| m.get_payload_bytes().to_vec()),
        }
    }
}

/// One waiter's subscription.
pub(crate) struct Waiter {
    nodes: Arc<Nodes>,
    /// A queued waiter's channel, to subscribe again after its connection was lost (a racing
    /// waiter then waits on fallbacks only).
    channels: Vec<String>,
    /// A queued waiter's value: only messages naming it are for this waiter.
    own: Option<String>,
    sub: Option<Source>,
    backoff: Duration,
}

/// The channels a waiter listens on: a queued waiter its own (per session and lock), a racing
/// one (Redlock, read/write locks) the lock's release and keyspace channels.
fn channels(node: &Node, name: &str, own: Option<&str>) -> Vec<String> {
    match own {
        Some(value) => vec![wake_channel(name, value)],
        None => vec![
            release_channel(name),
            format!("__keyspace@{}__:{name}", node.db),
        ],
    }
}

impl Waiter {
    /// Joins a subscription that needs no request (see `Subscriber::join`), before the
    /// acquire attempt: then no wake-up after the attempt can be missed.
    pub(crate) fn join(nodes: &Arc<Nodes>, name: &str, own: Option<&str>) -> Option<Waiter> {
        let node = nodes.nodes.first()?;
        let channels = channels(node, name, own);
        let sub = node.subscriber.join(&channels)?;
        Some(Waiter {
            nodes: nodes.clone(),
            channels,
            own: own.map(str::to_string),
            sub: Some(Source::Shared(sub)),
            backoff: Duration::from_millis(50),
        })
    }

    /// Subscribes on the first master that accepts; without any, waits on fallbacks only.
    /// `own`: a queued waiter's value, whose own channel is then the only one it listens on.
    /// The caller must look once more before waiting: a release may have come before.
    pub(crate) async fn subscribe(nodes: &Arc<Nodes>, name: &str, own: Option<&str>) -> Waiter {
        let mut waiter = Waiter {
            nodes: nodes.clone(),
            channels: Vec::new(),
            own: own.map(str::to_string),
            sub: None,
            backoff: Duration::from_millis(50),
        };
        for node in &nodes.nodes {
            let channels = channels(node, name, own);
            let subscribed = if own.is_some() {
                let sub = node.subscriber.subscribe(node, &channels).await;
                sub.map(|s| {
                    waiter.channels.clone_from(&channels);
                    Source::Shared(s)
                })
            } else {
                subscribe_on(node, &channels).await.map(Source::Own)
            };
            match subscribed {
                Ok(s) => {
                    waiter.sub = Some(s);
                    break;
                }
                Err(e) => {
                    tracing::debug!(node = %node.addr, error = %e, "cannot subscribe; falling back to expiry wake-ups")
                }
            }
        }
        waiter
    }

    /// Subscribes again after the connection was lost; whether it worked.
    async fn resubscribe(&mut self) -> bool {
        if self.channels.is_empty() {
            return false;
        }
        for node in &self.nodes.nodes {
            if let Ok(s) = node.subscriber.subscribe(node, &self.channels).await {
                self.sub = Some(Source::Shared(s));
                return true;
            }
        }
        false
    }
}

/// What a message means for a waiter with value `own` (a queued one; `None`: a racing one);
/// `None`: not for it (an earlier wait's).
fn meaning(own: Option<&str>, payload: &[u8]) -> Option<Wake> {
    let Some(own) = own else {
        return Some(Wake::Look);
    };
    if payload.is_empty() {
        return Some(Wake::Look);
    }
    let text = std::str::from_utf8(payload).ok()?;
    let (value, token) = match text.split_once(' ') {
        Some((value, token)) => (value, Some(token)),
        None => (text, None),
    };
    if value != own {
        return None;
    }
    match token.map(str::parse::<u64>) {
        None => Some(Wake::Look),
        Some(Ok(token)) => Some(Wake::Granted(token)),
        // Not ours to read; looking again finds out whether the lock is ours.
        Some(Err(_)) => Some(Wake::Look),
    }
}

impl Waiter {
    /// Waits for a message or the fallback wake-up. `retry_in`: the holder's remaining TTL
    /// (`None`: no expiry).
    pub(crate) async fn wait(&mut self, retry_in: Option<Duration>) -> Wake {
        let fallback = match retry_in {
            Some(p) => p + jitter(p / 20 + Duration::from_millis(4)),
            None => {
                let d = jitter(self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                d
            }
        };
        if self.sub.is_none() {
            // Lost with its connection: subscribed again, look at once (a message may have
            // been lost meanwhile); otherwise wait for the fallback.
            if !self.resubscribe().await {
                tokio::time::sleep(fallback).await;
            }
            return Wake::Look;
        }
        let sleep = tokio::time::sleep(fallback);
        tokio::pin!(sleep);
        loop {
            let own = self.own.as_deref();
            let Some(sub) = &mut self.sub else {
                return Wake::Look;
            };
            let payload = tokio::select! {
                msg = sub.recv() => msg,
                () = &mut sleep => return Wake::Look,
            };
            let Some(payload) = payload else {
                tracing::debug!("subscription lost with its connection; looking again");
                self.sub = None;
                return Wake::Look;
            };
            // Everything buffered so far is covered by one look (or by the grant among it).
            let mut woken = meaning(own, &payload);
            while let Some(more) = sub.try_recv() {
                match meaning(own, &more) {
                    Some(Wake::Granted(t)) => woken = Some(Wake::Granted(t)),
                    Some(Wake::Look) if woken.is_none() => woken = Some(Wake::Look),
                    _ => {}
                }
            }
            if let Some(w) = woken {
                return w;
            }
        }
    }
}

/// A racing waiter's own subscriber connection, subscribed to `channels`.
async fn subscribe_on(node: &Node, channels: &[String]) -> crate::Result<PubSubStream> {
    let mut pubsub = node.pubsub().await?;
    match tokio::time::timeout(node.timeout, pubsub.subscribe(channels)).await {
        Ok(Ok(())) => Ok(pubsub.into_on_message()),
        Ok(Err(e)) => Err(super::node::map_err("subscribe", &e)),
        Err(_) => Err(crate::Error::Transient {
            op: "subscribe",
            message: format!("{} gave no answer within {:?}", node.addr, node.timeout),
            source: None,
        }),
    }
}
