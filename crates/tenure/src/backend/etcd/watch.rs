//! One watch stream per client, shared by every waiter and holder in the process (§4).
//!
//! Each waiter registers a deletion watch under its own id on the shared stream, starting at
//! the revision *after* the read that found its predecessor, so etcd keeps it in the synced
//! group and delivers the delete at once (no 100 ms unsynced catch-up).

use std::collections::HashMap;

use etcd_client::{
    Client, EventType, WatchFilterType, WatchOptions, WatchRequestSender, WatchResponseStream,
};
use tokio::sync::{mpsc, oneshot};

/// How a deletion watch ended.
#[derive(Debug)]
pub(super) enum WatchEnd {
    Deleted,
    Broken(String),
}

enum Cmd {
    Watch {
        id: i64,
        key: String,
        start_rev: i64,
        done: oneshot::Sender<WatchEnd>,
    },
    Cancel {
        id: i64,
    },
}

/// The handle the rest of the backend uses; the stream itself lives in a driver task.
#[derive(Clone)]
pub(super) struct WatchHub {
    tx: mpsc::UnboundedSender<Cmd>,
    next_id: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

/// Cancels its watch when dropped (a waiter that gives up stops watching).
struct Registration {
    hub: WatchHub,
    id: i64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = self.hub.tx.send(Cmd::Cancel { id: self.id });
    }
}

impl WatchHub {
    pub(super) fn spawn(client: Client) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(drive(client, rx));
        WatchHub {
            tx,
            next_id: Default::default(),
        }
    }

    /// Resolves when `key` is deleted at `start_rev` or later.
    pub(super) async fn deleted(&self, key: &str, start_rev: i64) -> WatchEnd {
        let id = 1 + self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (done, rx) = oneshot::channel();
        let cmd = Cmd::Watch {
            id,
            key: key.to_string(),
            start_rev,
            done,
        };
        if self.tx.send(cmd).is_err() {
            return WatchEnd::Broken("watch driver stopped".into());
        }
        let _registration = Registration {
            hub: self.clone(),
            id,
        };
        rx.await
            .unwrap_or_else(|_| WatchEnd::Broken("watch driver stopped".into()))
    }
}

#[derive(Default)]
struct Driver {
    stream: Option<(WatchRequestSender, WatchResponseStream)>,
    waiting: HashMap<i64, oneshot::Sender<WatchEnd>>,
}

impl Driver {
    async fn watch(
        &mut self,
        client: &Client,
        id: i64,
        key: String,
        start_rev: i64,
    ) -> Result<(), String> {
        let opts = WatchOptions::new()
            .with_start_revision(start_rev)
            .with_filters([WatchFilterType::NoPut])
            .with_watch_id(id);
        match &mut self.stream {
            Some((sender, _)) => sender
                .watch(key, Some(opts))
                .await
                .map_err(|e| e.to_string()),
            None => {
                let stream = client
                    .watch_client()
                    .watch(key, Some(opts))
                    .await
                    .map_err(|e| e.to_string())?;
                self.stream = Some(stream.split());
                Ok(())
            }
        }
    }

    fn finish(&mut self, id: i64, end: WatchEnd) {
        if let Some(done) = self.waiting.remove(&id) {
            let _ = done.send(end);
        }
    }

    fn break_all(&mut self, why: &str) {
        self.stream = None;
        for (_, done) in self.waiting.drain() {
            let _ = done.send(WatchEnd::Broken(why.to_string()));
        }
    }

    async fn cancel(&mut self, id: i64) {
        if self.waiting.remove(&id).is_some() {
            if let Some((sender, _)) = &mut self.stream {
                let _ = sender.cancel(id).await;
            }
        }
    }
}

async fn next_message(
    stream: &mut Option<(WatchRequestSender, WatchResponseStream)>,
) -> Result<Option<etcd_client::WatchResponse>, etcd_client::Error> {
    match stream {
        Some((_, responses)) => responses.message().await,
        None => std::future::pending().await,
    }
}

async fn drive(client: Client, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut d = Driver::default();
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Cmd::Watch { id, key, start_rev, done }) => {
                    d.waiting.insert(id, done);
                    if let Err(e) = d.watch(&client, id, key, start_rev).await {
                        d.break_all(&e);
                    }
                }
                Some(Cmd::Cancel { id }) => d.cancel(id).await,
            },
            msg = next_message(&mut d.stream) => match msg {
                Ok(Some(resp)) => {
                    let id = resp.watch_id();
                    if resp.canceled() {
                        let why = format!("watch canceled by etcd: {}", resp.cancel_reason());
                        d.finish(id, WatchEnd::Broken(why));
                    } else if resp.events().iter().any(|e| e.event_type() == EventType::Delete) {
                        d.finish(id, WatchEnd::Deleted);
                        d.cancel_on_stream(id).await;
                    }
                }
                Ok(None) => d.break_all("watch stream closed"),
                Err(e) => d.break_all(&e.to_string()),
            },
        }
    }
}

impl Driver {
    async fn cancel_on_stream(&mut self, id: i64) {
        if let Some((sender, _)) = &mut self.stream {
            let _ = sender.cancel(id).await;
        }
    }
}
