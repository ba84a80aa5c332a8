//! The ZooKeeper backend under test, and an operator's view of the ensemble (`zkCli.sh`).
//!
//! Keys are znode paths under the chroot, as grant keys are: the "keys under `<name>/`" are the
//! sequential children of `/<name>`, in queue order.

use std::time::Duration;

use zookeeper_client as zk;

use super::{namespace, skip, Admin, Fixture};
use crate::Tenure;

/// Direct access to the test ensemble.
pub(crate) struct ZkAdmin {
    client: zk::Client,
}

impl ZkAdmin {
    /// Connects to `hosts` (`host:port,...`).
    async fn connect(hosts: &str) -> Self {
        let client = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(hosts)
            .await
            .expect("admin connection to ZooKeeper");
        ZkAdmin { client }
    }

    /// The entries under `prefix` (`<name>/`), as full paths in queue order.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let dir = crate::backend::zookeeper::test_support::dir(prefix);
        match self.client.list_children(&dir).await {
            Ok(children) => crate::backend::zookeeper::test_support::ordered(&dir, children),
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => panic!("admin list {dir}: {e}"),
        }
    }

    /// Deletes one node, as an administrator would.
    pub async fn delete(&self, key: &str) {
        match self.client.delete(key, None).await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(e) => panic!("admin delete {key}: {e}"),
        }
    }

    /// Ends a session from outside (Curator's `KillSession`: attach to it and close it).
    pub async fn revoke(&self, session: u64) {
        crate::backend::zookeeper::test_support::kill_session(session).await;
    }
}

/// ZooKeeper, when `scripts/test` started one (`TENURE_TEST_ZK_URL=zk://127.0.0.1:PORT`).
pub(crate) async fn zk(test: &str) -> Option<Fixture> {
    const VAR: &str = "TENURE_TEST_ZK_URL";
    let Ok(url) = std::env::var(VAR) else {
        return skip(VAR, test);
    };
    let tenure = Tenure::connect(&url)
        .await
        .expect("connect to test ZooKeeper");
    let hosts = url.trim_start_matches("zk://");
    let admin = ZkAdmin::connect(hosts).await;
    Some(Fixture {
        tenure,
        // The server's minSessionTimeout is 1 s (scripts/servers); 2 s leaves room.
        short_ttl: Duration::from_secs(2),
        admin: Admin::Zk(Box::new(admin)),
        namespace: namespace(test),
        _faults: None,
    })
}

/// The ZooKeeper form of `e2_succession_and_observe_in_order`: candidates lead in arrival
/// order, and `observe()` reports leaders in order and never a stale one — but, its watches
/// being one-shot, it may skip a leader or value that lasted only between two re-lists (a
/// value proclaimed and resigned within one round trip), so what it saw must be an ordered
/// *subsequence* of what happened, from "nobody" to "nobody", and include the long-held gate.
pub(crate) async fn e2_observe_in_order_zk(f: Fixture) {
    use crate::conformance::election::Succession;
    use crate::conformance::within;

    let name = f.name("order");
    let mut succession = Succession::queue(&f, &name).await;
    // The gate held while everyone queued: the observer has had every chance to see it.
    let seen_gate = within("gate observed", succession.observer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen_gate, Some(succession.gate_leader.clone()));
    let (mut observer, expected) = succession.run().await;
    let mut seen = vec![None, expected[1].clone()];
    loop {
        let next = within("observation", observer.next())
            .await
            .unwrap()
            .unwrap();
        let done = next.is_none();
        seen.push(next);
        if done {
            break;
        }
    }
    let mut rest = expected.iter();
    for s in &seen {
        assert!(
            rest.any(|e| e == s),
            "observed {s:?} out of order or never held; saw {seen:?}, happened {expected:?}"
        );
    }
}
