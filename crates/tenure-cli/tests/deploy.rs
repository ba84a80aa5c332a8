//! `deploy/compose.yaml` and `scripts/cluster` describe the same 3-member etcd cluster: member
//! names, client and peer ports, the `--initial-cluster` string and token, and the URL the
//! workers use. Read with line matching: every etcd flag in the compose file is one
//! `- --flag=value` list item.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What `scripts/cluster config etcd35` and the compose file each say about the cluster.
#[derive(Debug, Default, PartialEq)]
struct Layout {
    /// name → (client port, peer port)
    members: BTreeMap<String, (String, String)>,
    initial_cluster: String,
    token: String,
    url: String,
}

fn from_script() -> Layout {
    let out = Command::new(repo().join("scripts/cluster"))
        .args(["config", "etcd35"])
        .output()
        .expect("run scripts/cluster config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut layout = Layout::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["member", name, "client", client, "peer", peer] => {
                layout
                    .members
                    .insert(name.into(), (client.into(), peer.into()));
            }
            ["initial-cluster", v] => layout.initial_cluster = v.into(),
            ["initial-cluster-token", v] => layout.token = v.into(),
            ["url", v] => layout.url = v.into(),
            ["kind", "etcd35"] => {}
            _ => panic!("unexpected line from scripts/cluster config: {line:?}"),
        }
    }
    layout
}

/// The port of `http://127.0.0.1:PORT`; the members must listen where scripts/cluster's do.
fn loopback_port(url: &str) -> String {
    url.strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("{url}: not http://127.0.0.1:PORT"))
        .to_string()
}

fn from_compose() -> Layout {
    let path = repo().join("deploy/compose.yaml");
    let text = std::fs::read_to_string(&path).expect("read deploy/compose.yaml");
    let mut layout = Layout::default();
    let mut service = String::new();
    let mut flags: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for line in text.lines() {
        // A service starts at two spaces of indentation under `services:`.
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') {
                service = name.to_string();
            }
        }
        let item = line.trim_start();
        if let Some((flag, value)) = item.strip_prefix("- --").and_then(|f| f.split_once('=')) {
            flags
                .entry(service.clone())
                .or_default()
                .insert(flag.into(), value.into());
        }
        if let Some(url) = item.strip_prefix("TENURE_URL:") {
            layout.url = url.trim().to_string();
        }
    }
    let mut initial: Vec<String> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    for (service, flags) in &flags {
        let flag = |f: &str| {
            flags
                .get(f)
                .unwrap_or_else(|| panic!("service {service} has no --{f}"))
                .clone()
        };
        assert_eq!(flag("name"), *service, "service and member names differ");
        let client = loopback_port(&flag("listen-client-urls"));
        let peer = loopback_port(&flag("listen-peer-urls"));
        assert_eq!(loopback_port(&flag("advertise-client-urls")), client);
        assert_eq!(loopback_port(&flag("initial-advertise-peer-urls")), peer);
        layout.members.insert(service.clone(), (client, peer));
        initial.push(flag("initial-cluster"));
        tokens.push(flag("initial-cluster-token"));
    }
    initial.dedup();
    tokens.dedup();
    assert_eq!(initial.len(), 1, "members disagree on --initial-cluster");
    assert_eq!(
        tokens.len(),
        1,
        "members disagree on --initial-cluster-token"
    );
    layout.initial_cluster = initial.remove(0);
    layout.token = tokens.remove(0);
    layout
}

#[test]
fn compose_file_and_scripts_cluster_describe_the_same_cluster() {
    let script = from_script();
    assert_eq!(script.members.len(), 3, "{script:?}");
    assert_eq!(from_compose(), script);
}
