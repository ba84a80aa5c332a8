//! Uncontended lock+unlock on one core: a single-threaded runtime on a thread of its own, so
//! the figure is what one core does, and the CPU time that thread used, so the figure stays
//! meaningful on a machine busy with other work.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::connect;
use crate::cli::options::GlobalOpts;
use crate::output;

/// Cycles run before measuring (allocator and store warm-up).
const WARM_UP: usize = 10_000;

#[derive(Serialize)]
pub struct OneCore {
    workload: &'static str,
    backend: &'static str,
    cycles: usize,
    seconds: f64,
    cpu_seconds: f64,
    cycles_per_s: f64,
    /// Cycles per second of the measuring thread's own CPU time.
    cycles_per_cpu_s: f64,
}

/// Runs `cycles` lock+unlock cycles on lock `name` on a single-threaded runtime of its own.
pub fn run(global: &GlobalOpts, url: &str, name: &str, cycles: usize) -> Result<OneCore> {
    let (global, url, name) = (global.clone(), url.to_string(), name.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a single-threaded runtime")?;
        rt.block_on(measure(&global, &url, &name, cycles))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the one-core benchmark thread panicked"))?
}

async fn measure(global: &GlobalOpts, url: &str, name: &str, cycles: usize) -> Result<OneCore> {
    let tenure = connect::connect(global, url, global.ttl).await?;
    let session = tenure.session().await?;
    let mutex = session.mutex(name)?;
    for _ in 0..WARM_UP {
        mutex.lock().await?.unlock().await?;
    }
    let (wall, cpu) = (Instant::now(), thread_cpu_time());
    for _ in 0..cycles {
        mutex.lock().await?.unlock().await?;
    }
    let (seconds, cpu_seconds) = (
        wall.elapsed().as_secs_f64(),
        (thread_cpu_time().saturating_sub(cpu)).as_secs_f64(),
    );
    crate::cmd::close_session(session, Duration::from_secs(5)).await;
    Ok(OneCore {
        workload: "one_core",
        backend: tenure.backend(),
        cycles,
        seconds,
        cpu_seconds,
        cycles_per_s: cycles as f64 / seconds,
        cycles_per_cpu_s: cycles as f64 / cpu_seconds.max(f64::MIN_POSITIVE),
    })
}

/// CPU time used so far by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl OneCore {
    pub fn print(&self, json: bool) -> Result<()> {
        if json {
            return output::json(self);
        }
        output::line(format!(
            "one core, uncontended lock+unlock: {} cycles in {:.3} s = {:.0} cycles/s \
             ({:.0} per CPU-second of the measuring thread)",
            self.cycles, self.seconds, self.cycles_per_s, self.cycles_per_cpu_s
        ))
    }
}
