//! Typed errors from the Redis backend (C11, C12), against a private `redis-server` with a
//! password that this test starts on a free loopback port: wrong or missing credentials →
//! `PermissionDenied`; nobody listening → `Unreachable`; `rediss://` → a clear `Unsupported`.

mod redis_support;

use redis_support::{redis_bin, skip, RedisProcess};
use tenure::{Error, Tenure};

async fn with_password(test: &str) -> Option<RedisProcess> {
    let Some(bin) = redis_bin() else {
        return skip(
            "no redis-server (TENURE_TEST_REDIS_BIN unset, none on PATH)",
            test,
        );
    };
    Some(
        redis_support::start_servers_with(&bin, 1, &["--requirepass", "s3cret"])
            .await
            .remove(0),
    )
}

#[tokio::test]
async fn credentials_are_checked() {
    let Some(server) = with_password("credentials_are_checked").await else {
        return;
    };
    let port = server.port;
    for url in [
        format!("redis://127.0.0.1:{port}"),
        format!("redis://:wrong@127.0.0.1:{port}"),
        format!("redis://default:wrong@127.0.0.1:{port}"),
    ] {
        let err = Tenure::connect(&url).await.unwrap_err();
        assert!(
            matches!(err, Error::PermissionDenied { .. }),
            "{url}: {err}"
        );
        assert!(!err.to_string().contains("wrong"), "password leaked: {err}");
    }
    let ok = Tenure::connect(&format!("redis://:s3cret@127.0.0.1:{port}/2"))
        .await
        .unwrap();
    let g = ok
        .session()
        .await
        .unwrap()
        .mutex("x")
        .unwrap()
        .lock()
        .await
        .unwrap();
    assert!(g.token().get() >= 1);
    g.unlock().await.unwrap();
}

#[tokio::test]
async fn nobody_listening_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Tenure::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    let err = Tenure::connect(&format!(
        "redlock://127.0.0.1:{port},127.0.0.1:{port},127.0.0.1:{port}"
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn tls_is_refused_clearly() {
    let err = Tenure::connect("rediss://127.0.0.1:6380")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}
