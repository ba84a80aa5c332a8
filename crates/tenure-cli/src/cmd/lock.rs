//! `tenure lock NAME [-- CMD ARGS…]`: run a command while holding a lock, or hold it until
//! interrupted. flock(1)'s options and exit codes, etcdctl's environment variables.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use tenure::{Error, Mutex, MutexGuard, Session, Tenure};
use tokio::time::Instant;

use crate::cli::connect;
use crate::cli::options::{parse_duration, GlobalOpts};
use crate::exit::{self, Failure};
use crate::signals::{self, Signals};
use crate::supervise::{self, Ending};
use crate::{cmd, output};

pub const AFTER_HELP: &str = "\
The command runs in its own process group with the lock's details in its environment:
  TENURE_LOCK_NAME, TENURE_LOCK_KEY, TENURE_FENCING_TOKEN
  and on etcd also ETCD_LOCK_KEY and ETCD_LOCK_REV (= the token), as `etcdctl lock` sets them.
SIGINT, SIGTERM and SIGHUP are forwarded to the command's process group. If the lock is lost
while the command runs, the group gets SIGTERM, then SIGKILL after --grace, and tenure exits 75.
Without a command: prints the key and fencing token, holds until SIGINT, SIGTERM or SIGHUP,
then releases.
Interrupted while still waiting: leaves the queue (no key left behind) and exits 128+N.

Exit codes:
  (command's)  the command's own exit code; 128+N if it died of signal N
  0            without a command: released after a signal
  1            the lock is held (-n) or --wait ran out (change it with -E)
  2            usage: bad option, URL, name or duration; no --url; mem:// given
  69           the store is unreachable or failing
  70           internal error
  75           the lock was lost while held
  77           the store denied permission
  126 / 127    the command could not be executed / was not found
  130 / 143    interrupted by SIGINT / SIGTERM while waiting for the lock

Examples:
  tenure lock --url etcd://127.0.0.1:2379 backups -- ./backup.sh
  tenure lock -n -E 0 --url etcd://127.0.0.1:2379 cron/hourly -- ./hourly.sh
  tenure lock -w 30s --url etcd://127.0.0.1:2379 deploy -- sh -c 'deploy --fence $TENURE_FENCING_TOKEN'";

/// How long releasing (unlock, then closing the session) may take in all at exit before we
/// leave it to the lease's TTL.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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

    /// Command to run while holding the lock, after `--`
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// What came of holding the lock.
enum Held {
    /// Done with this exit code, the lock still held until release.
    Finished(u8),
    /// The lock was lost; already reported on stderr.
    Lost,
}

pub async fn run(global: &GlobalOpts, args: LockArgs) -> Result<u8> {
    let mut signals = Signals::install()?;
    let tenure = match signals.race(connect::coordinating(global, "lock")).await {
        Ok(tenure) => tenure?,
        Err(sig) => return Ok(interrupted(sig, &args.name)),
    };
    let session = match signals.race(tenure.session()).await {
        Ok(session) => session?,
        Err(sig) => return Ok(interrupted(sig, &args.name)),
    };
    let guard = match acquire(&session, &args, &mut signals).await {
        Ok(guard) => guard,
        Err(stop) => {
            cmd::close_session(session, CLOSE_TIMEOUT).await;
            return stop.into_result();
        }
    };
    tracing::info!(key = guard.key(), token = %guard.token(), "acquired");
    let held = if args.command.is_empty() {
        hold(&guard, &mut signals, global.json).await
    } else {
        run_command(&tenure, &guard, &mut signals, &args).await
    };
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let lost_at_release = release(guard, deadline).await;
    cmd::close_session(session, deadline.saturating_duration_since(Instant::now())).await;
    match held? {
        Held::Lost => Ok(exit::LOST),
        Held::Finished(code) => match lost_at_release {
            Some(err) => {
                eprintln!("tenure: {err}; the exit code of what ran under it was {code}");
                Ok(exit::LOST)
            }
            None => Ok(code),
        },
    }
}

/// Why no guard came out of waiting.
enum NotAcquired {
    Signalled(i32),
    Failed(anyhow::Error),
}

impl NotAcquired {
    fn into_result(self) -> Result<u8> {
        match self {
            NotAcquired::Signalled(sig) => Ok(exit::signalled(sig)),
            NotAcquired::Failed(err) => Err(err),
        }
    }
}

/// Waits as the options say; a signal drops the lock future, which withdraws from the queue.
async fn acquire(
    session: &Session,
    args: &LockArgs,
    signals: &mut Signals,
) -> Result<MutexGuard, NotAcquired> {
    let mutex = session
        .mutex(&args.name)
        .map_err(|e| NotAcquired::Failed(e.into()))?;
    match signals.race(wait_for(&mutex, args)).await {
        Ok(Ok(guard)) => Ok(guard),
        Ok(Err(e)) => {
            let code = exit::for_error(&e, args.conflict_exit_code);
            Err(NotAcquired::Failed(
                Failure::new(code, e.to_string()).into(),
            ))
        }
        Err(sig) => {
            interrupted(sig, &args.name);
            Err(NotAcquired::Signalled(sig))
        }
    }
}

async fn wait_for(mutex: &Mutex, args: &LockArgs) -> tenure::Result<MutexGuard> {
    match args.wait {
        _ if args.no_wait => mutex.try_lock().await,
        // flock(1) treats a zero timeout as "do not wait"; so do we.
        Some(wait) if wait.is_zero() => mutex.try_lock().await,
        Some(wait) => mutex.lock_timeout(wait).await,
        None => {
            tracing::info!(name = mutex.name(), "waiting for the lock");
            mutex.lock().await
        }
    }
}

fn interrupted(sig: i32, name: &str) -> u8 {
    eprintln!(
        "tenure: {} while waiting for {name:?}; gave up waiting",
        signals::name(sig)
    );
    exit::signalled(sig)
}

#[derive(Serialize)]
struct HoldingJson<'a> {
    name: &'a str,
    key: &'a str,
    token: u64,
}

/// No command: say what we hold, then hold it until a signal or until it is lost.
async fn hold(guard: &MutexGuard, signals: &mut Signals, json: bool) -> Result<Held> {
    if json {
        output::json(&HoldingJson {
            name: guard.name(),
            key: guard.key(),
            token: guard.token().get(),
        })?;
    } else {
        output::line(format!("key {}\ntoken {}", guard.key(), guard.token()))?;
    }
    if std::io::stderr().is_terminal() {
        eprintln!(
            "tenure: holding {:?}; Ctrl-C or SIGTERM releases it",
            guard.name()
        );
    }
    tokio::select! {
        sig = signals.recv() => {
            tracing::info!("{} received; releasing", signals::name(sig));
            Ok(Held::Finished(0))
        }
        reason = guard.lost() => {
            eprintln!("tenure: lock {:?} was lost: {reason}", guard.name());
            Ok(Held::Lost)
        }
    }
}

/// Runs the command under supervision with the lock's details in its environment.
async fn run_command(
    tenure: &Tenure,
    guard: &MutexGuard,
    signals: &mut Signals,
    args: &LockArgs,
) -> Result<Held> {
    let key = guard.key().to_string();
    let token = guard.token().to_string();
    let mut env = vec![
        ("TENURE_LOCK_NAME", args.name.clone()),
        ("TENURE_LOCK_KEY", key.clone()),
        ("TENURE_FENCING_TOKEN", token.clone()),
    ];
    if tenure.backend() == "etcd" {
        // What `etcdctl lock NAME CMD` exports, so scripts written for it keep working.
        env.extend([("ETCD_LOCK_KEY", key), ("ETCD_LOCK_REV", token)]);
    }
    let mut child = supervise::spawn(&args.command, &env)?;
    let what = format!("lock {:?}", args.name);
    let lost = guard.lost();
    match supervise::supervise(&mut child, signals, lost, args.grace, &what).await? {
        Ending::Exited(status) => Ok(Held::Finished(exit::of_status(status))),
        Ending::Stopped => Ok(Held::Lost),
    }
}

/// Releases the lock; returns the error if it turned out to be lost before release. Other
/// failures only warn: closing the session (or, failing that, the TTL) frees the lock. Bounded,
/// since a store that stopped answering must not keep us from exiting.
async fn release(guard: MutexGuard, deadline: Instant) -> Option<Error> {
    match tokio::time::timeout_at(deadline, guard.unlock()).await {
        Ok(Ok(())) => None,
        Ok(Err(e @ Error::LockLost { .. })) => Some(e),
        Ok(Err(e)) => {
            tracing::warn!("could not release the lock ({e}); it is freed when the lease ends");
            None
        }
        Err(_) => {
            tracing::warn!("releasing the lock timed out; it is freed when the lease ends");
            None
        }
    }
}
