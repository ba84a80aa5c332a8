//! Property tests of ZooKeeper's extra name rules (`path_of`, user input) and of the node
//! names a server lists (`sequence`, `uuid_of`, `queue_order`): any text gives a path that
//! ZooKeeper accepts or `InvalidName`, and no child name, however odd, makes them panic.

use proptest::prelude::*;

use super::*;

fn pathish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(/|\\.|\\.\\.|zookeeper|[a-z]{1,3}|\u{0}|\u{1f}|\u{85}|\u{e000}|\u{fff5}|\u{e9}){0,8}",
    ]
}

fn childish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(_c_)?[0-9a-f-]{0,40}(-lock-|-latch-)?[0-9]{0,25}",
        "[\u{e9}\u{1F600}a]{0,3}[0-9]{8,22}",
    ]
}

proptest! {
    #![proptest_config(crate::fuzz::config())]

    #[test]
    fn names_become_valid_paths_or_invalid_name(name in pathish()) {
        match path_of(&name) {
            Ok(path) => {
                let rest = name.strip_prefix('/').unwrap_or(&name);
                prop_assert_eq!(&path, &format!("/{rest}"));
                for (i, seg) in rest.split('/').enumerate() {
                    prop_assert!(!seg.is_empty() && seg != "." && seg != "..", "{path:?}");
                    prop_assert!(!(i == 0 && seg == "zookeeper"), "{path:?}");
                    prop_assert!(!seg.chars().any(forbidden), "{path:?}");
                }
            }
            Err(Error::InvalidName { .. }) => {}
            Err(other) => prop_assert!(false, "{name:?}: {other:?}"),
        }
    }

    #[test]
    fn listed_children_never_panic(children in prop::collection::vec(childish(), 0..8)) {
        for c in &children {
            if let Some(uuid) = uuid_of(c) {
                prop_assert_eq!(uuid.len(), 36);
            }
            let _ = sequence(c);
            let _ = (node_name(c), parent(c));
        }
        let ordered = queue_order(children.clone());
        let seqs: Vec<u64> = ordered.iter().filter_map(|c| sequence(c)).collect();
        prop_assert_eq!(seqs.len(), ordered.len());
        prop_assert!(seqs.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn our_node_names_read_back(
        ticket in any::<u128>(),
        n in 0u64..=i32::MAX as u64,
        latch in any::<bool>(),
    ) {
        let uuid = uuid_of_ticket(Ticket(ticket));
        prop_assert_eq!(&uuid, &uuid_of_ticket(Ticket(ticket)), "one ticket, one node (C13)");
        let role = if latch { Role::Candidate } else { Role::Lock };
        let node = format!("{}{n:010}", node_base(&uuid, role));
        prop_assert_eq!(uuid_of(&node), Some(uuid.as_str()));
        prop_assert_eq!(sequence(&node), Some(n));
    }
}
