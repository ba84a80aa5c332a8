//! ZooKeeper session state → the lost signal (C7).
//!
//! - Disconnected: the session may still live on the server, so grants are *suspended*
//!   (observable through `is_suspended()`), not lost.
//! - Every third of the negotiated timeout a cheap request (an `exists` on `/`) is sent; each
//!   answer moves the local deadline to its send instant + timeout − margin, so a holder cut off
//!   from the ensemble is told *before* the server can expire the session and hand the lock on.
//!   This is the "local timer of the negotiated session timeout", counted from the last
//!   confirmation rather than from the moment the client noticed the disconnection.
//! - Expired (or AuthFailed) → lost with [`LostReason::LeaseExpired`]; Closed → closed.
//!
//! The client never opens a new session on its own: Expired is terminal.

use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::AbortHandle;
use zookeeper_client as zk;

use super::map_err;
use crate::backend::lease::Renewer;
use crate::liveness::{Liveness, LostReason};
use crate::{Error, Result};

/// The session's client, until it is abandoned or closed. Requests clone it for their own
/// duration only, so taking it out drops the last handle and stops the session's pings.
pub(super) struct Slot(RwLock<Option<zk::Client>>);

impl Slot {
    pub(super) fn new(client: zk::Client) -> Self {
        Slot(RwLock::new(Some(client)))
    }

    /// The client, or why there is none any more.
    pub(super) fn get(&self, liveness: &Liveness) -> Result<zk::Client> {
        let guard = self.0.read().unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or_else(|| Error::SessionLost {
            reason: liveness.reason().unwrap_or(LostReason::SessionClosed),
        })
    }

    /// Takes the client out; the session's connection closes once in-flight requests end.
    pub(super) fn take(&self) -> Option<zk::Client> {
        self.0.write().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Follows the client's session state into `liveness`.
pub(super) fn spawn_state_follower(
    mut states: zk::StateWatcher,
    liveness: Liveness,
) -> AbortHandle {
    tokio::spawn(async move {
        loop {
            match states.changed().await {
                zk::SessionState::Disconnected => liveness.set_suspended(true),
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    liveness.set_suspended(false)
                }
                zk::SessionState::Expired | zk::SessionState::AuthFailed => {
                    return liveness.lose(LostReason::LeaseExpired)
                }
                zk::SessionState::Closed => return liveness.lose(LostReason::SessionClosed),
            }
        }
    })
    .abort_handle()
}

/// Confirms the session with one cheap request per renewal.
pub(super) struct ZkRenewer {
    client: zk::Client,
    timeout: Duration,
}

impl ZkRenewer {
    /// Renews the session of `client`, whose negotiated timeout is `timeout`.
    pub(super) fn new(client: zk::Client, timeout: Duration) -> Self {
        ZkRenewer { client, timeout }
    }
}

#[async_trait]
impl Renewer for ZkRenewer {
    async fn renew(&mut self) -> Result<Option<Duration>> {
        match self.client.check_stat("/").await {
            Ok(_) => Ok(Some(self.timeout)),
            Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => Ok(None),
            Err(e) => Err(map_err("session heartbeat", e)),
        }
    }
}
