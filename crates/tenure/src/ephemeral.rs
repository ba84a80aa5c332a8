//! Ephemeral keys and prefix watches: a service registers itself under its session, and others
//! follow the live set.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::backend::observe::{Change, Kv, PrefixWatch};
use crate::{Error, Result, Session, Tenure};

impl Session {
    /// Puts `key` = `value` for exactly as long as this session lives: closing it, losing it
    /// or crashing removes the key (etcd: the key is attached to the lease; ZooKeeper: an
    /// ephemeral node, its parents made as containers; `mem://`: attached to the lease; one
    /// Redis instance: a key expiring with the session's heartbeat key and renewed with it,
    /// so a crashed process's key goes within the TTL). A
    /// second put of the same key replaces its value. A key that exists and is not this
    /// session's (another session's, or a plain key) is left alone: [`Error::Locked`].
    ///
    /// Redlock answers [`Error::Unsupported`]: its masters are independent, with no single
    /// order of changes a watcher could follow.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::connect("mem://ephemeral-doc").await?;
    /// let session = tenure.session().await?;
    /// session.put_ephemeral("services/web-1", "10.0.0.5:8080").await?;
    /// assert_eq!(tenure.read("services/web-1").await?, Some(b"10.0.0.5:8080".to_vec()));
    /// session.close().await?;
    /// assert_eq!(tenure.read("services/web-1").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn put_ephemeral(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<()> {
        crate::name::validate(key)?;
        let backend = &self.inner.backend;
        if let Some(reason) = backend.liveness().reason() {
            return Err(Error::SessionLost { reason });
        }
        if backend.put_ephemeral(key, &value.into()).await? {
            Ok(())
        } else {
            Err(Error::Locked {
                name: key.to_string(),
                holder: None,
            })
        }
    }
}

impl Tenure {
    /// Every key under `prefix` and every change to them, as a [`KeyWatcher`] stream: first a
    /// [`KeyEvent::Put`] for each key there now, then each put and delete in the store's order.
    /// With [`Session::put_ephemeral`] it is service discovery: members register themselves,
    /// and a watcher follows the live set, a crashed member's delete arriving within its TTL.
    ///
    /// On ZooKeeper `prefix` is a node whose children are watched (`services/` or
    /// `services`; one level, as ZooKeeper watches go): their creation, deletion and values.
    /// ZooKeeper watches are one-shot, so a value that held only between two reads can be
    /// missed; what is reported was true when read, in order. Keys come back as they were
    /// given (without a leading `/` unless `prefix` has one).
    ///
    /// On one Redis instance it needs no server configuration (no keyspace notifications):
    /// Tenure's own scripts publish each put and delete, and the watcher looks again at each
    /// key when it would expire, so a crashed owner's delete arrives within its TTL. Only
    /// keys put with [`Session::put_ephemeral`] are seen (a plain `SET` is not). Pub/sub
    /// loses messages across a reconnect, so the watch then ends with
    /// [`Error::ObserveEnded`]. A user confined by an ACL needs the channel pattern
    /// `tenure:ephemeral:<prefix>*` itself (Redis compares pattern subscriptions literally).
    /// Redlock answers [`Error::Unsupported`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// use tenure::KeyEvent;
    /// let tenure = tenure::Tenure::connect("mem://watch-doc").await?;
    /// let mut live = tenure.watch_prefix("services/").await?;
    /// let web = tenure.session().await?;
    /// web.put_ephemeral("services/web-1", "10.0.0.5:8080").await?;
    /// let put = KeyEvent::Put { key: "services/web-1".into(), value: b"10.0.0.5:8080".to_vec() };
    /// assert_eq!(live.next().await.transpose()?, Some(put));
    /// web.close().await?;
    /// let gone = KeyEvent::Deleted { key: "services/web-1".into() };
    /// assert_eq!(live.next().await.transpose()?, Some(gone));
    /// # Ok(()) }
    /// ```
    pub async fn watch_prefix(&self, prefix: &str) -> Result<KeyWatcher> {
        let backend = self.backend_ref();
        let watch = backend.watch_keys(prefix).await?;
        let unrooted = backend.rooted_names() && !prefix.starts_with('/');
        Ok(KeyWatcher::new(prefix, watch, unrooted))
    }
}

/// One change under a watched prefix.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// use tenure::KeyEvent;
/// let session = tenure.session().await?;
/// session.put_ephemeral("services/api/host-a", "10.0.0.7:8080").await?;
/// let mut watcher = tenure.watch_prefix("services/api/").await?;
/// match watcher.next().await.transpose()? {
///     Some(KeyEvent::Put { key, value }) => println!("{key} at {}", String::from_utf8_lossy(&value)),
///     Some(KeyEvent::Deleted { key }) => println!("{key} is gone"),
///     _ => {}
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyEvent {
    /// `key` was created, or its value replaced, or it was there when the watch began.
    Put {
        /// The key.
        key: String,
        /// Its value.
        value: Vec<u8>,
    },
    /// `key` was deleted (by its owner, or with its session).
    Deleted {
        /// The key.
        key: String,
    },
}

/// The stream [`Tenure::watch_prefix`] returns: a [`futures_util::Stream`] of
/// `Result<`[`KeyEvent`]`>`. When the store's watch breaks it yields
/// [`Error::ObserveEnded`] once, then ends; watch again to go on (the new watch starts with the
/// keys there then).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// use futures_util::StreamExt;
/// let watcher: tenure::KeyWatcher = tenure.watch_prefix("services/").await?;
/// let session = tenure.session().await?;
/// session.put_ephemeral("services/api/host-a", "10.0.0.7:8080").await?;
/// session.close().await?; // its keys go with it
/// let events: Vec<_> = watcher.take(2).collect().await;
/// assert!(matches!(events[1], Ok(tenure::KeyEvent::Deleted { .. })), "{events:?}");
/// # Ok(()) }
/// ```
pub struct KeyWatcher {
    events: Pin<Box<dyn Stream<Item = Result<KeyEvent>> + Send>>,
}

impl std::fmt::Debug for KeyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyWatcher")
    }
}

impl KeyWatcher {
    fn new(prefix: &str, watch: PrefixWatch, unrooted: bool) -> Self {
        let given = move |key: String| match key.strip_prefix('/') {
            Some(rest) if unrooted => rest.to_string(),
            _ => key,
        };
        let put = move |kv: Kv| KeyEvent::Put {
            key: given(kv.key),
            value: kv.value,
        };
        let initial = futures_util::stream::iter(watch.initial.into_iter().map(put).map(Ok));
        let prefix = prefix.to_string();
        let changes = futures_util::stream::unfold(Some(watch.changes), move |changes| {
            let prefix = prefix.clone();
            async move {
                let mut changes = changes?;
                let event = match changes.recv().await {
                    Some(Ok(Change::Put(kv))) => Ok(put(kv)),
                    Some(Ok(Change::Delete(key))) => Ok(KeyEvent::Deleted { key: given(key) }),
                    Some(Err(e)) => Err(ended(&prefix, e.to_string())),
                    None => Err(ended(&prefix, "the store's watch closed".into())),
                };
                let more = event.is_ok().then_some(changes);
                Some((event, more))
            }
        });
        KeyWatcher {
            events: Box::pin(futures_util::StreamExt::chain(initial, changes)),
        }
    }

    /// The next event; `None` once the watch has ended. Cancellation-safe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// tenure.session().await?.put_ephemeral("services/api/host-a", "x").await?;
    /// let mut watcher = tenure.watch_prefix("services/").await?;
    /// assert!(matches!(watcher.next().await, Some(Ok(tenure::KeyEvent::Put { .. }))));
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<Result<KeyEvent>> {
        futures_util::StreamExt::next(self).await
    }
}

fn ended(prefix: &str, reason: String) -> Error {
    Error::ObserveEnded {
        name: prefix.to_string(),
        reason,
    }
}

impl Stream for KeyWatcher {
    type Item = Result<KeyEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().events.as_mut().poll_next(cx)
    }
}
