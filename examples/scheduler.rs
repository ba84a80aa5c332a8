//! A leader-elected scheduler: several instances run, one leads and dispatches jobs; when the
//! leader dies, another takes over from where it stopped, and the dead one's late dispatches
//! are refused.
//!
//! ```text
//! cargo run -p tenure-examples --example scheduler                      # 3 instances, leader crashes
//! cargo run -p tenure-examples --example scheduler -- --url etcd://127.0.0.1:2379 --instances 1
//! ```
//!
//! The leader records each dispatched tick with a guarded write (it commits only while still
//! leading), so the schedule's progress lives in the store, not in the leader's memory: a
//! successor reads it and continues. In this demo the first leader "crashes"
//! (`Session::simulate_crash`: renewals stop, as if the process hung) after a few ticks.

use std::time::Duration;

use clap::Parser;
use tenure::{Leadership, Tenure, Write};

#[derive(Parser)]
struct Args {
    /// Store URL; the default runs every instance in this process.
    #[arg(long, env = "TENURE_URL", default_value = "mem://scheduler")]
    url: String,
    /// Election name.
    #[arg(long, default_value = "scheduler")]
    name: String,
    /// Instances in this process.
    #[arg(long, default_value_t = 3)]
    instances: usize,
    /// Ticks to dispatch in all before stopping.
    #[arg(long, default_value_t = 10)]
    ticks: u64,
    /// Session TTL: how long a dead leader blocks its successor.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tenure = Tenure::builder(&args.url).ttl(args.ttl).connect().await?;
    let progress = format!("{}-progress", args.name);
    let mut instances = Vec::new();
    for id in 0..args.instances {
        let (tenure, name, progress) = (tenure.clone(), args.name.clone(), progress.clone());
        let (ticks, crash_after) = (args.ticks, (id == 0).then_some(3));
        instances.push(tokio::spawn(async move {
            instance(&tenure, &name, &progress, id, ticks, crash_after).await
        }));
    }
    for instance in instances {
        instance.await??;
    }
    let done = read_tick(&tenure, &progress).await?;
    println!("schedule at tick {done} of {}", args.ticks);
    assert_eq!(done, args.ticks, "every tick dispatched once, in order");
    Ok(())
}

/// One scheduler instance: campaigns, dispatches while leading, stops when the schedule is
/// done. `crash_after`: ticks after which this instance's process "hangs".
async fn instance(
    tenure: &Tenure,
    name: &str,
    progress: &str,
    id: usize,
    ticks: u64,
    crash_after: Option<u64>,
) -> tenure::Result<()> {
    let session = tenure.session().await?;
    let election = session.election(name)?;
    let leading = tokio::select! {
        l = election.campaign(format!("instance-{id}")) => l?,
        () = finished(tenure, progress, ticks) => return Ok(()),
    };
    println!("instance {id}: leading (token {})", leading.token());
    let mut dispatched = 0;
    loop {
        let tick = read_tick(tenure, progress).await? + 1;
        if tick > ticks {
            return leading.resign().await;
        }
        if crash_after == Some(dispatched) {
            println!("instance {id}: hangs (renewals stop) after {dispatched} ticks");
            session.simulate_crash();
            let reason = leading.lost().await;
            let late = dispatch(&leading, progress, tick).await;
            println!("instance {id}: lost leadership ({reason}); late dispatch refused: {late:?}");
            assert!(late.is_err(), "a deposed leader's dispatch must be refused");
            return Ok(());
        }
        dispatch(&leading, progress, tick).await?;
        println!("instance {id}: dispatched tick {tick}");
        dispatched += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records `tick` as dispatched, only while leading.
async fn dispatch(leading: &Leadership, progress: &str, tick: u64) -> tenure::Result<()> {
    leading
        .write([Write::put(progress, tick.to_string())])
        .await
}

async fn read_tick(tenure: &Tenure, progress: &str) -> tenure::Result<u64> {
    Ok(tenure
        .read(progress)
        .await?
        .and_then(|v| String::from_utf8_lossy(&v).parse().ok())
        .unwrap_or(0))
}

/// Resolves once the schedule is complete (for instances that never get to lead).
async fn finished(tenure: &Tenure, progress: &str, ticks: u64) {
    while read_tick(tenure, progress).await.unwrap_or(0) < ticks {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
