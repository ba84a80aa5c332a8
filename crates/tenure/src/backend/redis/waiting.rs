//! Waiting for a held lock without polling (docs/contract.md, Performance rules).
//!
//! **One instance (`redis://`): FIFO, one waiter woken per release.** A waiter refused by the
//! acquire script is appended to the lock's queue `tenure:queue:<name>` in the same script
//! (`scripts::ACQUIRE_QUEUED`), then subscribes to its own channel
//! `tenure:wake:<name>:<value>` and tries once more (a release between the two is not missed).
//! Only the head of the queue may take a free lock, and a release publishes only on the head's
//! channel, so a hand-off costs the same few commands however many wait (C3 holds among
//! Tenure clients). A waiter whose session heartbeat is gone (its process crashed) is dropped
//! from the head by whoever looks next; an interrupted wait withdraws its own entry
//! (`session::InterruptedAcquire`, C5). Without a message — lost, or a release by a client
//! that does not queue (redis-py's `Lock`, redsync: they can take the lock ahead of our queue,
//! since they only `SET NX`) or an expiry — a waiter looks again when the holder's key would
//! expire (its PTTL, jittered) or, when the lock is free for the head to take, when the
//! head's heartbeat would; for a key without expiry, after a jittered, doubling delay.
//!
//! **Redlock: not FIFO** (C3 is exempt). A queue on each master could order the same waiters
//! differently on each, and a grant needs a majority, so the head of one queue could be
//! refused by the others and nobody would hold the lock. Waiters subscribe to the lock's
//! release channel and its keyspace channel `__keyspace@<db>__:<name>` (which delivers
//! `del`/`expired` events only with `notify-keyspace-events` enabled), every one wakes on a
//! release, and the first script to arrive wins; the same PTTL fallback covers lost messages.
//! Messages that arrive during an attempt stay buffered, so no release is missed between an
//! attempt and the wait. There is no fixed-period sleep loop.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::PubSubStream;

use super::node::Node;
use super::scripts::{release_channel, wake_channel};
use crate::retry::jitter;

/// Longest fallback wait for a key that never expires.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One waiter's subscription.
pub(crate) struct Waiter {
    stream: Option<PubSubStream>,
    backoff: Duration,
}

impl Waiter {
    /// Subscribes on the first master that accepts; without any, waits on fallbacks only.
    /// `own`: a queued waiter's value, whose own channel is then the only one it listens on.
    pub(crate) async fn subscribe(nodes: &[Node], name: &str, own: Option<&str>) -> Waiter {
        let mut stream = None;
        for node in nodes {
            match subscribe_on(node, name, own).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => {
                    tracing::debug!(node = %node.addr, error = %e, "cannot subscribe; falling back to expiry wake-ups")
                }
            }
        }
        Waiter {
            stream,
            backoff: Duration::from_millis(50),
        }
    }

    /// Waits for a release message or the fallback wake-up. `retry_in`: the holder's
    /// remaining TTL (`None`: no expiry).
    pub(crate) async fn wait(&mut self, retry_in: Option<Duration>) {
        let fallback = match retry_in {
            Some(p) => p + jitter(p / 20 + Duration::from_millis(4)),
            None => {
                let d = jitter(self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                d
            }
        };
        let Some(stream) = &mut self.stream else {
            tokio::time::sleep(fallback).await;
            return;
        };
        tokio::select! {
            msg = stream.next() => {
                if msg.is_none() {
                    tracing::debug!("release subscription closed; falling back to expiry wake-ups");
                    self.stream = None;
                    return;
                }
                // One retry covers every release buffered so far.
                while let Some(Some(_)) = stream.next().now_or_never() {}
            }
            () = tokio::time::sleep(fallback) => {}
        }
    }
}

async fn subscribe_on(node: &Node, name: &str, own: Option<&str>) -> crate::Result<PubSubStream> {
    let mut pubsub = node.pubsub().await?;
    let channels = match own {
        Some(value) => vec![wake_channel(name, value)],
        None => vec![
            release_channel(name),
            format!("__keyspace@{}__:{name}", node.db),
        ],
    };
    match tokio::time::timeout(node.timeout, pubsub.subscribe(&channels)).await {
        Ok(Ok(())) => Ok(pubsub.into_on_message()),
        Ok(Err(e)) => Err(super::node::map_err("subscribe", &e)),
        Err(_) => Err(crate::Error::Transient {
            op: "subscribe",
            message: format!("{} gave no answer within {:?}", node.addr, node.timeout),
            source: None,
        }),
    }
}
