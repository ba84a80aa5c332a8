//! Durations a caller passes: session TTLs, the connect timeout and lock timeouts, on the
//! embedded store (whose TTL range is 10 ms – 24 h), from zero to `Duration::MAX`.
//!
//! A TTL is accepted exactly when it is in the backend's range, else `InvalidDuration`
//! naming it; a zero connect timeout is `InvalidDuration`; any lock timeout, however large,
//! waits without overflowing.

#![cfg(feature = "embedded")]

use std::time::Duration;

use proptest::prelude::*;

use crate::{Error, Tenure};

const MIN_TTL: Duration = Duration::from_millis(10);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..100_000_000_000_000).prop_map(Duration::from_nanos),
        prop::sample::select(vec![
            Duration::ZERO,
            Duration::from_nanos(1),
            MIN_TTL - Duration::from_nanos(1),
            MIN_TTL,
            MAX_TTL,
            MAX_TTL + Duration::from_nanos(1),
            Duration::MAX,
        ]),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn assert_ttl_verdict<T: std::fmt::Debug>(ttl: Duration, got: &crate::Result<T>) {
    let in_range = (MIN_TTL..=MAX_TTL).contains(&ttl);
    match got {
        Ok(_) => assert!(in_range, "accepted TTL {ttl:?}"),
        Err(Error::InvalidDuration { value, .. }) => {
            assert!(!in_range, "refused TTL {ttl:?}");
            assert_eq!(*value, ttl);
        }
        Err(other) => panic!("TTL {ttl:?}: not InvalidDuration but {other:?}"),
    }
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn ttls_are_accepted_exactly_in_range(ttl in durations()) {
        runtime().block_on(async {
            let built = Tenure::builder("mem://fuzz-ttl").ttl(ttl).connect().await;
            assert_ttl_verdict(ttl, &built);
            let tenure = Tenure::connect("mem://fuzz-ttl").await.expect("mem");
            let session = tenure.session_with_ttl(ttl).await;
            assert_ttl_verdict(ttl, &session);
            if let Ok(s) = session {
                s.close().await.expect("close");
            }
        });
    }

    #[test]
    fn connect_timeouts_are_positive(timeout in durations()) {
        runtime().block_on(async {
            match Tenure::builder("mem://fuzz-ttl").connect_timeout(timeout).connect().await {
                Ok(_) => assert!(!timeout.is_zero()),
                Err(Error::InvalidDuration { value, .. }) => {
                    assert!(timeout.is_zero());
                    assert_eq!(value, timeout);
                }
                Err(other) => panic!("{timeout:?}: {other:?}"),
            }
        });
    }

    #[test]
    fn any_lock_timeout_takes_a_free_lock(timeout in durations()) {
        runtime().block_on(async {
            let tenure = Tenure::connect("mem://fuzz-ttl").await.expect("mem");
            let session = tenure.session().await.expect("session");
            match session.mutex("fuzz/timeout").expect("name").lock_timeout(timeout).await {
                Ok(guard) => guard.unlock().await.expect("unlock"),
                // A free lock on the in-process store is granted in far less than an hour.
                Err(Error::Timeout { waited, .. }) if timeout < Duration::from_secs(3600) => {
                    assert_eq!(waited, timeout);
                }
                Err(other) => panic!("{timeout:?}: {other:?}"),
            }
            session.close().await.expect("close");
        });
    }
}
