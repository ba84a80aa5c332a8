//! PostgreSQL-only clauses: listing without elections (C15), elections refused, the advisory
//! key layout other clients meet us on (sqlx's mapping and `advisory:<key>`), and a holder
//! whose server process is terminated.

use std::time::{Duration, Instant};

use super::fixture::postgres_fixture::PgAdmin;
use super::fixture::{eventually, Admin, Fixture};
use super::{listed_under, within};
use crate::backend::postgres::key::advisory_key;
use crate::{Error, LostReason};

fn admin(f: &Fixture) -> &PgAdmin {
    match &f.admin {
        Admin::Postgres(a) => a,
        #[allow(unreachable_patterns)]
        _ => panic!("not a PostgreSQL fixture"),
    }
}

/// C15 as `c15_status_lists_holders_and_waiters` checks it, without the election (refused on
/// PostgreSQL): a mutex held with two waiters and one held with a value of its own are listed
/// under their prefix, under `""` and under a prefix ending mid-name, each once with its
/// holder's key, token and value; nothing once released.
pub(crate) async fn p15_status_lists_holders_and_waiters(f: Fixture) {
    let prefix = f.name("status/");
    let jobs = f.name("status/jobs");
    let tagged = f.name("status/tagged");
    let a = f.tenure.session().await.unwrap();
    let held = a.mutex(&jobs).unwrap().lock().await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let m = f.tenure.session().await.unwrap().mutex(&jobs).unwrap();
        waiters.push(tokio::spawn(
            async move { m.lock().await.map(|g| g.token()) },
        ));
    }
    eventually("waiters queued", || async {
        f.admin.keys(&format!("{jobs}/")).await.len() == 3
    })
    .await;
    let tagged_guard = a
        .mutex(&tagged)
        .unwrap()
        .with_value("worker-7")
        .lock()
        .await
        .unwrap();
    let expected = vec![
        (
            jobs.clone(),
            held.key().to_string(),
            held.token(),
            crate::host_pid().into_bytes(),
            2,
        ),
        (
            tagged.clone(),
            tagged_guard.key().to_string(),
            tagged_guard.token(),
            b"worker-7".to_vec(),
            0,
        ),
    ];
    let t = &f.tenure;
    assert_eq!(listed_under(t, &prefix, &prefix).await, expected);
    assert_eq!(listed_under(t, "", &prefix).await, expected, "status(\"\")");
    let mid_name = f.name("status/jo");
    assert_eq!(listed_under(t, &mid_name, &prefix).await, expected[..1]);
    held.unlock().await.unwrap();
    for w in waiters {
        within("waiter", w).await.unwrap().unwrap();
    }
    tagged_guard.unlock().await.unwrap();
    eventually("nothing listed once released", || async {
        f.tenure.status(&prefix).await.unwrap().is_empty()
    })
    .await;
}

/// Elections are refused with a clear error (no notice of a leader's connection ending).
pub(crate) async fn p_elections_unsupported(f: Fixture) {
    let s = f.tenure.session().await.unwrap();
    match s.election(&f.name("elect")) {
        Err(Error::Unsupported { advice, .. }) => assert!(advice.contains("etcd"), "{advice}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// Read/write locks meet a peer's advisory locks on the name's key: readers are `ShareLock`
/// rows and a writer an `ExclusiveLock` row in `pg_locks`; a peer's `pg_advisory_lock_shared`
/// shares with our readers and keeps our writer out, and a writer waiting behind it keeps a
/// later reader of ours out too (no barging), until the peer lets go.
pub(crate) async fn p_rw_modes_and_peer_readers(f: Fixture) {
    let name = f.name("rw-peer");
    let key = advisory_key(&name);
    let peer = admin(&f);
    peer.run(&format!("SELECT pg_advisory_lock_shared({key})"))
        .await;
    let lock = |s: crate::Session| s.rwlock(&name).unwrap();
    let r = lock(f.tenure.session().await.unwrap())
        .try_read()
        .await
        .expect("a reader beside a peer's shared lock");
    let writer = lock(f.tenure.session().await.unwrap());
    assert!(matches!(
        writer.try_write().await,
        Err(Error::Locked { .. })
    ));
    let w = tokio::spawn(async move { writer.write().await.map(|g| g.token()) });
    eventually("the writer waits", || async {
        peer.modes(&name).await
            == vec![
                ("ShareLock".to_string(), true),
                ("ShareLock".to_string(), true),
                ("ExclusiveLock".to_string(), false),
            ]
    })
    .await;
    let late = lock(f.tenure.session().await.unwrap());
    assert!(
        matches!(
            late.try_read().await,
            Err(Error::Locked {
                holder: Some(_),
                ..
            })
        ),
        "a reader passed the waiting writer"
    );
    r.unlock().await.unwrap();
    assert!(!w.is_finished());
    peer.run(&format!("SELECT pg_advisory_unlock_shared({key})"))
        .await;
    let t = within("writer after the peer", w).await.unwrap().unwrap();
    let r2 = within("reader after the writer", late.read())
        .await
        .unwrap();
    assert!(r2.token() > t);
    assert_eq!(
        peer.modes(&name).await,
        vec![("ShareLock".to_string(), true)]
    );
    r2.unlock().await.unwrap();
}

/// A name and `advisory:<its key>` are one lock; a key no name maps to is listed as
/// `advisory:<key>`, and the holder's key names its server process.
pub(crate) async fn p_numeric_keys(f: Fixture) {
    let name = f.name("numeric");
    let key = advisory_key(&name);
    let s = f.tenure.session().await.unwrap();
    let g = s.mutex(&name).unwrap().lock().await.unwrap();
    let other = f.tenure.session().await.unwrap();
    let numeric = format!("advisory:{key}");
    // The holder is named by its server process, under the name the caller gave.
    let pid = g.key().rsplit_once('/').map(|(_, pid)| pid.to_string());
    match other.mutex(&numeric).unwrap().try_lock().await {
        Err(Error::Locked { holder, .. }) => {
            assert_eq!(holder, pid.map(|pid| format!("{numeric}/{pid}")))
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    g.unlock().await.unwrap();
    let g = other.mutex(&numeric).unwrap().try_lock().await.unwrap();
    assert!(matches!(
        s.mutex(&name).unwrap().try_lock().await,
        Err(Error::Locked { .. })
    ));
    // Listed under the name recorded by the first holder (names outlive their holders).
    let st = f.tenure.status(&name).await.unwrap();
    assert_eq!(st.len(), 1, "{st:?}");
    let pid = g.key().rsplit_once('/').map(|(_, pid)| pid);
    assert_eq!(
        (
            st[0].name.as_str(),
            st[0].holder.key.rsplit_once('/').map(|(_, p)| p)
        ),
        (name.as_str(), pid)
    );
    let unnamed = fastrand::i64(..);
    let n = format!("advisory:{unnamed}");
    let g2 = s.mutex(&n).unwrap().lock().await.unwrap();
    let st = f.tenure.status(&n).await.unwrap();
    assert_eq!((st.len(), st[0].name.as_str()), (1, n.as_str()));
    drop((g, g2));
}

/// C7a on PostgreSQL: `pg_terminate_backend` of the holder's connection fires its `lost()`
/// within a second, and the waiter is granted.
pub(crate) async fn p7_terminated_holder(f: Fixture) {
    let name = f.name("terminated");
    let s = f.tenure.session().await.unwrap();
    let g = s.mutex(&name).unwrap().lock().await.unwrap();
    let waiter = tokio::spawn({
        let m = f.tenure.session().await.unwrap().mutex(&name).unwrap();
        async move { m.lock().await.map(|g| (Instant::now(), g.token())) }
    });
    eventually("waiter queued", || async {
        f.admin.keys(&format!("{name}/")).await.len() == 2
    })
    .await;
    let killed = Instant::now();
    let told = async {
        let reason = g.lost().await;
        (reason, Instant::now())
    };
    let (_, told) = tokio::join!(admin(&f).delete(g.key()), async {
        tokio::time::timeout(Duration::from_secs(1), told).await
    });
    let (reason, told) = told.expect("lost() within a second of pg_terminate_backend");
    assert_eq!(reason, LostReason::EntryDeleted);
    let (granted, token) = within("waiter", waiter).await.unwrap().unwrap();
    assert!(token > g.token());
    eprintln!(
        "MEASURED p7_terminated_holder: after pg_terminate_backend, lost() fired in {:?} and the waiter was granted in {:?}",
        told.duration_since(killed),
        granted.duration_since(killed)
    );
    assert!(
        s.mutex(&f.name("other")).unwrap().try_lock().await.is_ok(),
        "the session lives on"
    );
}

/// A peer takes permits of a Tenure semaphore with `psql` on the documented slot keys
/// `(tag, i)`, tag = the low 32 bits of the sqlx key of `<name>#semaphore`: with two of three
/// slots held by the peer, Tenure gets one permit and then none, and another once the peer
/// lets one go; no slot is the key of the mutex of the same name.
pub(crate) async fn p_semaphore_peer_slots(f: Fixture) {
    let name = f.name("sem-peer");
    let tag = advisory_key(&format!("{name}#semaphore")) as i32;
    let peer = admin(&f);
    peer.run(&format!(
        "SELECT pg_advisory_lock({tag}, 0), pg_advisory_lock({tag}, 2)"
    ))
    .await;
    let s = f.tenure.session().await.unwrap();
    let pool = s.semaphore(&name, 3).unwrap();
    let mine = pool.try_acquire().await.unwrap();
    assert!(matches!(
        pool.try_acquire().await,
        Err(Error::Locked { .. })
    ));
    // The mutex of the same name is another key.
    s.mutex(&name)
        .unwrap()
        .try_lock()
        .await
        .unwrap()
        .unlock()
        .await
        .unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await })
    };
    peer.run(&format!("SELECT pg_advisory_unlock({tag}, 2)"))
        .await;
    let next = within("granted once the peer lets go", waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(next.token() > mine.token());
    peer.run(&format!("SELECT pg_advisory_unlock({tag}, 0)"))
        .await;
}
