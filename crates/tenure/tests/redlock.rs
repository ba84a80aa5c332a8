//! Redlock over 3 and 5 `redis-server` processes this test starts on free loopback ports:
//! with a minority of masters killed the lock still works (acquire, exclusion, renewal,
//! release); with a majority killed, acquiring fails with a clear error and leaves nothing held
//! on the survivors, and a holder's `lost()` fires. A master that comes back empty (restarted
//! without persistence while we hold, or down when the session opened) is repaired by the
//! next renewal — session key, our lock (if still free there) and fencing counter — so the
//! session then survives losing another master.

mod redis_support;
mod support;

use std::time::Duration;

use redis_support::{exists, redis_bin_or_skip, resp, start_servers, RedisProcess};
use support::{wait_for, PATIENCE};
use tenure::{Error, Tenure};

fn url(servers: &[RedisProcess]) -> String {
    let hosts: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    format!("redlock://{}", hosts.join(","))
}

fn pttl(port: u16, key: &str) -> i64 {
    resp(port, &format!("PTTL {key}"))
        .and_then(|l| l.trim_start_matches(':').parse().ok())
        .unwrap_or(-3)
}

async fn setup(n: usize, test: &str) -> Option<(Vec<RedisProcess>, Tenure)> {
    let bin = redis_bin_or_skip(test)?;
    let servers = start_servers(&bin, n).await;
    let tenure = Tenure::builder(&url(&servers))
        .ttl(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect to Redlock masters");
    assert_eq!(tenure.backend(), "redlock");
    Some((servers, tenure))
}

/// Kills `kill` of `n` masters (a minority): lock, exclusion, renewal and release still work.
async fn survives_minority(n: usize, kill: usize, test: &str) {
    let Some((mut servers, tenure)) = setup(n, test).await else {
        return;
    };
    let name = "redlock-minority";
    let a = tenure.session().await.unwrap();
    let b = tenure.session().await.unwrap();
    let g = a.mutex(name).unwrap().lock().await.unwrap();
    assert!(servers.iter().all(|s| exists(s.port, name)));
    let t1 = g.token();
    g.unlock().await.unwrap();
    assert!(servers.iter().all(|s| !exists(s.port, name)));

    for s in servers.iter_mut().take(kill) {
        s.kill();
    }
    let alive: Vec<u16> = servers.iter().skip(kill).map(|s| s.port).collect();
    let g = a.mutex(name).unwrap().lock().await.unwrap();
    assert!(g.token() > t1, "token must grow across holders");
    assert!(alive.iter().all(|p| exists(*p, name)));
    assert!(matches!(
        b.mutex(name).unwrap().try_lock().await,
        Err(Error::Locked { .. })
    ));
    // Renewal by majority: between renewals a key's PTTL only falls, so a rise is a renewal.
    for round in 0..2 {
        let mut last = pttl(alive[0], name);
        wait_for(
            &format!("renewal {round} seen on a survivor"),
            PATIENCE,
            || {
                let now = pttl(alive[0], name);
                let rose = now > last;
                last = now;
                async move { rose.then_some(()) }
            },
        )
        .await;
    }
    assert!(!g.is_lost() && !a.is_lost());
    let waiter = tokio::spawn({
        let m = b.mutex(name).unwrap();
        async move { m.lock().await.map(|g| g.token()) }
    });
    let t2 = g.token();
    g.unlock().await.unwrap();
    let t3 = tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("waiter gets the lock")
        .unwrap()
        .unwrap();
    assert!(t3 > t2);
}

/// Kills a majority: acquiring fails with a clear error and leaves nothing on the survivors;
/// a lock held when the majority died reports itself lost; connecting is refused.
async fn fails_cleanly_without_majority(n: usize, test: &str) {
    let Some((mut servers, tenure)) = setup(n, test).await else {
        return;
    };
    let (held, name) = ("redlock-held", "redlock-majority");
    let s = tenure.session().await.unwrap();
    let s2 = tenure
        .session_with_ttl(Duration::from_secs(30))
        .await
        .unwrap();
    let s3 = tenure
        .session_with_ttl(Duration::from_secs(30))
        .await
        .unwrap();
    let g = s.mutex(held).unwrap().lock().await.unwrap();
    let majority = n / 2 + 1;
    for p in servers.iter_mut().take(majority) {
        p.kill();
    }
    let alive: Vec<u16> = servers.iter().skip(majority).map(|s| s.port).collect();

    let err = s2.mutex(name).unwrap().lock().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("majority"), "{err}");
    assert!(alive.iter().all(|p| !exists(*p, name)), "left a key behind");
    // (Another session: s2's cleanup of its failed attempt still holds s2's local permit.)
    let err = s3.mutex(name).unwrap().try_lock().await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(alive.iter().all(|p| !exists(*p, name)), "left a key behind");

    tokio::time::timeout(PATIENCE, g.lost())
        .await
        .expect("holder told it lost the lock");
    let refused = Tenure::connect(&url(&servers)).await.unwrap_err();
    assert!(matches!(refused, Error::Unreachable { .. }), "{refused}");
}

/// One master comes back empty while we hold: after `down_at_open`, a master that was down
/// when the session opened and the lock was taken; otherwise one restarted while holding.
/// The next renewals put the session, the lock and its counter back on it; then another
/// master dies, and the session and the lock live on (2 of 3).
async fn repairs_a_master_then_survives_another_fault(down_at_open: bool, test: &str) {
    let Some((mut servers, tenure)) = setup(3, test).await else {
        return;
    };
    let name = "redlock-repair";
    if down_at_open {
        servers[0].kill();
    }
    let s = tenure.session().await.unwrap();
    let g = s.mutex(name).unwrap().lock().await.unwrap();
    let t1 = g.token();
    servers[0].restart().await;
    let (port, session) = (servers[0].port, format!("tenure:session:{:016x}", s.id()));
    assert!(!exists(port, &session) && !exists(port, name));
    wait_for("the empty master repaired", PATIENCE, || {
        let repaired = exists(port, &session) && exists(port, name);
        async move { repaired.then_some(()) }
    })
    .await;
    let fence = resp(port, &format!("GET {name}:fence"));
    assert_eq!(
        fence,
        Some(t1.get().to_string()),
        "fencing counter not raised"
    );

    servers[1].kill();
    for round in 0..2 {
        let mut last = pttl(port, name);
        wait_for(
            &format!("renewal {round} on the repaired master"),
            PATIENCE,
            || {
                let now = pttl(port, name);
                let rose = now > last;
                last = now;
                async move { rose.then_some(()) }
            },
        )
        .await;
    }
    assert!(!g.is_lost() && !s.is_lost(), "lost after the second fault");
    let other = tenure.session().await.unwrap();
    assert!(matches!(
        other.mutex(name).unwrap().try_lock().await,
        Err(Error::Locked { .. })
    ));
    g.unlock().await.unwrap();
    let g2 = other.mutex(name).unwrap().lock().await.unwrap();
    assert!(g2.token() > t1);
    g2.unlock().await.unwrap();
    assert!(!exists(port, name) && !exists(servers[2].port, name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_restarted_while_holding_is_repaired() {
    repairs_a_master_then_survives_another_fault(
        false,
        "master_restarted_while_holding_is_repaired",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_down_at_session_open_is_repaired() {
    repairs_a_master_then_survives_another_fault(true, "master_down_at_session_open_is_repaired")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_one_killed_still_works() {
    survives_minority(3, 1, "three_masters_one_killed_still_works").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_masters_two_killed_still_works() {
    survives_minority(5, 2, "five_masters_two_killed_still_works").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_majority_killed_fails_cleanly() {
    fails_cleanly_without_majority(3, "three_masters_majority_killed_fails_cleanly").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_masters_majority_killed_fails_cleanly() {
    fails_cleanly_without_majority(5, "five_masters_majority_killed_fails_cleanly").await;
}
