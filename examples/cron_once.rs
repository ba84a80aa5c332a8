//! Run a cron job once across machines: every machine's cron fires at the same minute, and
//! exactly one of them runs the job for that minute.
//!
//! ```text
//! cargo run -p tenure-examples --example cron_once                     # 5 machines in one process
//! # on each machine's crontab, against a shared store:
//! # * * * * *  cargo run -p tenure-examples --example cron_once -- --url etcd://10.0.0.1:2379 --machines 1
//! ```
//!
//! Each firing takes the lock without waiting (`try_lock`): whoever gets it first checks, under
//! the lock, whether this period's run is recorded already, runs the job if not, and records
//! the run with a guarded write (it commits only while the lock is held, so a machine that lost
//! the lock mid-job cannot record a run it no longer owns). The others skip at once. Unlike
//! a plain lock, a machine whose cron fires late (after the first one has finished and
//! released) still sees the recorded run and skips: the job runs once per period, not once
//! per overlap.

use clap::Parser;
use tenure::{Error, Tenure, Write};

#[derive(Parser)]
struct Args {
    /// Store URL; the default runs every "machine" in this process.
    #[arg(long, env = "TENURE_URL", default_value = "mem://cron-once")]
    url: String,
    /// Job name.
    #[arg(long, default_value = "nightly-report")]
    job: String,
    /// The period this firing belongs to, e.g. the date and minute cron fired for.
    #[arg(long, default_value = "2026-11-30T02:00")]
    period: String,
    /// How many machines fire at once (in this process, each with its own session).
    #[arg(long, default_value_t = 5)]
    machines: usize,
}

/// What one machine's firing did.
#[derive(Debug, PartialEq)]
enum Firing {
    Ran,
    AlreadyDone,
    Busy,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tenure = Tenure::connect(&args.url).await?;
    let mut firings = Vec::new();
    for machine in 0..args.machines {
        let (tenure, job, period) = (tenure.clone(), args.job.clone(), args.period.clone());
        firings.push(tokio::spawn(async move {
            fire(&tenure, &job, &period, machine).await
        }));
    }
    let mut ran = 0;
    for firing in firings {
        if firing.await?? == Firing::Ran {
            ran += 1;
        }
    }
    // A late firing, after everyone finished: the recorded run keeps it from running again.
    let late = fire(&tenure, &args.job, &args.period, args.machines).await?;
    println!("late firing: {late:?}");
    assert_eq!(
        late,
        Firing::AlreadyDone,
        "a late machine must not run it again"
    );
    println!("{} ran {ran} time(s) for {}", args.job, args.period);
    assert!(ran <= 1, "ran more than once");
    Ok(())
}

async fn fire(tenure: &Tenure, job: &str, period: &str, machine: usize) -> tenure::Result<Firing> {
    let session = tenure.session().await?;
    let guard = match session.mutex(&format!("cron/{job}"))?.try_lock().await {
        Ok(guard) => guard,
        Err(Error::Locked { .. }) => {
            println!("machine {machine}: another machine is running {job}; skipping");
            return Ok(Firing::Busy);
        }
        Err(e) => return Err(e),
    };
    let last_run_key = format!("cron/{job}-last-period");
    if tenure.read(&last_run_key).await?.as_deref() == Some(period.as_bytes()) {
        println!("machine {machine}: {job} already ran for {period}; skipping");
        guard.unlock().await?;
        return Ok(Firing::AlreadyDone);
    }
    println!(
        "machine {machine}: running {job} for {period} (token {})",
        guard.token()
    );
    // The job's own work would go here; it can pass guard.token() to what it writes to.
    guard.write([Write::put(last_run_key, period)]).await?;
    guard.unlock().await?;
    Ok(Firing::Ran)
}
