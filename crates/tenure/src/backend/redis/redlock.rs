//! The masters a backend talks to, and the majority logic over them.
//!
//! One instance (`redis://`) is the degenerate case: one node, quorum one, every answer
//! definitive. Redlock (`redlock://`, N independent masters) follows the algorithm on redis.io:
//! each request goes to all masters in parallel with a short per-node timeout; a lock is held
//! only when a majority granted it within the validity time (TTL − elapsed − drift); a failed
//! attempt is released everywhere before anyone retries; renewal needs a majority too.
//!
//! **Repair.** A session's heartbeat key, like a lock, needs only a majority, so a master can
//! lack it: one that restarted without persistence, or was down when the session opened. Such
//! a master answers each renewal "no session here" (and drops our locks on it). Once a
//! majority has confirmed the session in the same renewal, the heartbeat is re-created there,
//! each lock a majority confirmed is taken there again only if it is free (`SET NX`: another
//! client may have taken that master's copy meanwhile, and keeps it; it cannot have a majority
//! while ours holds elsewhere), and each fencing counter is raised to at least our token. So
//! the session survives the next fault as it did the first. Redlock's own caveat remains: a
//! master that restarts empty *before* a repair can, with enough other faults, let a second
//! client gather a majority (5 masters: ours on A, B, C; C restarts; another client takes C,
//! D, E). Persistence (`appendonly yes`) or keeping a restarted master out for one TTL
//! (antirez's "delayed restarts") closes that. An operator revoking a session must delete its
//! heartbeat on every master: a renewal that still finds it on a majority puts it back.
//!
//! **Fencing under Redlock.** Each master keeps its own `N:fence` counter. The token of a grant
//! is the largest counter value among the masters that granted it, and before the grant is
//! handed out that value is written back (raised, never lowered) to the counter of every
//! master still holding our lock; the grant is refused unless a majority took it. Any later
//! holder needs a majority too, which shares a master with ours, where it can only take the
//! lock after ours is gone and so after the raise: its token is larger. What this does *not*
//! cover: a master that restarts without persistence (`appendonly yes`, `fsync always`)
//! forgets both the lock and the counter, and Redlock's timing assumptions (bounded clock
//! drift, no long pauses of the masters) still apply. Keep the fencing check in the protected
//! resource if that matters.

use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use super::node::Node;
use super::scripts::{
    fence_key, queue_key, release_channel, ACQUIRE, ACQUIRE_QUEUED, RAISE_FENCE, RELEASE, RENEW,
    REPAIR, RESERVED_PREFIX,
};
use crate::{Error, Result};

/// The answer to one acquire attempt.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Held by us, with this fencing token.
    Granted(u64),
    /// Held by someone else (or by nobody with a majority). `retry_in`: the holder's remaining
    /// TTL (`None`: the key never expires), or Redlock's random retry delay. `clean`: every
    /// master answered that nothing of ours was written.
    Held {
        retry_in: Option<Duration>,
        clean: bool,
    },
}

/// What a session renewal found: `None` where no majority answered either way.
#[derive(Debug)]
pub(crate) struct Renewal {
    pub session: Option<bool>,
    pub grants: Vec<Option<bool>>,
    /// The masters that answered that they have no session key (by index).
    pub missing: Vec<usize>,
}

/// A lock to put back on a repaired master: key, value, token.
pub(crate) type Reassert<'a> = (&'a str, &'a str, u64);

/// Redlock's allowance for clock drift between us and the masters: 1 % of the TTL + 2 ms.
pub(crate) fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

fn ms(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

/// One or more masters.
pub(crate) struct Nodes {
    pub(crate) nodes: Vec<Node>,
}

impl Nodes {
    /// How many masters must agree.
    pub(crate) fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    fn addrs(&self) -> String {
        let a: Vec<&str> = self.nodes.iter().map(|n| n.addr.as_str()).collect();
        a.join(",")
    }

    /// Runs `f` on every master at once.
    pub(crate) async fn all<'a, T, F, Fut>(&'a self, f: F) -> Vec<Result<T>>
    where
        F: Fn(&'a Node) -> Fut,
        Fut: Future<Output = Result<T>> + 'a,
    {
        join_all(self.nodes.iter().map(f)).await
    }

    /// The error when too few masters answered.
    fn no_majority(&self, op: &str, answered: usize, errors: &[Error]) -> Error {
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        if self.nodes.len() == 1 {
            if let Some(e) = errors.first() {
                return e.clone();
            }
        }
        Error::Unreachable {
            endpoint: self.addrs(),
            reason: format!(
                "{op}: only {answered} of {} Redlock masters answered, a majority ({}) is needed; first error: {first}",
                self.nodes.len(),
                self.quorum()
            ),
            source: errors.first().cloned().map(crate::Cause::new),
        }
    }

    /// Splits answers into values and errors.
    fn split<T>(results: Vec<Result<T>>) -> (Vec<T>, Vec<Error>) {
        let mut ok = Vec::new();
        let mut errs = Vec::new();
        for r in results {
            match r {
                Ok(v) => ok.push(v),
                Err(e) => errs.push(e),
            }
        }
        (ok, errs)
    }

    /// One acquire attempt on every master.
    pub(crate) async fn acquire(&self, name: &str, value: &str, ttl: Duration) -> Result<Attempt> {
        let started = Instant::now();
        let fence = fence_key(name);
        let results = self
            .all(|n| async {
                let mut inv = ACQUIRE.prepare_invoke();
                inv.key(name).key(&fence).arg(value).arg(ms(ttl));
                n.script::<(i64, i64)>("lock", &inv).await
            })
            .await;
        let (answers, errors) = Self::split(results);
        let granted: Vec<u64> = answers
            .iter()
            .filter(|(ok, _)| *ok == 1)
            .map(|(_, t)| *t as u64)
            .collect();
        let pttl = answers
            .iter()
            .filter(|(ok, _)| *ok == 0)
            .map(|(_, p)| *p)
            .max();
        if errors.len() > self.nodes.len() - self.quorum() {
            self.release_quietly(name, value).await;
            return Err(self.no_majority("lock", answers.len(), &errors));
        }
        let token = granted.iter().copied().max().unwrap_or(0);
        let in_time = granted.len() >= self.quorum() && started.elapsed() + drift(ttl) < ttl;
        if in_time && (self.nodes.len() == 1 || self.raise_fence(name, value, token).await) {
            return Ok(Attempt::Granted(token));
        }
        if granted.is_empty() && errors.is_empty() {
            let retry_in = match pttl {
                Some(p) if p >= 0 => Some(Duration::from_millis(p as u64)),
                Some(-2) => Some(Duration::ZERO), // expired between SET and PTTL
                _ => None,
            };
            return Ok(Attempt::Held {
                retry_in,
                clean: true,
            });
        }
        // A split vote or a late majority: release everywhere, retry after a random delay.
        let clean = self.release_quietly(name, value).await;
        let delay = Duration::from_millis(fastrand::u64(10..=ms(ttl / 20).max(20)));
        Ok(Attempt::Held {
            retry_in: Some(delay),
            clean,
        })
    }

    /// Whether waiters queue in the store (one instance) rather than race (Redlock: a queue
    /// per master could order waiters differently on each, so no order would be sound).
    pub(crate) fn queued(&self) -> bool {
        self.nodes.len() == 1
    }

    /// One fair acquire attempt on the single instance ([`ACQUIRE_QUEUED`]): with `wait`, a
    /// refused caller is (or stays) queued, and `clean` is false so that an interrupted wait
    /// withdraws its entry.
    pub(crate) async fn acquire_queued(
        &self,
        name: &str,
        value: &str,
        ttl: Duration,
        wait: bool,
    ) -> Result<Attempt> {
        let [node] = self.nodes.as_slice() else {
            return self.acquire(name, value, ttl).await;
        };
        let mut inv = ACQUIRE_QUEUED.prepare_invoke();
        inv.key(name)
            .key(fence_key(name))
            .key(queue_key(name))
            .arg(value)
            .arg(ms(ttl))
            .arg(u8::from(wait));
        let (granted, n) = node.script::<(i64, i64)>("lock", &inv).await?;
        if granted == 1 {
            return Ok(Attempt::Granted(n as u64));
        }
        let retry_in = match n {
            p if p >= 0 => Some(Duration::from_millis(p as u64)),
            -2 => Some(Duration::ZERO), // expired while we looked
            _ => None,
        };
        Ok(Attempt::Held {
            retry_in,
            clean: !wait,
        })
    }

    /// Writes `token` back to the fencing counter of every master still holding our lock.
    async fn raise_fence(&self, name: &str, value: &str, token: u64) -> bool {
        let fence = fence_key(name);
        let results = self
            .all(|n| async {
                let mut inv = RAISE_FENCE.prepare_invoke();
                inv.key(name).key(&fence).arg(value).arg(token);
                n.script::<i64>("lock", &inv).await
            })
            .await;
        let raised = results.iter().filter(|r| matches!(r, Ok(1))).count();
        raised >= self.quorum()
    }

    /// Compare-and-delete everywhere, ignoring failures; whether every master answered.
    pub(crate) async fn release_quietly(&self, name: &str, value: &str) -> bool {
        let results = self.release_all(name, value).await;
        results.iter().all(Result::is_ok)
    }

    async fn release_all(&self, name: &str, value: &str) -> Vec<Result<i64>> {
        let channel = release_channel(name);
        // Only a mutex has a queue; the reserved prefix is a semaphore permit's (a mutex name
        // never starts with it: `check_name`), whose user may have no access to queue keys.
        let queue = (!name.starts_with(RESERVED_PREFIX)).then(|| queue_key(name));
        self.all(|n| async {
            let mut inv = RELEASE.prepare_invoke();
            inv.key(name);
            if let Some(queue) = &queue {
                inv.key(queue);
            }
            inv.arg(value).arg(&channel);
            n.script::<i64>("unlock", &inv).await
        })
        .await
    }

    /// Compare-and-delete (C8): `Ok(true)` if a majority deleted our entry, `Ok(false)` if a
    /// majority says it was not ours any more.
    pub(crate) async fn release(&self, name: &str, value: &str) -> Result<bool> {
        let (answers, errors) = Self::split(self.release_all(name, value).await);
        let deleted = answers.iter().filter(|d| **d == 1).count();
        if deleted >= self.quorum() {
            Ok(true)
        } else if deleted + errors.len() < self.quorum() {
            Ok(false)
        } else {
            Err(self.no_majority("unlock", answers.len(), &errors))
        }
    }

    /// Extends a session key and its grants on every master.
    pub(crate) async fn renew(
        &self,
        session_key: &str,
        grants: &[(String, String)],
        ttl: Duration,
    ) -> Result<Renewal> {
        let results = self
            .all(|n| async {
                let mut inv = RENEW.prepare_invoke();
                inv.key(session_key).arg(ms(ttl));
                for (key, _) in grants {
                    inv.key(key);
                }
                for (_, value) in grants {
                    inv.arg(value);
                }
                for (key, _) in grants {
                    inv.arg(release_channel(key));
                }
                n.script::<Vec<i64>>("renew", &inv).await
            })
            .await;
        let missing = results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Ok(a) if a.first() != Some(&1)))
            .map(|(i, _)| i)
            .collect();
        let (answers, errors) = Self::split(results);
        if answers.is_empty() {
            return Err(self.no_majority("renew", 0, &errors));
        }
        let verdict = |i: usize| {
            let yes = answers
                .iter()
                .filter(|a| a.first() == Some(&1) && a.get(i) == Some(&1))
                .count();
            let no = answers.len() - yes;
            if yes >= self.quorum() {
                Some(true)
            } else if no > self.nodes.len() - self.quorum() {
                Some(false)
            } else {
                None
            }
        };
        Ok(Renewal {
            session: verdict(0),
            grants: (1..=grants.len()).map(verdict).collect(),
            missing,
        })
    }

    /// Puts a session that a majority just confirmed back on the masters in `missing` (see
    /// [`REPAIR`]), so that it tolerates the next fault as it did the first. Best effort: a
    /// master that fails is tried again at the next renewal. How many masters were repaired.
    pub(crate) async fn repair(
        &self,
        missing: &[usize],
        session_key: &str,
        session_value: &str,
        locks: &[Reassert<'_>],
        ttl: Duration,
    ) -> usize {
        let fences: Vec<String> = locks.iter().map(|(k, _, _)| fence_key(k)).collect();
        let mut inv = REPAIR.prepare_invoke();
        inv.key(session_key).arg(ms(ttl)).arg(session_value);
        for ((key, value, token), fence) in locks.iter().zip(&fences) {
            inv.key(*key).key(fence).arg(*value).arg(*token);
        }
        let inv = &inv;
        let results = join_all(
            missing
                .iter()
                .filter_map(|i| self.nodes.get(*i))
                .map(|n| async move { (n, n.script::<Vec<i64>>("renew", inv).await) }),
        )
        .await;
        let mut repaired = 0;
        for (node, r) in results {
            match r {
                Ok(_) => repaired += 1,
                Err(e) => {
                    tracing::debug!(server = %node.addr, error = %e, "could not repair a Redlock master; next renewal retries")
                }
            }
        }
        repaired
    }

    /// Runs one command everywhere; `Ok` with the answers once a majority succeeded.
    pub(crate) async fn majority<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<Vec<T>> {
        let (answers, errors) = Self::split(self.all(|n| n.run::<T>(op, cmd)).await);
        if answers.len() >= self.quorum() {
            Ok(answers)
        } else {
            Err(self.no_majority(op, answers.len(), &errors))
        }
    }
}
