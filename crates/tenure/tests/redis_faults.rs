//! Faults a Redis client must get through truthfully, against private `redis-server`
//! processes this test starts on free loopback ports.
//!
//! - An `unlock()` dropped while its release is being refused (the server turned read-only
//!   for a moment, so the compare-and-delete is never applied): the release still happens, in
//!   the background, and the session's renewal does not extend the lock meanwhile; a waiter
//!   gets it while the holder's session lives on (docs/contract.md, C13: every await point is
//!   safe to abandon). Likewise an `unlock()` whose every retry was refused.
//! - An `unlock()` refused for good (the ACL took `EVAL`/`EVALSHA` away for a moment): no
//!   retry follows, and the session's renewal must not keep the lock alive either.
//! - A server whose `maxmemory-policy` may evict fencing counters or locks is warned about at
//!   connect.
//! - `Error::Timeout` says whether the wait was queued behind a holder or retrying a failing
//!   store.
//! - A wait dropped after a release handed the lock over to it, before it saw the message,
//!   releases the lock to the next waiter (C5), long before the TTL would.
//! - The subscriber connection a client's waiters share is killed mid-wait, or lost with a
//!   server restart: waiters subscribe again on a new one and are woken by the next release,
//!   not by their fallback (the holder's TTL, far longer than the test's patience).

mod redis_support;
mod support;

use std::time::Duration;

use redis_support::{accept_writes, exists, redis_bin_or_skip, refuse_writes, resp, start_servers};
use support::{wait_for, within, PATIENCE};
use tenure::{Error, Tenure};

/// A private server of `test`'s own (it will refuse writes for a while) and a client with a
/// TTL far longer than any wait here, so a waiter can get a lock only because a release was
/// carried out, never because the lock expired.
async fn private_redis(test: &str) -> Option<(redis_support::RedisProcess, Tenure)> {
    let bin = redis_bin_or_skip(test)?;
    let server = start_servers(&bin, 1).await.remove(0);
    let tenure = Tenure::builder(&format!("redis://127.0.0.1:{}", server.port))
        .ttl(Duration::from_secs(120))
        .connect()
        .await
        .unwrap();
    Some((server, tenure))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_unlock_is_not_kept_alive_by_renewals() {
    // A TTL longer than the wait below, so that the waiter can get the lock only because the
    // abandoned release was carried out (in the background), not because the lock expired.
    let Some((server, tenure)) =
        private_redis("dropped_unlock_is_not_kept_alive_by_renewals").await
    else {
        return;
    };
    let name = "dropped-unlock";
    let holder = tenure.session().await.unwrap();
    let guard = holder.mutex(name).unwrap().lock().await.unwrap();
    let first = guard.token();

    refuse_writes(server.port);
    let mut unlock = Box::pin(guard.unlock());
    // Refused releases are retried with backoff (over a second in all), so after the first
    // refusal the future is still pending: dropped mid-release.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut unlock)
            .await
            .is_err(),
        "unlock finished although every release was refused"
    );
    drop(unlock);
    assert!(exists(server.port, name), "the refused release was applied");
    accept_writes(server.port);

    // The guard's background release retries until the store accepts it; meanwhile the
    // session keeps renewing (it is still alive at the end), but not this lock.
    let waiter = tenure.session().await.unwrap();
    let next = tokio::time::timeout(PATIENCE, waiter.mutex(name).unwrap().lock())
        .await
        .expect("the abandoned lock was neither released nor let go: the waiter never got it")
        .unwrap();
    assert!(next.token() > first);
    assert!(
        !holder.is_lost(),
        "the holder's session died; renewals were not tested"
    );
    next.unlock().await.unwrap();
    assert!(!exists(server.port, name));
}

/// An unlock whose every retry was refused (transiently) reports the fault, and the guard
/// then releases in the background once the store takes writes again: a waiter gets the lock
/// long before its TTL could have let it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_unlock_is_released_in_the_background() {
    let Some((server, tenure)) = private_redis("failed_unlock_is_released_in_the_background").await
    else {
        return;
    };
    let name = "failed-unlock";
    let holder = tenure.session().await.unwrap();
    let guard = holder.mutex(name).unwrap().lock().await.unwrap();
    refuse_writes(server.port);
    let err = guard.unlock().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(exists(server.port, name), "the refused release was applied");
    accept_writes(server.port);
    let waiter = tenure.session().await.unwrap();
    tokio::time::timeout(PATIENCE, waiter.mutex(name).unwrap().lock())
        .await
        .expect("the failed unlock was not carried out in the background")
        .unwrap()
        .unlock()
        .await
        .unwrap();
    assert!(!holder.is_lost());
}

/// An unlock refused for good is not retried (only transient faults are); the lock then
/// expires within one TTL, because renewal no longer extends it, and a waiter gets it while the
/// holder's session lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_unlock_is_not_kept_alive_by_renewals() {
    let Some(bin) = redis_bin_or_skip("refused_unlock_is_not_kept_alive_by_renewals") else {
        return;
    };
    let server = start_servers(&bin, 1).await.remove(0);
    let port = server.port;
    assert_eq!(
        resp(port, "ACL SETUSER app on >pw ~* &* +@all").as_deref(),
        Some("+OK")
    );
    let tenure = Tenure::builder(&format!("redis://app:pw@127.0.0.1:{port}"))
        .ttl(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let name = "refused-unlock";
    let holder = tenure.session().await.unwrap();
    let guard = holder.mutex(name).unwrap().lock().await.unwrap();
    let first = guard.token();

    assert_eq!(
        resp(port, "ACL SETUSER app -eval -evalsha").as_deref(),
        Some("+OK")
    );
    let err = guard.unlock().await.unwrap_err();
    assert_eq!(
        resp(port, "ACL SETUSER app +eval +evalsha").as_deref(),
        Some("+OK")
    );
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    assert!(exists(port, name), "the refused release was applied");

    let waiter = tenure.session().await.unwrap();
    let next = tokio::time::timeout(PATIENCE, waiter.mutex(name).unwrap().lock())
        .await
        .expect("the refused lock is still renewed: the waiter never got it")
        .unwrap();
    assert!(next.token() > first);
    assert!(
        !holder.is_lost(),
        "the holder's session died; renewals were not tested"
    );
    next.unlock().await.unwrap();
}

/// A server that may evict what locks rest on is warned about at connect, naming the policy,
/// the risk and the fix: `allkeys-*` may evict fencing counters (so tokens could repeat),
/// `volatile-*` held locks; `noeviction` is quiet.
#[tokio::test]
async fn eviction_policies_are_warned_about() {
    let Some(bin) = redis_bin_or_skip("eviction_policies_are_warned_about") else {
        return;
    };
    let connect = |port: u16| async move {
        Tenure::connect(&format!("redis://127.0.0.1:{port}"))
            .await
            .unwrap()
    };
    let (log, _guard) = support::capture_tracing();
    let quiet = start_servers(&bin, 1).await;
    connect(quiet[0].port).await;
    assert!(!log.text().contains("maxmemory-policy"), "{}", log.text());
    for (policy, risk) in [
        ("allkeys-lru", "fencing counters"),
        ("volatile-ttl", "held locks"),
    ] {
        let server = redis_support::start_servers_with(
            &bin,
            1,
            &["--maxmemory", "100mb", "--maxmemory-policy", policy],
        )
        .await;
        connect(server[0].port).await;
        let text = log.text();
        assert!(text.contains(policy) && text.contains(risk), "{text}");
        assert!(text.contains("noeviction"), "{text}");
    }
}

/// `Error::Timeout` says what the wait was doing: queued behind a holder, or retrying a
/// store that refused every attempt (READONLY here), with the store's last error — not
/// "held by someone else" when nobody held it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_says_what_the_wait_was_doing() {
    let Some(bin) = redis_bin_or_skip("timeout_says_what_the_wait_was_doing") else {
        return;
    };
    let server = start_servers(&bin, 1).await.remove(0);
    let tenure = Tenure::connect(&format!("redis://127.0.0.1:{}", server.port))
        .await
        .unwrap();
    let name = "timeout-stage";
    let (a, b) = (
        tenure.session().await.unwrap(),
        tenure.session().await.unwrap(),
    );
    let guard = a.mutex(name).unwrap().lock().await.unwrap();
    let err = b
        .mutex(name)
        .unwrap()
        .lock_timeout(Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("held by someone else"), "{err}");
    guard.unlock().await.unwrap();
    // The timed-out wait withdraws in the background (C5); until then the release may have
    // handed the lock over to it, and its withdrawal passes the lock on (here: to nobody).
    wait_for("the timed-out wait withdrawn", PATIENCE, || async {
        let queue = resp(server.port, &format!("LLEN tenure:queue:{name}"));
        (!exists(server.port, name) && queue.as_deref() == Some(":0")).then_some(())
    })
    .await;

    refuse_writes(server.port);
    let err = b
        .mutex(name)
        .unwrap()
        .lock_timeout(Duration::from_millis(500))
        .await
        .unwrap_err();
    accept_writes(server.port);
    let text = err.to_string();
    assert!(matches!(err, Error::Timeout { .. }), "{text}");
    assert!(!text.contains("held by someone else"), "{text}");
    assert!(
        text.contains("read only") && text.contains("retried"),
        "{text}"
    );
    assert!(!exists(server.port, name));
    b.mutex(name)
        .unwrap()
        .lock()
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
}

/// The channels subscribed on the server at `port` for waiters of lock `name`.
fn wake_channels(port: u16, name: &str) -> Option<String> {
    resp(port, &format!("PUBSUB CHANNELS tenure:wake:{name}:*"))
}

/// The id of the server's (first) subscriber connection, from `CLIENT LIST TYPE pubsub`.
fn subscriber_id(port: u16) -> Option<String> {
    let line = resp(port, "CLIENT LIST TYPE pubsub")?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("id="))
        .map(str::to_string)
}

/// Waits until the waiter on `name` has subscribed; the subscriber connection's id.
async fn subscribed(port: u16, name: &str) -> String {
    wait_for("the waiter subscribed", PATIENCE, || async {
        let one = wake_channels(port, name).as_deref() == Some("*1");
        one.then(|| subscriber_id(port)).flatten()
    })
    .await
}

/// A waiter whose subscriber connection (shared by the client's waiters:
/// backend/redis/subscriber.rs) is killed while it waits subscribes again on a new one, and is
/// woken by the release; its fallback (the holder's PTTL, 120 s) would be too late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_resubscribes_when_its_connection_drops() {
    let Some((server, tenure)) =
        private_redis("waiter_resubscribes_when_its_connection_drops").await
    else {
        return;
    };
    let (port, name) = (server.port, "resubscribe");
    let holder = tenure.session().await.unwrap();
    let guard = holder.mutex(name).unwrap().lock().await.unwrap();
    let first = guard.token();
    let waiter = tenure.session().await.unwrap();
    let mutex = waiter.mutex(name).unwrap();
    let waiting = tokio::spawn(async move { mutex.lock().await });
    let old = subscribed(port, name).await;
    assert_eq!(resp(port, "CLIENT KILL TYPE pubsub").as_deref(), Some(":1"));
    wait_for("subscribed on a new connection", PATIENCE, || async {
        let one = wake_channels(port, name).as_deref() == Some("*1");
        let new = subscriber_id(port).is_some_and(|id| id != old);
        (one && new).then_some(())
    })
    .await;
    guard.unlock().await.unwrap();
    let next = within("the woken waiter's grant", PATIENCE, waiting)
        .await
        .unwrap()
        .expect("lock");
    assert!(next.token() > first);
    next.unlock().await.unwrap();
    assert!(!holder.is_lost() && !waiter.is_lost());
}

/// A server restart (empty: no persistence) ends the subscriber connection; the next waiter
/// opens a new one and is woken by the release, not by its fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_woken_after_a_server_restart() {
    let Some((mut server, tenure)) =
        private_redis("waiters_are_woken_after_a_server_restart").await
    else {
        return;
    };
    let (port, name) = (server.port, "restarted");
    for round in 0..2 {
        if round == 1 {
            server.restart().await;
        }
        // New sessions each round: the restart took the old ones' heartbeats.
        let holder = tenure.session().await.unwrap();
        let guard = holder.mutex(name).unwrap().lock().await.unwrap();
        let waiter = tenure.session().await.unwrap();
        let mutex = waiter.mutex(name).unwrap();
        let waiting = tokio::spawn(async move { mutex.lock().await });
        subscribed(port, name).await;
        guard.unlock().await.unwrap();
        within(
            &format!("round {round}: the woken waiter's grant"),
            PATIENCE,
            waiting,
        )
        .await
        .unwrap()
        .expect("lock")
        .unlock()
        .await
        .unwrap();
    }
}

/// A release hands the lock over to the queue's head in its own script; the head learns of it
/// from a message. A head whose wait is dropped before it read that message (its runtime is
/// frozen meanwhile, then the wait aborted before it is polled again) must still let the lock
/// go: its cleanup finds the lock holding its value and releases it, handing it on to the next
/// waiter (docs/contract.md, C5), long before the TTL (120 s) would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_dropped_after_the_hand_over_passes_the_lock_on() {
    let Some((server, tenure)) =
        private_redis("wait_dropped_after_the_hand_over_passes_the_lock_on").await
    else {
        return;
    };
    let (port, name) = (server.port, "dropped-after-hand-over");
    let holder = tenure.session().await.unwrap();
    let guard = holder.mutex(name).unwrap().lock().await.unwrap();

    // The first waiter runs on a runtime (and client) of its own, so that blocking that
    // runtime's one thread freezes its wait and its subscriber connection's reader.
    let (freeze, frozen_in) = tokio::sync::oneshot::channel::<()>();
    let (frozen, is_frozen) = std::sync::mpsc::channel::<()>();
    let (thaw, thawed) = std::sync::mpsc::channel::<()>();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let url = format!("redis://127.0.0.1:{port}");
    let first = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = Tenure::builder(&url)
                .ttl(Duration::from_secs(120))
                .connect()
                .await
                .unwrap();
            let session = client.session().await.unwrap();
            let mutex = session.mutex(name).unwrap();
            let wait = tokio::spawn(async move { mutex.lock().await });
            frozen_in.await.unwrap();
            frozen.send(()).unwrap();
            // Blocks the runtime: nothing of this client runs until the thaw.
            thawed.recv().unwrap();
            wait.abort();
            let outcome = wait.await;
            assert!(
                outcome.as_ref().is_err_and(|e| e.is_cancelled()),
                "the wait was not dropped unwoken: {:?}",
                outcome.map(|r| r.map(|g| g.token()))
            );
            // Keeps the runtime (and the dropped wait's background cleanup) running.
            finished.await.unwrap();
        });
    });
    wait_for("the first waiter queued", PATIENCE, || async {
        (resp(port, &format!("LLEN tenure:queue:{name}")).as_deref() == Some(":1")).then_some(())
    })
    .await;
    subscribed(port, name).await;
    let second = tenure.session().await.unwrap();
    let mutex = second.mutex(name).unwrap();
    let next = tokio::spawn(async move { mutex.lock().await });
    wait_for("the second waiter queued", PATIENCE, || async {
        (resp(port, &format!("LLEN tenure:queue:{name}")).as_deref() == Some(":2")).then_some(())
    })
    .await;

    freeze.send(()).unwrap();
    tokio::task::spawn_blocking(move || is_frozen.recv())
        .await
        .unwrap()
        .unwrap();
    guard.unlock().await.unwrap();
    assert!(exists(port, name), "the release did not hand the lock over");
    assert_eq!(
        resp(port, &format!("LLEN tenure:queue:{name}")).as_deref(),
        Some(":1"),
        "the head was not taken off the queue"
    );
    thaw.send(()).unwrap();
    let got = within("the second waiter's grant", PATIENCE, next)
        .await
        .unwrap()
        .expect("lock");
    got.unlock().await.unwrap();
    done.send(()).unwrap();
    first.join().unwrap();
}
