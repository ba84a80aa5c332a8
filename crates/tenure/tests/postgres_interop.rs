//! Tenure and `psql` on one PostgreSQL advisory lock, both ways: a `psql` session that holds
//! `pg_advisory_lock(<key>)` on the documented key of a name makes Tenure's `try_lock` fail and
//! its `lock()` wait until `psql` unlocks, and while Tenure holds the name, `psql`'s
//! `pg_try_advisory_lock(<key>)` is false until Tenure unlocks. The key is also computed
//! independently (Python's `hmac`, from sqlx's documented algorithm), and `status` lists the
//! `psql` holder.

mod postgres_support;

use std::process::Stdio;
use std::time::Duration;

use postgres_support::{until, Pg};
use tenure::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// sqlx's mapping, recomputed by Python's standard library: HKDF-SHA256 without salt, info
/// `SQLx (Rust) Postgres advisory lock`, 8 bytes as a little-endian signed integer.
async fn python_key(name: &str) -> i64 {
    let script = "import hmac, hashlib, struct, sys\n\
prk = hmac.new(b'\\0' * 32, sys.argv[1].encode(), hashlib.sha256).digest()\n\
okm = hmac.new(prk, b'SQLx (Rust) Postgres advisory lock\\x01', hashlib.sha256).digest()[:8]\n\
print(struct.unpack('<q', okm)[0])";
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, name])
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("python3 (scripts/servers install provides it)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a key")
}

fn unique(what: &str) -> String {
    format!("tenure-pg-interop/{what}-{:08x}", fastrand::u32(..))
}

#[tokio::test]
async fn documented_key_is_sqlx_mapping() {
    for name in [
        "my first Postgres advisory lock!",
        "jobs/nightly",
        "é/ü",
        "x",
    ] {
        assert_eq!(
            tenure::postgres_advisory_key(name),
            python_key(name).await,
            "{name}"
        );
    }
}

#[tokio::test]
async fn psql_holder_excludes_tenure() {
    let Some(pg) = Pg::from_env("psql_holder_excludes_tenure") else {
        return;
    };
    let name = unique("psql-holds");
    let key = tenure::postgres_advisory_key(&name);
    let t = pg.tenure().await;
    let session = t.session().await.unwrap();
    // Tenure records the name once it has tried it; psql then holds the key.
    assert!(session.mutex(&name).unwrap().try_lock().await.is_ok());
    let mut psql = pg.interactive();
    let mut stdin = psql.stdin.take().expect("stdin");
    let mut lines = BufReader::new(psql.stdout.take().expect("stdout")).lines();
    stdin
        .write_all(format!("SELECT pg_advisory_lock({key});\nSELECT 'held';\n").as_bytes())
        .await
        .unwrap();
    loop {
        let line = lines.next_line().await.unwrap().expect("psql output");
        if line == "held" {
            break;
        }
    }
    let m = session.mutex(&name).unwrap();
    match m.try_lock().await {
        Err(Error::Locked { holder, .. }) => assert!(holder.is_some()),
        other => panic!("expected Locked while psql holds, got {other:?}"),
    }
    // Listed with psql as holder: its application_name is the value, no token.
    let st = t.status(&name).await.unwrap();
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(
        (st[0].holder.value.as_slice(), st[0].holder.token.get()),
        (&b"psql"[..], 0)
    );
    let waiter = tokio::spawn(async move { m.lock().await.map(|g| g.token()) });
    until(
        "Tenure queued behind psql",
        Duration::from_secs(30),
        || async {
            pg.query(&format!(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND ((classid::bigint << 32) | objid::bigint) = {key}"
            ))
            .await
                == ["1"]
        },
    )
    .await;
    assert!(!waiter.is_finished());
    stdin
        .write_all(format!("SELECT pg_advisory_unlock({key});\n").as_bytes())
        .await
        .unwrap();
    let token = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("granted once psql unlocks")
        .unwrap()
        .unwrap();
    assert!(token.get() > 0);
    drop(stdin);
    let _ = psql.wait().await;
}

#[tokio::test]
async fn tenure_holder_excludes_psql() {
    let Some(pg) = Pg::from_env("tenure_holder_excludes_psql") else {
        return;
    };
    let name = unique("tenure-holds");
    let key = tenure::postgres_advisory_key(&name);
    let t = pg.tenure().await;
    let g = t
        .session()
        .await
        .unwrap()
        .mutex(&name)
        .unwrap()
        .lock()
        .await
        .unwrap();
    let try_sql = format!("SELECT pg_try_advisory_lock({key})");
    assert_eq!(pg.query(&try_sql).await, ["f"]);
    // The numeric form names the same lock for any peer that picked the number.
    assert_eq!(
        pg.query(&format!(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND ((classid::bigint << 32) | objid::bigint) = {key}"
        ))
        .await,
        [g.key().rsplit_once('/').unwrap().1]
    );
    g.unlock().await.unwrap();
    // psql's session ends with the command, releasing what it took.
    assert_eq!(pg.query(&try_sql).await, ["t"]);
}
