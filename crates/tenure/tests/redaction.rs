//! Secrets never appear in logs, error messages or `Debug`/`Display` output: every path a
//! password can take (builder options, a password file, a URL) is exercised with `tracing`
//! captured at debug level, and the captured text is searched for the password.
//!
//! Runs without servers: connection attempts go to a closed loopback port, and with
//! `TENURE_TEST_ETCD35_URL` set (under `scripts/test`) also to a real etcd, which answers a
//! login attempt on a server without authentication, and with `TENURE_TEST_ZK_URL` to a real
//! ZooKeeper, which takes the digest credentials (`tests/zk_security.rs` also searches the
//! output of refused ZooKeeper operations).

mod support;

use std::io::Write as _;

use support::Capture;
use tenure::{Secret, Tenure};

const PASSWORD: &str = "Pa55-w0rd-never-shown";

/// A closed loopback port: bound, then released.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Connects with `builder`, writing its Debug, and the outcome's Debug and Display, to `out`.
async fn attempt(out: &mut Capture, builder: tenure::Builder) {
    let _ = writeln!(out, "builder: {builder:?}");
    match builder.connect().await {
        Ok(t) => {
            let _ = writeln!(out, "tenure: {t:?} url={}", t.url());
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e} / {e:?}");
        }
    }
}

#[tokio::test]
async fn passwords_never_appear_in_logs_errors_or_debug_output() {
    let (capture, _default) = support::capture_tracing();
    let mut out = capture.clone();

    let dir = std::env::temp_dir().join(format!("tenure-redact-{:08x}", fastrand::u32(..)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pw_file = dir.join("password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("write password file");

    let closed = format!("etcd://127.0.0.1:{}", closed_port());
    let mut builders = vec![
        Tenure::builder(&closed).credentials("app1", PASSWORD),
        Tenure::builder(&closed)
            .user("app1")
            .password_file(&pw_file),
        Tenure::builder(&closed).password(Secret::new(PASSWORD)),
        Tenure::builder("mem://").credentials("app1", PASSWORD),
        Tenure::builder(&format!("etcd://app1:{PASSWORD}@127.0.0.1:1")),
        Tenure::builder(&format!(
            "redis://app1:{PASSWORD}@127.0.0.1:{}/0",
            closed_port()
        )),
        Tenure::builder(&format!("rediss://:{PASSWORD}@127.0.0.1:{}", closed_port())),
        Tenure::builder(&format!("redis://app1:{PASSWORD}@127.0.0.1:1/x")),
        Tenure::builder(&format!("redis://127.0.0.1:{}", closed_port()))
            .credentials("app1", PASSWORD),
        Tenure::builder(&format!("rediss://127.0.0.1:{}", closed_port()))
            .user("app1")
            .password_file(&pw_file),
        Tenure::builder(&format!(
            "redis://app1:{PASSWORD}@127.0.0.1:{}",
            closed_port()
        ))
        .password(PASSWORD),
        Tenure::builder(&format!("bogus://app1:{PASSWORD}@h")),
        Tenure::builder(&format!("zk://127.0.0.1:{}", closed_port())).credentials("app1", PASSWORD),
        Tenure::builder(&format!("zk://127.0.0.1:{}", closed_port()))
            .credentials("app:1", PASSWORD),
    ];
    if let Ok(url) = std::env::var("TENURE_TEST_ZK_URL") {
        builders.push(Tenure::builder(&url).credentials("app1", PASSWORD));
    }
    if let Ok(url) = std::env::var("TENURE_TEST_REDIS_URL") {
        builders.push(Tenure::builder(&url).credentials("app1", PASSWORD));
        builders.push(Tenure::builder(&url).password(PASSWORD));
    }
    if let Ok(url) = std::env::var("TENURE_TEST_ETCD35_URL") {
        builders.push(Tenure::builder(&url).credentials("app1", PASSWORD));
    }
    for builder in builders {
        let builder = builder.connect_timeout(std::time::Duration::from_secs(2));
        attempt(&mut out, builder).await;
    }
    let _ = writeln!(
        out,
        "secret: {} {:?}",
        Secret::new(PASSWORD),
        Secret::new(PASSWORD)
    );
    let _ = std::fs::remove_dir_all(&dir);

    let text = capture.text();
    assert!(
        text.contains("builder:") && text.contains("error:"),
        "nothing captured: {text}"
    );
    assert!(
        !text.contains(PASSWORD),
        "the password leaked into captured output:\n{text}"
    );
}
