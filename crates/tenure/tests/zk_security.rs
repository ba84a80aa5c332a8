//! ZooKeeper digest authentication and node ACLs (issue 7 items 3–5), on the shared ZooKeeper.
//!
//! User A (`digest a:pa`) holds a lock. Its nodes carry *creator ALL, world READ*, and so does
//! the queue's CONTAINER parent (ZooKeeper checks the right to delete a node on its parent, so
//! owning the parent is what keeps others from deleting our holder node). Then:
//! - user B (`digest b:pb`), through a raw ZooKeeper client, cannot delete or overwrite A's
//!   holder node (NoAuth); the node stays and A's guard is not lost;
//! - B through tenure, A with a wrong password and an unauthenticated client are refused at
//!   once with `PermissionDenied` (not a hang, not a retry loop) when they try to queue;
//! - an unauthenticated client still sees the queue (`status`) and the leader (`leader()`);
//! - a second connection of A's identity queues behind A and gets the lock when A releases;
//! - B's password never appears in errors, `Debug` output or `tracing` output.
//!
//! Names are top-level (`/tenure-sec-…`): an owned container under a parent shared with other
//! tests (`/tenure-it`) would refuse their unauthenticated nodes until it is reaped.

#![cfg(feature = "zookeeper")]

#[allow(unused_macros, unused_imports)]
mod support;
mod zk_support;

use std::io::Write as _;
use std::time::Duration;

use support::{within, Capture, PATIENCE};
use tenure::{Error, Tenure};
use zk_support::{hosts, Admin};
use zookeeper_client as zk;

const A: (&str, &str) = ("a", "pa");
const B_PASSWORD: &str = "pb-Secret-never-shown";
const B: (&str, &str) = ("b", B_PASSWORD);

fn unique(what: &str) -> String {
    format!("tenure-sec-{what}-{:08x}", fastrand::u32(..))
}

async fn connect_as(url: &str, (user, password): (&str, &str)) -> Tenure {
    Tenure::builder(url)
        .credentials(user, password)
        .connect()
        .await
        .expect("connect with credentials")
}

/// A raw ZooKeeper client authenticated as `user:password` (an operator's zkCli with addauth).
async fn raw_client(url: &str, (user, password): (&str, &str)) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_auth("digest", format!("{user}:{password}").as_bytes())
        .connect(hosts(url))
        .await
        .expect("raw ZooKeeper connection")
}

/// `acl` is *digest `user`:… ALL, world:anyone READ*.
fn assert_owned_by(user: &str, acl: &[zk::Acl], what: &str) {
    let shown: Vec<String> = acl
        .iter()
        .map(|a| format!("{}:{} {}", a.scheme(), a.id(), a.permission()))
        .collect();
    let owner = acl.iter().any(|a| {
        a.scheme() == "digest"
            && a.id().starts_with(&format!("{user}:"))
            && a.permission() == zk::Permission::ALL
    });
    let readers = acl.iter().any(|a| {
        a.scheme() == "world" && a.id() == "anyone" && a.permission() == zk::Permission::READ
    });
    assert!(owner && readers && acl.len() == 2, "{what} ACL: {shown:?}");
}

/// Asserts `res` is a `PermissionDenied` and writes it (Display and Debug) to `out`.
fn assert_denied<T: std::fmt::Debug>(out: &mut Capture, what: &str, res: tenure::Result<T>) {
    let _ = writeln!(out, "{what}: {res:?}");
    match res {
        Err(e @ Error::PermissionDenied { .. }) => {
            assert!(e.is_permission() && !e.is_transient(), "{e}");
            let _ = writeln!(out, "{what}: {e}");
        }
        other => panic!("{what}: expected PermissionDenied, got {other:?}"),
    }
}

#[tokio::test]
async fn only_the_owner_identity_changes_a_queue_everyone_can_read_it() {
    const TEST: &str = "zk_security::only_the_owner_identity";
    let Some(url) = zk_support::url_from_env(TEST) else {
        return;
    };
    let (capture, _default) = support::capture_tracing();
    let mut out = capture.clone();

    let name = unique("lock");
    let dir = format!("/{name}");
    let a = connect_as(&url, A).await;
    let a_session = a.session().await.expect("A's session");
    let guard = support::locked(&a_session, &name).await;
    let holder = guard.key().to_string();
    assert!(holder.starts_with(&format!("{dir}/_c_")), "{holder}");

    // The holder node and its parent are owned by A and readable by everyone.
    let b_raw = raw_client(&url, B).await;
    let (node_acl, _) = b_raw.get_acl(&holder).await.expect("get holder ACL");
    assert_owned_by(A.0, &node_acl, "holder node");
    let (dir_acl, _) = b_raw.get_acl(&dir).await.expect("get parent ACL");
    assert_owned_by(A.0, &dir_acl, "queue parent");

    // B cannot delete or overwrite A's holder node; it stays, and A still holds.
    assert_eq!(
        b_raw.delete(&holder, None).await,
        Err(zk::Error::NoAuth),
        "B deleting A's holder node"
    );
    assert_eq!(
        b_raw.set_data(&holder, b"mine", None).await.map(|_| ()),
        Err(zk::Error::NoAuth),
        "B overwriting A's holder node"
    );
    let admin = Admin::connect(&url).await;
    assert!(admin.exists(&holder).await, "A's holder node was deleted");
    assert_eq!(admin.czxid(&holder).await, guard.token().0);
    assert!(!guard.is_lost(), "A's guard lost after B's refused delete");

    // Everyone can see the queue.
    let open = Tenure::connect(&url)
        .await
        .expect("unauthenticated connect");
    let status = open.status(&name).await.expect("unauthenticated status");
    let _ = writeln!(out, "status: {status:?}");
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0].holder.key, holder);
    assert_eq!(status[0].holder.token, guard.token());

    // Other identities are refused at once, through tenure: B, A with a wrong password
    // (ZooKeeper accepts any digest password; the ACL check is what fails), and nobody.
    let b = connect_as(&url, B).await;
    let _ = writeln!(out, "b: {b:?}");
    let b_session = b.session().await.expect("B's session");
    let b_mutex = b_session.mutex(&name).expect("name");
    let refused = within("B's lock refused", PATIENCE, b_mutex.lock()).await;
    assert_denied(&mut out, "B lock", refused);
    let wrong = connect_as(&url, (A.0, "not-pa")).await;
    let wrong_session = wrong
        .session()
        .await
        .expect("session with a wrong password");
    let wrong_mutex = wrong_session.mutex(&name).expect("name");
    let refused = within("wrong password refused", PATIENCE, wrong_mutex.lock()).await;
    match &refused {
        Err(e) => assert!(e.to_string().contains("password is wrong"), "{e}"),
        Ok(_) => panic!("a wrong password queued under A's lock"),
    }
    assert_denied(&mut out, "wrong password lock", refused);
    let open_session = open.session().await.expect("unauthenticated session");
    let open_mutex = open_session.mutex(&name).expect("name");
    let refused = within("anonymous lock refused", PATIENCE, open_mutex.lock()).await;
    assert_denied(&mut out, "anonymous lock", refused);
    assert_eq!(
        admin.children(&name).await.len(),
        1,
        "a refused waiter left a node"
    );

    // A second connection of A's identity queues behind A and gets the lock on release.
    let a2 = connect_as(&url, A).await;
    let a2_session = a2.session().await.expect("A2's session");
    let a2_mutex = a2_session.mutex(&name).expect("name");
    let waiting = tokio::spawn(async move { a2_mutex.lock().await });
    admin.wait_children(&name, 2).await;
    let status = open.status(&name).await.expect("status with a waiter");
    assert_eq!((status.len(), status[0].waiters), (1, 1), "{status:?}");
    let first_token = guard.token();
    guard.unlock().await.expect("A unlocks");
    let next = within("A2 gets the lock", PATIENCE, waiting)
        .await
        .expect("join")
        .expect("A2 locks");
    assert!(next.token() > first_token);
    let (acl, _) = b_raw.get_acl(next.key()).await.expect("get A2's ACL");
    assert_owned_by(A.0, &acl, "A2's holder node");
    next.unlock().await.expect("A2 unlocks");
    assert!(admin.children(&name).await.is_empty());

    // Elections: an unauthenticated client sees A's leader; B cannot take over.
    let election = unique("elect");
    let leadership = a_session
        .election(&election)
        .expect("name")
        .campaign("a-leads")
        .await
        .expect("A campaigns");
    let seen = open_session
        .election(&election)
        .expect("name")
        .leader()
        .await
        .expect("unauthenticated leader()")
        .expect("a leader");
    assert_eq!(
        (seen.key.as_str(), seen.value.as_slice()),
        (leadership.key(), &b"a-leads"[..])
    );
    let b_election = b_session.election(&election).expect("name");
    let refused = within("B's campaign refused", PATIENCE, b_election.campaign("b")).await;
    assert_denied(&mut out, "B campaign", refused);
    assert_eq!(
        b_raw.delete(leadership.key(), None).await,
        Err(zk::Error::NoAuth),
        "B deleting A's leader node"
    );
    assert!(!leadership.is_lost());
    leadership.resign().await.expect("A resigns");

    for t in [&a, &a2, &b, &wrong, &open] {
        let _ = writeln!(out, "tenure: {t:?} url={}", t.url());
    }
    let text = capture.text();
    assert!(text.contains("B lock") && text.contains("DEBUG"), "{text}");
    assert!(
        !text.contains(B_PASSWORD),
        "B's password leaked into captured output:\n{text}"
    );
}

/// Digest credentials that ZooKeeper cannot take, and TLS options, are refused before
/// connecting, with the option named.
#[tokio::test]
async fn unusable_options_are_typed_errors() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port();
    let url = format!("zk://127.0.0.1:{closed}");
    let tls = Tenure::builder(&url).ca_file("ca.pem").connect().await;
    assert!(
        matches!(&tls, Err(Error::InvalidOption { option: "tls", reason, .. }) if reason.contains("TLS is not supported")),
        "{tls:?}"
    );
    let colon = Tenure::builder(&url)
        .credentials("a:b", "pw")
        .connect()
        .await;
    assert!(
        matches!(
            &colon,
            Err(Error::InvalidOption {
                option: "credentials",
                ..
            })
        ),
        "{colon:?}"
    );
    let no_user = Tenure::builder(&url).password("pw").connect().await;
    assert!(
        matches!(
            &no_user,
            Err(Error::InvalidOption {
                option: "credentials",
                ..
            })
        ),
        "{no_user:?}"
    );
}
