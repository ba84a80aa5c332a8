//! The subcommands, one module each.

pub mod bench;
pub mod demo;
pub mod elect;
pub mod lock;
pub mod lock_side;
pub mod register;
pub mod status;

use std::time::Duration;

use anyhow::{Context, Result};
use tenure::{Session, Tenure};
use tokio::task::JoinSet;

/// Revokes the session's lease so everything under it is freed now rather than at TTL;
/// bounded, since an unreachable store must not keep us from exiting.
pub async fn close_session(session: Session, timeout: Duration) {
    match tokio::time::timeout(timeout, session.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("closing the session: {e}; its lease ends at its TTL"),
        Err(_) => tracing::warn!("closing the session timed out; its lease ends at its TTL"),
    }
}

/// Opens `n` sessions concurrently (one lease grant each), e.g. one per simulated worker.
pub async fn open_sessions(tenure: &Tenure, n: usize) -> Result<Vec<Session>> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let tenure = tenure.clone();
        set.spawn(async move { tenure.session().await });
    }
    let mut sessions = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        sessions.push(joined.context("session task")??);
    }
    Ok(sessions)
}

/// Sessions closed at once: each close is a request, and 10,000 of them in flight together
/// (bench --waiters on ZooKeeper) outlasted each one's timeout.
const CLOSING_AT_ONCE: usize = 256;

/// Closes every session, [`CLOSING_AT_ONCE`] at a time.
pub async fn close_sessions(sessions: Vec<Session>, timeout: Duration) {
    let mut set = JoinSet::new();
    for session in sessions {
        if set.len() >= CLOSING_AT_ONCE {
            set.join_next().await;
        }
        set.spawn(close_session(session, timeout));
    }
    while set.join_next().await.is_some() {}
}
