//! Per-entity locks: many tasks of one service, one session, thousands of names
//! (`orders/<id>`). Work on one order is serialized; work on different orders runs at once.
//!
//! ```text
//! cargo run -p tenure-examples --example per_entity_locks
//! cargo run -p tenure-examples --example per_entity_locks -- --url etcd://127.0.0.1:2379 --orders 1000 --tasks 64
//! ```
//!
//! Every task updates a random order's counter under that order's lock, with a guarded write.
//! One session serves them all: it is one lease, renewed once per TTL/3 however many locks it
//! holds. Tasks of one session that want the same order queue in the process first (C9), so
//! they never contend in the store with each other. At the end every order's counter equals
//! the updates made to it: no update was lost.

use std::collections::HashMap;
use std::time::Instant;

use clap::Parser;
use tenure::{Tenure, Write};

#[derive(Parser)]
struct Args {
    /// Store URL.
    #[arg(long, env = "TENURE_URL", default_value = "mem://per-entity")]
    url: String,
    /// How many orders (lock names).
    #[arg(long, default_value_t = 50)]
    orders: u64,
    /// Concurrent tasks on the one session.
    #[arg(long, default_value_t = 16)]
    tasks: u64,
    /// Updates per task.
    #[arg(long, default_value_t = 20)]
    updates: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tenure = Tenure::connect(&args.url).await?;
    let session = tenure.session().await?;
    let run = format!("{:x}", std::process::id());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..args.tasks {
        let (tenure, session, run) = (tenure.clone(), session.clone(), run.clone());
        let (orders, updates) = (args.orders, args.updates);
        tasks.push(tokio::spawn(async move {
            let mut made = HashMap::new();
            for i in 0..updates {
                // A cheap spread of orders, different per task.
                let order = (task * 7919 + i * 104_729) % orders;
                let name = format!("orders-{run}/{order}");
                let guard = session.mutex(&name)?.lock().await?;
                let count_key = format!("orders-{run}-count/{order}");
                let n: u64 = tenure
                    .read(&count_key)
                    .await?
                    .and_then(|v| String::from_utf8_lossy(&v).parse().ok())
                    .unwrap_or(0);
                guard
                    .write([Write::put(count_key, (n + 1).to_string())])
                    .await?;
                guard.unlock().await?;
                *made.entry(order).or_insert(0u64) += 1;
            }
            Ok::<_, tenure::Error>(made)
        }));
    }
    let mut expected: HashMap<u64, u64> = HashMap::new();
    for task in tasks {
        for (order, n) in task.await?? {
            *expected.entry(order).or_insert(0) += n;
        }
    }
    let took = started.elapsed();
    for (order, n) in &expected {
        let stored = tenure.read(&format!("orders-{run}-count/{order}")).await?;
        assert_eq!(stored, Some(n.to_string().into_bytes()), "order {order}");
    }
    let total = args.tasks * args.updates;
    println!(
        "{total} updates over {} orders by {} tasks on one session in {took:?} ({:.0} locked updates/s); none lost",
        expected.len(),
        args.tasks,
        total as f64 / took.as_secs_f64()
    );
    session.close().await?;
    Ok(())
}
