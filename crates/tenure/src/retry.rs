//! Jittered exponential backoff for transient store faults (C11).

use std::future::Future;
use std::time::Duration;

use crate::liveness::Liveness;
use crate::{Result, Waiting};

/// Attempts of one store call before a transient fault is reported (C11): enough to try every
/// member of a 3-member cluster more than once.
pub(crate) const ATTEMPTS: u32 = 8;

const FIRST_DELAY: Duration = Duration::from_millis(20);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Runs `op` until it succeeds, fails with a non-transient error, or `attempts` are used up.
/// The caller's deadline bounds it from outside (dropping the future stops it).
pub(crate) async fn with_backoff<T, F, Fut>(attempts: u32, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry(op, |tries| tries < attempts).await
}

/// Runs `op` until it succeeds or fails for good, retrying transient faults for as long as the
/// session `alive` lives: for a waiter, whose only deadline is its caller's (C11), and for
/// cleanups that must not give up while their entry could still block others (once the session
/// is lost, its lease takes the entry with it).
pub(crate) async fn while_alive<T, F, Fut>(alive: &Liveness, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry(op, |_| !alive.is_lost()).await
}

/// Runs `op`, retrying transient faults with jittered exponential backoff while `again(tries)`.
async fn retry<T, F, Fut>(mut op: F, mut again: impl FnMut(u32) -> bool) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = FIRST_DELAY;
    let mut tries = 0;
    loop {
        tries += 1;
        let answer = op().await;
        match &answer {
            Err(e) if e.is_transient() => crate::waiting::note(Waiting::Retrying {
                last_error: e.to_string(),
            }),
            Ok(_) => crate::waiting::note_answered(),
            Err(_) => {}
        }
        match answer {
            Err(e) if e.is_transient() && again(tries) => {
                tracing::debug!(error = %e, tries, "transient store error, retrying");
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
            other => return other,
        }
    }
}

/// A random duration in `[d/2, d]`, so that clients that failed together do not retry together.
pub(crate) fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}
