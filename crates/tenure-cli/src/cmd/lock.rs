//! `tenure lock NAME [-- CMD ARGS…]`: run a command while holding a lock, or hold it until
//! interrupted. flock(1)'s options and exit codes, etcdctl's environment variables. With
//! `--permits N`, one of N permits of a semaphore instead (GNU parallel's `sem -j N`, across
//! machines), with the same options and exit codes.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use tenure::Tenure;
use tokio::time::Instant;

use crate::cli::connect;
use crate::cli::options::{parse_duration, GlobalOpts};
use crate::cmd;
use crate::cmd::lock_side::{self, Guard, Side};
use crate::exit;
use crate::holding::{self, Holding, CLOSE_TIMEOUT};
use crate::requeue;
use crate::signals::Signals;

pub const AFTER_HELP: &str = "\
The command runs in its own process group with the lock's details in its environment:
  TENURE_LOCK_NAME, TENURE_LOCK_KEY, TENURE_FENCING_TOKEN
  and on etcd also ETCD_LOCK_KEY and ETCD_LOCK_REV (= the token), as `etcdctl lock` sets them.
SIGINT, SIGTERM and SIGHUP are forwarded to the command's process group. If the lock is lost
while the command runs, the group gets SIGTERM, then SIGKILL after --grace, and tenure exits 75.
Without a command: prints the key and fencing token, holds until SIGINT, SIGTERM or SIGHUP,
then releases.
Interrupted while still waiting: leaves the queue (no key left behind) and exits 128+N.
With --permits N, NAME is a semaphore of N permits and the command runs while holding one:
at most N commands run at once across every machine (GNU parallel's `sem -j N`). Every
client of NAME must use the same N (exit 2 otherwise). -n, -w, -E, --grace, --value and the
exit codes are the same; the environment also has TENURE_PERMITS. On ZooKeeper the
semaphore is Curator's InterProcessSemaphoreV2; Redlock refuses semaphores (exit 2).
--shared and --exclusive take the read/write lock NAME (many --shared holders at once, or
one --exclusive), in arrival order: a --shared that arrives behind a waiting --exclusive
waits behind it. Without either, the plain mutex NAME (etcdctl lock NAME's); on etcd,
ZooKeeper and mem:// it excludes and is excluded by both sides all the same, on Redis it is
a lock apart.

Exit codes:
  (command's)  the command's own exit code; 128+N if it died of signal N
  0            without a command: released after a signal
  1            the lock (every permit) is held (-n) or --wait ran out (change it with -E)
  2            usage: bad option, URL, name or duration; no --url; mem:// given; a
               --permits count other than the one the semaphore's holders use
  69           the store is unreachable or failing
  70           internal error
  75           the lock was lost while held (the command was stopped); a session lost while
               still waiting is replaced by a new one and the wait goes on (logged at -v)
  77           the store refused our credentials, certificate or permission
  126 / 127    the command could not be executed / was not found
  130 / 143    interrupted by SIGINT / SIGTERM while waiting for the lock

Examples:
  tenure lock --url etcd://127.0.0.1:2379 backups -- ./backup.sh
  tenure lock -n -E 0 --url etcd://127.0.0.1:2379 cron/hourly -- ./hourly.sh
  tenure lock -w 30s --url etcd://127.0.0.1:2379 deploy -- sh -c 'deploy --fence $TENURE_FENCING_TOKEN'
  tenure lock --permits 3 --url etcd://127.0.0.1:2379 encoders -- ./encode.sh big.mov
  tenure lock --shared --url etcd://127.0.0.1:2379 config -- ./read-config.sh
  tenure lock --exclusive --url etcd://127.0.0.1:2379 config -- ./rewrite-config.sh";

#[derive(Debug, Args)]
pub struct LockArgs {
    /// Lock name: the key prefix in the store (`etcdctl lock NAME` takes the same lock)
    pub name: String,

    /// Fail at once if the lock is held
    #[arg(short = 'n', long, conflicts_with = "wait")]
    pub no_wait: bool,

    /// Give up after waiting this long (0 = same as -n)
    #[arg(short = 'w', long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,

    /// Exit code when the lock is held (-n) or the wait runs out (-w)
    #[arg(short = 'E', long, value_name = "N", default_value_t = exit::CONFLICT)]
    pub conflict_exit_code: u8,

    /// After the lock is lost: time between SIGTERM and SIGKILL to the command's group
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,

    /// The value to hold with (what `tenure status` shows; not kept on Redis) [default: HOST:PID]
    #[arg(long, value_name = "V")]
    pub value: Option<String>,

    /// Hold one of N permits of a semaphore named NAME instead (at most N holders at once);
    /// every client of NAME must use the same N
    #[arg(long, value_name = "N", conflicts_with_all = ["shared", "exclusive"], value_parser = clap::value_parser!(u32).range(1..=i64::from(tenure::MAX_PERMITS)))]
    pub permits: Option<u32>,

    /// Take the read/write lock NAME shared, with other --shared holders (as flock -s)
    #[arg(short = 's', long, conflicts_with = "exclusive")]
    pub shared: bool,

    /// Take the read/write lock NAME exclusive (as flock -x); without --shared or
    /// --exclusive, the plain mutex NAME, which etcdctl lock, Curator and redis-py share
    #[arg(short = 'x', long)]
    pub exclusive: bool,

    /// Command to run while holding the lock, after `--`
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub async fn run(global: &GlobalOpts, args: LockArgs) -> Result<u8> {
    holding::check_name(&args.name)?;
    let mut signals = Signals::install()?;
    let waiting = format!("{:?}", args.name);
    let tenure = match signals.race(connect::coordinating(global, "lock")).await {
        Ok(tenure) => tenure?,
        Err(sig) => return Ok(holding::interrupted(sig, &waiting)),
    };
    let what = match args.permits {
        Some(n) => format!("a permit of {:?} ({n} permits)", args.name),
        None => format!("lock {:?}", args.name),
    };
    let budget = if args.no_wait {
        Some(Duration::ZERO)
    } else {
        args.wait
    };
    let side = Side::from_flags(args.shared, args.exclusive, args.permits);
    let granted = requeue::until_granted(&tenure, budget, &mut signals, &what, |session, left| {
        lock_side::wait_for(session, &args.name, side, args.value.as_deref(), left)
    });
    let (session, guard) = match granted.await {
        Ok(granted) => granted,
        Err(stop) => {
            let sig = stop.into_failure(args.conflict_exit_code)?;
            return Ok(holding::interrupted(sig, &waiting));
        }
    };
    tracing::info!(key = guard.key(), token = %guard.token(), "acquired");
    let held = if args.command.is_empty() {
        let holding = Holding {
            name: guard.name(),
            key: guard.key(),
            token: guard.token().get(),
            value: None,
        };
        holding::hold(&holding, &what, guard.lost(), &mut signals, global.json).await
    } else {
        let env = command_env(&tenure, &guard, &args.name, args.permits);
        let lost = guard.lost();
        holding::run_command(&args.command, &env, lost, &mut signals, args.grace, &what).await
    };
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let lost_at_release = holding::release(guard.release(), deadline, &what).await;
    cmd::close_session(session, deadline.saturating_duration_since(Instant::now())).await;
    holding::outcome(held, lost_at_release)
}

/// The lock's details for the command, as `etcdctl lock` exports them on etcd too (for a
/// permit, TENURE_PERMITS instead: etcdctl has no semaphores).
fn command_env(
    tenure: &Tenure,
    guard: &Guard,
    name: &str,
    permits: Option<u32>,
) -> Vec<(&'static str, String)> {
    let key = guard.key().to_string();
    let token = guard.token().to_string();
    let mut env = vec![
        ("TENURE_LOCK_NAME", name.to_string()),
        ("TENURE_LOCK_KEY", key.clone()),
        ("TENURE_FENCING_TOKEN", token.clone()),
    ];
    if let Some(permits) = permits {
        env.push(("TENURE_PERMITS", permits.to_string()));
    } else if tenure.backend() == "etcd" && matches!(guard, Guard::Mutex(_)) {
        // What `etcdctl lock NAME CMD` exports, so scripts written for it keep working.
        env.extend([("ETCD_LOCK_KEY", key), ("ETCD_LOCK_REV", token)]);
    }
    env
}
