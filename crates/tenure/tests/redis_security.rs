//! Redis with TLS (`rediss://`) and ACL users, on private `redis-server` processes that each
//! test starts for itself on free loopback ports (killed on drop).
//!
//! TLS: a TLS-only server (`--port 0 --tls-port P`) with certificates made at test time with
//! `openssl`; the right CA locks and unlocks, and each misconfiguration (untrusted server
//! certificate, wrong server name, missing client certificate on a server that requires one)
//! is a typed [`Error::Tls`] naming its problem. ACL: users `app1` and `app2` whose key
//! patterns cover only `app1:*` and only `app2:*` (plus the session heartbeat keys), with only
//! the commands the backend needs; a refusal is [`Error::PermissionDenied`] at once (no retry
//! loop, no hang), and a wrong password or unknown user is [`Error::AuthFailed`].

mod redis_support;
#[allow(unused_macros, unused_imports)]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis_support::{redis_bin_or_skip, resp, start_servers_with};
use support::{
    etcd_bin_from_env, within, EtcdConfig, PrivateEtcd, TempDir, TestCerts, Version, PATIENCE,
};
use tenure::{Error, Tenure, TlsProblem};
use tokio::time::Instant;

/// A bound on how long a refusal may take: one round trip, far below [`PATIENCE`]. A retry
/// loop (attempts with backoff) or a hang would blow it.
const REFUSAL_BOUND: Duration = Duration::from_secs(10);

/// The ACL of a user confined to `<prefix>:*`: its locks, their fencing counters, waiter
/// queues, release and wake-up channels, the session heartbeat keys, the ephemeral keys' index,
/// owners and counter with its own keys' channels, and only the commands the backend sends (the
/// scripts' inner commands are checked too).
fn acl_user(name: &str, password: &str) -> Vec<String> {
    let mut rule = vec![
        "--user".to_string(),
        name.to_string(),
        "on".to_string(),
        format!(">{password}"),
        "resetkeys".to_string(),
        format!("~{name}:*"),
        "~tenure:session:*".to_string(),
        format!("~tenure:queue:{name}:*"),
        "~tenure:ephemeral".to_string(),
        "~tenure:ephemeral:owners".to_string(),
        "~tenure:ephemeral:seq".to_string(),
        "resetchannels".to_string(),
        format!("&tenure:released:{name}:*"),
        format!("&tenure:wake:{name}:*"),
        format!("&tenure:ephemeral:{name}:*"),
        "-@all".to_string(),
    ];
    for cmd in [
        "ping",
        "select",
        "get",
        "set",
        "del",
        "incr",
        "pttl",
        "pexpire",
        "exists",
        "rpush",
        "lpop",
        "lrem",
        "lindex",
        "lpos",
        "hget",
        "hset",
        "hdel",
        "zadd",
        "zrem",
        "zrangebylex",
        "publish",
        "subscribe",
        "unsubscribe",
        "psubscribe",
        "punsubscribe",
        "eval",
        "evalsha",
        "script|load",
    ] {
        rule.push(format!("+{cmd}"));
    }
    rule
}

/// A TLS-only `redis-server` of this test's own; killed and reaped on drop.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

impl TlsRedis {
    /// Starts a server that speaks only TLS (`--port 0`), requiring client certificates when
    /// `client_certs`; waits until its TLS port accepts connections. Retries with a new port
    /// if it exits early (a port taken between choosing and binding it).
    async fn start(bin: &str, certs: &TestCerts, client_certs: bool, extra: &[String]) -> Self {
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(bin)
                .args(["--port", "0", "--bind", "127.0.0.1"])
                .args(["--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(certs.pem("server"))
                .arg("--tls-key-file")
                .arg(certs.key("server"))
                .arg("--tls-ca-cert-file")
                .arg(certs.pem("ca"))
                .args([
                    "--tls-auth-clients",
                    if client_certs { "yes" } else { "no" },
                ])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(extra)
                .arg("--logfile")
                .arg(certs.dir.join(format!("redis-{port}.log")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut server = TlsRedis { port, child };
            let deadline = Instant::now() + PATIENCE;
            loop {
                if server.child.try_wait().expect("try_wait").is_some() {
                    let log = certs.dir.join(format!("redis-{port}.log"));
                    let log = std::fs::read_to_string(log).unwrap_or_default();
                    eprintln!("TLS redis-server exited early (port race?):\n{log}");
                    break; // try another port
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return server;
                }
                assert!(
                    Instant::now() < deadline,
                    "TLS redis-server not listening within {PATIENCE:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("TLS redis-server {bin} did not start in 3 attempts");
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

async fn connect(b: tenure::Builder) -> tenure::Result<Tenure> {
    within("connect", PATIENCE, b.connect()).await
}

fn tls_problem(r: tenure::Result<Tenure>) -> TlsProblem {
    match r {
        Err(e @ Error::Tls { problem, .. }) => {
            assert!(e.is_permission() || problem == TlsProblem::Handshake, "{e}");
            problem
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

/// Locks and unlocks `name`, checking the token and that nothing is left behind.
async fn lock_unlock(tenure: &Tenure, name: &str) {
    let session = tenure.session().await.expect("session");
    let guard = within("lock", PATIENCE, session.mutex(name).expect("name").lock())
        .await
        .expect("lock");
    assert!(guard.token().get() >= 1);
    assert!(tenure.read(name).await.expect("read held").is_some());
    guard.unlock().await.expect("unlock");
    assert_eq!(tenure.read(name).await.expect("read released"), None);
}

fn setup(test: &str) -> Option<(String, TempDir, TestCerts)> {
    let bin = redis_bin_or_skip(test)?;
    let dir = TempDir::new("tenure-redis-tls");
    let certs = TestCerts::generate(dir.dir());
    Some((bin, dir, certs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_server() {
    let Some((bin, _dir, certs)) = setup("tls_only_server") else {
        return;
    };
    let server = TlsRedis::start(&bin, &certs, false, &acl_user("app1", "pw1")).await;
    let url = server.url();

    // The right CA: lock and unlock over TLS; with a server name the certificate carries
    // (connecting by IP address); and as an ACL user over TLS.
    let tenure = connect(Tenure::builder(&url).ca_file(certs.pem("ca")))
        .await
        .expect("connect with the right CA");
    lock_unlock(&tenure, "tls-lock").await;
    let named = connect(
        Tenure::builder(&url)
            .ca_file(certs.pem("ca"))
            .tls_server_name("localhost"),
    )
    .await
    .expect("connect with tls_server_name");
    lock_unlock(&named, "tls-named").await;
    let user = connect(
        Tenure::builder(&url)
            .ca_file(certs.pem("ca"))
            .credentials("app1", "pw1"),
    )
    .await
    .expect("connect as app1 over TLS");
    lock_unlock(&user, "app1:tls").await;

    // A CA that did not sign the server's certificate, or the system's CAs.
    let wrong_ca = connect(Tenure::builder(&url).ca_file(certs.pem("other-ca"))).await;
    assert_eq!(
        tls_problem(wrong_ca),
        TlsProblem::UntrustedServerCertificate
    );
    let system = connect(Tenure::builder(&url)).await;
    assert_eq!(tls_problem(system), TlsProblem::UntrustedServerCertificate);
    // A name the certificate does not carry.
    let wrong_name = connect(
        Tenure::builder(&url)
            .ca_file(certs.pem("ca"))
            .tls_server_name("not-this-server.example"),
    )
    .await;
    assert_eq!(tls_problem(wrong_name), TlsProblem::ServerNameMismatch);
    // Wrong credentials over TLS are an authentication failure, not a TLS one.
    let wrong_pw = connect(
        Tenure::builder(&url)
            .ca_file(certs.pem("ca"))
            .credentials("app1", "nope"),
    )
    .await;
    assert!(
        matches!(wrong_pw, Err(Error::AuthFailed { .. })),
        "{wrong_pw:?}"
    );
    // TLS options on a plaintext URL are refused, not ignored.
    let plain = connect(
        Tenure::builder(&format!("redis://127.0.0.1:{}", server.port)).ca_file(certs.pem("ca")),
    )
    .await;
    assert!(
        matches!(plain, Err(Error::InvalidOption { option: "tls", .. })),
        "{plain:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_required() {
    let Some((bin, _dir, certs)) = setup("client_certificate_required") else {
        return;
    };
    let server = TlsRedis::start(&bin, &certs, true, &[]).await;
    let url = server.url();

    let without = connect(Tenure::builder(&url).ca_file(certs.pem("ca"))).await;
    assert_eq!(tls_problem(without), TlsProblem::ClientCertificateRequired);

    let tenure = connect(
        Tenure::builder(&url)
            .ca_file(certs.pem("ca"))
            .client_cert(certs.pem("client"), certs.key("client")),
    )
    .await
    .expect("connect with a client certificate");
    lock_unlock(&tenure, "mtls-lock").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_users_confined_to_their_prefix() {
    let Some(bin) = redis_bin_or_skip("acl_users_confined_to_their_prefix") else {
        return;
    };
    let mut args = acl_user("app1", "pw1");
    args.extend(acl_user("app2", "pw2"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = start_servers_with(&bin, 1, &args).await.remove(0);
    let addr = format!("127.0.0.1:{}", server.port);

    // From the URL, and from the Builder (a password file).
    let app1 = connect(Tenure::builder(&format!("redis://app1:pw1@{addr}")))
        .await
        .expect("app1 from the URL");
    lock_unlock(&app1, "app1:x").await;
    let dir = TempDir::new("tenure-redis-acl");
    let pw_file = dir.path("password");
    std::fs::write(&pw_file, "pw2\n").expect("write password file");
    let app2 = connect(
        Tenure::builder(&format!("redis://{addr}"))
            .user("app2")
            .password_file(&pw_file),
    )
    .await
    .expect("app2 from a password file");

    // app2 holds app2:x; app1 is refused on it at once, whether it would wait or not, and
    // cannot release it by any means it has.
    let app2_session = app2.session().await.expect("app2 session");
    let held = support::locked(&app2_session, "app2:x").await;
    let app1_session = app1.session().await.expect("app1 session");
    let theirs = app1_session.mutex("app2:x").expect("name");
    for (what, refused) in [
        (
            "lock",
            within("lock under app2:", REFUSAL_BOUND, theirs.lock()).await,
        ),
        (
            "try_lock",
            within("try_lock under app2:", REFUSAL_BOUND, theirs.try_lock()).await,
        ),
    ] {
        match refused {
            Err(e @ Error::PermissionDenied { .. }) => {
                assert!(e.is_permission() && !e.is_transient(), "{e}");
            }
            other => panic!("app1 {what} on app2:x: expected PermissionDenied, got {other:?}"),
        }
    }
    let write = app1.write([tenure::Write::Delete {
        key: "app2:x".into(),
    }]);
    let write = within("delete app2:x as app1", REFUSAL_BOUND, write).await;
    assert!(
        matches!(write, Err(Error::PermissionDenied { .. })),
        "{write:?}"
    );
    assert!(!held.is_lost());
    assert!(app2.read("app2:x").await.expect("read").is_some());
    held.unlock().await.expect("app2 unlocks");

    // Ephemeral keys: app1 registers and watches under its prefix; app2's is refused at once.
    let mut live = app1.watch_prefix("app1:").await.expect("watch app1:");
    app1_session
        .put_ephemeral("app1:web", "10.0.0.5:8080")
        .await
        .expect("register app1:web");
    let put = within("app1's registration", REFUSAL_BOUND, live.next()).await;
    assert!(
        matches!(&put, Some(Ok(tenure::KeyEvent::Put { key, .. })) if key == "app1:web"),
        "{put:?}"
    );
    let narrower = app1.watch_prefix("app1:web").await;
    assert!(
        matches!(narrower, Err(Error::PermissionDenied { .. })),
        "{narrower:?}"
    );
    let theirs = app1_session.put_ephemeral("app2:web", "x");
    let theirs = within("register under app2:", REFUSAL_BOUND, theirs).await;
    assert!(
        matches!(theirs, Err(Error::PermissionDenied { .. })),
        "{theirs:?}"
    );
    let watch = within("watch app2:", REFUSAL_BOUND, app1.watch_prefix("app2:")).await;
    assert!(
        matches!(watch, Err(Error::PermissionDenied { .. })),
        "{watch:?}"
    );
    app1_session.close().await.expect("close app1's session");
    let gone = within("app1's deregistration", REFUSAL_BOUND, live.next()).await;
    assert!(
        matches!(&gone, Some(Ok(tenure::KeyEvent::Deleted { key })) if key == "app1:web"),
        "{gone:?}"
    );

    // Wrong password, unknown user, a password for the default user that has none.
    for url in [
        format!("redis://app1:wrong@{addr}"),
        format!("redis://nobody:pw1@{addr}"),
    ] {
        let err = connect(Tenure::builder(&url)).await.expect_err(&url);
        assert!(matches!(err, Error::AuthFailed { .. }), "{url}: {err}");
        assert!(err.is_permission(), "{err}");
        assert!(!err.to_string().contains("wrong"), "password leaked: {err}");
    }
    let err = connect(Tenure::builder(&format!("redis://{addr}")).credentials("app2", "pw1"))
        .await
        .expect_err("wrong password from the Builder");
    assert!(matches!(err, Error::AuthFailed { .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains("pw1"), "leaked: {err:?}");

    // Credentials in two places are refused, not merged.
    let both = connect(Tenure::builder(&format!("redis://app1:pw1@{addr}")).password("pw1")).await;
    assert!(
        matches!(
            both,
            Err(Error::InvalidOption {
                option: "credentials",
                ..
            })
        ),
        "{both:?}"
    );
    // The server still answers an operator (nothing was left wedged).
    assert_eq!(resp(server.port, "PING").as_deref(), Some("+PONG"));
}

/// `rediss://` and `etcds://` in one process: both on rustls with the one ring provider, so
/// neither connector's TLS set-up disturbs the other's, in either order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_and_etcds_in_one_process() {
    let test = "rediss_and_etcds_in_one_process";
    let Some(etcd_bin) = etcd_bin_from_env(Version::V35, test) else {
        return;
    };
    let Some((bin, _dir, certs)) = setup(test) else {
        return;
    };
    let redis = TlsRedis::start(&bin, &certs, true, &[]).await;
    let etcd = PrivateEtcd::start_with(
        &etcd_bin,
        &EtcdConfig {
            tls: Some(certs.clone()),
            args: Vec::new(),
        },
    )
    .await;
    let builder = |url: &str| {
        Tenure::builder(url)
            .ca_file(certs.pem("ca"))
            .client_cert(certs.pem("client"), certs.key("client"))
    };
    let over_etcd = connect(builder(&etcd.url)).await.expect("etcds:// first");
    let over_redis = connect(builder(&redis.url()))
        .await
        .expect("then rediss://");
    lock_unlock(&over_redis, "both-redis").await;
    let session = over_etcd.session().await.expect("etcd session");
    let guard = support::locked(&session, "both-etcd").await;
    guard.unlock().await.expect("etcd unlock");
    let again = connect(builder(&etcd.url)).await.expect("etcds:// again");
    assert_eq!(again.backend(), "etcd");
}
