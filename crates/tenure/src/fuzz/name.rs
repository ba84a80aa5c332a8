//! Lock and election names: `validate_name`, and what a `mem://` session makes of them.
//!
//! Arbitrary text (any Unicode, NUL and other control characters, names around and far beyond
//! `MAX_NAME_LEN`) is accepted exactly when it is non-empty, short enough and free of control
//! characters; otherwise it is `Error::InvalidName`, quoting at most 64 characters of it. Every
//! accepted name can be locked and released on the embedded store.

use proptest::prelude::*;

use crate::name::{validate, MAX_NAME_LEN};
use crate::Error;

fn nameish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z/._ \u{0}\n\t\u{7f}\u{85}\u{200b}\u{e9}\u{1F600}-]{0,40}",
        ("[a-z/\u{e9}\u{1F600}]{1,3}", 100usize..600).prop_map(|(s, n)| s.repeat(n)),
        (".{1,4}", 1usize..300_000).prop_map(|(s, n)| s.repeat(n)),
    ]
}

fn acceptable(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
}

fn check(name: &str) {
    match validate(name) {
        Ok(()) => assert!(acceptable(name), "accepted {name:?}"),
        Err(Error::InvalidName {
            name: shown,
            reason,
        }) => {
            assert!(!acceptable(name), "refused {name:?}: {reason}");
            let head: String = name.chars().take(64).collect();
            assert_eq!(shown, head);
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("{name:?}: not InvalidName but {other:?}"),
    }
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn names_are_accepted_exactly_by_the_rules(name in nameish()) {
        check(&name);
    }
}

#[cfg(feature = "embedded")]
proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn every_accepted_name_locks_and_releases_on_mem(name in nameish()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let tenure = crate::Tenure::connect("mem://fuzz-names").await.expect("mem");
            let a = tenure.session().await.expect("session");
            let b = tenure.session().await.expect("session");
            match a.mutex(&name) {
                Ok(m) => {
                    assert!(acceptable(&name));
                    assert!(a.election(&name).is_ok());
                    let guard = m.try_lock().await.expect("free lock");
                    assert!(guard.key().starts_with(&format!("{name}/")), "{}", guard.key());
                    guard.unlock().await.expect("unlock");
                    let again = b.mutex(&name).expect("same name").try_lock().await;
                    again.expect("released").unlock().await.expect("unlock");
                }
                Err(Error::InvalidName { .. }) => {
                    assert!(!acceptable(&name));
                    assert!(matches!(a.election(&name), Err(Error::InvalidName { .. })));
                }
                Err(other) => panic!("{name:?}: not InvalidName but {other:?}"),
            }
            a.close().await.expect("close");
            b.close().await.expect("close");
        });
    }
}
