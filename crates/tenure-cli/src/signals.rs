//! The signals a supervisor cares about: SIGINT, SIGTERM and SIGHUP.
//!
//! Once these handlers are installed the process no longer dies of them, so every phase
//! (waiting, holding, running a command) decides for itself what a signal means.

use std::future::Future;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> Result<Self> {
        let on = |kind: SignalKind| signal(kind).context("installing a signal handler");
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// The next signal's number. Cancellation-safe.
    pub async fn recv(&mut self) -> i32 {
        // A stream only ends when the runtime shuts down; then nothing more will arrive.
        tokio::select! {
            Some(()) = self.int.recv() => libc::SIGINT,
            Some(()) = self.term.recv() => libc::SIGTERM,
            Some(()) = self.hup.recv() => libc::SIGHUP,
            else => std::future::pending::<i32>().await,
        }
    }

    /// Runs `fut` unless a signal comes first; then `Err(signal number)` and `fut` is dropped.
    pub async fn race<F: Future>(&mut self, fut: F) -> Result<F::Output, i32> {
        tokio::select! {
            out = fut => Ok(out),
            sig = self.recv() => Err(sig),
        }
    }
}

/// The signal's name, for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGKILL => "SIGKILL",
        _ => "a signal",
    }
}
