//! `tenure bench`: the store's own floor, uncontended lock latency, and contended throughput
//! and hand-off for each worker count, measured in one run so the ratios mean something.

mod contended;
mod report;
mod solo;

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use tenure::Write;

use crate::cli::connect;
use crate::cli::options::{parse_counts, parse_duration, Counts, GlobalOpts};
use crate::exit::{self, Failure};

pub const AFTER_HELP: &str = "\
Measures, in one run against --url (mem:// measures the in-process store):
  floor        a plain write (no lock): p50/p99 over 200 writes
  uncontended  lock + unlock on one open session: p50/p99 over 200 cycles
  contended    for each worker count W: W sessions take turns on one lock for --cycles
               cycles (or until --max-time), reporting cycles/s, lock-acquire p50/p99 and
               hand-off p50 (previous holder starts unlocking -> next holder is granted)
The table shows ratios to the floor; --json prints one JSON object per worker count.
Example:
  tenure bench --url etcd://127.0.0.1:2379 --workers 1,5,50 --cycles 1000";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Comma-separated numbers of contending sessions
    #[arg(long, value_name = "LIST", default_value = "1,5,50", value_parser = parse_counts)]
    pub workers: Counts,

    /// Lock+unlock cycles to measure at each worker count
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub cycles: u32,

    /// Stop starting new cycles at a worker count after this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub max_time: Duration,
}

/// Samples for the floor and the uncontended cycle.
const SAMPLES: usize = 200;

pub async fn run(global: &GlobalOpts, args: BenchArgs) -> Result<u8> {
    let Some(url) = global.url.as_deref() else {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "`tenure bench` needs a store to measure: pass --url URL or set TENURE_URL \
                 (mem:// measures the in-process store); URL forms: {}",
                tenure::url::VALID_FORMS
            ),
        )
        .into());
    };
    let tenure = connect::connect(global, url, global.ttl).await?;
    let run_id = RandomState::new().hash_one(std::process::id());
    let prefix = format!("tenure-bench/{run_id:016x}");
    let floor_key = format!("{prefix}/floor");
    let base = report::Baseline {
        floor: solo::floor(&tenure, &floor_key, SAMPLES).await?,
        uncontended: solo::uncontended(&tenure, &format!("{prefix}/solo"), SAMPLES).await?,
    };
    tenure.write([Write::delete(floor_key)]).await?;
    let out = report::Report::new(&tenure, base, global.json);
    out.header()?;
    let workers = args.workers.0.iter().copied();
    for (round, w) in workers.enumerate() {
        let name = format!("{prefix}/contended-{round}");
        let plan = contended::Plan {
            workers: w,
            cycles: args.cycles as usize,
            max_time: args.max_time,
        };
        out.row(&contended::run(&tenure, &name, plan).await?)?;
    }
    Ok(0)
}
