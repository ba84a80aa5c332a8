//! The private PostgreSQL cluster of `scripts/servers` (its `TENURE_TEST_POSTGRES_*`
//! variables), and `psql` against it.

#![allow(dead_code)] // each test file uses its own part

#[path = "../support/skip.rs"]
mod skip;

pub mod freeze;

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The test server, as `scripts/servers` describes it.
pub struct Pg {
    /// `postgres://tenure@127.0.0.1:PORT/tenure`.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Every role's password.
    pub password: String,
    pub password_file: String,
    pub psql: String,
    pub ca: String,
    pub other_ca: String,
    /// `tenure_mtls`'s certificate and key.
    pub client_cert: String,
    pub client_key: String,
}

impl Pg {
    /// The server, or `None` after a SKIPPED line (a failure under `TENURE_REQUIRE_SERVERS=1`).
    pub fn from_env(test: &str) -> Option<Pg> {
        let get = |var: &str| skip::env_or_skip(test, var);
        let url = get("TENURE_TEST_POSTGRES_URL")?;
        let addr = url.rsplit_once('@')?.1.split('/').next()?.to_string();
        let (host, port) = addr.rsplit_once(':')?;
        Some(Pg {
            host: host.to_string(),
            port: port.parse().ok()?,
            password: get("TENURE_TEST_POSTGRES_PASSWORD")?,
            password_file: get("TENURE_TEST_POSTGRES_PASSWORD_FILE")?,
            psql: get("TENURE_TEST_POSTGRES_PSQL")?,
            ca: get("TENURE_TEST_POSTGRES_CA")?,
            other_ca: get("TENURE_TEST_POSTGRES_OTHER_CA")?,
            client_cert: get("TENURE_TEST_POSTGRES_CLIENT_CERT")?,
            client_key: get("TENURE_TEST_POSTGRES_CLIENT_KEY")?,
            url,
        })
    }

    /// The URL for `role` on database `db`, with `query` (`?sslmode=…`) appended.
    pub fn url_for(&self, role: &str, db: &str, query: &str) -> String {
        format!("postgres://{role}@{}:{}/{db}{query}", self.host, self.port)
    }

    /// A connected [`tenure::Tenure`] as role `tenure`.
    pub async fn tenure(&self) -> tenure::Tenure {
        tenure::Tenure::builder(&self.url)
            .password(self.password.as_str())
            .connect()
            .await
            .expect("connect to the test PostgreSQL")
    }

    /// `psql` as the superuser on database `tenure`, reading SQL from its stdin, printing
    /// unaligned rows without headers on stdout, one per line.
    pub fn psql(&self) -> Command {
        let mut c = Command::new(&self.psql);
        c.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &self.host,
        ])
        .args([
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "tenure",
        ])
        .env("PGPASSWORD", &self.password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        c
    }

    /// Runs `sql` in `psql` and returns its output lines.
    pub async fn query(&self, sql: &str) -> Vec<String> {
        let out = self
            .psql()
            .args(["-c", sql])
            .output()
            .await
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A `psql` that keeps running, fed SQL line by line (one session, so its advisory locks
    /// live until it exits).
    pub fn interactive(&self) -> Child {
        self.psql().spawn().expect("start psql")
    }
}

/// Waits up to `bound` for `probe` to say yes, checking every 20 ms.
pub async fn until<F, Fut>(what: &str, bound: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
