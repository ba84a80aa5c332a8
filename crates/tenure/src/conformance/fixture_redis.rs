//! The Redis backends under test, and an operator's view of the Redis servers (`redis-cli`).
//!
//! Redis keeps one key per held lock, so the suite's "keys under `<name>/`" becomes: the lock
//! key `<name>` when held, plus one pseudo-entry `<name> (waiter i)` per waiter: per entry of
//! the lock's queue `tenure:queue:<name>` on one instance, per subscriber of its release
//! channel on Redlock (whose waiters do not queue). A cancelled `lock()` must leave neither
//! behind (C5).
//!
//! Redlock runs on three private `redis-server` processes (tests/redis_support) in two faulty
//! shapes: one master down for the whole test, so every session opens without it; and one
//! master restarted empty (no persistence) while a lock is held. The operator's
//! view covers every master that answers: a key is there if any master has it.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::{namespace, skip, Admin, Fixture};
use crate::backend::redis::rwlock::RwKeys;
use crate::backend::redis::scripts::{fence_key, queue_key, release_channel, session_key};
use crate::Tenure;

/// Private `redis-server` processes, shared with the integration tests.
#[path = "../../tests/redis_support/mod.rs"]
mod redis_support;
/// The suite's rule for a missing server (`TENURE_REQUIRE_SERVERS=1` fails instead).
#[allow(dead_code)] // env_or_skip is for the integration tests
#[path = "../../tests/support/skip.rs"]
mod support;
use redis_support::{start_servers, start_servers_with, RedisProcess};

/// One server, as the operator reaches it.
struct Master {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl Master {
    /// The answer, or `None` when the server does not answer (down or restarting).
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = self.client.get_multiplexed_async_connection().await.ok();
        }
        let mut c = slot.clone()?;
        match cmd.query_async(&mut c).await {
            Ok(v) => Some(v),
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
                *slot = None;
                None
            }
            Err(e) => panic!("admin command: {e}"),
        }
    }
}

/// Direct access to the test Redis server, or to every Redlock master.
pub(crate) struct RedisAdmin {
    masters: Vec<Master>,
    /// The private servers of a Redlock fixture, killed when the test ends.
    _servers: Arc<StdMutex<Vec<RedisProcess>>>,
    restarter: Option<tokio::task::AbortHandle>,
}

impl Drop for RedisAdmin {
    fn drop(&mut self) {
        if let Some(r) = &self.restarter {
            r.abort();
        }
    }
}

impl RedisAdmin {
    /// Connects to the servers at `urls` (`redis://host:port`).
    pub async fn connect(urls: &[String]) -> Self {
        let masters = urls
            .iter()
            .map(|url| Master {
                client: redis::Client::open(url.as_str()).expect("admin client"),
                conn: Mutex::new(None),
            })
            .collect();
        RedisAdmin {
            masters,
            _servers: Arc::default(),
            restarter: None,
        }
    }

    /// The answers of every master that answers; at least one must.
    async fn each<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Vec<T> {
        let mut answers = Vec::new();
        for m in &self.masters {
            answers.extend(m.query(cmd).await);
        }
        assert!(!answers.is_empty(), "no Redis server answered the admin");
        answers
    }

    /// The value of one key (on the first master that has it).
    pub async fn get(&self, key: &str) -> Option<String> {
        let answers: Vec<Option<String>> = self.each(redis::cmd("GET").arg(key)).await;
        answers.into_iter().flatten().next()
    }

    /// The fencing counter of lock `name` (0 when absent; the largest among masters).
    pub async fn fence(&self, name: &str) -> u64 {
        let answers: Vec<Option<String>> = self.each(redis::cmd("GET").arg(fence_key(name))).await;
        answers
            .into_iter()
            .flatten()
            .filter_map(|v| v.parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// How many wait for `name`: entries in its queue (one instance) plus connections
    /// subscribed to its release channel (Redlock's waiters, who do not queue).
    pub async fn waiters(&self, name: &str) -> usize {
        let answers: Vec<(String, usize)> = self
            .each(
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(release_channel(name)),
            )
            .await;
        let queued: Vec<usize> = self.each(redis::cmd("LLEN").arg(queue_key(name))).await;
        answers.into_iter().map(|(_, n)| n).sum::<usize>() + queued.into_iter().sum::<usize>()
    }

    /// Every key that starts with `prefix`, on any master, sorted (for semaphores, whose
    /// permits are keys of their own).
    pub async fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut pattern = String::new();
        for c in prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        let mut keys: Vec<String> = self
            .each::<Vec<String>>(redis::cmd("KEYS").arg(&pattern))
            .await
            .into_iter()
            .flatten()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The lock key of `<name>/` when held (on any master), then one pseudo-entry per waiter.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let name = prefix.strip_suffix('/').unwrap_or(prefix);
        let mut keys = Vec::new();
        let exists: Vec<bool> = self.each(redis::cmd("EXISTS").arg(name)).await;
        if exists.contains(&true) {
            keys.push(name.to_string());
        }
        for i in 0..self.waiters(name).await {
            keys.push(format!("{name} (waiter {i})"));
        }
        // The read/write lock of the same name (backend/redis/rwlock.rs): its writer, one
        // pseudo-entry per reader, and one per subscriber of its release channel.
        let rw = RwKeys::of(name);
        let writer: Vec<bool> = self.each(redis::cmd("EXISTS").arg(&rw.writer)).await;
        if writer.contains(&true) {
            keys.push(rw.writer.clone());
        }
        let readers: Vec<Vec<String>> = self.each(redis::cmd("HKEYS").arg(&rw.readers)).await;
        for (i, _) in readers.iter().flatten().enumerate() {
            keys.push(format!("{} (reader {i})", rw.readers));
        }
        for i in 0..self.waiters(&rw.writer).await {
            keys.push(format!("{} (waiter {i})", rw.writer));
        }
        keys
    }

    /// What a read/write lock may leave beside its holders: waiters in its waiting set.
    pub async fn rw_leftovers(&self, name: &str) -> Vec<String> {
        let rw = RwKeys::of(name);
        let waiting: Vec<Vec<String>> = self
            .each(redis::cmd("ZRANGE").arg(&rw.waiting).arg(0).arg(-1))
            .await;
        waiting
            .into_iter()
            .flatten()
            .map(|w| format!("{} (waiter {w})", rw.waiting))
            .collect()
    }

    /// Whether `key` is a lock (it has a TTL) with one value on every master.
    async fn held_everywhere(&self, key: &str) -> bool {
        let mut values = Vec::new();
        for m in &self.masters {
            values.push(m.query::<Option<String>>(redis::cmd("GET").arg(key)).await);
        }
        let ttl = self.masters[0]
            .query::<i64>(redis::cmd("PTTL").arg(key))
            .await;
        values[0].as_ref().is_some_and(Option::is_some)
            && values.iter().all(|v| *v == values[0])
            && ttl.is_some_and(|t| t > 0)
    }

    /// Deletes one key everywhere.
    pub async fn delete(&self, key: &str) {
        self.each::<i64>(redis::cmd("DEL").arg(key)).await;
    }

    /// Revokes a session as an operator would: deletes its heartbeat key and every lock whose
    /// value carries its id, on every master.
    pub async fn revoke(&self, session: u64) {
        self.delete(&session_key(session)).await;
        let mine = format!("{session:016x}");
        for m in &self.masters {
            let keys: Vec<String> = m
                .query(redis::cmd("KEYS").arg("tenure-test/*"))
                .await
                .unwrap_or_default();
            for key in keys {
                let ty: Option<String> = m.query(redis::cmd("TYPE").arg(&key)).await;
                if ty.as_deref() != Some("string") {
                    continue;
                }
                let value: Option<Option<String>> = m.query(redis::cmd("GET").arg(&key)).await;
                if value.flatten().is_some_and(|v| v.starts_with(&mine)) {
                    m.query::<i64>(redis::cmd("DEL").arg(&key)).await;
                }
            }
        }
    }
}

/// The Redis backend, when `scripts/test` started a server (`TENURE_TEST_REDIS_URL`).
pub(crate) async fn redis(test: &str) -> Option<Fixture> {
    let var = "TENURE_TEST_REDIS_URL";
    let Ok(url) = std::env::var(var) else {
        return skip(var, test);
    };
    let tenure = Tenure::connect(&url).await.expect("connect to test redis");
    Some(Fixture {
        tenure,
        short_ttl: Duration::from_secs(2),
        admin: Admin::Redis(RedisAdmin::connect(&[url]).await),
        namespace: namespace(test),
        _faults: None,
    })
}

/// How a Redlock fixture's third master misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Killed before the test: every session opens with one master down.
    DownAtOpen,
    /// Restarted empty the first time a lock of the test is held on every master, so that
    /// the holder loses its copy there and the sessions opened so far their heartbeats,
    /// which renewals must repair.
    RestartedWhileHolding,
}

/// Redlock over three private masters, the third one faulty. (The first stays up: waiters
/// subscribe on the first master that accepts, and the suite counts their subscriptions.)
async fn redlock(test: &str, fault: Fault) -> Option<Fixture> {
    let bin = redis_support::redis_bin_or_skip(test)?;
    let mut servers = match fault {
        Fault::DownAtOpen => start_servers(&bin, 3).await,
        // Keyevent notifications for string commands only (`E$`): the keyspace channels that
        // waiters listen on (`K`) stay silent, as on a default server.
        Fault::RestartedWhileHolding => {
            start_servers_with(&bin, 3, &["--notify-keyspace-events", "E$"]).await
        }
    };
    let urls: Vec<String> = servers
        .iter()
        .map(|s| format!("redis://127.0.0.1:{}", s.port))
        .collect();
    let hosts: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    // A TTL short enough that renewals (and repairs) happen during every clause.
    let tenure = Tenure::builder(&format!("redlock://{}", hosts.join(",")))
        .ttl(Duration::from_secs(3))
        .connect()
        .await
        .expect("connect to Redlock masters");
    let namespace = namespace(test);
    let mut admin = RedisAdmin::connect(&urls).await;
    let faulty = servers.pop().expect("three servers");
    let kept = admin._servers.clone();
    kept.lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(servers);
    match fault {
        Fault::DownAtOpen => {
            let mut faulty = faulty;
            faulty.kill();
        }
        Fault::RestartedWhileHolding => {
            // Told of every SET on the faulty master (keyevent notifications, which it was
            // started with), the restarter looks at each key of this test that was set: once
            // one is a lock (it has a TTL) held by one holder on every master, it kills the
            // faulty master and starts it again empty. Held on all three, the lock survives
            // on the other two; a grant that had only two of three, one of them the
            // restarted master, would be lost (C7 says so), which no client can prevent.
            let mut events = redis::Client::open(urls[2].as_str())
                .expect("admin client")
                .get_async_pubsub()
                .await
                .expect("admin subscriber");
            events
                .subscribe("__keyevent@0__:set")
                .await
                .expect("subscribe to SET events");
            let prefix = format!("{namespace}/");
            let probe = RedisAdmin::connect(&urls).await;
            let restarter = tokio::spawn(async move {
                let mut faulty = faulty;
                let mut stream = events.on_message();
                while let Some(msg) = stream.next().await {
                    let Ok(key) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if key.starts_with(&prefix) && probe.held_everywhere(&key).await {
                        break;
                    }
                }
                drop(stream);
                faulty.restart().await;
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(faulty);
            });
            admin.restarter = Some(restarter.abort_handle());
        }
    }
    Some(Fixture {
        tenure,
        short_ttl: Duration::from_secs(2),
        admin: Admin::Redis(admin),
        namespace,
        _faults: None,
    })
}

/// Redlock with its third master down while every session opens.
pub(crate) async fn redlock_down_at_open(test: &str) -> Option<Fixture> {
    redlock(test, Fault::DownAtOpen).await
}

/// Redlock with its third master restarted empty while a lock is held (on every master).
pub(crate) async fn redlock_restarted(test: &str) -> Option<Fixture> {
    redlock(test, Fault::RestartedWhileHolding).await
}
