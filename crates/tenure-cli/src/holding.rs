//! What `lock` and `elect` share once they hold their grant (a lock or leadership): holding
//! it until a signal, running a command under supervision, giving it back, and turning all
//! that into one exit code.

use std::ffi::OsString;
use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tenure::{Error, LostReason};
use tokio::time::Instant;

use crate::exit;
use crate::output;
use crate::signals::{self, Signals};
use crate::supervise::{self, Ending};

/// How long giving the grant back (release, then closing the session) may take in all at
/// exit before we leave it to the lease's TTL.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What came of holding a grant.
pub enum HoldEnd {
    /// Done with this exit code, the grant still held until released.
    Finished(u8),
    /// The grant was lost; already reported on stderr.
    Lost,
}

/// A grant as printed without a command: one line `{"name","key","token"}` with `--json`.
#[derive(Serialize)]
pub struct Holding<'a> {
    pub name: &'a str,
    pub key: &'a str,
    pub token: u64,
    /// The leader's value (elections only), lossy UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// No command: say what we hold, then hold it until a signal (`Finished(0)`) or until it is
/// lost. `what` names the grant in messages (`lock "jobs"`).
pub async fn hold(
    holding: &Holding<'_>,
    what: &str,
    lost: impl Future<Output = LostReason>,
    signals: &mut Signals,
    json: bool,
) -> Result<HoldEnd> {
    if json {
        output::json(holding)?;
    } else {
        output::line(format!("key {}\ntoken {}", holding.key, holding.token))?;
    }
    if std::io::stderr().is_terminal() {
        eprintln!("tenure: holding {what}; Ctrl-C or SIGTERM gives it up");
    }
    tokio::select! {
        sig = signals.recv() => {
            tracing::info!("{} received; giving up {what}", signals::name(sig));
            Ok(HoldEnd::Finished(0))
        }
        reason = lost => {
            eprintln!("tenure: {what} was lost: {reason}");
            Ok(HoldEnd::Lost)
        }
    }
}

/// Runs `argv` under supervision with `env` added: signals forwarded, the whole group stopped
/// if `lost` fires first.
pub async fn run_command(
    argv: &[OsString],
    env: &[(&str, String)],
    lost: impl Future<Output = LostReason>,
    signals: &mut Signals,
    grace: Duration,
    what: &str,
) -> Result<HoldEnd> {
    let mut child = supervise::spawn(argv, env)?;
    match supervise::supervise(&mut child, signals, lost, grace, what).await? {
        Ending::Exited(status) => Ok(HoldEnd::Finished(exit::of_status(status))),
        Ending::Stopped => Ok(HoldEnd::Lost),
    }
}

/// Gives the grant back (`release` is the unlock or resign); returns the error if it turned
/// out to be lost before. Other failures only warn: closing the session (or, failing that,
/// the TTL) frees it. Bounded, since a store that stopped answering must not keep us from
/// exiting.
pub async fn release(
    release: impl Future<Output = tenure::Result<()>>,
    deadline: Instant,
    what: &str,
) -> Option<Error> {
    match tokio::time::timeout_at(deadline, release).await {
        Ok(Ok(())) => None,
        Ok(Err(e @ (Error::LockLost { .. } | Error::NotLeader { .. }))) => Some(e),
        Ok(Err(e)) => {
            tracing::warn!("could not give up {what} ({e}); it is freed when the lease ends");
            None
        }
        Err(_) => {
            tracing::warn!("giving up {what} timed out; it is freed when the lease ends");
            None
        }
    }
}

/// The exit code: the command's (or 0) if the grant was held throughout, else 75.
pub fn outcome(held: Result<HoldEnd>, lost_at_release: Option<Error>) -> Result<u8> {
    match held? {
        HoldEnd::Lost => Ok(exit::LOST),
        HoldEnd::Finished(code) => match lost_at_release {
            Some(err) => {
                eprintln!("tenure: {err}; the exit code of what ran under it was {code}");
                Ok(exit::LOST)
            }
            None => Ok(code),
        },
    }
}

/// Says that a signal ended the wait for `what`; the exit code 128+N.
pub fn interrupted(sig: i32, what: &str) -> u8 {
    eprintln!(
        "tenure: {} while waiting for {what}; gave up waiting",
        signals::name(sig)
    );
    exit::signalled(sig)
}

/// Fails with exit 2 before connecting if `name` is not a valid lock or election name, so a
/// bad name is reported as such even when the store is unreachable.
pub fn check_name(name: &str) -> Result<()> {
    tenure::validate_name(name)
        .map_err(|e| exit::Failure::new(exit::for_error(&e, exit::CONFLICT), e.to_string()))?;
    Ok(())
}
