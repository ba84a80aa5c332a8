//! Primary/standby: one instance works, the others wait; the one that loses its lease stops
//! at once instead of working on unaware.
//!
//! Run it two or three times against the same store, in separate terminals:
//!
//! ```text
//! cargo run -p tenure-examples --example primary_standby -- --url etcd://127.0.0.1:2379 --id a
//! cargo run -p tenure-examples --example primary_standby -- --url etcd://127.0.0.1:2379 --id b
//! ```
//!
//! The primary writes a heartbeat line with its fencing token every second through a guarded
//! write (it commits only while it still leads). Kill it (`kill -9`) or freeze it past its TTL
//! (`kill -STOP`, wait, `kill -CONT`): a standby takes over, and the frozen one, on waking,
//! says it lost leadership and stops working before anything else.

use std::time::Duration;

use clap::Parser;
use tenure::{Election, Leadership, Tenure, Write};

#[derive(Parser)]
struct Args {
    /// Store URL, e.g. etcd://127.0.0.1:2379.
    #[arg(long, env = "TENURE_URL")]
    url: String,
    /// Election name.
    #[arg(long, default_value = "primary-standby")]
    name: String,
    /// This instance's name (default: its process id).
    #[arg(long)]
    id: Option<String>,
    /// Session TTL: how long a dead primary blocks the standbys.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Heartbeats to write before resigning on purpose (default: run until stopped).
    #[arg(long)]
    beats: Option<u64>,
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// How a spell as primary ended.
enum Ended {
    /// Leadership was lost; campaign again with a new session.
    Lost,
    /// Resigned on purpose; exit.
    Resigned,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| std::process::id().to_string());
    let tenure = Tenure::builder(&args.url).ttl(args.ttl).connect().await?;
    loop {
        let session = tenure.session().await?;
        let election = session.election(&args.name)?;
        println!("{} [{id}] standby: campaigning", now());
        let leadership = tokio::select! {
            l = election.campaign(id.clone()) => l?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        println!(
            "{} [{id}] PRIMARY with fencing token {}",
            now(),
            leadership.token()
        );
        match lead(leadership, &args, &id).await? {
            Ended::Resigned => return Ok(()),
            Ended::Lost => report_successor(&election, &id).await,
        }
    }
}

/// Does the primary's work until leadership is lost, Ctrl-C, or `--beats` heartbeats.
async fn lead(leadership: Leadership, args: &Args, id: &str) -> Result<Ended, tenure::Error> {
    let heartbeat_key = format!("{}-heartbeat", args.name);
    let mut beat = 0;
    loop {
        tokio::select! {
            // Loss first: a thawed primary must stop before its overdue timer fires.
            biased;
            reason = leadership.lost() => {
                println!("{} [{id}] LOST leadership ({reason}); stopped working", now());
                return Ok(Ended::Lost);
            }
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                beat += 1;
                if !write_heartbeat(&leadership, &heartbeat_key, id, beat).await {
                    return Ok(Ended::Lost);
                }
                if args.beats == Some(beat) {
                    break;
                }
            }
        }
    }
    leadership.resign().await?;
    println!("{} [{id}] resigned after {beat} heartbeats", now());
    Ok(Ended::Resigned)
}

/// Writes one heartbeat through a guarded write; false once leadership is gone.
async fn write_heartbeat(leadership: &Leadership, key: &str, id: &str, beat: u64) -> bool {
    let line = format!("{} {id} token={} beat={beat}", now(), leadership.token());
    match leadership.write([Write::put(key, line.clone())]).await {
        Ok(()) => {
            println!("{line}");
            true
        }
        Err(e) => {
            println!("{} [{id}] heartbeat refused ({e}); stopped working", now());
            false
        }
    }
}

async fn report_successor(election: &Election, id: &str) {
    if let Ok(Some(leader)) = election.leader().await {
        let who = String::from_utf8_lossy(&leader.value);
        println!(
            "{} [{id}] current primary: {who} (token {})",
            now(),
            leader.token
        );
    }
}
