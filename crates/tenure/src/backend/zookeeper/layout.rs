//! Curator's znode layout: names to paths, and the sequential node names of its recipes.
//!
//! A lock or election named `jobs/nightly` (or `/jobs/nightly`) is the znode `/jobs/nightly`
//! under the chroot. Its entries are its children: `_c_<uuid>-lock-<seq>` for a mutex
//! (InterProcessMutex), `_c_<uuid>-latch-<seq>` for an election (LeaderLatch); the owner is the
//! child with the lowest sequence number. Keys handed out (grant keys, leader keys) are the
//! entries' full paths under the chroot, such as `/jobs/nightly/_c_…-lock-0000000003`.

use crate::backend::queue::{Role, Ticket};
use crate::{Error, Result};

/// The path of a name or key under the chroot, validated against ZooKeeper's path rules.
pub(super) fn path_of(name: &str) -> Result<String> {
    let bad = |reason: &str| Error::InvalidName {
        name: name.chars().take(64).collect(),
        reason: format!("{reason} (ZooKeeper path rules)"),
    };
    let rest = name.strip_prefix('/').unwrap_or(name);
    if rest.is_empty() {
        return Err(bad("the root node cannot be a lock or a key"));
    }
    for (i, segment) in rest.split('/').enumerate() {
        if segment.is_empty() {
            return Err(bad("empty path segment (`//` or a trailing `/`)"));
        }
        if segment == "." || segment == ".." {
            return Err(bad("`.` and `..` are not allowed as path segments"));
        }
        if i == 0 && segment == "zookeeper" {
            return Err(bad("`/zookeeper` is reserved for the server"));
        }
        if let Some(c) = segment.chars().find(|c| forbidden(*c)) {
            return Err(bad(&format!("character {c:?} is not allowed")));
        }
    }
    Ok(format!("/{rest}"))
}

/// Characters ZooKeeper refuses in a path (`PathUtils.validatePath`; its surrogate range
/// U+D800–U+DFFF cannot occur in a Rust string, the private-use rest of it can).
fn forbidden(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}')
}

/// The directory node of a queue, from the recipe's `<name>/` prefix.
pub(super) fn dir_of(prefix: &str) -> Result<String> {
    path_of(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// An acquisition's ticket as a random (version 4) UUID in Curator's textual form: the same
/// ticket always gives the same UUID, so every retry of one enqueue names one node (C13).
pub(super) fn uuid_of_ticket(ticket: Ticket) -> String {
    let (a, b) = ((ticket.0 >> 64) as u64, ticket.0 as u64);
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// The "protected" prefix Curator puts before a node name: `_c_<uuid>-`.
pub(super) fn protected(uuid: &str) -> String {
    format!("_c_{uuid}-")
}

/// The sequential node's name before the server appends the sequence number.
pub(super) fn node_base(uuid: &str, role: Role) -> String {
    let kind = match role {
        Role::Lock => "lock-",
        Role::Candidate => "latch-",
        Role::Lease => "lease-",
        // InterProcessReadWriteLock's two lock names.
        Role::Read => "__READ__",
        Role::Write => "__WRIT__",
    };
    format!("{}{kind}", protected(uuid))
}

/// The uuid of a protected node name, if it is one.
pub(super) fn uuid_of(node: &str) -> Option<&str> {
    let rest = node.strip_prefix("_c_")?;
    rest.get(..36)
        .filter(|_| rest.as_bytes().get(36) == Some(&b'-'))
}

/// The sequence number a sequential node name ends with (Curator sorts on it).
pub(super) fn sequence(node: &str) -> Option<u64> {
    let digits = node.len() - node.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits < 10 {
        return None;
    }
    node[node.len() - digits..].parse().ok()
}

/// The sequential children in queue order (lowest sequence first); others are ignored.
pub(super) fn queue_order(children: Vec<String>) -> Vec<String> {
    let mut seq: Vec<(u64, String)> = children
        .into_iter()
        .filter_map(|c| sequence(&c).map(|s| (s, c)))
        .collect();
    seq.sort();
    seq.into_iter().map(|(_, c)| c).collect()
}

/// `dir` joined with a child name (the root's children are `/<node>`).
pub(super) fn child(dir: &str, node: &str) -> String {
    format!("{}/{node}", dir.strip_suffix('/').unwrap_or(dir))
}

/// Where a walk for names starting with `prefix` begins: the deepest directory the prefix
/// names in full, and how the names of its children must start (`app/jo` → `/app`, `jo`;
/// `app/` → `/app`, empty; `jo` → `/`, `jo`). `None` when that directory is not a valid path,
/// so no name can start with `prefix`.
pub(super) fn walk_start(prefix: &str) -> Option<(String, &str)> {
    let rest = prefix.strip_prefix('/').unwrap_or(prefix);
    match rest.rsplit_once('/') {
        None => Some(("/".to_string(), rest)),
        Some((dir, partial)) => path_of(dir).ok().map(|dir| (dir, partial)),
    }
}

/// The last segment of a path.
pub(super) fn node_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The parent of a path (`/` for a top-level node).
pub(super) fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_paths_with_or_without_a_leading_slash() {
        assert_eq!(path_of("jobs/nightly").unwrap(), "/jobs/nightly");
        assert_eq!(path_of("/jobs/nightly").unwrap(), "/jobs/nightly");
        assert_eq!(dir_of("jobs/nightly/").unwrap(), "/jobs/nightly");
    }

    #[test]
    fn rejects_what_zookeeper_cannot_hold() {
        for bad in [
            "/",
            "a//b",
            "a/",
            "a/./b",
            "../a",
            "zookeeper/x",
            "a\u{1}b",
            "a\u{fff5}",
        ] {
            assert!(
                matches!(path_of(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
        assert!(path_of("zookeeperish/x").is_ok());
    }

    #[test]
    fn curator_node_names_round_trip() {
        let uuid = uuid_of_ticket(Ticket::new());
        assert_eq!(uuid.len(), 36);
        let node = format!("{}0000000042", node_base(&uuid, Role::Lock));
        assert!(node.starts_with("_c_") && node.contains("-lock-"));
        assert_eq!(uuid_of(&node), Some(uuid.as_str()));
        assert_eq!(sequence(&node), Some(42));
        let latch = format!("{}0000000007", node_base(&uuid, Role::Candidate));
        assert!(latch.contains("-latch-"));
        assert_eq!(uuid_of("plain"), None);
        assert_eq!(sequence("_c_x-lock-12"), None);
    }

    #[test]
    fn queue_order_sorts_by_sequence_and_skips_others() {
        let order = queue_order(vec![
            "_c_b-lock-0000000010".into(),
            "data".into(),
            "_c_a-lock-0000000002".into(),
        ]);
        assert_eq!(order, vec!["_c_a-lock-0000000002", "_c_b-lock-0000000010"]);
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/a"), "/");
        assert_eq!(node_name("/a/b/c"), "c");
        assert_eq!(child("/", "a"), "/a");
        assert_eq!(child("/a", "b"), "/a/b");
    }

    #[test]
    fn walks_start_at_the_deepest_full_directory() {
        let start = |p| walk_start(p).map(|(d, rest)| (d, rest.to_string()));
        assert_eq!(start(""), Some(("/".into(), "".into())));
        assert_eq!(start("/"), Some(("/".into(), "".into())));
        assert_eq!(start("ap"), Some(("/".into(), "ap".into())));
        assert_eq!(start("app/"), Some(("/app".into(), "".into())));
        assert_eq!(start("/app/jo"), Some(("/app".into(), "jo".into())));
        assert_eq!(start("app/jobs/"), Some(("/app/jobs".into(), "".into())));
        assert_eq!(start("a//b"), None);
        assert_eq!(start("zookeeper/x"), None);
    }
}
