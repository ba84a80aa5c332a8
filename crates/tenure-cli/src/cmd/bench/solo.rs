//! Single-caller measurements: the floor (a plain write) and the uncontended lock cycle.

use std::time::Duration;

use anyhow::Result;
use tenure::{Tenure, Write};
use tokio::time::Instant;

use crate::stats::{self, Summary};

/// Untimed rounds first, so connection set-up and caches do not count.
const WARM_UP: usize = 10;

/// A single caller's latencies and the rate they add up to.
#[derive(Debug, Clone, Copy)]
pub struct Solo {
    pub latency: Summary,
    pub per_s: f64,
}

/// Plain writes through `Tenure::write`: what the store costs with no lock at all.
pub async fn floor(tenure: &Tenure, key: &str, samples: usize) -> Result<Solo> {
    let put = || [Write::put(key, "x")];
    for _ in 0..WARM_UP {
        tenure.write(put()).await?;
    }
    measure(samples, || async { Ok(tenure.write(put()).await?) }).await
}

/// Lock + unlock on one open session with nobody else around.
pub async fn uncontended(tenure: &Tenure, name: &str, samples: usize) -> Result<Solo> {
    let session = tenure.session().await?;
    let mutex = session.mutex(name)?;
    let cycle = || async { Ok(mutex.lock().await?.unlock().await?) };
    for _ in 0..WARM_UP {
        cycle().await?;
    }
    let solo = measure(samples, cycle).await;
    crate::cmd::close_session(session, Duration::from_secs(5)).await;
    solo
}

async fn measure<F, Fut>(samples: usize, mut op: F) -> Result<Solo>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut latencies = Vec::with_capacity(samples);
    let start = Instant::now();
    for _ in 0..samples {
        let t = Instant::now();
        op().await?;
        latencies.push(t.elapsed());
    }
    let per_s = samples as f64 / start.elapsed().as_secs_f64();
    Ok(Solo {
        latency: stats::summarize(latencies),
        per_s,
    })
}
