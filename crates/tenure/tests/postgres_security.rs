//! PostgreSQL authentication, permissions and TLS, on the private cluster of `scripts/servers`
//! (password authentication for every role; `tenure_norights` may log in and nothing else;
//! `tenure_mtls` must come over TLS with a client certificate signed by the server's CA).
//!
//! A wrong or missing password is [`Error::AuthFailed`]; a role that may not create or use what
//! Tenure keeps is [`Error::PermissionDenied`], at once; each TLS misconfiguration is an
//! [`Error::Tls`] naming its problem; options that cannot apply are [`Error::InvalidOption`]
//! or [`Error::InvalidUrl`], and never show the password.

mod postgres_support;

use std::time::Duration;

use postgres_support::Pg;
use tenure::{Error, Tenure, TlsProblem};

/// One round trip, far below any retry loop's total: a refusal must not be retried.
const REFUSAL_BOUND: Duration = Duration::from_secs(10);

async fn connect(b: tenure::Builder) -> tenure::Result<Tenure> {
    tokio::time::timeout(REFUSAL_BOUND, b.connect())
        .await
        .expect("a refusal is immediate, not retried")
}

#[tokio::test]
async fn wrong_or_missing_password_is_auth_failed() {
    let Some(pg) = Pg::from_env("wrong_or_missing_password_is_auth_failed") else {
        return;
    };
    let wrong = connect(Tenure::builder(&pg.url).password("not-the-password")).await;
    match wrong {
        Err(Error::AuthFailed { message, .. }) => {
            assert!(!message.contains("not-the-password"), "{message}")
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    let missing = connect(Tenure::builder(&pg.url)).await;
    assert!(
        matches!(missing, Err(Error::AuthFailed { .. })),
        "{missing:?}"
    );
    let unknown = connect(
        Tenure::builder(&pg.url_for("nobody", "tenure", "")).password(pg.password.as_str()),
    )
    .await;
    assert!(
        matches!(unknown, Err(Error::AuthFailed { .. })),
        "{unknown:?}"
    );
    // The right password from a file (as `--password-file` gives it) works.
    let t = connect(Tenure::builder(&pg.url).password_file(&pg.password_file))
        .await
        .expect("password file");
    let s = t.session().await.unwrap();
    s.mutex("security/ok")
        .unwrap()
        .lock()
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
}

#[tokio::test]
async fn role_without_rights_is_permission_denied() {
    let Some(pg) = Pg::from_env("role_without_rights_is_permission_denied") else {
        return;
    };
    // Where Tenure's objects exist (created by `tenure`, who owns the database), a role with
    // no grant on them is refused its first lock, at once and typed.
    let _owner = pg.tenure().await;
    let norights = connect(
        Tenure::builder(&pg.url_for("tenure_norights", "tenure", ""))
            .password(pg.password.as_str()),
    )
    .await
    .expect("a role may connect");
    let s = norights.session().await.unwrap();
    let locked = tokio::time::timeout(REFUSAL_BOUND, s.mutex("security/denied").unwrap().lock())
        .await
        .expect("refused at once");
    assert!(
        matches!(locked, Err(Error::PermissionDenied { .. })),
        "{locked:?}"
    );
    let write = norights
        .write([tenure::Write::put("security/denied", "x")])
        .await;
    assert!(
        matches!(write, Err(Error::PermissionDenied { .. })),
        "{write:?}"
    );
    // Where they do not exist and the role may not create them (PostgreSQL 15 grants nobody
    // CREATE on `public` of the `postgres` database), connect says which SQL creates them.
    let create = connect(
        Tenure::builder(&pg.url_for("tenure_norights", "postgres", ""))
            .password(pg.password.as_str()),
    )
    .await;
    match create {
        Err(Error::PermissionDenied { message, .. }) => {
            assert!(
                message.contains("CREATE SEQUENCE tenure_fence"),
                "{message}"
            )
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_verified_and_each_problem_typed() {
    let Some(pg) = Pg::from_env("tls_verified_and_each_problem_typed") else {
        return;
    };
    let tls = |query: &str, ca: &str| {
        Tenure::builder(&pg.url_for("tenure", "tenure", query))
            .password(pg.password.as_str())
            .ca_file(ca)
    };
    // verify-full against the right CA, by the address the certificate names.
    let t = connect(tls("?sslmode=verify-full", &pg.ca))
        .await
        .expect("TLS");
    let s = t.session().await.unwrap();
    s.mutex("security/tls")
        .unwrap()
        .lock()
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
    let on_tls = pg
        .query("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.usename = 'tenure' AND a.application_name LIKE 'tenure%'")
        .await;
    assert_ne!(on_tls, ["0"], "Tenure's connections use TLS");
    // TLS options alone mean verify-full.
    connect(tls("", &pg.ca))
        .await
        .expect("TLS options imply verify-full");
    let untrusted = connect(tls("?sslmode=verify-full", &pg.other_ca)).await;
    assert!(
        matches!(
            untrusted,
            Err(Error::Tls {
                problem: TlsProblem::UntrustedServerCertificate,
                ..
            })
        ),
        "{untrusted:?}"
    );
    let wrong_name =
        connect(tls("?sslmode=verify-full", &pg.ca).tls_server_name("db.example")).await;
    assert!(
        matches!(
            wrong_name,
            Err(Error::Tls {
                problem: TlsProblem::ServerNameMismatch,
                ..
            })
        ),
        "{wrong_name:?}"
    );
    // require checks the chain, not the name; an untrusted chain is still refused.
    connect(tls("?sslmode=require", &pg.ca).tls_server_name("db.example"))
        .await
        .expect("require does not check the name");
    let untrusted = connect(tls("?sslmode=require", &pg.other_ca)).await;
    assert!(
        matches!(
            untrusted,
            Err(Error::Tls {
                problem: TlsProblem::UntrustedServerCertificate,
                ..
            })
        ),
        "{untrusted:?}"
    );
    // tenure_mtls must present a client certificate signed by the server's CA.
    let mtls = |query: &str| {
        Tenure::builder(&pg.url_for("tenure_mtls", "tenure", query))
            .password(pg.password.as_str())
            .ca_file(&pg.ca)
    };
    let without = connect(mtls("?sslmode=verify-full")).await;
    assert!(
        matches!(
            without,
            Err(Error::Tls {
                problem: TlsProblem::ClientCertificateRequired,
                ..
            })
        ),
        "{without:?}"
    );
    let with = connect(mtls("?sslmode=verify-full").client_cert(&pg.client_cert, &pg.client_key))
        .await
        .expect("client certificate");
    let s = with.session().await.unwrap();
    s.mutex("security/mtls")
        .unwrap()
        .lock()
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
    let plaintext = connect(
        Tenure::builder(&pg.url_for("tenure_mtls", "tenure", "")).password(pg.password.as_str()),
    )
    .await;
    assert!(
        matches!(plaintext, Err(Error::AuthFailed { .. })),
        "{plaintext:?}"
    );
}

#[tokio::test]
async fn options_that_cannot_apply_are_refused() {
    let Some(pg) = Pg::from_env("options_that_cannot_apply_are_refused") else {
        return;
    };
    let in_url = format!(
        "postgres://tenure:{}@{}:{}/tenure",
        pg.password, pg.host, pg.port
    );
    match Tenure::connect(&in_url).await {
        Err(e @ Error::InvalidUrl { .. }) => assert!(!e.to_string().contains(&pg.password), "{e}"),
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
    let no_user = format!("postgres://{}:{}/tenure", pg.host, pg.port);
    let r = Tenure::builder(&no_user)
        .password(pg.password.as_str())
        .connect()
        .await;
    assert!(matches!(r, Err(Error::InvalidOption { .. })), "{r:?}");
    let disabled = Tenure::builder(&pg.url_for("tenure", "tenure", "?sslmode=disable"))
        .password(pg.password.as_str())
        .ca_file(&pg.ca)
        .connect()
        .await;
    assert!(
        matches!(disabled, Err(Error::InvalidOption { .. })),
        "{disabled:?}"
    );
    let nobody = Tenure::builder("postgres://tenure@127.0.0.1:1/tenure")
        .password(pg.password.as_str())
        .connect()
        .await;
    assert!(
        matches!(nobody, Err(Error::Unreachable { .. })),
        "{nobody:?}"
    );
}
