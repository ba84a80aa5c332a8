//! `tenure elect NAME [-- CMD ARGS…]`: run a command while leader, or lead until interrupted;
//! `tenure elect --observe NAME` follows the leader; `tenure leader NAME` shows it once.
//! On etcd the election is Go's `concurrency.Election`, so `etcdctl elect` takes part.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use tenure::{Leader, Leadership, Session};
use tokio::time::Instant;

use crate::cli::connect;
use crate::cli::options::{parse_duration, GlobalOpts};
use crate::cmd;
use crate::exit::{self, Failure};
use crate::holding::{self, Holding, CLOSE_TIMEOUT};
use crate::output;
use crate::requeue;
use crate::signals::{self, Signals};

pub const AFTER_HELP: &str = "\
Campaigns (waiting in line behind the current leader and earlier candidates), then runs the
command in its own process group with the leadership's details in its environment:
  TENURE_ELECTION_NAME, TENURE_LEADER_KEY, TENURE_FENCING_TOKEN
SIGINT, SIGTERM and SIGHUP are forwarded to the command's process group. If leadership is lost
while the command runs, the group gets SIGTERM, then SIGKILL after --grace, and tenure exits 75.
When the command ends, tenure resigns (the next candidate leads at once) and exits with its code.
Without a command: prints the key and fencing token (--json: {\"name\",\"key\",\"token\",\"value\"}),
leads until SIGINT, SIGTERM or SIGHUP, then resigns and exits 0.
Interrupted while still campaigning: withdraws (no key left behind) and exits 128+N.

--observe prints the current leader and then every change, one line each, until interrupted
(exit 0) or the store's watch breaks (exit 69):
  leader KEY token N value VALUE      or      no leader
  --json: {\"name\",\"key\",\"value\",\"token\"}  or  {\"name\",\"leader\":null}

Exit codes:
  (command's)  the command's own exit code; 128+N if it died of signal N
  0            without a command: resigned after a signal; --observe: interrupted
  2            usage: bad option, URL, name or duration; no --url; mem:// given
  69           the store is unreachable or failing; --observe: the watch broke
  70           internal error
  75           leadership was lost while leading
  77           the store refused our credentials, certificate or permission
  126 / 127    the command could not be executed / was not found
  130 / 143    interrupted by SIGINT / SIGTERM while campaigning

Examples:
  tenure elect --url etcd://127.0.0.1:2379 scheduler -- sh -c 'exec ./scheduler --token \"$TENURE_FENCING_TOKEN\"'
  tenure elect --url etcd://127.0.0.1:2379 --value \"$(hostname):8080\" primary
  tenure elect --url etcd://127.0.0.1:2379 --observe primary --json";

pub const LEADER_AFTER_HELP: &str = "\
Prints `leader KEY token N value VALUE` (--json: {\"name\",\"key\",\"value\",\"token\"}).
Exit codes: 0 a leader was shown; 1 nobody leads ({\"name\",\"leader\":null} with --json);
2 usage; 69 store unreachable; 77 permission denied.
Example:
  tenure leader --url etcd://127.0.0.1:2379 primary";

#[derive(Debug, Args)]
pub struct ElectArgs {
    /// Election name: the key prefix in the store (`etcdctl elect NAME` takes part too)
    pub name: String,

    /// The value to lead with (what `tenure leader` and observers see) [default: HOST:PID]
    #[arg(long, value_name = "V", conflicts_with = "observe")]
    pub value: Option<String>,

    /// After leadership is lost: time between SIGTERM and SIGKILL to the command's group
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s",
          conflicts_with = "observe")]
    pub grace: Duration,

    /// Do not campaign: print the leader and every change until interrupted
    #[arg(long)]
    pub observe: bool,

    /// Command to run while leader, after `--`
    #[arg(last = true, value_name = "CMD", conflicts_with = "observe")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct LeaderArgs {
    /// Election name
    pub name: String,
}

pub async fn run(global: &GlobalOpts, args: ElectArgs) -> Result<u8> {
    holding::check_name(&args.name)?;
    if args.observe {
        return observe(global, &args.name).await;
    }
    let mut signals = Signals::install()?;
    let waiting = format!("leadership of {:?}", args.name);
    let tenure = match signals.race(connect::coordinating(global, "elect")).await {
        Ok(tenure) => tenure?,
        Err(sig) => return Ok(holding::interrupted(sig, &waiting)),
    };
    let value = args.value.clone().unwrap_or_else(tenure::host_pid);
    let campaigning =
        requeue::until_granted(&tenure, None, &mut signals, &waiting, |session, _| {
            campaign(session, &args.name, value.clone())
        });
    // A stopped campaign's session is closed, which revokes its lease and with it the candidacy.
    let (session, leadership) = match campaigning.await {
        Ok(granted) => granted,
        Err(stop) => {
            let sig = stop.into_failure(exit::CONFLICT)?;
            return Ok(holding::interrupted(sig, &waiting));
        }
    };
    tracing::info!(key = leadership.key(), token = %leadership.token(), "leading");
    let what = format!("leadership of {:?}", args.name);
    let held = if args.command.is_empty() {
        let value = leadership.value();
        let holding = Holding {
            name: leadership.name(),
            key: leadership.key(),
            token: leadership.token().get(),
            value: Some(String::from_utf8_lossy(&value).into_owned()),
        };
        let lost = leadership.lost();
        holding::hold(&holding, &what, lost, &mut signals, global.json).await
    } else {
        let env = [
            ("TENURE_ELECTION_NAME", args.name.clone()),
            ("TENURE_LEADER_KEY", leadership.key().to_string()),
            ("TENURE_FENCING_TOKEN", leadership.token().to_string()),
        ];
        let lost = leadership.lost();
        holding::run_command(&args.command, &env, lost, &mut signals, args.grace, &what).await
    };
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let lost_at_resign = holding::release(leadership.resign(), deadline, &what).await;
    cmd::close_session(session, deadline.saturating_duration_since(Instant::now())).await;
    holding::outcome(held, lost_at_resign)
}

/// Campaigns on `session` until leader; dropping it (a signal) withdraws the candidacy.
async fn campaign(session: Session, name: &str, value: String) -> tenure::Result<Leadership> {
    let election = session.election(name)?;
    tracing::info!(name, "campaigning");
    election.campaign(value).await
}

/// One leader (or none) on one line.
#[derive(Serialize)]
#[serde(untagged)]
enum LeaderJson<'a> {
    /// The name, then the leader in the library's shape (tenure's `serde` feature).
    Leader {
        name: &'a str,
        #[serde(flatten)]
        leader: &'a Leader,
    },
    None {
        name: &'a str,
        leader: Option<()>,
    },
}

fn print_leader(name: &str, leader: Option<&Leader>, json: bool) -> Result<()> {
    match (leader, json) {
        (Some(leader), true) => output::json(&LeaderJson::Leader { name, leader }),
        (None, true) => output::json(&LeaderJson::None { name, leader: None }),
        (Some(l), false) => output::line(format!(
            "leader {} token {} value {}",
            l.key,
            l.token,
            String::from_utf8_lossy(&l.value)
        )),
        (None, false) => output::line("no leader"),
    }
}

/// `tenure leader NAME`.
pub async fn leader(global: &GlobalOpts, args: LeaderArgs) -> Result<u8> {
    holding::check_name(&args.name)?;
    // A read: no session, so no lease is granted just to look.
    let tenure = connect::coordinating(global, "leader").await?;
    let leader = tenure.leader(&args.name).await?;
    print_leader(&args.name, leader.as_ref(), global.json)?;
    Ok(if leader.is_some() { 0 } else { exit::CONFLICT })
}

/// `tenure elect --observe NAME`: every change until a signal (0) or the watch ends (69).
async fn observe(global: &GlobalOpts, name: &str) -> Result<u8> {
    let mut signals = Signals::install()?;
    let tenure = match signals.race(connect::coordinating(global, "elect")).await {
        Ok(connected) => connected?,
        Err(_) => return Ok(0),
    };
    let mut observer = tenure.observe(name)?;
    loop {
        match signals.race(observer.next()).await {
            Ok(Some(Ok(leader))) => print_leader(name, leader.as_ref(), global.json)?,
            Ok(Some(Err(e))) => {
                let code = if e.is_permission() {
                    exit::NO_PERMISSION
                } else {
                    exit::UNAVAILABLE
                };
                return Err(Failure::new(code, e.to_string()).into());
            }
            Ok(None) => {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!("observing {name:?} ended: the store's watch closed"),
                )
                .into());
            }
            Err(sig) => {
                tracing::info!("{} received; no longer observing", signals::name(sig));
                return Ok(0);
            }
        }
    }
}
