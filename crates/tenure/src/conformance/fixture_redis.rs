//! The Redis backend under test, and an operator's view of the Redis server (`redis-cli`).
//!
//! Redis keeps one key per held lock and nothing for waiters, so the suite's "keys under
//! `<name>/`" becomes: the lock key `<name>` when held, plus one pseudo-entry
//! `<name> (waiter i)` per subscriber of the lock's release channel — every waiting `lock()`
//! holds one subscription, and a cancelled one must leave none behind (C5).

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::{namespace, skip, Admin, Fixture};
use crate::backend::redis::scripts::{fence_key, release_channel, session_key};
use crate::Tenure;

/// Direct access to the test Redis server.
pub(crate) struct RedisAdmin {
    conn: MultiplexedConnection,
}

impl RedisAdmin {
    /// Connects to the server at `url` (`redis://host:port`).
    pub async fn connect(url: &str) -> Self {
        let client = redis::Client::open(url).expect("admin client");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("admin connection");
        RedisAdmin { conn }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut c = self.conn.clone();
        cmd.query_async(&mut c).await.expect("admin command")
    }

    /// The value of one key.
    pub async fn get(&self, key: &str) -> Option<String> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// The fencing counter of lock `name` (0 when absent).
    pub async fn fence(&self, name: &str) -> u64 {
        self.get(&fence_key(name))
            .await
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// How many connections are subscribed to the release channel of `name`.
    pub async fn waiters(&self, name: &str) -> usize {
        let (_, n): (String, usize) = self
            .query(
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(release_channel(name)),
            )
            .await;
        n
    }

    /// The lock key of `<name>/` when held, then one pseudo-entry per waiter.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let name = prefix.strip_suffix('/').unwrap_or(prefix);
        let mut keys = Vec::new();
        if self.query::<bool>(redis::cmd("EXISTS").arg(name)).await {
            keys.push(name.to_string());
        }
        for i in 0..self.waiters(name).await {
            keys.push(format!("{name} (waiter {i})"));
        }
        keys
    }

    /// Deletes one key.
    pub async fn delete(&self, key: &str) {
        self.query::<i64>(redis::cmd("DEL").arg(key)).await;
    }

    /// Revokes a session as an operator would: deletes its heartbeat key and every lock whose
    /// value carries its id.
    pub async fn revoke(&self, session: u64) {
        self.delete(&session_key(session)).await;
        let mine = format!("{session:016x}");
        let keys: Vec<String> = self.query(redis::cmd("KEYS").arg("tenure-test/*")).await;
        for key in keys {
            let ty: String = self.query(redis::cmd("TYPE").arg(&key)).await;
            if ty == "string" && self.get(&key).await.is_some_and(|v| v.starts_with(&mine)) {
                self.delete(&key).await;
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
        admin: Admin::Redis(RedisAdmin::connect(&url).await),
        namespace: namespace(test),
        _faults: None,
    })
}
