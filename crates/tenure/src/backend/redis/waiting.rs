//! Waiting for a held lock without polling (docs/contract.md, Performance rules).
//!
//! A waiter whose first attempt finds the lock held subscribes, *before* its next attempt, to
//! the lock's release channel (our release script publishes there) and to its keyspace channel `__keyspace@<db>__:<name>` (which
//! delivers `del`/`expired` events only if the server has `notify-keyspace-events` enabled —
//! then foreign releases, e.g. by redis-py, and expiries wake us at once too). Messages that
//! arrive during an attempt stay buffered, so no release is missed between an attempt and the
//! wait. When no message comes, a fallback wake-up fires when the holder's key would expire
//! (its PTTL, jittered), or — for a key without expiry — after a jittered, doubling delay.
//! There is no fixed-period sleep loop.
//!
//! Redis waiting is **not FIFO** (C3 does not hold): every waiter wakes on a release and the
//! first script to arrive wins. Starvation is unlikely rather than impossible; the suite
//! checks that 20 contenders all get the lock within a bound.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::PubSubStream;

use super::node::Node;
use super::scripts::release_channel;
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
    pub(crate) async fn subscribe(nodes: &[Node], name: &str) -> Waiter {
        let mut stream = None;
        for node in nodes {
            match subscribe_on(node, name).await {
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

async fn subscribe_on(node: &Node, name: &str) -> crate::Result<PubSubStream> {
    let mut pubsub = node.pubsub().await?;
    let channels = [
        release_channel(name),
        format!("__keyspace@{}__:{name}", node.db),
    ];
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
