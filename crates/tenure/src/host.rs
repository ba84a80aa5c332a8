//! Which process this is, in the form people read in `tenure status` and `tenure leader`.

/// `HOST:PID` of this process: the value a [`crate::Mutex`] holder records by default (see
/// [`crate::Mutex::with_value`]), as Curator records the holder's address, and what `tenure
/// elect` proposes by default, so that `tenure status` says which process holds or leads.
///
/// ```
/// let me = tenure::host_pid();
/// assert!(me.ends_with(&format!(":{}", std::process::id())));
/// ```
pub fn host_pid() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// The machine's name as the kernel has it (Linux), else as the environment says, else
/// `localhost`: no `unsafe` and no C library call for an informational value.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
