//! Running a protected command: in its own process group, with SIGINT/SIGTERM/SIGHUP forwarded,
//! and stopped — the whole group, not just the direct child — once the grant is lost.
//!
//! The separate process group is what lets us stop everything the command started when the
//! lock is lost (etcdctl lets the child run on; consul orphans it). The price: the command is
//! not in the terminal's foreground group, so terminal Ctrl-C reaches it only through us (we
//! forward it to the whole group, as the terminal would have) and it cannot read the terminal
//! (reading stops it with SIGTTIN; a forwarded signal is followed by SIGCONT so Ctrl-C still
//! ends it).

use std::ffi::OsString;
use std::future::Future;
use std::io::ErrorKind;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result};
use tenure::LostReason;
use tokio::time::{sleep_until, Instant};

use crate::exit::{self, Failure};
use crate::signals::{self, Signals};

/// How often to look for processes left in the group after its leader exited on loss.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// A running command, leader of its own process group.
pub struct Child {
    inner: tokio::process::Child,
    pgid: i32,
}

/// How the command ended.
pub enum Ending {
    /// It finished by itself (or of a signal we forwarded).
    Exited(ExitStatus),
    /// The grant was lost and we stopped it (already reported on stderr).
    Stopped,
}

/// Starts `argv` with inherited stdio and `env` added; 127 if not found, 126 if not runnable.
pub fn spawn(argv: &[OsString], env: &[(&str, String)]) -> Result<Child> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Failure::new(exit::USAGE, "no command given after --").into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .process_group(0);
    let inner = cmd.spawn().map_err(|e| {
        let (code, what) = match e.kind() {
            ErrorKind::NotFound => (exit::NOT_FOUND, "command not found"),
            _ => (exit::NOT_EXECUTABLE, "cannot execute command"),
        };
        Failure::new(code, format!("{what}: {}: {e}", program.to_string_lossy()))
    })?;
    // A child we just spawned and have not waited for always has a pid.
    let pid = inner.id().context("spawned command has no pid")?;
    let pgid = i32::try_from(pid).context("pid out of range")?;
    Ok(Child { inner, pgid })
}

impl Child {
    /// Sends `sig` to every process in the command's group.
    fn signal_group(&self, sig: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names a group.
        let rc = unsafe { libc::kill(-self.pgid, sig) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            tracing::debug!(pgid = self.pgid, sig, %err, "signalling the command's group");
        }
    }

    /// Whether any process of the group is still alive (signal 0 only checks).
    fn group_alive(&self) -> bool {
        // SAFETY: as above; signal 0 delivers nothing.
        unsafe { libc::kill(-self.pgid, 0) == 0 }
    }

    /// Waits for the leader to exit until `deadline`, forwarding signals meanwhile.
    async fn wait_until(
        &mut self,
        signals: &mut Signals,
        deadline: Instant,
    ) -> Result<Option<ExitStatus>> {
        loop {
            tokio::select! {
                status = self.inner.wait() => return Ok(Some(status.context("waiting for the command")?)),
                sig = signals.recv() => self.forward(sig),
                () = sleep_until(deadline) => return Ok(None),
            }
        }
    }

    fn forward(&self, sig: i32) {
        tracing::info!("forwarding {} to the command", signals::name(sig));
        self.signal_and_continue(sig);
    }

    /// Sends `sig`, then SIGCONT (as systemd does), so that a command that is stopped — e.g.
    /// by SIGTTIN after reading the terminal from its background group — acts on it at once.
    fn signal_and_continue(&self, sig: i32) {
        self.signal_group(sig);
        self.signal_group(libc::SIGCONT);
    }
}

/// Runs the command to its end, forwarding signals; if `lost` fires first, stops the whole
/// group (SIGTERM, then SIGKILL after `grace`) and reports why. `what` names the grant.
pub async fn supervise(
    child: &mut Child,
    signals: &mut Signals,
    lost: impl Future<Output = LostReason>,
    grace: Duration,
    what: &str,
) -> Result<Ending> {
    tokio::pin!(lost);
    loop {
        tokio::select! {
            status = child.inner.wait() => {
                return Ok(Ending::Exited(status.context("waiting for the command")?));
            }
            sig = signals.recv() => child.forward(sig),
            reason = &mut lost => {
                eprintln!(
                    "tenure: {what} was lost: {reason}; stopping the command \
                     (SIGTERM now, SIGKILL after {})",
                    humantime::format_duration(grace)
                );
                stop(child, signals, grace).await?;
                return Ok(Ending::Stopped);
            }
        }
    }
}

/// SIGTERM to the group; SIGKILL to whatever of it is left when `grace` runs out.
async fn stop(child: &mut Child, signals: &mut Signals, grace: Duration) -> Result<()> {
    child.signal_and_continue(libc::SIGTERM);
    let deadline = Instant::now() + grace;
    if child.wait_until(signals, deadline).await?.is_some() {
        // The leader is gone; processes it started may still run in its group. There is no
        // notification for "group empty", so look every few milliseconds until the deadline.
        while child.group_alive() && Instant::now() < deadline {
            tokio::time::sleep(GROUP_POLL).await;
        }
        if !child.group_alive() {
            return Ok(());
        }
    }
    eprintln!("tenure: the command did not stop within the grace period; sending SIGKILL");
    child.signal_group(libc::SIGKILL);
    child
        .inner
        .wait()
        .await
        .context("waiting for the killed command")?;
    Ok(())
}
