//! A one-line progress indicator on stderr, drawn only when stderr is a terminal so that logs
//! and pipes stay clean.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

const REDRAW: Duration = Duration::from_millis(100);
/// Steps shorter than this finish before anything is drawn, so quick steps do not flicker.
const SHOW_AFTER: Duration = Duration::from_millis(300);
const WIDTH: usize = 30;

/// Shared by the workers that advance it; cheap to clone.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    done: AtomicUsize,
    drawer: StdMutex<Option<JoinHandle<()>>>,
}

impl Progress {
    /// Starts drawing `label` with a bar out of `total` (or only the elapsed time if 0).
    pub fn start(label: &str, total: usize) -> Progress {
        let inner = Arc::new(Inner {
            done: AtomicUsize::new(0),
            drawer: StdMutex::new(None),
        });
        if std::io::stderr().is_terminal() {
            let task = tokio::spawn(draw(inner.clone(), label.to_string(), total));
            *inner.drawer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Progress { inner }
    }

    pub fn tick(&self) {
        self.inner.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops drawing and clears the line.
    pub fn finish(&self) {
        let task = self
            .inner
            .drawer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

async fn draw(inner: Arc<Inner>, label: String, total: usize) {
    let start = Instant::now();
    tokio::time::sleep(SHOW_AFTER).await;
    loop {
        let secs = start.elapsed().as_secs_f64();
        let line = match total {
            0 => format!("{label} {secs:.1}s"),
            _ => {
                let done = inner.done.load(Ordering::Relaxed).min(total);
                let filled = done * WIDTH / total;
                let bar = format!("{}{}", "#".repeat(filled), " ".repeat(WIDTH - filled));
                format!("{label} [{bar}] {done}/{total} {secs:.1}s")
            }
        };
        let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
        tokio::time::sleep(REDRAW).await;
    }
}
