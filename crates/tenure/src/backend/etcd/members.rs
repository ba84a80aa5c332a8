//! The members of one etcd cluster, and moving between them (docs/contract.md, C14).
//!
//! Each endpoint of the URL gets a client of its own, connected on first use. Requests and
//! streams go to the preferred member; a member that fails one — no answer within
//! [`ATTEMPT_TIMEOUT`], unreachable, or without a leader (every request carries etcd's
//! require-leader metadata, so a member cut off from its peers refuses at once instead of
//! hanging) — stops being preferred, and the retry (C11) goes to the next member. Retrying is
//! safe because every step is idempotent (C13). A quorum behind any member is all it takes.
//!
//! One balanced gRPC channel over all endpoints (etcd-client's default) would not do: it picks
//! a member at random per request, so a stopped member, whose connection still looks ready,
//! keeps getting a third of the requests, and the streams on it stall.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::sync::OnceCell;

use super::map_err;
use crate::{Error, Result};

/// Longest one attempt of one request may take before the member is passed over. Loopback
/// requests answer in milliseconds and a leader election takes about a second; the retry of a
/// slow but healthy member costs nothing but the repeat (C13).
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Members {
    urls: Vec<String>,
    options: ConnectOptions,
    clients: Vec<OnceCell<Client>>,
    preferred: AtomicUsize,
}

/// A client for one member, and which member it is (to report its failure).
pub(super) struct Member {
    pub index: usize,
    pub client: Client,
}

impl Members {
    pub(super) fn new(urls: Vec<String>, options: ConnectOptions) -> Self {
        let clients = urls.iter().map(|_| OnceCell::new()).collect();
        Members {
            urls,
            options,
            clients,
            preferred: AtomicUsize::new(0),
        }
    }

    /// The preferred member's client, connecting it on first use.
    pub(super) async fn member(&self) -> Result<Member> {
        self.member_at(self.preferred.load(Ordering::Relaxed) % self.urls.len())
            .await
    }

    /// Member `index`'s client, connecting it on first use.
    pub(super) async fn member_at(&self, index: usize) -> Result<Member> {
        let connect = self.clients[index].get_or_try_init(|| {
            Client::connect([self.urls[index].as_str()], Some(self.options.clone()))
        });
        let answer = match tokio::time::timeout(ATTEMPT_TIMEOUT, connect).await {
            Ok(Ok(client)) => {
                return Ok(Member {
                    index,
                    client: client.clone(),
                })
            }
            Ok(Err(e)) => map_err("connect", e),
            Err(_) => Error::Transient {
                op: "connect",
                message: format!(
                    "{} did not answer within {ATTEMPT_TIMEOUT:?}",
                    self.urls[index]
                ),
                source: None,
            },
        };
        if answer.is_transient() {
            self.failed(index);
        }
        Err(answer)
    }

    /// How many members the URL names.
    pub(super) fn len(&self) -> usize {
        self.urls.len()
    }

    /// Makes member `index` the preferred one (it answered first).
    pub(super) fn prefer(&self, index: usize) {
        self.preferred.store(index, Ordering::Relaxed);
    }

    /// Passes over member `index`, unless another caller already did.
    pub(super) fn failed(&self, index: usize) {
        let next = (index + 1) % self.urls.len();
        if self
            .preferred
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && self.urls.len() > 1
        {
            tracing::debug!(failed = %self.urls[index], next = %self.urls[next], "etcd member passed over");
        }
    }

    /// One attempt of one request on the preferred member, bounded by [`ATTEMPT_TIMEOUT`]; a
    /// transient failure passes the member over, so the caller's retry goes elsewhere.
    pub(super) async fn call<T, F, Fut>(&self, op: &'static str, request: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let index = self.preferred.load(Ordering::Relaxed) % self.urls.len();
        self.call_at(index, op, request).await
    }

    /// [`Members::call`] on member `index`, whichever is preferred: for a read that must see
    /// at least what that member has already shown us (a watch event it sent).
    pub(super) async fn call_at<T, F, Fut>(
        &self,
        index: usize,
        op: &'static str,
        request: F,
    ) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let member = self.member_at(index).await?;
        let answer =
            crate::backend::call_with(op, ATTEMPT_TIMEOUT, request(member.client), map_err).await;
        if matches!(&answer, Err(e) if e.is_transient()) {
            self.failed(member.index);
        }
        answer
    }
}
