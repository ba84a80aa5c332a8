//! etcd with TLS and client-certificate authentication, and with user/role authentication,
//! on private servers (3.4 and 3.5) that each test starts for itself on free loopback ports.
//!
//! TLS: certificates are made at test time with `openssl`; the right CA and client
//! certificate lock and unlock, and each misconfiguration is a typed [`Error::Tls`] naming
//! its problem. Auth: users `app1` and `app2` whose roles grant read/write only on `app1/`
//! and only on `app2/`; refusals are [`Error::PermissionDenied`] at once (no retry loop, no
//! hang), and a wrong password is [`Error::AuthFailed`].

mod support;

use std::time::Duration;

use support::{
    env_or_skip, etcd_bin_from_env, per_version, report, within, EtcdConfig, Etcdctl, PrivateEtcd,
    TempDir, TestCerts, Version, PATIENCE,
};
use tenure::{Error, Tenure, TlsProblem, Write};
use tokio::time::Instant;

per_version!(tls_with_client_cert_auth, auth_with_prefix_roles);

/// A bound on how long a refusal may take: one round trip, far below [`PATIENCE`]. A retry
/// loop (attempts with backoff) or a hang would blow it.
const REFUSAL_BOUND: Duration = Duration::from_secs(10);

async fn connect_tls(
    etcd: &PrivateEtcd,
    certs: &TestCerts,
    ca: &str,
    cert: Option<&str>,
) -> tenure::Result<Tenure> {
    let mut b = Tenure::builder(&etcd.url).ca_file(certs.pem(ca));
    if let Some(c) = cert {
        b = b.client_cert(certs.pem(c), certs.key(c));
    }
    within("TLS connect", PATIENCE, b.connect()).await
}

fn tls_problem(r: tenure::Result<Tenure>) -> TlsProblem {
    match r {
        Err(Error::Tls { problem, .. }) => problem,
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

async fn tls_with_client_cert_auth(v: Version, test: &'static str) {
    let Some(bin) = etcd_bin_from_env(v, test) else {
        return;
    };
    // etcd rereads its certificate files at each handshake: they live as long as the test.
    let dir = TempDir::new("tenure-certs");
    let certs = TestCerts::generate(dir.dir());
    let config = EtcdConfig {
        tls: Some(certs.clone()),
        args: vec![],
    };
    let etcd = PrivateEtcd::start_with(&bin, &config).await;

    let tenure = connect_tls(&etcd, &certs, "ca", Some("client"))
        .await
        .expect("mTLS connect");
    let session = tenure.session().await.expect("session");
    let guard = support::locked(&session, "tls/job").await;
    assert!(guard.token().get() > 0);
    guard.unlock().await.expect("unlock");
    session.close().await.expect("close");

    let wrong_ca = connect_tls(&etcd, &certs, "other-ca", Some("client")).await;
    assert_eq!(
        tls_problem(wrong_ca),
        TlsProblem::UntrustedServerCertificate
    );

    let started = Instant::now();
    let no_cert = connect_tls(&etcd, &certs, "ca", None).await;
    let err = no_cert.as_ref().err().map(ToString::to_string);
    assert_eq!(tls_problem(no_cert), TlsProblem::ClientCertificateRequired);
    report(
        test,
        format_args!(
            "missing client certificate refused in {:?}: {err:?}",
            started.elapsed()
        ),
    );

    let wrong_name = Tenure::builder(&etcd.url)
        .ca_file(certs.pem("ca"))
        .client_cert(certs.pem("client"), certs.key("client"))
        .tls_server_name("etcd.example.com")
        .connect();
    let wrong_name = within("TLS connect", PATIENCE, wrong_name).await;
    assert_eq!(tls_problem(wrong_name), TlsProblem::ServerNameMismatch);

    let plaintext = etcd.url.replacen("etcds://", "etcd://", 1);
    let mixed = Tenure::builder(&plaintext)
        .ca_file("ca.pem")
        .connect()
        .await;
    assert!(
        matches!(mixed, Err(Error::InvalidOption { option: "tls", .. })),
        "{mixed:?}"
    );
}

/// `etcdctl --user=root:<pw>` against the private server.
struct Root {
    ctl: Etcdctl,
}

impl Root {
    async fn run(&self, args: &[&str]) {
        let mut all = vec!["--user=root:root-pw"];
        all.extend_from_slice(args);
        self.ctl.run(&all).await;
    }

    /// A user `name` whose role grants read/write on `<name>/` only.
    async fn add_app_user(&self, name: &str, password: &str) {
        self.run(&["role", "add", name]).await;
        let prefix = format!("{name}/");
        self.run(&[
            "role",
            "grant-permission",
            name,
            "--prefix=true",
            "readwrite",
            &prefix,
        ])
        .await;
        self.run(&["user", "add", &format!("{name}:{password}")])
            .await;
        self.run(&["user", "grant-role", name, name]).await;
    }
}

async fn auth_with_prefix_roles(v: Version, test: &'static str) {
    let Some(bin) = etcd_bin_from_env(v, test) else {
        return;
    };
    let Some(ctl_bin) = env_or_skip(test, &format!("TENURE_TEST_ETCDCTL{}", v.tag())) else {
        return;
    };
    let etcd = PrivateEtcd::start(&bin).await;
    let root = Root {
        ctl: Etcdctl::new(v, &ctl_bin, &etcd.endpoint),
    };
    root.ctl.run(&["user", "add", "root:root-pw"]).await;
    // Credentials for a server without auth are a misconfiguration, said plainly.
    let early = Tenure::builder(&etcd.url).credentials("root", "root-pw");
    let early = within("connect", PATIENCE, early.connect()).await;
    assert!(
        matches!(
            early,
            Err(Error::InvalidOption {
                option: "credentials",
                ..
            })
        ),
        "{early:?}"
    );
    root.ctl.run(&["auth", "enable"]).await;
    root.add_app_user("app1", "app1-pw").await;
    root.add_app_user("app2", "app2-pw").await;
    let as_user = |user: &str, pw: &str| Tenure::builder(&etcd.url).credentials(user, pw).connect();

    let app1 = as_user("app1", "app1-pw").await.expect("app1 connects");
    let app2 = as_user("app2", "app2-pw").await.expect("app2 connects");
    let admin = as_user("root", "root-pw").await.expect("root connects");
    let s1 = app1.session().await.expect("app1 session");
    let s2 = app2.session().await.expect("app2 session");

    // Each user locks under its own prefix.
    let own = support::locked(&s1, "app1/job").await;
    own.unlock().await.expect("app1 unlocks app1/");
    let held = support::locked(&s2, "app2/job").await;

    // app1 under app2/: refused at once, whether it would wait (lock) or not (try_lock).
    let theirs = s1.mutex("app2/job").expect("name");
    let started = Instant::now();
    let refused = within("lock under app2/", REFUSAL_BOUND, theirs.lock()).await;
    report(
        test,
        format_args!(
            "lock under a forbidden prefix refused in {:?}",
            started.elapsed()
        ),
    );
    assert!(
        matches!(refused, Err(Error::PermissionDenied { .. })),
        "{refused:?}"
    );
    let refused = within("try_lock under app2/", REFUSAL_BOUND, theirs.try_lock()).await;
    assert!(
        matches!(refused, Err(Error::PermissionDenied { .. })),
        "{refused:?}"
    );

    // app1 cannot release (delete) app2's holder key; it is still there and still held.
    let delete = app1.write([Write::delete(held.key())]);
    let refused = within("delete app2's key", REFUSAL_BOUND, delete).await;
    assert!(
        matches!(refused, Err(Error::PermissionDenied { .. })),
        "{refused:?}"
    );
    assert!(admin.read(held.key()).await.expect("root reads").is_some());
    assert!(!held.is_lost());

    // app1 cannot observe app2's election: neither leader() nor observe().
    let _leader = s2
        .election("app2/leader")
        .expect("name")
        .campaign("a2")
        .await
        .expect("campaign");
    let spy = s1.election("app2/leader").expect("name");
    let refused = within("leader()", REFUSAL_BOUND, spy.leader()).await;
    assert!(
        matches!(refused, Err(Error::PermissionDenied { .. })),
        "{refused:?}"
    );
    let mut observer = spy.observe();
    let refused = within("observe()", REFUSAL_BOUND, observer.next()).await;
    assert!(
        matches!(refused, Some(Err(Error::PermissionDenied { .. }))),
        "{refused:?}"
    );
    assert!(within("observe() end", REFUSAL_BOUND, observer.next())
        .await
        .is_none());
    assert!(!refused
        .map(|r| r.is_err_and(|e| e.is_transient()))
        .unwrap_or(false));

    // The owner still releases normally.
    held.unlock().await.expect("app2 unlocks");

    // Tokens die (simple tokens expire after --auth-token-ttl idle; etcd also drops a user's
    // tokens when its password is set): the client re-authenticates on the refusal and goes on.
    let opts = etcd_client::ConnectOptions::new().with_user("root", "root-pw");
    let mut root_client = within(
        "root client",
        PATIENCE,
        etcd_client::Client::connect([etcd.endpoint.as_str()], Some(opts)),
    )
    .await
    .expect("root client");
    within(
        "passwd",
        PATIENCE,
        root_client.user_change_password("app1", "app1-pw"),
    )
    .await
    .expect("set app1's password");
    let again = s1.mutex("app1/after-token").expect("name");
    let again = within("lock after token loss", REFUSAL_BOUND, again.lock()).await;
    again
        .expect("app1 locks again with a renewed token")
        .unlock()
        .await
        .expect("unlock");

    // Wrong password and no credentials are authentication failures, and say so.
    let wrong = as_user("app1", "not-the-password").await;
    assert!(matches!(wrong, Err(Error::AuthFailed { .. })), "{wrong:?}");
    let anonymous = Tenure::connect(&etcd.url).await;
    assert!(
        matches!(anonymous, Err(Error::AuthFailed { .. })),
        "{anonymous:?}"
    );
}
