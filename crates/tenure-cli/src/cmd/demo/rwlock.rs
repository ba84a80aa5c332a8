//! The read/write lock scenario: three readers hold at once, a writer queues behind them and
//! a late reader behind the writer (arrival order: it does not jump the writer); the writer
//! holds alone once the readers leave, then downgrades, and the late reader joins it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use tenure::Tenure;

use super::timeline::Timeline;

/// Who is inside, as the holders report it.
#[derive(Default)]
struct Inside {
    readers: AtomicUsize,
    writers: AtomicUsize,
}

/// Waits until the status of `name` shows `n` entries queued behind its holders; on a store
/// that cannot list (Redis), gives the waiter a moment instead.
async fn queued(tenure: &Tenure, name: &str, n: usize) {
    for _ in 0..500 {
        match tenure.status(name).await {
            Ok(st) if st.iter().any(|s| s.name == name && s.waiters >= n) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => return tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

pub async fn run(tenure: &Tenure, json: bool, prefix: &str) -> Result<()> {
    let name = format!("{prefix}/rwlock");
    let tl = Arc::new(Timeline::start("rwlock", json));
    tl.heading("readers share, a writer is alone, arrivals keep their order")?;
    let inside = Arc::new(Inside::default());
    let mut readers = Vec::new();
    for i in 1..=3 {
        let session = tenure.session().await?;
        let guard = session.rwlock(&name)?.read().await?;
        let n = inside.readers.fetch_add(1, Ordering::SeqCst) + 1;
        tl.event(
            "reader_holds",
            &format!(
                "reader {i} holds (token {}); readers inside: {n}",
                guard.token()
            ),
        )?;
        readers.push((session, guard));
    }
    let writer = tokio::spawn({
        let (session, tl, inside) = (tenure.session().await?, tl.clone(), inside.clone());
        let name = name.clone();
        async move {
            let guard = session.rwlock(&name)?.write().await?;
            if inside.readers.load(Ordering::SeqCst) != 0 {
                bail!("the writer got in beside readers: exclusion is broken");
            }
            inside.writers.fetch_add(1, Ordering::SeqCst);
            tl.event(
                "writer_holds",
                &format!(
                    "the writer holds alone (token {}); readers inside: 0",
                    guard.token()
                ),
            )?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            inside.readers.fetch_add(1, Ordering::SeqCst);
            inside.writers.fetch_sub(1, Ordering::SeqCst);
            let read = guard.downgrade().await?;
            tl.event(
                "writer_downgrades",
                "the writer downgrades: still holding, now shared; no writer can get in",
            )?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            inside.readers.fetch_sub(1, Ordering::SeqCst);
            tl.event("writer_leaves", "the former writer leaves")?;
            read.unlock().await?;
            session.close().await?;
            anyhow::Ok(())
        }
    });
    tl.event("writer_waits", "a writer arrives and waits for the readers")?;
    queued(tenure, &name, 1).await;
    let late = tokio::spawn({
        let (session, tl, inside) = (tenure.session().await?, tl.clone(), inside.clone());
        let name = name.clone();
        async move {
            let guard = session.rwlock(&name)?.read().await?;
            if inside.writers.load(Ordering::SeqCst) != 0 {
                bail!("a reader got in beside the writer: exclusion is broken");
            }
            let n = inside.readers.fetch_add(1, Ordering::SeqCst) + 1;
            tl.event(
                "late_reader_holds",
                &format!(
                    "the late reader holds (token {}), after the writer; readers inside: {n}",
                    guard.token()
                ),
            )?;
            inside.readers.fetch_sub(1, Ordering::SeqCst);
            guard.unlock().await?;
            session.close().await?;
            anyhow::Ok(())
        }
    });
    tl.event(
        "late_reader_waits",
        "a late reader arrives behind the waiting writer and waits too (no writer starvation)",
    )?;
    queued(tenure, &name, 2).await;
    for (i, (session, guard)) in readers.into_iter().enumerate() {
        inside.readers.fetch_sub(1, Ordering::SeqCst);
        tl.event("reader_leaves", &format!("reader {} leaves", i + 1))?;
        guard.unlock().await?;
        session.close().await?;
    }
    writer.await??;
    late.await??;
    Ok(())
}
