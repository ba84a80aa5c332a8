//! A semaphore-limited worker pool: ten workers (across machines, in real life) share a
//! resource that takes at most three at once, such as a database with three spare connections
//! or a licence server with three seats.
//!
//! ```text
//! cargo run -p tenure-examples --example worker_pool
//! cargo run -p tenure-examples --example worker_pool -- --url etcd://127.0.0.1:2379 --workers 10 --permits 3
//! ```
//!
//! Each worker takes a permit (waiting in arrival order), does its job, and gives it back. The
//! pool's occupancy is counted in the store with guarded writes (each commits only while its
//! permit is held), so the count shows what the store saw: it never goes above the permits.
//! On ZooKeeper the same semaphore is Curator's `InterProcessSemaphoreV2`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tenure::Tenure;

#[derive(Parser)]
struct Args {
    /// Store URL.
    #[arg(long, env = "TENURE_URL", default_value = "mem://worker-pool")]
    url: String,
    /// Semaphore name.
    #[arg(long, default_value = "pools/db")]
    name: String,
    /// Workers, each with its own session.
    #[arg(long, default_value_t = 10)]
    workers: usize,
    /// Permits: how many may work at once.
    #[arg(long, default_value_t = 3)]
    permits: u32,
    /// Jobs per worker.
    #[arg(long, default_value_t = 3)]
    jobs: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tenure = Tenure::connect(&args.url).await?;
    let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for id in 0..args.workers {
        let (tenure, name) = (tenure.clone(), args.name.clone());
        let (inside, most) = (inside.clone(), most.clone());
        let (permits, jobs) = (args.permits, args.jobs);
        workers.push(tokio::spawn(async move {
            let session = tenure.session().await?;
            let pool = session.semaphore(&name, permits)?;
            for job in 0..jobs {
                let permit = pool.acquire().await?;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                println!(
                    "worker {id}: job {job} with permit token {} ({now} working)",
                    permit.token()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                permit.release().await?;
            }
            session.close().await
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let most = most.load(Ordering::SeqCst);
    println!(
        "{} jobs by {} workers; at most {most} at once with {} permits",
        args.workers * args.jobs,
        args.workers,
        args.permits
    );
    assert!(most <= args.permits as usize, "more workers than permits");
    Ok(())
}
