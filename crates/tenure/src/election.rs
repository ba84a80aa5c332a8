//! Leader election: campaign, proclaim, resign, leader, observe.

use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::backend::observe::{apply, first, Kv, PrefixWatch};
use crate::backend::Backend;
use crate::hold::Hold;
use crate::metrics::{Meter, Primitive};
use crate::waiting::{self, Stage};
use crate::{Error, FencingToken, LostReason, Result, Session, Tenure, Write};

/// A named election on a [`Session`]; create it with [`Session::election`].
///
/// Candidates lead in arrival order; at most one leads at a time (C1), with a fencing token
/// (C2). On etcd the layout is Go's `concurrency.Election` (`<name>/<lease hex>`, value = the
/// proposal), so `etcdctl elect` takes part in the same election.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// let tenure = tenure::Tenure::connect("mem://").await?;
/// let election = tenure.session().await?.election("primary")?;
/// let leadership = election.campaign("host-a:8080").await?;
/// assert_eq!(election.leader().await?.map(|l| l.value), Some(b"host-a:8080".to_vec()));
/// leadership.proclaim("host-a:9090").await?;
/// leadership.resign().await?;
/// assert!(election.leader().await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Election {
    session: Session,
    name: String,
}

/// Who leads an election, as the store says.
///
/// With the `serde` feature: `{"key": "jobs/694d…", "value": "host-a:8080", "token": 7}`, the
/// value a string when it is UTF-8, else an array of byte values.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// let _leading = tenure.session().await?.election("primary")?.campaign("host-a:8080").await?;
/// if let Some(tenure::Leader { value, token, .. }) = tenure.leader("primary").await? {
///     println!("send work to {} (token {token})", String::from_utf8_lossy(&value));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Leader {
    /// The leader's key (on etcd `<name>/<lease hex>`).
    pub key: String,
    /// The leader's proclaimed value.
    #[cfg_attr(feature = "serde", serde(with = "crate::serialize::value"))]
    pub value: Vec<u8>,
    /// The leader's fencing token.
    pub token: FencingToken,
}

impl From<&Kv> for Leader {
    fn from(kv: &Kv) -> Self {
        Leader {
            key: kv.key.clone(),
            value: kv.value.clone(),
            token: FencingToken(kv.create_rev as u64),
        }
    }
}

impl Election {
    pub(crate) fn new(session: Session, name: &str) -> Self {
        Election {
            session,
            name: name.to_string(),
        }
    }

    /// The election's name (the key prefix in the store).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let election = tenure.session().await?.election("primary")?;
    /// assert_eq!(election.name(), "primary");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until this session leads, proposing `value`. Cancellation-safe: a campaign that
    /// is dropped or fails leaves no candidate key behind (etcd#21128).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let first = tenure.session().await?.election("primary")?.campaign("host-a").await?;
    /// // A second candidate waits in line while the first leads.
    /// let second = tenure.session().await?.election("primary")?;
    /// let waiting = tokio::time::timeout(Duration::from_millis(50), second.campaign("host-b"));
    /// assert!(waiting.await.is_err());
    /// first.resign().await?;
    /// let leading = second.campaign("host-b").await?;
    /// assert_eq!(leading.value(), b"host-b");
    /// # Ok(()) }
    /// ```
    pub async fn campaign(&self, value: impl Into<Vec<u8>>) -> Result<Leadership> {
        let value = value.into();
        let meter = Meter::new(&self.session, Primitive::Election, &self.name);
        let campaign = async {
            let permit = waiting::queue_locally(
                self.session.local_queue(&self.name),
                self.session.inner.backend.liveness(),
            )
            .await?;
            let backend = self.session.inner.backend.clone();
            let grant = backend.campaign(&self.name, &value, permit).await?;
            Ok(Leadership {
                held: Hold::new(backend, grant).metered(&meter),
                name: self.name.clone(),
                value: StdMutex::new(value),
                _session: self.session.clone(),
            })
        };
        meter.acquire(&Stage::new(), true, campaign).await
    }

    /// The current leader, or `None` when nobody campaigns. [`Tenure::leader`] does the same
    /// without a session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let election = tenure.session().await?.election("primary")?;
    /// assert_eq!(election.leader().await?, None);
    /// let leadership = election.campaign("host-a").await?;
    /// assert_eq!(election.leader().await?.map(|l| l.token), Some(leadership.token()));
    /// # Ok(()) }
    /// ```
    pub async fn leader(&self) -> Result<Option<Leader>> {
        leader_of(self.session.inner.store.as_ref(), &self.name).await
    }

    /// A stream of leaders: first the current one (or `None`), then every change of leader or
    /// of its value, in the store's order — never a stale or out-of-order one. It ends with
    /// [`Error::ObserveEnded`] (then `None`) when the store's watch breaks.
    /// [`Tenure::observe`] does the same without a session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let election = tenure.session().await?.election("primary")?;
    /// let mut leaders = election.observe();
    /// assert_eq!(leaders.next().await.transpose()?, Some(None)); // nobody leads yet
    /// let _leading = election.campaign("host-a").await?;
    /// let now = leaders.next().await.transpose()?.flatten();
    /// assert_eq!(now.map(|l| l.value), Some(b"host-a".to_vec()));
    /// # Ok(()) }
    /// ```
    pub fn observe(&self) -> Observer {
        Observer::new(self.session.inner.store.clone(), &self.name)
    }
}

/// The leader of election `name`: the entry with the lowest create revision.
async fn leader_of(store: &dyn Backend, name: &str) -> Result<Option<Leader>> {
    let entries = store.entries(&format!("{name}/")).await?;
    Ok(first(&entries).map(Leader::from))
}

impl Tenure {
    /// The current leader of election `name`, read without a session (no lease is granted).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// let tenure = tenure::Tenure::connect("mem://leader-doc").await?;
    /// assert!(tenure.leader("primary").await?.is_none());
    /// let _l = tenure.session().await?.election("primary")?.campaign("a").await?;
    /// assert_eq!(tenure.leader("primary").await?.map(|l| l.value), Some(b"a".to_vec()));
    /// # Ok(()) }
    /// ```
    pub async fn leader(&self, name: &str) -> Result<Option<Leader>> {
        crate::name::validate(name)?;
        self.backend_ref().elections()?;
        leader_of(self.backend_ref().as_ref(), name).await
    }

    /// Observes election `name` without a session; see [`Election::observe`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let mut leaders = tenure.observe("primary")?;
    /// while let Some(change) = leaders.next().await {
    ///     match change? {
    ///         Some(leader) => println!("leader: {}", String::from_utf8_lossy(&leader.value)),
    ///         None => break, // nobody leads (here: at once, since nobody campaigns)
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn observe(&self, name: &str) -> Result<Observer> {
        crate::name::validate(name)?;
        self.backend_ref().elections()?;
        Ok(Observer::new(self.backend_ref().clone(), name))
    }
}

enum ObserveState {
    Start,
    Watching {
        watch: PrefixWatch,
        last: Option<Leader>,
    },
    Ended,
}

type LeaderChanges = Pin<Box<dyn Stream<Item = Result<Option<Leader>>> + Send>>;

/// The stream of leaders [`Election::observe`] and [`Tenure::observe`] return: a
/// [`futures_util::Stream`] (use `StreamExt::next`, or [`Observer::next`] without importing a
/// trait), so stream combinators apply.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// use futures_util::StreamExt;
/// let tenure = tenure::Tenure::connect("mem://observer-doc").await?;
/// let session = tenure.session().await?;
/// let leaders = tenure.observe("primary")?.filter_map(|l| async move { l.ok().flatten() });
/// let mut leaders = Box::pin(leaders);
/// let _leading = session.election("primary")?.campaign("host-a:8080").await?;
/// assert_eq!(leaders.next().await.map(|l| l.value), Some(b"host-a:8080".to_vec()));
/// # Ok(()) }
/// ```
pub struct Observer {
    name: String,
    changes: LeaderChanges,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("election", &self.name)
            .finish()
    }
}

impl Observer {
    fn new(store: Arc<dyn Backend>, name: &str) -> Self {
        let watched = Watched {
            store,
            name: name.to_string(),
            state: ObserveState::Start,
        };
        let changes = futures_util::stream::unfold(watched, |mut watched| async move {
            let item = watched.next().await?;
            Some((item, watched))
        });
        Observer {
            name: name.to_string(),
            changes: Box::pin(changes),
        }
    }

    /// The next leader change: `Some(Ok(Some(leader)))`, `Some(Ok(None))` when nobody leads,
    /// `Some(Err(_))` once when the watch breaks (or, as [`Error::PermissionDenied`] /
    /// [`Error::AuthFailed`], when the store refuses to show the election), then `None`.
    /// Cancellation-safe: a dropped call loses no change, the next call resumes it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let mut leaders = tenure.observe("primary")?;
    /// assert!(matches!(leaders.next().await, Some(Ok(None))));
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<Result<Option<Leader>>> {
        futures_util::StreamExt::next(self).await
    }
}

impl Stream for Observer {
    type Item = Result<Option<Leader>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().changes.as_mut().poll_next(cx)
    }
}

/// The watch behind an [`Observer`], one step at a time.
struct Watched {
    store: Arc<dyn Backend>,
    name: String,
    state: ObserveState,
}

impl Watched {
    async fn next(&mut self) -> Option<Result<Option<Leader>>> {
        loop {
            match &mut self.state {
                ObserveState::Ended => return None,
                ObserveState::Start => {
                    match self.store.watch_prefix(&format!("{}/", self.name)).await {
                        Ok(watch) => {
                            let leader = first(&watch.initial).map(Leader::from);
                            self.state = ObserveState::Watching {
                                watch,
                                last: leader.clone(),
                            };
                            return Some(Ok(leader));
                        }
                        Err(e) if e.is_permission() => {
                            // Refused, not broken: say so, so the caller fixes its roles.
                            self.state = ObserveState::Ended;
                            return Some(Err(e));
                        }
                        Err(e) => return Some(Err(self.end(e.to_string()))),
                    }
                }
                ObserveState::Watching { watch, last } => {
                    let change = match watch.changes.recv().await {
                        Some(Ok(change)) => change,
                        Some(Err(e)) => return Some(Err(self.end(e.to_string()))),
                        None => return Some(Err(self.end("the store's watch closed".into()))),
                    };
                    apply(&mut watch.initial, change);
                    let now = first(&watch.initial).map(Leader::from);
                    if now != *last {
                        *last = now.clone();
                        return Some(Ok(now));
                    }
                }
            }
        }
    }

    fn end(&mut self, reason: String) -> Error {
        self.state = ObserveState::Ended;
        Error::ObserveEnded {
            name: self.name.clone(),
            reason,
        }
    }
}

/// Leadership of an [`Election`]. Dropping it resigns in the background; call
/// [`Leadership::resign`] to resign and hear about errors.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// # let tenure = tenure::Tenure::connect("mem://").await?;
/// let leadership = tenure.session().await?.election("scheduler")?.campaign("host-a").await?;
/// let schedule = async { /* schedule jobs while leading */ };
/// let lost = tokio::select! {
///     reason = leadership.lost() => Some(reason),
///     () = schedule => None,
/// };
/// match lost {
///     Some(reason) => eprintln!("no longer leader ({reason}): stop scheduling"),
///     None => leadership.resign().await?,
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "leadership is resigned when this is dropped"]
pub struct Leadership {
    held: Hold,
    name: String,
    /// The last value the store confirmed.
    value: StdMutex<Vec<u8>>,
    _session: Session,
}

impl Leadership {
    /// The election's name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let leadership = tenure.session().await?.election("primary")?.campaign("a").await?;
    /// assert_eq!(leadership.name(), "primary");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value the store last confirmed for this leader.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let leadership = tenure.session().await?.election("primary")?.campaign("host-a").await?;
    /// assert_eq!(leadership.value(), b"host-a");
    /// # Ok(()) }
    /// ```
    pub fn value(&self) -> Vec<u8> {
        self.value.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the leader's value, only while still leading. On [`Error::NotLeader`] the
    /// leadership is marked lost; on other errors the local value stays the last confirmed one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let leadership = tenure.session().await?.election("primary")?.campaign("host-a:8080").await?;
    /// leadership.proclaim("host-a:9090").await?; // moved port: followers see the new value
    /// assert_eq!(tenure.leader("primary").await?.map(|l| l.value), Some(b"host-a:9090".to_vec()));
    /// # Ok(()) }
    /// ```
    pub async fn proclaim(&self, value: impl Into<Vec<u8>>) -> Result<()> {
        let value = value.into();
        if self.held.proclaim(&value).await? {
            *self.value.lock().unwrap_or_else(|p| p.into_inner()) = value;
            return Ok(());
        }
        self.held.mark_lost(LostReason::EntryDeleted);
        Err(Error::NotLeader {
            name: self.name.clone(),
            reason: self
                .held
                .lost_reason()
                .map_or_else(|| "the leader key is gone".into(), |r| r.to_string()),
        })
    }

    /// Store writes that commit only while still leading (C10).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// use tenure::Write;
    /// let leadership = tenure.session().await?.election("primary")?.campaign("a").await?;
    /// leadership.write([Write::put("config/primary", "v2")]).await?;
    /// assert_eq!(tenure.read("config/primary").await?, Some(b"v2".to_vec()));
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, ops: impl IntoIterator<Item = Write>) -> Result<()> {
        let ops: Vec<Write> = ops.into_iter().collect();
        self.held.write(&ops).await
    }

    /// Steps down, only if still leading; the next candidate leads at once. If the request
    /// fails, the release keeps being retried in the background until it succeeds or the
    /// session ends, so a failed resign never leaves a leader nobody can unseat (etcd#22123).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
    /// # let tenure = tenure::Tenure::connect("mem://").await?;
    /// let leadership = tenure.session().await?.election("primary")?.campaign("a").await?;
    /// leadership.resign().await?;
    /// assert_eq!(tenure.leader("primary").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn resign(self) -> Result<()> {
        self.held.release().await
    }
}

impl std::ops::Deref for Leadership {
    type Target = Hold;

    /// The grant's token, key and lost signal ([`Hold`]).
    fn deref(&self) -> &Hold {
        &self.held
    }
}
