//! Keeping a lease alive, and the local deadline that drives the lost signal (C7b).

use std::time::Duration;

use async_trait::async_trait;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::liveness::{Liveness, LostReason};
use crate::metrics::{renewal, Renewal};
use crate::retry::jitter;
use crate::Result;

/// One store's way of renewing a lease.
#[async_trait]
pub(crate) trait Renewer: Send + 'static {
    /// Sends one renewal and waits for its answer: the TTL granted from now, or `None` when the
    /// store says the lease is gone.
    async fn renew(&mut self) -> Result<Option<Duration>>;
    /// Forgets any request in flight, so that a late answer is never taken for the answer to
    /// the next request (which would date the deadline from a request never confirmed).
    fn reset(&mut self) {}
}

/// How long before the store could expire the lease we stop trusting it: a tenth of the TTL
/// (at least 100 ms, at most half), covering clock-rate drift between us and the store.
pub(crate) fn safety_margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(100)).min(ttl / 2)
}

/// The instant until which a renewal sent at `sent` and granting `ttl` keeps us safe.
pub(crate) fn deadline_after(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl - safety_margin(ttl)
}

/// Renews every third of the TTL; each confirmed renewal moves the deadline to its *send*
/// instant + TTL − margin, so the holder hears of loss before the store can re-grant. A
/// renewal that fails or goes unanswered suspends the session (the store may still keep the
/// lease); the next confirmed one resumes it. Each renewal is counted under `backend` (the
/// store's kind, "etcd", "zk", …; `crate::metrics`).
pub(crate) fn spawn_keep_alive<R: Renewer>(
    mut renewer: R,
    liveness: Liveness,
    ttl: Duration,
    granted_at: Instant,
    backend: &'static str,
) -> AbortHandle {
    liveness.set_deadline(deadline_after(granted_at, ttl));
    tokio::spawn(async move {
        let mut next = granted_at + ttl / 3;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = liveness.lost() => return,
            }
            let sent = Instant::now();
            let answer = tokio::time::timeout(ttl / 3, renewer.renew()).await;
            if liveness.is_lost() {
                return;
            }
            let latency = sent.elapsed();
            match answer {
                Ok(Ok(Some(granted))) => {
                    renewal(backend, Renewal::Ok, Some(latency));
                    liveness.set_deadline(deadline_after(sent, granted));
                    liveness.set_suspended(false);
                    next = sent + granted / 3;
                }
                Ok(Ok(None)) => {
                    renewal(backend, Renewal::Expired, Some(latency));
                    liveness.lose(LostReason::LeaseExpired);
                    return;
                }
                Ok(Err(e)) => {
                    renewal(backend, Renewal::Failed, Some(latency));
                    tracing::warn!(error = %e, "lease renewal failed; retrying");
                    liveness.set_suspended(true);
                    next = Instant::now() + jitter((ttl / 10).min(Duration::from_millis(500)));
                }
                Err(_) => {
                    renewal(backend, Renewal::Unanswered, None);
                    tracing::warn!("lease renewal unanswered; retrying");
                    liveness.set_suspended(true);
                    renewer.reset();
                    next = Instant::now();
                }
            }
        }
    })
    .abort_handle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_bounded() {
        assert_eq!(
            safety_margin(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            safety_margin(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
        assert_eq!(
            safety_margin(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }

    struct Fails;
    #[async_trait]
    impl Renewer for Fails {
        async fn renew(&mut self) -> Result<Option<Duration>> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unanswered_renewals_lose_at_the_deadline() {
        let l = Liveness::new();
        let start = Instant::now();
        let ttl = Duration::from_secs(3);
        let _task = spawn_keep_alive(Fails, l.clone(), ttl, start, "test");
        assert_eq!(l.lost().await, LostReason::RenewalDeadline);
        assert_eq!(Instant::now(), start + ttl - safety_margin(ttl));
    }
}
