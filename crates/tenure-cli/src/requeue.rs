//! Waiting that survives a lost session (docs/contract.md, C14). While `tenure lock` or
//! `tenure elect` is still waiting, a lost session is not the command's failure — nothing has
//! run yet — so it opens a new session and queues again until `--wait` runs out. A grant that
//! is already lost when it arrives is given back and queued for again, so the command never
//! starts on a grant known to be gone. Exit 75 stays "lost while held; the command was stopped".

use std::future::Future;
use std::time::Duration;

use tenure::{Error, Leadership, MutexGuard, Session, Tenure};
use tokio::time::Instant;

use crate::cmd;
use crate::exit::{self, Failure};
use crate::holding::CLOSE_TIMEOUT;
use crate::signals::Signals;

/// Pause between a lost session and the next, so a store that loses every session is not
/// hammered with lease grants.
const PAUSE: Duration = Duration::from_millis(200);

/// A grant that can tell whether it is already lost.
pub trait Grant {
    fn is_lost(&self) -> bool;
}

impl Grant for MutexGuard {
    fn is_lost(&self) -> bool {
        tenure::Hold::is_lost(self)
    }
}

impl Grant for Leadership {
    fn is_lost(&self) -> bool {
        tenure::Hold::is_lost(self)
    }
}

/// Why waiting ended without a grant.
pub enum Stop {
    Signalled(i32),
    Failed(tenure::Error),
}

impl Stop {
    /// The exit code and message, `conflict` for a held lock or an exhausted wait. A session
    /// lost while waiting, once the wait ran out, is the store failing (69), not a lost grant.
    pub fn into_failure(self, conflict: u8) -> Result<i32, anyhow::Error> {
        match self {
            Stop::Signalled(sig) => Ok(sig),
            Stop::Failed(e @ Error::SessionLost { .. }) => {
                Err(Failure::new(exit::UNAVAILABLE, format!("{e} while still waiting")).into())
            }
            Stop::Failed(e) => {
                Err(Failure::new(exit::for_error(&e, conflict), e.to_string()).into())
            }
        }
    }
}

/// Opens a session and runs `queue` on it with the time left of `wait` (`None`: no limit),
/// again on a new session each time the session is lost before a live grant comes back.
pub async fn until_granted<G, F, Fut>(
    tenure: &Tenure,
    wait: Option<Duration>,
    signals: &mut Signals,
    what: &str,
    mut queue: F,
) -> Result<(Session, G), Stop>
where
    G: Grant,
    F: FnMut(Session, Option<Duration>) -> Fut,
    Fut: Future<Output = tenure::Result<G>>,
{
    let started = Instant::now();
    loop {
        let left = wait.map(|w| w.saturating_sub(started.elapsed()));
        let session = match signals.race(tenure.session()).await {
            Ok(Ok(session)) => session,
            // A store that cannot grant a lease right now (a cluster between leaders) is
            // waited out like any other fault while waiting, until the wait runs out.
            Ok(Err(e)) if e.is_transient() && !left.is_some_and(|l| l.is_zero()) => {
                tracing::info!(error = %e, "{what}: no session yet; trying again");
                if let Err(sig) = signals.race(tokio::time::sleep(PAUSE)).await {
                    return Err(Stop::Signalled(sig));
                }
                continue;
            }
            Ok(Err(e)) => return Err(Stop::Failed(e)),
            Err(sig) => return Err(Stop::Signalled(sig)),
        };
        let answer = signals.race(queue(session.clone(), left)).await;
        match answer {
            Ok(Ok(grant)) if !grant.is_lost() => return Ok((session, grant)),
            Ok(Ok(_lost)) => {
                tracing::info!("{what}: granted but already lost; queueing again on a new session");
            }
            Ok(Err(Error::SessionLost { reason })) if !left.is_some_and(|l| l.is_zero()) => {
                tracing::info!(%reason, "{what}: session lost while waiting; queueing again on a new session");
            }
            Ok(Err(e)) => {
                cmd::close_session(session, CLOSE_TIMEOUT).await;
                return Err(Stop::Failed(e));
            }
            Err(sig) => {
                cmd::close_session(session, CLOSE_TIMEOUT).await;
                return Err(Stop::Signalled(sig));
            }
        }
        cmd::close_session(session, CLOSE_TIMEOUT).await;
        if let Err(sig) = signals.race(tokio::time::sleep(PAUSE)).await {
            return Err(Stop::Signalled(sig));
        }
    }
}
