//! `tenure register KEY VALUE [-- CMD ARGS…]`: keep an ephemeral key (service registration)
//! while a command runs, or until interrupted; others follow the live set with
//! `tenure status` or `Tenure::watch_prefix`.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::connect;
use crate::cli::options::{parse_duration, GlobalOpts};
use crate::cmd;
use crate::holding::{self, HoldEnd, CLOSE_TIMEOUT};
use crate::output;
use crate::signals::{self, Signals};

pub const AFTER_HELP: &str = "\
Puts KEY = VALUE under this process's session (etcd: attached to its lease; ZooKeeper: an
ephemeral node; Redis: expiring with, and renewed with, the session's heartbeat key), so the key lives exactly as long as tenure does: it is deleted when the
command ends or tenure is interrupted, and within the TTL (--ttl) if tenure is killed or cut
off. Then runs the command in its own process group, with TENURE_REGISTERED_KEY in its
environment; SIGINT, SIGTERM and SIGHUP are forwarded to the group. If the session is lost
while the command runs, the group gets SIGTERM, then SIGKILL after --grace, and tenure exits 75.
Without a command: prints `registered KEY` (--json: {\"key\",\"value\",\"session\"}) and keeps
the key until SIGINT, SIGTERM or SIGHUP (exit 0).
Redlock cannot keep ephemeral keys (exit 2).

Exit codes:
  (command's)  the command's own exit code; 128+N if it died of signal N
  0            without a command: deregistered after a signal
  1            KEY exists and is not ours (another process's registration, or a plain key)
  2            usage: bad option, URL, key or duration; no --url; mem:// or redlock:// given
  69           the store is unreachable or failing
  75           the session was lost while registered
  77           the store refused our credentials, certificate or permission

Examples:
  tenure register --url etcd://127.0.0.1:2379 services/web/$(hostname) $(hostname):8080 -- ./web
  tenure status --url etcd://127.0.0.1:2379 services/";

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Key to keep while registered (a name like services/web/host-a)
    pub key: String,

    /// Its value, e.g. HOST:PORT
    pub value: String,

    /// After the session is lost: time between SIGTERM and SIGKILL to the command's group
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,

    /// Command to run while registered, after `--`
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// The line printed without a command, with `--json`.
#[derive(Serialize)]
struct Registered<'a> {
    key: &'a str,
    value: &'a str,
    /// The session's id in the store (the etcd lease, the ZooKeeper session, the Redis heartbeat's id), in hex.
    session: String,
}

pub async fn run(global: &GlobalOpts, args: RegisterArgs) -> Result<u8> {
    holding::check_name(&args.key)?;
    let mut signals = Signals::install()?;
    let what = format!("registration of {:?}", args.key);
    let registering = async {
        let tenure = connect::coordinating(global, "register").await?;
        let session = tenure.session().await?;
        session
            .put_ephemeral(&args.key, args.value.as_str())
            .await?;
        anyhow::Ok(session)
    };
    // Interrupted before the key is in: the session (if any) is dropped, which revokes it.
    let session = match signals.race(registering).await {
        Ok(session) => session?,
        Err(sig) => return Ok(holding::interrupted(sig, &what)),
    };
    tracing::info!(key = %args.key, session = format!("{:x}", session.id()), "registered");
    let held = if args.command.is_empty() {
        announce(&args, session.id(), global.json)?;
        let lost = session.lost();
        tokio::select! {
            sig = signals.recv() => {
                tracing::info!("{} received; deregistering", signals::name(sig));
                Ok(HoldEnd::Finished(0))
            }
            reason = lost => {
                eprintln!("tenure: {what} was lost: {reason}");
                Ok(HoldEnd::Lost)
            }
        }
    } else {
        let env = [("TENURE_REGISTERED_KEY", args.key.clone())];
        let lost = session.lost();
        holding::run_command(&args.command, &env, lost, &mut signals, args.grace, &what).await
    };
    // Closing the session deletes the key at once.
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    cmd::close_session(session, deadline.saturating_duration_since(Instant::now())).await;
    holding::outcome(held, None)
}

fn announce(args: &RegisterArgs, session: u64, json: bool) -> Result<()> {
    if json {
        output::json(&Registered {
            key: &args.key,
            value: &args.value,
            session: format!("{session:x}"),
        })
    } else {
        output::line(format!("registered {}", args.key))
    }
}
