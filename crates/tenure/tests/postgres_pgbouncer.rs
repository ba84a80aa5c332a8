//! PgBouncer in front of the PostgreSQL of `scripts/servers`: pooled per transaction, the
//! server connection under a client changes between transactions and session-level advisory
//! locks would be released or shared without notice, so `connect` refuses it with
//! [`Error::Unsupported`] naming the fix; pooled per session, locks work as on a direct
//! connection.

mod postgres_support;

use postgres_support::Pg;
use tenure::{Error, Tenure};

fn url(test: &str, var: &str) -> Option<(String, String)> {
    let pg = Pg::from_env(test)?;
    match std::env::var(var) {
        Ok(u) => Some((u, pg.password)),
        Err(_) => {
            assert!(
                std::env::var_os("TENURE_REQUIRE_SERVERS").map_or(true, |v| v != "1"),
                "{var} is not set but TENURE_REQUIRE_SERVERS=1; run scripts/test"
            );
            eprintln!("SKIPPED {test}: {var} not set");
            None
        }
    }
}

#[tokio::test]
async fn transaction_pooling_is_refused_with_the_fix() {
    let Some((url, password)) = url(
        "transaction_pooling_is_refused_with_the_fix",
        "TENURE_TEST_PGBOUNCER_TX_URL",
    ) else {
        return;
    };
    for _ in 0..5 {
        match Tenure::builder(&url)
            .password(password.as_str())
            .connect()
            .await
        {
            Err(Error::Unsupported { what, advice, .. }) => {
                assert!(what.contains("pool_mode=transaction"), "{what}");
                assert!(advice.contains("pool_mode=session"), "{advice}");
            }
            other => panic!("expected Unsupported behind transaction pooling, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn session_pooling_keeps_locks() {
    let Some((url, password)) = url(
        "session_pooling_keeps_locks",
        "TENURE_TEST_PGBOUNCER_SESSION_URL",
    ) else {
        return;
    };
    let t = Tenure::builder(&url)
        .password(password.as_str())
        .connect()
        .await
        .expect("session pooling is accepted");
    let name = format!("tenure-pgbouncer/{:08x}", fastrand::u32(..));
    let a = t.session().await.unwrap();
    let g = a.mutex(&name).unwrap().lock().await.unwrap();
    let b = t.session().await.unwrap();
    assert!(matches!(
        b.mutex(&name).unwrap().try_lock().await,
        Err(Error::Locked { .. })
    ));
    g.unlock().await.unwrap();
    b.mutex(&name)
        .unwrap()
        .try_lock()
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
}
