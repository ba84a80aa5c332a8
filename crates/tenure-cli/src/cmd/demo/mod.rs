//! `tenure demo`: the classic scenarios, on the in-process store unless `--url` says otherwise.

mod counter;
mod expiry;
mod failover;
mod rwlock;
mod semaphore;
mod timeline;
mod trylock;

use std::hash::{BuildHasher, RandomState};

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::cli::{connect, options::GlobalOpts};

pub const AFTER_HELP: &str = "\
Runs on the in-process store (mem://) unless --url or TENURE_URL names another.
  counter  N workers, each with its own session, add 1 to a counter in the store, first
           without the lock (read, pause, write: updates get lost), then with it (exact).
           --json prints {\"workers\",\"expected\",\"locked_count\",\"unlocked_count\",\"seconds\"}.
  expiry   a holder crashes without unlocking; its guard reports the loss, and a waiter
           gets the lock when the lease runs out (--ttl sets the holder's lease;
           default 2s on etcd, 500ms in-process).
  trylock  a second client's try_lock fails at once while the lock is held.
  failover a primary leads an election and heartbeats with guarded writes, a standby waits;
           the primary freezes past its lease (--ttl; default 2s on etcd, 500ms
           in-process), its lost() fires, the standby takes over with a larger fencing
           token, and the old primary's late write is refused.
  semaphore 10 workers, each with its own session, share a pool of 3 permits; each line
           says how many are in use, never more than 3.
  rwlock   three readers hold a read/write lock at once; a writer waits for them, a late
           reader waits behind the writer (arrival order); the writer holds alone, then
           downgrades, and the late reader joins it.
  all      counter, expiry, trylock, failover, semaphore and rwlock in turn.
expiry, trylock, failover, semaphore and rwlock print one line per event, stamped with the time since the
scenario started; --json prints them as {\"demo\",\"t\",\"event\",\"message\"} lines.
Examples:
  tenure demo
  tenure demo expiry --url etcd://127.0.0.1:2379
  tenure demo counter --workers 20 --json
  tenure demo failover --url etcd://127.0.0.1:2379
  tenure demo semaphore --url zk://127.0.0.1:2181";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Which scenario to run
    #[arg(value_enum, default_value_t = Scenario::Counter)]
    pub scenario: Scenario,

    /// Workers (each with its own session) in the counter scenario
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub workers: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Counter,
    Expiry,
    Trylock,
    Failover,
    Semaphore,
    Rwlock,
    All,
}

/// The one subcommand that defaults to the in-process store: it coordinates only itself.
const DEFAULT_URL: &str = "mem://";

pub async fn run(global: &GlobalOpts, args: DemoArgs) -> Result<u8> {
    let url = global.url.as_deref().unwrap_or(DEFAULT_URL);
    // The global --ttl is the crashing holder's (expiry) or frozen primary's (failover) TTL;
    // the others use the default.
    let tenure = connect::connect(global, url, None).await?;
    let run_id = format!("{:016x}", RandomState::new().hash_one(std::process::id()));
    let prefix = format!("tenure-demo/{run_id}");
    let json = global.json;
    let chosen = |s: Scenario| args.scenario == s || args.scenario == Scenario::All;
    let mut sep = Separator { json, first: true };
    if chosen(Scenario::Counter) {
        sep.next()?;
        counter::run(&tenure, args.workers as usize, json, &prefix).await?;
    }
    if chosen(Scenario::Expiry) {
        sep.next()?;
        expiry::run(&tenure, global.ttl, json, &prefix).await?;
    }
    if chosen(Scenario::Trylock) {
        sep.next()?;
        trylock::run(global, &tenure, url, json, &prefix).await?;
    }
    if chosen(Scenario::Failover) {
        sep.next()?;
        failover::run(&tenure, global.ttl, json, &prefix).await?;
    }
    if chosen(Scenario::Semaphore) {
        sep.next()?;
        semaphore::run(&tenure, json, &prefix).await?;
    }
    if chosen(Scenario::Rwlock) {
        sep.next()?;
        rwlock::run(&tenure, json, &prefix).await?;
    }
    Ok(0)
}

/// A blank line between scenarios, for people only.
struct Separator {
    json: bool,
    first: bool,
}

impl Separator {
    fn next(&mut self) -> Result<()> {
        if !std::mem::replace(&mut self.first, false) && !self.json {
            crate::output::line("")?;
        }
        Ok(())
    }
}
