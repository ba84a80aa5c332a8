//! Service registration and discovery: instances register themselves with ephemeral keys
//! that live exactly as long as their sessions; a client follows the live set.
//!
//! ```text
//! cargo run -p tenure-examples --example service_registry
//! cargo run -p tenure-examples --example service_registry -- --url etcd://127.0.0.1:2379
//! ```
//!
//! From a shell, `tenure register services/web/$(hostname) $(hostname):8080 -- ./web` does the
//! registering half for any program. Here three "web" instances register; one shuts down
//! cleanly (its key goes at once) and one crashes (its key goes when its lease expires, within
//! its TTL); the watcher sees each change in order and ends with the one survivor.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use tenure::{KeyEvent, Tenure};

#[derive(Parser)]
struct Args {
    /// Store URL (etcd, ZooKeeper, one Redis instance or mem; Redlock and PostgreSQL have no ephemeral keys).
    #[arg(long, env = "TENURE_URL", default_value = "mem://service-registry")]
    url: String,
    /// Session TTL of the instances: how long a crashed one stays listed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tenure = Tenure::builder(&args.url).ttl(args.ttl).connect().await?;
    let prefix = format!("services-{:x}/web/", std::process::id());
    let mut live = tenure.watch_prefix(&prefix).await?;

    let mut instances = Vec::new();
    for i in 1..=3 {
        let session = tenure.session().await?;
        session
            .put_ephemeral(&format!("{prefix}web-{i}"), format!("10.0.0.{i}:8080"))
            .await?;
        instances.push(session);
    }
    let mut set = BTreeMap::new();
    follow(&mut live, &mut set, 3).await?;
    println!("live: {set:?}");

    let crashed = instances.remove(1);
    let stopped = instances.remove(0);
    stopped.close().await?; // web-1 shuts down cleanly
    crashed.simulate_crash(); // web-2 hangs: its key goes at its TTL
    follow(&mut live, &mut set, 1).await?;
    println!("live: {set:?}");
    let survivors: Vec<&String> = set.keys().collect();
    assert_eq!(survivors, [&format!("{prefix}web-3")]);
    Ok(())
}

/// Applies watch events to `set` until it has `n` members.
async fn follow(
    live: &mut tenure::KeyWatcher,
    set: &mut BTreeMap<String, String>,
    n: usize,
) -> tenure::Result<()> {
    while set.len() != n {
        let Some(event) = live.next().await else {
            break;
        };
        match event? {
            KeyEvent::Put { key, value } => {
                println!("+ {key} = {}", String::from_utf8_lossy(&value));
                set.insert(key, String::from_utf8_lossy(&value).into_owned());
            }
            KeyEvent::Deleted { key } => {
                println!("- {key}");
                set.remove(&key);
            }
            _ => {}
        }
    }
    Ok(())
}
