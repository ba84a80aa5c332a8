//! Exit codes: one place that decides what a script sees in `$?`.
//!
//! The numbers follow flock(1) for conflicts, the shell for commands (126/127, 128+N) and
//! sysexits.h for the rest, so scripts can tell "try again later" from "fix your invocation".

use std::fmt;
use std::process::ExitStatus;

/// The lock is held by someone else (`-n`) or the wait ran out (`-w`); `-E` overrides it.
pub const CONFLICT: u8 = 1;
/// Bad invocation: unknown option, bad URL, name or duration, missing `--url`.
pub const USAGE: u8 = 2;
/// The store could not be reached or keeps failing (EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;
/// Something unexpected inside tenure (EX_SOFTWARE).
pub const SOFTWARE: u8 = 70;
/// The lock was lost while held (EX_TEMPFAIL): whatever it protected may be touched by others.
pub const LOST: u8 = 75;
/// The store refused our credentials, a key (roles/ACLs) or a certificate (EX_NOPERM).
pub const NO_PERMISSION: u8 = 77;
/// The command exists but could not be executed.
pub const NOT_EXECUTABLE: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;

/// An error that already knows its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error: its own if it carries one, else by the library's variant.
pub fn code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(e) = cause.downcast_ref::<tenure::Error>() {
            return for_error(e, CONFLICT);
        }
    }
    SOFTWARE
}

/// The exit code for a library error, with `conflict` for "held by someone else".
pub fn for_error(err: &tenure::Error, conflict: u8) -> u8 {
    use tenure::Error as E;
    match err {
        // Authentication or permission, in either direction (credentials, key ACLs, certificates).
        _ if err.is_permission() => NO_PERMISSION,
        // A wait that ran out while the store kept failing is the store's fault, not a holder's.
        E::Timeout {
            waiting: tenure::Waiting::Retrying { .. },
            ..
        } => UNAVAILABLE,
        E::Locked { .. } | E::Timeout { .. } => conflict,
        E::InvalidUrl { .. }
        | E::InvalidName { .. }
        | E::InvalidDuration { .. }
        | E::BackendDisabled { .. }
        | E::InvalidOption { .. }
        | E::InvalidPermits { .. }
        | E::PermitsDisagree { .. }
        | E::Unsupported { .. } => USAGE,
        E::Unreachable { .. } | E::Transient { .. } | E::Store { .. } | E::Tls { .. } => {
            UNAVAILABLE
        }
        E::SessionLost { .. } | E::LockLost { .. } | E::NotHeld { .. } => LOST,
        E::PermissionDenied { .. } => NO_PERMISSION,
        _ => SOFTWARE,
    }
}

/// The error as one line, its contexts and causes joined by `: ` as `{:#}` would, down to the
/// library's error: that one's message already carries the words of the store error it keeps
/// as its source, which would otherwise be printed twice.
pub fn message(err: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        parts.push(cause.to_string());
        if cause.is::<tenure::Error>() {
            break;
        }
    }
    parts.join(": ")
}

/// The shell's convention for a finished child: its code, or 128+N if signal N killed it.
pub fn of_status(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        // Exit codes are 0..=255 on Unix; the mask only guards against the impossible.
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => signalled(sig),
        (None, None) => SOFTWARE,
    }
}

/// 128+N for signal N, as shells report a process killed by a signal.
pub fn signalled(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_to_documented_codes() {
        let locked = tenure::Error::Locked {
            name: "x".into(),
            holder: None,
        };
        assert_eq!(for_error(&locked, 9), 9);
        let queued = tenure::Error::Timeout {
            name: "x".into(),
            waited: std::time::Duration::from_secs(1),
            waiting: tenure::Waiting::Queued { ahead: None },
        };
        assert_eq!(for_error(&queued, 9), 9);
        let failing = tenure::Error::Timeout {
            name: "x".into(),
            waited: std::time::Duration::from_secs(1),
            waiting: tenure::Waiting::Retrying {
                last_error: "e".into(),
            },
        };
        assert_eq!(for_error(&failing, 9), UNAVAILABLE);
        let unreachable = tenure::Error::Unreachable {
            endpoint: "e".into(),
            reason: "r".into(),
            source: None,
        };
        assert_eq!(code_of(&unreachable.into()), UNAVAILABLE);
        let usage: anyhow::Error = Failure::new(USAGE, "m").into();
        assert_eq!(code_of(&usage.context("outer")), USAGE);
        assert_eq!(code_of(&anyhow::anyhow!("other")), SOFTWARE);
    }

    #[test]
    fn authentication_and_permission_failures_exit_77() {
        let tls = |problem| tenure::Error::Tls {
            endpoint: "e".into(),
            problem,
            detail: "d".into(),
            source: None,
        };
        let refused = [
            tenure::Error::AuthFailed {
                message: "m".into(),
                source: None,
            },
            tenure::Error::PermissionDenied {
                message: "m".into(),
                source: None,
            },
            tls(tenure::TlsProblem::UntrustedServerCertificate),
            tls(tenure::TlsProblem::ClientCertificateRequired),
        ];
        for e in refused {
            assert_eq!(for_error(&e, CONFLICT), NO_PERMISSION, "{e}");
        }
        assert_eq!(
            for_error(&tls(tenure::TlsProblem::Handshake), CONFLICT),
            UNAVAILABLE
        );
        let option = tenure::Error::InvalidOption {
            option: "ca_file",
            reason: "r".into(),
            source: None,
        };
        assert_eq!(for_error(&option, CONFLICT), USAGE);
    }

    #[test]
    fn messages_stop_at_the_library_error() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let option = tenure::Error::InvalidOption {
            option: "password_file",
            reason: format!("cannot read /x: {io}"),
            source: Some(tenure::Cause::new(io)),
        };
        let err = anyhow::Error::from(option).context("connecting");
        assert_eq!(
            message(&err),
            "connecting: invalid option password_file: cannot read /x: no such file"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&plain), format!("{plain:#}"));
    }

    #[test]
    fn statuses_follow_the_shell() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(of_status(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(of_status(ExitStatus::from_raw(15)), 143);
        assert_eq!(signalled(9), 137);
    }
}
