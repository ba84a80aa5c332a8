//! The try-lock scenario: while one client holds the lock, another's try_lock fails at once
//! instead of waiting, and leaves nothing behind in the store.

use anyhow::{bail, Result};
use tenure::{Error, Tenure};
use tokio::time::Instant;

use super::timeline::Timeline;
use crate::cli::{connect, options::GlobalOpts};

pub async fn run(
    global: &GlobalOpts,
    tenure: &Tenure,
    url: &str,
    json: bool,
    prefix: &str,
) -> Result<()> {
    let name = format!("{prefix}/trylock");
    let tl = Timeline::start("trylock", json);
    tl.heading("a second client tries a held lock")?;
    let a = tenure.session().await?;
    let guard = a.mutex(&name)?.lock().await?;
    tl.event(
        "a_locked",
        &format!("client A locked {name:?} (fencing token {})", guard.token()),
    )?;
    // A separate connection, as another process would have.
    let other = connect::connect(global, url, None).await?;
    let b = other.session().await?;
    let asked = Instant::now();
    match b.mutex(&name)?.try_lock().await {
        Err(e @ Error::Locked { .. }) => tl.event(
            "b_refused",
            &format!(
                "client B's try_lock fails at once ({:.1} ms): {e}",
                asked.elapsed().as_secs_f64() * 1000.0
            ),
        )?,
        Err(e) => return Err(e.into()),
        Ok(_) => bail!("client B got a lock that client A holds: exclusion is broken"),
    }
    guard.unlock().await?;
    tl.event("a_unlocked", "client A unlocks")?;
    let taken = b.mutex(&name)?.try_lock().await?;
    tl.event(
        "b_locked",
        &format!(
            "client B's try_lock now succeeds (fencing token {})",
            taken.token()
        ),
    )?;
    taken.unlock().await?;
    b.close().await?;
    a.close().await?;
    Ok(())
}
