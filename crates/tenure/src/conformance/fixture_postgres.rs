//! The PostgreSQL backend under test, and an operator's view of the server (`psql` as the
//! superuser).
//!
//! An advisory lock is no key in a table, so the suite's "keys under `<name>/`" become the
//! `pg_locks` rows of the name's advisory key, as `<name>/<server process id>`: the holder
//! first, then one per waiter. "Deleting" a holder's key terminates its server process
//! (`pg_terminate_backend`, which releases the lock), and "revoking" a session terminates its
//! control connection's process (the session id).

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::{namespace, skip, Admin, Fixture};
use crate::backend::postgres::key::advisory_key;
use crate::Tenure;

/// The test server as its superuser reaches it.
pub(crate) struct PgAdmin {
    client: Client,
}

/// `TENURE_TEST_POSTGRES_URL`'s host and port.
pub(crate) fn host_port(url: &str) -> (String, u16) {
    let after = url.rsplit_once('@').map_or(url, |(_, a)| a);
    let addr = after.split('/').next().unwrap_or_default();
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT in the test URL");
    (host.to_string(), port.parse().expect("port"))
}

impl PgAdmin {
    /// Connects as `postgres` to the database of the test URL.
    pub async fn connect(url: &str, password: &str) -> PgAdmin {
        let (host, port) = host_port(url);
        let config =
            format!("host={host} port={port} user=postgres dbname=tenure password={password}");
        let (client, connection) = tokio_postgres::connect(&config, NoTls)
            .await
            .expect("admin connection");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        PgAdmin { client }
    }

    /// The `pg_locks` rows of `<name>/`'s advisory key: holder first, then waiters.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let name = prefix.strip_suffix('/').unwrap_or(prefix);
        let key = advisory_key(name);
        let rows = self
            .client
            .query(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 \
                 AND ((classid::bigint << 32) | objid::bigint) = $1 ORDER BY granted DESC, pid",
                &[&key],
            )
            .await
            .expect("admin pg_locks");
        rows.iter()
            .map(|r| format!("{name}/{}", r.get::<_, i32>(0)))
            .collect()
    }

    /// The keys of `tenure_kv` under `prefix` (what guarded writes wrote).
    pub async fn kv_keys(&self, prefix: &str) -> Vec<String> {
        let rows = self
            .client
            .query(
                "SELECT key FROM tenure_kv WHERE starts_with(key, $1) ORDER BY key",
                &[&prefix],
            )
            .await
            .expect("admin tenure_kv");
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// The held permit slots of semaphore `name` (two-`int4` keys of its tag), as the
    /// permits' keys `<name>/leases/<pid>`.
    pub async fn permits(&self, name: &str) -> Vec<String> {
        let tag = i64::from(crate::backend::postgres::key::semaphore_tag(name) as u32);
        let rows = self
            .client
            .query(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 \
                 AND granted AND classid::bigint = $1 ORDER BY pid",
                &[&tag],
            )
            .await
            .expect("admin pg_locks permits");
        rows.iter()
            .map(|r| format!("{name}/leases/{}", r.get::<_, i32>(0)))
            .collect()
    }

    /// The `pg_locks` modes of `name`'s advisory key, granted first: (`ShareLock` or
    /// `ExclusiveLock`, granted).
    pub async fn modes(&self, name: &str) -> Vec<(String, bool)> {
        let rows = self
            .client
            .query(
                "SELECT mode, granted FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 \
                 AND ((classid::bigint << 32) | objid::bigint) = $1 ORDER BY granted DESC, pid",
                &[&advisory_key(name)],
            )
            .await
            .expect("admin pg_locks modes");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    /// Runs one statement as the superuser, as `psql` would (a peer's advisory lock calls).
    pub async fn run(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("admin {sql}: {e}"));
    }

    /// Terminates a server process and waits until it is gone.
    pub async fn terminate(&self, pid: i32) {
        self.client
            .query("SELECT pg_terminate_backend($1, 10000)", &[&pid])
            .await
            .expect("admin terminate");
    }

    /// Terminates the process holding `key` (`<name>/<pid>`).
    pub async fn delete(&self, key: &str) {
        let pid = key
            .rsplit_once('/')
            .and_then(|(_, p)| p.parse().ok())
            .expect("a holder key <name>/<pid>");
        self.terminate(pid).await;
    }
}

/// The test server's password (every role's).
pub(crate) fn password() -> String {
    std::env::var("TENURE_TEST_POSTGRES_PASSWORD").expect("TENURE_TEST_POSTGRES_PASSWORD")
}

/// PostgreSQL, when `scripts/test` started one.
pub(crate) async fn postgres(test: &str) -> Option<Fixture> {
    let var = "TENURE_TEST_POSTGRES_URL";
    let Ok(url) = std::env::var(var) else {
        return skip(var, test);
    };
    let password = password();
    let tenure = Tenure::builder(&url)
        .password(password.as_str())
        .connect()
        .await
        .expect("connect to test postgres");
    Some(Fixture {
        tenure,
        short_ttl: Duration::from_secs(2),
        admin: Admin::Postgres(PgAdmin::connect(&url, &password).await),
        namespace: namespace(test),
        _faults: None,
    })
}
