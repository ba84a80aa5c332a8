//! `tenure bench`: the store's own floor, uncontended lock latency, and contended throughput
//! and hand-off for each worker count, measured in one run so the ratios mean something.

mod contended;
mod counters;
mod many;
mod one_core;
mod report;
mod solo;
mod waiters;

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
  floor        a plain write (no lock): p50/p99 over 1000 writes
  uncontended  lock + unlock on one open session: p50/p99 over 1000 cycles
  contended    for each worker count W: W sessions take turns on one lock for --cycles
               cycles (or until --max-time), reporting cycles/s, lock-acquire p50/p99 and
               hand-off p50 (previous holder starts unlocking -> next holder is granted)
  many locks   with --locks N: for each count T of --tasks, T tasks on one session each lock
               a random one of N names, --cycles cycles in all, reporting cycles/s against
               the uncontended rate
  waiters      with --waiters LIST: for each W, W sessions queue on one lock; reports the
               client's resident memory per queued waiter, hand-off p50/p99 over the first
               200 hand-offs, and the store's own requests and events per hand-off (etcd
               /metrics, ZooKeeper mntr, Redis INFO commandstats; null where it cannot say)
  one core     with --one-core N: N uncontended lock+unlock cycles on a single-threaded
               runtime of their own, reporting cycles/s by the clock and per CPU-second of
               that thread (what one core does, also on a busy machine)
The contended rounds run by default, or with --locks/--waiters/--one-core only when --workers
is given.
The table shows ratios to the floor; --json prints one JSON object per line, each with a
\"workload\" field (contended, locks, waiters).
Examples:
  tenure bench --url etcd://127.0.0.1:2379 --workers 1,5,50 --cycles 1000
  tenure bench --url etcd://127.0.0.1:2379 --locks 10000 --tasks 1,64 --cycles 5000
  tenure bench --url etcd://127.0.0.1:2379 --ttl 60s --waiters 10,10000
  tenure bench --url mem:// --one-core 1000000";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Comma-separated numbers of contending sessions [default: 1,5,50 unless --locks or
    /// --waiters is given]
    #[arg(long, value_name = "LIST", value_parser = parse_counts)]
    pub workers: Option<Counts>,

    /// Many locks on one session: the number of names the tasks of --tasks lock at random
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub locks: Option<u32>,

    /// Comma-separated numbers of tasks sharing one session (with --locks)
    #[arg(long, value_name = "LIST", default_value = "1,64", value_parser = parse_counts,
          requires = "locks")]
    pub tasks: Counts,

    /// Comma-separated numbers of waiters queued on one lock, one session each
    #[arg(long, value_name = "LIST", value_parser = parse_counts)]
    pub waiters: Option<Counts>,

    /// Uncontended lock+unlock cycles to run on one core (a single-threaded runtime)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub one_core: Option<u32>,

    /// Lock+unlock cycles to measure at each worker count
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub cycles: u32,

    /// Stop starting new cycles at a worker count after this long
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub max_time: Duration,
}

/// Samples for the floor and the uncontended cycle: the uncontended rate is the base of every
/// "vs solo" ratio, and over 200 cycles it read half the one-worker round's rate in one run
/// (etcd 3.5, loaded machine).
const SAMPLES: usize = 1000;

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
    let workers = match (&args.workers, args.locks, &args.waiters, args.one_core) {
        (Some(workers), ..) => workers.0.clone(),
        (None, None, None, None) => vec![1, 5, 50],
        (None, ..) => Vec::new(),
    };
    if let Some(cycles) = args.one_core {
        let name = format!("{prefix}/one-core");
        one_core::run(global, url, &name, cycles as usize)?.print(global.json)?;
    }
    for (round, w) in workers.into_iter().enumerate() {
        let name = format!("{prefix}/contended-{round}");
        let plan = contended::Plan {
            workers: w,
            cycles: args.cycles as usize,
            max_time: args.max_time,
        };
        out.row(&contended::run(&tenure, &name, plan).await?)?;
    }
    if let Some(locks) = args.locks {
        for (round, &tasks) in args.tasks.0.iter().enumerate() {
            let plan = many::Plan {
                locks: locks as usize,
                tasks,
                cycles: args.cycles as usize,
                max_time: args.max_time,
            };
            let names = format!("{prefix}/many-{round}");
            out.many_row(&many::run(&tenure, &names, plan).await?)?;
        }
    }
    for (round, &w) in args.waiters.iter().flat_map(|w| &w.0).enumerate() {
        let name = format!("{prefix}/waiters-{round}");
        out.waiters_row(&waiters::run(&tenure, &name, w).await?)?;
    }
    Ok(0)
}
