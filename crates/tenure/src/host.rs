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

#[cfg(unix)]
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates what fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    match rc {
        0 => {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        }
        _ => "localhost".to_string(),
    }
}

#[cfg(not(unix))]
fn hostname() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "localhost".to_string())
}
