//! Fencing tokens (C2).

use std::fmt;

/// A number that strictly increases across successive holders of one name and never changes
/// for one holder. Pass it to the resource you protect and have it refuse writes carrying a
/// smaller token than the largest it has seen: that is what makes a lock safe against a
/// holder that was paused past its lease.
///
/// etcd: the holder key's create revision. Embedded: the store's revision counter. Redis:
/// `INCR <name>:fence` in the acquire script — strictly increasing on one primary, but not
/// across a fail-over to a replica that missed the last `INCR`, nor across a restart without
/// persistence; under Redlock, the granting majority's largest counter, written back to it.
///
/// With the `serde` feature it is a plain number (`7`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// use tenure::{FencingToken, Write};
/// let guard = tenure.session().await?.mutex("jobs")?.lock().await?;
/// let token: FencingToken = guard.token();
/// // The protected resource keeps the largest token it saw and refuses smaller ones.
/// let seen = FencingToken(0);
/// assert!(token > seen);
/// guard.write([Write::put("jobs/fence", token.to_string())]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct FencingToken(pub u64);

impl FencingToken {
    /// The token as a number.
    ///
    /// ```
    /// let token = tenure::FencingToken(7);
    /// assert_eq!(token.get(), 7);
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
