//! Typed errors from the Redis backend (C11, C12), against a private `redis-server` with a
//! password that this test starts on a free loopback port: wrong or missing credentials →
//! `AuthFailed`; nobody listening → `Unreachable`; `rediss://` to a plaintext server →
//! `Unreachable` (its handshake is never answered). (TLS and ACL users proper: `tests/redis_security.rs`.)

mod redis_support;
mod support;

use redis_support::{redis_bin_or_skip, RedisProcess};
use tenure::{Error, Tenure};

async fn with_password(test: &str) -> Option<RedisProcess> {
    let bin = redis_bin_or_skip(test)?;
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
        assert!(matches!(err, Error::AuthFailed { .. }), "{url}: {err}");
        assert!(err.is_permission() && !err.is_transient(), "{err}");
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

/// A plaintext Redis takes the TLS ClientHello for the start of an inline command and waits
/// for its end, so the handshake gets no answer: `Unreachable` (or, should the server answer,
/// a TLS handshake error), never a hang or a panic, and never the password.
#[tokio::test]
async fn tls_to_a_plaintext_server_is_a_typed_error() {
    let Some(server) = with_password("tls_to_a_plaintext_server_is_a_typed_error").await else {
        return;
    };
    let err = Tenure::builder(&format!("rediss://:s3cret@127.0.0.1:{}", server.port))
        .connect_timeout(std::time::Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unreachable { .. }
                | Error::Tls {
                    problem: tenure::TlsProblem::Handshake,
                    ..
                }
        ),
        "{err}"
    );
    assert!(
        !err.to_string().contains("s3cret"),
        "password leaked: {err}"
    );
}
