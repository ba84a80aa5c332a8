//! Election clauses, on every backend: one leader, arrival-order succession, fail-over,
//! ordered observation, clean cancellation, conditional proclaim and resign.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use super::fixture::{eventually, Fixture};
use super::within;
use crate::{Error, Leader, Leadership, LostReason, Observer};

/// At most one leader among many concurrent candidates, and every candidate leads once.
pub(crate) async fn e1_single_leader_among_many(f: Fixture) {
    let name = f.name("single");
    let inside = Arc::new(AtomicUsize::new(0));
    let led = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let session = f.tenure.session().await.unwrap();
        let (name, inside, led) = (name.clone(), inside.clone(), led.clone());
        tasks.push(tokio::spawn(async move {
            let e = session.election(&name).unwrap();
            let l = e.campaign(format!("c{i}")).await.unwrap();
            assert_eq!(
                inside.fetch_add(1, Ordering::SeqCst),
                0,
                "two leaders at once"
            );
            let seen = e.leader().await.unwrap().expect("a leader");
            assert_eq!((seen.key.as_str(), seen.token), (l.key(), l.token()));
            inside.fetch_sub(1, Ordering::SeqCst);
            led.fetch_add(1, Ordering::SeqCst);
            l.resign().await.unwrap();
        }));
    }
    for t in tasks {
        within("candidate", t).await.unwrap();
    }
    assert_eq!(led.load(Ordering::SeqCst), 10);
}

/// The succession scenario both observe tests run: an observer opened first (it has seen
/// "nobody"), a gate leader, and five candidates queued behind the gate in a known order,
/// each of which leads, proclaims a second value and resigns once the gate resigns.
pub(crate) struct Succession {
    pub observer: Observer,
    pub gate: Leadership,
    pub gate_leader: Leader,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
    actual: Arc<StdMutex<Vec<Option<Leader>>>>,
}

impl Succession {
    /// Opens the observer, takes the gate, and queues the five candidates one by one.
    pub(crate) async fn queue(f: &Fixture, name: &str) -> Succession {
        let prefix = format!("{name}/");
        let watcher = f.tenure.session().await.unwrap().election(name).unwrap();
        let mut observer = watcher.observe();
        let first = within("first observation", observer.next()).await;
        assert_eq!(first.unwrap().unwrap(), None);
        // The gate holds everyone back until all five have arrived.
        let gate = f.tenure.session().await.unwrap();
        let gate = gate.election(name).unwrap().campaign("gate").await.unwrap();
        let gate_leader = Leader {
            key: gate.key().to_string(),
            value: b"gate".to_vec(),
            token: gate.token(),
        };
        let actual = Arc::new(StdMutex::new(vec![None, Some(gate_leader.clone())]));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let session = f.tenure.session().await.unwrap();
            tasks.push(tokio::spawn(lead_once(
                session,
                name.to_string(),
                i,
                actual.clone(),
            )));
            eventually("candidate queued", || async {
                f.admin.keys(&prefix).await.len() == i + 2
            })
            .await;
        }
        Succession {
            observer,
            gate,
            gate_leader,
            tasks,
            actual,
        }
    }

    /// Resigns the gate, checks the candidates led in arrival order, and returns the observer
    /// with what actually held, in order: nobody, the gate, each candidate with its first and
    /// its proclaimed value, nobody.
    pub(crate) async fn run(self) -> (Observer, Vec<Option<Leader>>) {
        self.gate.resign().await.unwrap();
        let mut order = Vec::new();
        for t in self.tasks {
            order.push(within("candidate", t).await.unwrap());
        }
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
        let mut actual = self.actual.lock().unwrap().clone();
        actual.push(None);
        (self.observer, actual)
    }
}

/// Candidate `i`: campaigns, records itself, proclaims a second value, records that, resigns.
async fn lead_once(
    session: crate::Session,
    name: String,
    i: usize,
    actual: Arc<StdMutex<Vec<Option<Leader>>>>,
) -> usize {
    let l = session
        .election(&name)
        .unwrap()
        .campaign(format!("v{i}"))
        .await
        .unwrap();
    let me = |value: String| Leader {
        key: l.key().to_string(),
        value: value.into_bytes(),
        token: l.token(),
    };
    actual.lock().unwrap().push(Some(me(format!("v{i}"))));
    l.proclaim(format!("v{i}-proclaimed")).await.unwrap();
    assert_eq!(l.value(), format!("v{i}-proclaimed").into_bytes());
    actual
        .lock()
        .unwrap()
        .push(Some(me(format!("v{i}-proclaimed"))));
    l.resign().await.unwrap();
    i
}

/// Candidates lead in arrival order; resign hands over at once; observe() reports exactly
/// the leaders (and values) that actually led, in order, then "nobody".
pub(crate) async fn e2_succession_and_observe_in_order(f: Fixture) {
    let name = f.name("order");
    let (mut observer, expected) = Succession::queue(&f, &name).await.run().await;
    let mut seen = vec![None];
    while seen.len() < expected.len() {
        seen.push(
            within("observation", observer.next())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(seen, expected);
}

/// A crashed leader is replaced once its lease expires.
pub(crate) async fn e3_failover_on_crash(f: Fixture) {
    let name = f.name("failover");
    let crashed = f.tenure.session_with_ttl(f.short_ttl).await.unwrap();
    let old = crashed
        .election(&name)
        .unwrap()
        .campaign("old")
        .await
        .unwrap();
    let old_token = old.token();
    let standby = f.tenure.session().await.unwrap().election(&name).unwrap();
    let campaign = tokio::spawn(async move { standby.campaign("new").await });
    crashed.simulate_crash();
    assert_eq!(
        within("old leader told", old.lost()).await,
        LostReason::RenewalDeadline
    );
    let new = within("standby takes over", campaign)
        .await
        .unwrap()
        .unwrap();
    assert!(new.token() > old_token);
    std::mem::forget(old);
}

/// Cancelled campaigns leave no candidate keys (etcd#21128).
pub(crate) async fn e4_cancelled_campaigns_leave_nothing(f: Fixture) {
    let name = f.name("cancel");
    let prefix = format!("{name}/");
    let leader = f.tenure.session().await.unwrap();
    let l = leader
        .election(&name)
        .unwrap()
        .campaign("leader")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let e = f.tenure.session().await.unwrap().election(&name).unwrap();
        tasks.push(tokio::spawn(async move {
            e.campaign(format!("c{i}")).await.map(|_| ())
        }));
    }
    eventually("candidates queued", || async {
        f.admin.keys(&prefix).await.len() == 6
    })
    .await;
    for t in &tasks {
        t.abort();
    }
    eventually("cancelled candidates removed", || async {
        f.admin.keys(&prefix).await == vec![l.key().to_string()]
    })
    .await;
    l.resign().await.unwrap();
    eventually("no keys", || async {
        f.admin.keys(&prefix).await.is_empty()
    })
    .await;
}

/// proclaim and resign are conditional on leadership and keep local state truthful.
pub(crate) async fn e5_proclaim_and_resign_conditional(f: Fixture) {
    let name = f.name("proclaim");
    let a = f.tenure.session().await.unwrap();
    let e = a.election(&name).unwrap();
    let l = e.campaign("one").await.unwrap();
    f.admin.delete(l.key()).await;
    let err = l.proclaim("two").await.unwrap_err();
    assert!(matches!(err, Error::NotLeader { .. }), "{err}");
    assert!(l.is_lost());
    assert_eq!(l.value(), b"one".to_vec());
    // A new leader exists; the old one's resign must not remove it.
    let b = f.tenure.session().await.unwrap();
    let l2 = within("new leader", b.election(&name).unwrap().campaign("b"))
        .await
        .unwrap();
    assert!(matches!(l.resign().await, Err(Error::LockLost { .. })));
    let now = e.leader().await.unwrap().expect("leader");
    assert_eq!(
        (now.key.as_str(), now.value.as_slice()),
        (l2.key(), &b"b"[..])
    );
}
