//! Redis-only clauses: what replaces C3 (no starvation instead of FIFO), the exact key layout
//! other clients meet us on, C4's and C5's Redis-specific traps, and elections being refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::fixture::redis_fixture::RedisAdmin;
use super::fixture::{eventually, Admin, Fixture};
use super::{read_u64, within, write_held};
use crate::{Error, LostReason, Write};

fn admin(f: &Fixture) -> &RedisAdmin {
    match &f.admin {
        Admin::Redis(a) => a,
        #[allow(unreachable_patterns)]
        _ => panic!("not a Redis fixture"),
    }
}

/// Instead of C3: 20 contenders, 5 rounds each, all behind a holder at the start; every one
/// of them gets the lock every time (none starves), exclusion holds, tokens increase.
pub(crate) async fn r3_no_starvation_20_contenders(f: Fixture) {
    let (contenders, rounds) = (20, 5);
    let name = f.name("starve");
    let value_key = f.name("starve-count");
    let gate = f.tenure.session().await.unwrap();
    let gate = gate.mutex(&name).unwrap().lock().await.unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..contenders {
        let (tenure, name, value_key, inside) = (
            f.tenure.clone(),
            name.clone(),
            value_key.clone(),
            inside.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let session = tenure.session().await.unwrap();
            let m = session.mutex(&name).unwrap();
            let mut got = 0;
            let mut last = 0;
            for _ in 0..rounds {
                // Each wait is bounded, not the whole run (see c1).
                let g = within("lock", m.lock()).await.unwrap();
                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                assert!(g.token().get() > last, "token did not increase");
                last = g.token().get();
                let n = read_u64(tenure.read(&value_key).await.unwrap());
                write_held(
                    &tenure,
                    &g,
                    Write::put(value_key.clone(), (n + 1).to_string()),
                )
                .await
                .unwrap();
                inside.fetch_sub(1, Ordering::SeqCst);
                g.unlock().await.unwrap();
                got += 1;
            }
            got
        }));
    }
    eventually("all contenders waiting", || async {
        admin(&f).waiters(&name).await == contenders
    })
    .await;
    gate.unlock().await.unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap(), rounds);
    }
    let total = read_u64(f.tenure.read(&value_key).await.unwrap());
    assert_eq!(total, (contenders * rounds) as u64);
}

/// The layout redis-py and redsync meet us on: the lock name is the key, its value is our
/// random token (prefixed by the session id), and the fencing token is `INCR <name>:fence`.
pub(crate) async fn r2_layout_and_fence_key(f: Fixture) {
    let name = f.name("layout");
    let s = f.tenure.session().await.unwrap();
    let g = s.mutex(&name).unwrap().lock().await.unwrap();
    assert_eq!(g.key(), name);
    let value = admin(&f).get(&name).await.expect("lock key");
    assert!(value.starts_with(&format!("{:016x}", s.id())), "{value}");
    assert_eq!(admin(&f).fence(&name).await, g.token().get());
    g.unlock().await.unwrap();
    assert_eq!(admin(&f).get(&name).await, None);
    // The counter outlives the lock, so the next holder's token is larger.
    let g2 = s.mutex(&name).unwrap().lock().await.unwrap();
    assert_eq!(admin(&f).fence(&name).await, g2.token().get());
}

/// C4 on Redis: a failed try_lock neither writes the key nor advances the fencing counter
/// (on Redlock: never moves it back), and subscribes to nothing.
pub(crate) async fn r4_failed_try_lock_leaves_no_trace(f: Fixture) {
    let name = f.name("trace");
    let a = f.tenure.session().await.unwrap();
    let b = f.tenure.session().await.unwrap();
    let g = a.mutex(&name).unwrap().lock().await.unwrap();
    let (value, fence) = (admin(&f).get(&name).await, admin(&f).fence(&name).await);
    for _ in 0..5 {
        let err = b.mutex(&name).unwrap().try_lock().await.unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
    }
    assert_eq!(admin(&f).get(&name).await, value);
    let after = admin(&f).fence(&name).await;
    if f.tenure.backend() == "redlock" {
        // A master restarted empty (the `redlock_restarted` fixture) has lost its copy of the
        // lock, so a try grants there and counts that master's fence up before the attempt
        // fails for want of a majority and is withdrawn. Redlock's counters are per master:
        // the fence may only grow, which keeps every later token larger (C2).
        assert!(after >= fence, "fence went back: {fence} -> {after}");
    } else {
        assert_eq!(after, fence);
    }
    assert_eq!(admin(&f).waiters(&name).await, 0);
    g.unlock().await.unwrap();
}

/// C5 on Redis: a lock() cancelled at any point — even with its SET in flight or just
/// applied — leaves no key behind: the interrupted acquire is compare-and-deleted.
pub(crate) async fn r5_cancelled_mid_set_leaves_nothing(f: Fixture) {
    let name = f.name("midset");
    for i in 0..40 {
        let s = f.tenure.session().await.unwrap();
        let m = s.mutex(&name).unwrap();
        let task = tokio::spawn(async move { m.lock().await.map(drop) });
        for _ in 0..(i % 8) {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
        eventually("interrupted acquire cleaned up", || async {
            admin(&f).keys(&format!("{name}/")).await.is_empty()
        })
        .await;
        s.close().await.unwrap();
    }
}

/// C7a on Redis: a lock taken over (overwritten) by someone else fires lost().
pub(crate) async fn r7_taken_over_is_lost(f: Fixture) {
    let name = f.name("takeover");
    let s = f.tenure.session().await.unwrap();
    let g = s.mutex(&name).unwrap().lock().await.unwrap();
    f.tenure
        .write([Write::put(name.clone(), "someone-else")])
        .await
        .unwrap();
    assert_eq!(
        within("lost on takeover", g.lost()).await,
        LostReason::EntryDeleted
    );
    assert!(matches!(g.unlock().await, Err(Error::LockLost { .. })));
    assert_eq!(admin(&f).get(&name).await.as_deref(), Some("someone-else"));
}

/// Elections are refused with a clear error (see the backend's docs for why).
pub(crate) async fn r_elections_unsupported(f: Fixture) {
    let s = f.tenure.session().await.unwrap();
    match s.election(&f.name("elect")) {
        Err(Error::Unsupported { advice, .. }) => assert!(advice.contains("etcd"), "{advice}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// Listing (C15) on one instance: only keys registered with `put_ephemeral` can be listed
/// (they are indexed; see backend/redis/ephemeral.rs), never a lock, so `status` lists them
/// and nothing else. Ephemeral keys keep their semantics here (issue 16): another session's
/// key is refused, the owner's re-put replaces it, an operator's delete is survived by the
/// session (not lost, as a lock would be), and closing the session deletes the key with its
/// index and owner entries.
pub(crate) async fn r_status_lists_registered_keys_only(f: Fixture) {
    let s = f.tenure.session().await.unwrap();
    let _held = s.mutex(&f.name("held")).unwrap().lock().await.unwrap();
    let key = f.name("registered");
    s.put_ephemeral(&key, "here").await.unwrap();
    let other = f.tenure.session().await.unwrap();
    assert!(matches!(
        other.put_ephemeral(&key, "impostor").await,
        Err(Error::Locked { .. })
    ));
    s.put_ephemeral(&key, "again").await.unwrap();
    for prefix in [f.name(""), String::new()] {
        let listed = f.tenure.status(&prefix).await.unwrap();
        let ours: Vec<_> = listed
            .iter()
            .filter(|st| st.name.starts_with(&f.name("")))
            .collect();
        assert_eq!(ours.len(), 1, "{prefix:?}: {listed:?}");
        assert!(ours[0].registered && ours[0].name == key, "{ours:?}");
        assert_eq!(ours[0].holder.value, b"again".to_vec());
        assert!(ours[0].holder_ttl.is_some(), "{ours:?}");
    }
    admin(&f).delete(&key).await;
    s.put_ephemeral(&key, "back").await.unwrap();
    assert!(!s.is_lost());
    assert_eq!(f.tenure.read(&key).await.unwrap(), Some(b"back".to_vec()));
    s.close().await.unwrap();
    assert_eq!(f.tenure.read(&key).await.unwrap(), None);
    let listed = f.tenure.status(&f.name("")).await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

/// Listing (C15) is refused with a clear error on Redlock: Redis cannot list keys under a
/// prefix in order, and the lock key's value is the owner token, not a holder value.
pub(crate) async fn r_status_unsupported(f: Fixture) {
    let s = f.tenure.session().await.unwrap();
    let _held = s.mutex(&f.name("held")).unwrap().lock().await.unwrap();
    for prefix in [f.name(""), String::new()] {
        match f.tenure.status(&prefix).await {
            Err(Error::Unsupported { advice, .. }) => {
                assert!(advice.contains("redis-cli"), "{advice}")
            }
            other => panic!("expected Unsupported for {prefix:?}, got {other:?}"),
        }
    }
}

/// The layout's reserved names (C12 on Redis): lock `N`'s fencing counter is `N:fence` and
/// session heartbeats are `tenure:session:<id>`, so no lock may be named `…:fence` or
/// `tenure:…` (it would hold another lock's counter, which has no TTL, or a session's
/// heartbeat), and no write may target them; both are refused as `InvalidName`, touching
/// nothing. Reading them is allowed.
pub(crate) async fn r12_reserved_names_refused(f: Fixture) {
    let name = f.name("reserved");
    let s = f.tenure.session().await.unwrap();
    let g = s.mutex(&name).unwrap().lock().await.unwrap();
    let fence = admin(&f).fence(&name).await;
    let session = crate::backend::redis::scripts::session_key(s.id());
    let heartbeat = admin(&f).get(&session).await;
    assert!(heartbeat.is_some(), "no heartbeat key {session}");
    for bad in [format!("{name}:fence"), session.clone(), "tenure:x".into()] {
        let m = s.mutex(&bad).unwrap();
        let waited = within("lock on a reserved name", m.lock()).await;
        for res in [m.try_lock().await.map(drop), waited.map(drop)] {
            match res {
                Err(Error::InvalidName { reason, .. }) => {
                    assert!(reason.contains("reserved"), "{bad}: {reason}")
                }
                other => panic!("{bad}: expected InvalidName, got {other:?}"),
            }
        }
        let err = f
            .tenure
            .write([Write::put(bad.clone(), "1")])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad}: {err}");
        let err = g.write([Write::put(bad.clone(), "1")]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad}: {err}");
    }
    assert_eq!(admin(&f).fence(&name).await, fence, "fence counter touched");
    assert_eq!(
        admin(&f).get(&session).await,
        heartbeat,
        "heartbeat touched"
    );
    let counter = f.tenure.read(&format!("{name}:fence")).await.unwrap();
    assert_eq!(counter, Some(fence.to_string().into_bytes()));
    g.unlock().await.unwrap();
}
