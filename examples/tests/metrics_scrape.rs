//! Tenure's metrics as Prometheus sees them: `metrics-exporter-prometheus` serves them over
//! HTTP in this process, as in `examples/metrics.rs`, and each test scrapes that endpoint with a
//! plain GET while it takes, contends for, times out on, cancels and loses locks, then checks
//! that every series moved by exactly what was done.
//!
//! One recorder serves the whole test binary, so each test keeps to series of its own: its own
//! backend (`mem` here, `etcd` in the other test) and, with `Builder::metrics_name_label`, its
//! own lock names; and it compares scrapes taken before and after each step.

#[path = "../../crates/tenure/tests/support/skip.rs"]
mod skip;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tenure::{Error, LostReason, Tenure};

/// Bounds every wait for an outcome; far above the expected time, so it only stops a hang.
const PATIENCE: Duration = Duration::from_secs(30);

/// The exporter's address, installed once per test binary.
fn exporter() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        // Installed outside any test's runtime (which ends with its test): with no runtime
        // current, the exporter serves from a thread and runtime of its own.
        std::thread::spawn(|| {
            let free = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            let addr = free.local_addr().expect("local address");
            drop(free);
            PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
                .expect("install the Prometheus exporter");
            tenure::describe_metrics();
            addr
        })
        .join()
        .expect("exporter thread")
    })
}

/// One scrape: every sample by metric name, with its labels.
#[derive(Debug)]
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    /// GET /metrics from the exporter (HTTP/1.0: the whole body, then the connection closes).
    async fn take() -> Scrape {
        let addr = exporter();
        let text = tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(addr).expect("connect to the exporter");
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .expect("send the request");
            let mut response = String::new();
            stream
                .read_to_string(&mut response)
                .expect("read the response");
            response
        })
        .await
        .expect("scrape task");
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        Scrape(body.lines().filter_map(parse_sample).collect())
    }

    /// The sum of `metric` over the series whose labels include `labels` (0 if none).
    fn get(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(name, have, _)| {
                name == metric
                    && labels
                        .iter()
                        .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }
}

/// `name{k="v",…} value` (or `name value`); `None` for comments and blank lines.
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series.to_string(), BTreeMap::new()),
        Some((name, rest)) => {
            let rest = rest.strip_suffix('}')?;
            let labels = rest
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            (name.to_string(), labels)
        }
    };
    Some((name, labels, value))
}

/// Scrapes until `check` holds (a series moved by a task of the library's own, such as the
/// watcher that counts a loss), or panics after [`PATIENCE`].
async fn eventually(what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let scrape = Scrape::take().await;
        if check(&scrape) {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never happened; last scrape {scrape:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `name` has `n` waiters in the store.
async fn waiters(tenure: &Tenure, name: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tenure
        .status(name)
        .await
        .expect("status")
        .first()
        .map_or(0, |s| s.waiters)
        != n
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: never {n} waiters"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const WAIT: &str = "tenure_acquire_wait_seconds_count";
const HOLD: &str = "tenure_hold_seconds_count";
const HANDOFFS: &str = "tenure_handoffs_total";
const LOST: &str = "tenure_lost_total";
const QUEUED: &str = "tenure_queued_waiters";
const LEADER: &str = "tenure_leader_held";
const SESSIONS: &str = "tenure_sessions_open";
const RENEWALS: &str = "tenure_lease_renewals_total";
const RENEWAL_LATENCY: &str = "tenure_lease_renewal_seconds_count";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metrics_follow_takes_waits_timeouts_cancels_and_losses_on_mem() {
    let run = format!("{}-{:x}", std::process::id(), unique());
    let tenure = Tenure::builder(&format!("mem://metrics-scrape-{run}"))
        .metrics_name_label(true)
        .connect()
        .await
        .unwrap();
    let jobs = format!("jobs-{run}");
    let mutex = |outcome| {
        [
            ("backend", "mem"),
            ("primitive", "mutex"),
            ("name", jobs.as_str()),
            ("outcome", outcome),
        ]
    };
    let per_lock = [
        ("backend", "mem"),
        ("primitive", "mutex"),
        ("name", jobs.as_str()),
    ];

    let before = Scrape::take().await;
    let (a, b, c) = (
        tenure.session().await.unwrap(),
        tenure.session().await.unwrap(),
        tenure.session().await.unwrap(),
    );
    let opened = Scrape::take().await;
    assert_eq!(
        opened.get(SESSIONS, &[("backend", "mem")]) - before.get(SESSIONS, &[("backend", "mem")]),
        3.0
    );

    // Taken at once: acquired, no hand-off.
    let held = a.mutex(&jobs).unwrap().lock().await.unwrap();
    // A bounded wait that runs out: timed_out.
    let err = b
        .mutex(&jobs)
        .unwrap()
        .lock_timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    // A wait given up by aborting its task: cancelled, and no longer a queued waiter.
    let waiting = b.mutex(&jobs).unwrap();
    let given_up = tokio::spawn(async move { waiting.lock().await.map(drop) });
    waiters(&tenure, &jobs, 1).await;
    let queued = Scrape::take().await;
    assert_eq!(queued.get(QUEUED, &per_lock), 1.0);
    given_up.abort();
    assert!(given_up.await.unwrap_err().is_cancelled());
    // Its entry is withdrawn in the background; the next waiter must queue behind the holder.
    waiters(&tenure, &jobs, 0).await;
    // A waiter handed the lock when the holder unlocks: acquired and a hand-off.
    let contender = c.mutex(&jobs).unwrap();
    let handed = tokio::spawn(async move { contender.lock().await });
    waiters(&tenure, &jobs, 1).await;
    held.unlock().await.unwrap();
    let handed = handed.await.unwrap().unwrap();
    // A try while it is held: busy.
    assert!(matches!(
        b.mutex(&jobs).unwrap().try_lock().await,
        Err(Error::Locked { .. })
    ));
    handed.unlock().await.unwrap();

    let after = Scrape::take().await;
    let moved = |metric: &str, labels: &[(&str, &str)]| {
        after.get(metric, labels) - before.get(metric, labels)
    };
    assert_eq!(moved(WAIT, &mutex("acquired")), 2.0, "{after:?}");
    assert_eq!(moved(WAIT, &mutex("timed_out")), 1.0);
    assert_eq!(moved(WAIT, &mutex("cancelled")), 1.0);
    assert_eq!(moved(WAIT, &mutex("busy")), 1.0);
    assert_eq!(moved(WAIT, &mutex("failed")), 0.0);
    assert_eq!(moved(HANDOFFS, &per_lock), 1.0);
    assert_eq!(moved(HOLD, &per_lock), 2.0);
    assert_eq!(after.get(QUEUED, &per_lock), 0.0);
    assert_eq!(moved(LOST, &per_lock), 0.0);

    // A holder whose process crashes: its lock is lost at the deadline, and counted then, by
    // reason, before anyone drops the guard; so is its session. Then an acquisition on the
    // lost session fails.
    let doomed_lock = format!("doomed-{run}");
    let doomed = tenure
        .session_with_ttl(Duration::from_millis(600))
        .await
        .unwrap();
    let guard = doomed.mutex(&doomed_lock).unwrap().lock().await.unwrap();
    let same = doomed.clone();
    doomed.simulate_crash();
    assert_eq!(guard.lost().await, LostReason::RenewalDeadline);
    let lost = [
        ("backend", "mem"),
        ("primitive", "mutex"),
        ("name", doomed_lock.as_str()),
        ("reason", "renewal_deadline"),
    ];
    let session_lost = [
        ("backend", "mem"),
        ("primitive", "session"),
        ("reason", "renewal_deadline"),
    ];
    let scrape = eventually("the loss counted", |s| {
        s.get(LOST, &lost) == 1.0
            && s.get(LOST, &session_lost) - before.get(LOST, &session_lost) == 1.0
    })
    .await;
    let doomed_hold = [
        ("backend", "mem"),
        ("primitive", "mutex"),
        ("name", doomed_lock.as_str()),
    ];
    assert_eq!(scrape.get(HOLD, &doomed_hold), 1.0);
    // (The guard goes first: a lock() behind it in this session's local queue would wait for it.)
    drop(guard);
    let err = same.mutex(&doomed_lock).unwrap().lock().await.unwrap_err();
    assert!(matches!(err, Error::SessionLost { .. }), "{err:?}");
    let failed = Scrape::take().await;
    let outcome = |o| {
        [
            ("backend", "mem"),
            ("primitive", "mutex"),
            ("name", doomed_lock.as_str()),
            ("outcome", o),
        ]
    };
    assert_eq!(failed.get(WAIT, &outcome("failed")), 1.0);
    assert_eq!(
        failed.get(HOLD, &doomed_hold),
        1.0,
        "a loss ends the hold once"
    );
    assert_eq!(
        failed.get(LOST, &lost),
        1.0,
        "dropping a lost guard counts no second loss"
    );

    // Leadership shows while held; the other primitives carry their own label.
    let primary = format!("primary-{run}");
    let leader = [("backend", "mem"), ("name", primary.as_str())];
    let leading = a.election(&primary).unwrap().campaign("a").await.unwrap();
    assert_eq!(Scrape::take().await.get(LEADER, &leader), 1.0);
    leading.resign().await.unwrap();
    assert_eq!(Scrape::take().await.get(LEADER, &leader), 0.0);
    let pool = format!("pool-{run}");
    let permit = a.semaphore(&pool, 1).unwrap().acquire().await.unwrap();
    let err = b
        .semaphore(&pool, 1)
        .unwrap()
        .acquire_timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    permit.release().await.unwrap();
    let config = format!("config-{run}");
    let read = a.rwlock(&config).unwrap().read().await.unwrap();
    assert!(b.rwlock(&config).unwrap().try_write().await.is_err());
    read.unlock().await.unwrap();
    let scrape = Scrape::take().await;
    let of = |primitive, name: &str, outcome| {
        scrape.get(
            WAIT,
            &[
                ("backend", "mem"),
                ("primitive", primitive),
                ("name", name),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(of("election", &primary, "acquired"), 1.0);
    assert_eq!(of("semaphore", &pool, "acquired"), 1.0);
    assert_eq!(of("semaphore", &pool, "timed_out"), 1.0);
    assert_eq!(of("rwlock_read", &config, "acquired"), 1.0);
    assert_eq!(of("rwlock_write", &config, "busy"), 1.0);

    // Renewals: a short lease renews every third of its TTL.
    let renewing = tenure
        .session_with_ttl(Duration::from_millis(300))
        .await
        .unwrap();
    let ok = [("backend", "mem"), ("result", "ok")];
    eventually("mem renewals counted", |s| {
        s.get(RENEWALS, &ok) - before.get(RENEWALS, &ok) >= 2.0
            && s.get(RENEWAL_LATENCY, &ok) - before.get(RENEWAL_LATENCY, &ok) >= 2.0
    })
    .await;

    // Closing is not losing: the open sessions go back, no session loss is added.
    for s in [a, b, c, renewing] {
        s.close().await.unwrap();
    }
    drop(same);
    let closed = Scrape::take().await;
    assert_eq!(
        closed.get(SESSIONS, &[("backend", "mem")]),
        before.get(SESSIONS, &[("backend", "mem")])
    );
    assert_eq!(
        closed.get(LOST, &session_lost) - before.get(LOST, &session_lost),
        1.0
    );
    let closed_reason = [
        ("backend", "mem"),
        ("primitive", "session"),
        ("reason", "session_closed"),
    ];
    assert_eq!(closed.get(LOST, &closed_reason), 0.0);
}

/// On a real etcd (3.5): every lease renewal is counted, with its latency, under
/// `backend="etcd"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_lease_renewals_are_counted() {
    let test = "etcd_lease_renewals_are_counted";
    let Some(url) = skip::env_or_skip(test, "TENURE_TEST_ETCD35_URL") else {
        return;
    };
    let tenure = Tenure::connect(&url).await.unwrap();
    let ok = [("backend", "etcd"), ("result", "ok")];
    let before = Scrape::take().await;
    // A 2 s lease is renewed every third of its TTL.
    let session = tenure
        .session_with_ttl(Duration::from_secs(2))
        .await
        .unwrap();
    let name = format!("metrics-etcd-{}-{:x}", std::process::id(), unique());
    let guard = session.mutex(&name).unwrap().lock().await.unwrap();
    let scrape = eventually("etcd renewals counted", |s| {
        s.get(RENEWALS, &ok) - before.get(RENEWALS, &ok) >= 2.0
            && s.get(RENEWAL_LATENCY, &ok) - before.get(RENEWAL_LATENCY, &ok) >= 2.0
    })
    .await;
    assert_eq!(
        scrape.get(SESSIONS, &[("backend", "etcd")]) - before.get(SESSIONS, &[("backend", "etcd")]),
        1.0
    );
    let acquired = [
        ("backend", "etcd"),
        ("primitive", "mutex"),
        ("outcome", "acquired"),
    ];
    assert_eq!(
        scrape.get(WAIT, &acquired) - before.get(WAIT, &acquired),
        1.0
    );
    assert_eq!(
        scrape.get(RENEWALS, &[("backend", "etcd"), ("result", "failed")]),
        0.0
    );
    // Without Builder::metrics_name_label, no series names a lock.
    let named = scrape.0.iter().filter(|(metric, labels, _)| {
        metric.starts_with("tenure_")
            && labels.get("backend").map(String::as_str) == Some("etcd")
            && labels.contains_key("name")
    });
    assert_eq!(named.count(), 0, "{scrape:?}");
    guard.unlock().await.unwrap();
    session.close().await.unwrap();
}

/// A name part unique to this run, without a random-number dependency.
fn unique() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
