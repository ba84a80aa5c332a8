//! One lease keep-alive stream per client, shared by every session's lease (docs/contract.md,
//! Performance rules).
//!
//! etcd answers keep-alive requests for any lease on one stream, one at a time and in the
//! order they came, each answer carrying the lease's ID and its TTL from now (0: the lease is
//! gone). A stream per session holds a gRPC stream with its buffers on the member's connection
//! for as long as the session lives: with a few thousand sessions in one process, opening more
//! slowed to a few per second. So every session renews on this one stream, and each renewal
//! takes the next answer that carries its lease's ID.
//!
//! What a session sees of the stream is what it would see of a stream of its own (C7): a
//! renewal that fails, or finds the stream broken, fails (the session is suspended until a
//! renewal is confirmed again, lost only when its deadline passes); a renewal the stream does
//! not answer in the session's time closes the stream for every session on it and passes its
//! member over, so that the next renewal of each opens a new stream on the next member (C14).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;

use super::map_err;
use super::members::{Members, ATTEMPT_TIMEOUT};
use crate::backend::lease::Renewer;
use crate::{Error, Result};

/// The answer routed to one renewal: the TTL etcd granted (0: the lease is gone), or why the
/// stream broke before answering it.
type Answer = std::result::Result<i64, String>;

/// The keep-alive stream of one client, opened on first use and after each fault.
pub(super) struct KeepAliveHub {
    members: Arc<Members>,
    state: StdMutex<State>,
    /// Told when an opening ends, either way.
    opened: Notify,
    generations: AtomicU64,
}

enum State {
    Closed,
    /// A renewal is opening a stream on `member` (once it has picked one).
    Opening {
        generation: u64,
        member: Option<usize>,
    },
    Open(Arc<Stream>),
}

/// One open stream.
struct Stream {
    generation: u64,
    member: usize,
    /// The renewals sent on this stream and not yet answered, per lease, oldest first: etcd
    /// answers a stream's requests in order, so the next answer for a lease is the oldest
    /// renewal's. `None` once the stream is closed.
    pending: StdMutex<Option<HashMap<i64, VecDeque<Waiting>>>>,
    /// The stream's request side; every renewal sends through a copy of it with its own lease
    /// ID. Taken when the stream is closed, which ends the request side.
    keeper: StdMutex<Option<LeaseKeeper>>,
    /// The task reading the answers.
    reader: StdMutex<Option<AbortHandle>>,
    why_closed: StdMutex<Option<String>>,
}

struct Waiting {
    /// Tells this renewal's entry from its lease's others, to take it back if it was never sent.
    ticket: u64,
    answer: oneshot::Sender<Answer>,
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn broken(message: impl Into<String>) -> Error {
    Error::Transient {
        op: "keep-alive",
        message: message.into(),
        source: None,
    }
}

impl Stream {
    fn new(generation: u64, member: usize, keeper: LeaseKeeper) -> Self {
        Stream {
            generation,
            member,
            pending: StdMutex::new(Some(HashMap::new())),
            keeper: StdMutex::new(Some(keeper)),
            reader: StdMutex::new(None),
            why_closed: StdMutex::new(None),
        }
    }

    /// Ends the stream: every renewal waiting on it fails with `why`, and later ones fail at once.
    fn close(&self, why: &str) {
        lock(&self.why_closed).get_or_insert_with(|| why.to_string());
        let waiting = lock(&self.pending).take();
        for waiting in waiting.into_iter().flat_map(|w| w.into_values()).flatten() {
            let _ = waiting.answer.send(Err(why.to_string()));
        }
        lock(&self.keeper).take();
        if let Some(reader) = lock(&self.reader).take() {
            reader.abort();
        }
    }

    fn why_closed(&self) -> String {
        lock(&self.why_closed)
            .clone()
            .unwrap_or_else(|| "keep-alive stream closed".into())
    }

    /// Hands an answer to the oldest renewal of its lease still waiting.
    fn answer(&self, lease: i64, ttl: i64) {
        let mut pending = lock(&self.pending);
        let Some(by_lease) = pending.as_mut() else {
            return;
        };
        let Some(queue) = by_lease.get_mut(&lease) else {
            return;
        };
        let oldest = queue.pop_front();
        if queue.is_empty() {
            by_lease.remove(&lease);
        }
        drop(pending);
        if let Some(waiting) = oldest {
            let _ = waiting.answer.send(Ok(ttl));
        }
    }

    /// Takes back the entry of a renewal that was never sent (its future was dropped first).
    fn unsent(&self, lease: i64, ticket: u64) {
        let mut pending = lock(&self.pending);
        let Some(by_lease) = pending.as_mut() else {
            return;
        };
        if let Some(queue) = by_lease.get_mut(&lease) {
            queue.retain(|w| w.ticket != ticket);
            if queue.is_empty() {
                by_lease.remove(&lease);
            }
        }
    }

    /// One renewal of `lease` on this stream: the TTL granted, `None` if etcd says the lease
    /// is gone.
    async fn renew(&self, lease: i64, ticket: u64) -> Result<Option<Duration>> {
        let (tx, rx) = oneshot::channel();
        let sender = {
            // Entered before the request goes out, so that its answer finds it.
            let mut pending = lock(&self.pending);
            let Some(by_lease) = pending.as_mut() else {
                return Err(broken(self.why_closed()));
            };
            let Some(keeper) = lock(&self.keeper).as_ref().map(|k| k.sender.clone()) else {
                return Err(broken(self.why_closed()));
            };
            by_lease
                .entry(lease)
                .or_default()
                .push_back(Waiting { ticket, answer: tx });
            keeper
        };
        let mut unsent = Unsent {
            stream: Some(self),
            lease,
            ticket,
        };
        let mut keeper = LeaseKeeper { id: lease, sender };
        let sent = keeper.keep_alive().await;
        unsent.stream = None;
        if let Err(e) = sent {
            self.unsent(lease, ticket);
            return Err(map_err("keep-alive", e));
        }
        drop(keeper);
        match rx.await {
            Ok(Ok(ttl)) if ttl > 0 => Ok(Some(Duration::from_secs(ttl as u64))),
            Ok(Ok(_)) => Ok(None),
            Ok(Err(why)) => Err(broken(why)),
            Err(_) => Err(broken(self.why_closed())),
        }
    }
}

/// Takes a renewal's entry back if its request was never sent (a dropped send is not sent:
/// tokio's `Sender::send` is cancel-safe), so that its lease's next answer is not handed to it.
struct Unsent<'a> {
    stream: Option<&'a Stream>,
    lease: i64,
    ticket: u64,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream {
            stream.unsent(self.lease, self.ticket);
        }
    }
}

/// Reads `responses` and routes each answer to its renewal, until the stream ends.
async fn read(
    hub: std::sync::Weak<KeepAliveHub>,
    stream: Arc<Stream>,
    mut responses: LeaseKeepAliveStream,
) {
    loop {
        match responses.message().await {
            Ok(Some(resp)) => stream.answer(resp.id(), resp.ttl()),
            // Ended by etcd as a stream of its own would be: its member is passed over.
            Ok(None) => {
                if let Some(hub) = hub.upgrade() {
                    hub.close(&stream, "keep-alive stream closed");
                }
                return;
            }
            Err(e) => {
                let why = map_err("keep-alive", e).to_string();
                if let Some(hub) = hub.upgrade() {
                    hub.close(&stream, &why);
                }
                return;
            }
        }
    }
}

/// Puts the state back to closed if the opening of `generation` did not finish (its renewal
/// was dropped, or failed), and tells those waiting for it.
struct Opening<'a> {
    hub: &'a KeepAliveHub,
    generation: u64,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.hub.state);
        if matches!(*state, State::Opening { generation, .. } if generation == self.generation) {
            *state = State::Closed;
        }
        drop(state);
        self.hub.opened.notify_waiters();
    }
}

/// A registration to be told when an opening ends.
type Told<'a> = std::pin::Pin<Box<tokio::sync::futures::Notified<'a>>>;

enum Step {
    Renew(Arc<Stream>),
    Wait(u64),
    Open(u64),
}

impl KeepAliveHub {
    pub(super) fn new(members: Arc<Members>) -> Arc<Self> {
        Arc::new(KeepAliveHub {
            members,
            state: StdMutex::new(State::Closed),
            opened: Notify::new(),
            generations: AtomicU64::new(0),
        })
    }

    /// Closes `stream`, which broke; if it is still the current one, its member is passed over.
    fn close(&self, stream: &Stream, why: &str) {
        let mut state = lock(&self.state);
        if matches!(&*state, State::Open(s) if s.generation == stream.generation) {
            *state = State::Closed;
            self.members.failed(stream.member);
        }
        drop(state);
        stream.close(why);
    }

    /// The stream or opening `generation` went quiet for a renewal: if it is still current,
    /// close it and pass its member over.
    fn unanswered(&self, generation: u64) {
        let mut state = lock(&self.state);
        match &*state {
            State::Open(s) if s.generation == generation => {
                let stream = s.clone();
                *state = State::Closed;
                drop(state);
                self.members.failed(stream.member);
                stream.close("keep-alive stream went unanswered");
            }
            State::Opening {
                generation: g,
                member,
            } if *g == generation => {
                if let Some(member) = *member {
                    self.members.failed(member);
                }
                *state = State::Closed;
                drop(state);
                self.opened.notify_waiters();
            }
            _ => {}
        }
    }

    /// Opens a stream for opening `generation`, with `lease`'s first renewal (etcd's client
    /// opens a stream only with one); `Ok(None)` if etcd says that lease is gone.
    async fn open(self: &Arc<Self>, generation: u64, lease: i64) -> Result<Option<()>> {
        let opening = Opening {
            hub: self,
            generation,
        };
        let member = self.members.member().await?;
        {
            let mut state = lock(&self.state);
            match &mut *state {
                State::Opening {
                    generation: g,
                    member: m,
                } if *g == generation => *m = Some(member.index),
                _ => return Err(broken("keep-alive stream opening abandoned")),
            }
        }
        let mut leases = member.client.lease_client();
        let opened = leases.keep_alive(lease);
        let (keeper, responses) = match tokio::time::timeout(ATTEMPT_TIMEOUT, opened).await {
            Ok(Ok(opened)) => opened,
            // Opening the stream for a revoked lease is etcd saying it is gone: etcd answers
            // TTL 0, which etcd-client turns into this error of its own, with no code.
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(m))) if m == "lease not found" => {
                return Ok(None)
            }
            Ok(Err(e)) => {
                let e = map_err("keep-alive", e);
                if super::is_lease_not_found(&e) {
                    return Ok(None);
                }
                self.members.failed(member.index);
                return Err(e);
            }
            Err(_) => {
                self.members.failed(member.index);
                return Err(broken(format!(
                    "no keep-alive stream within {ATTEMPT_TIMEOUT:?}"
                )));
            }
        };
        let stream = Arc::new(Stream::new(generation, member.index, keeper));
        let mut state = lock(&self.state);
        if !matches!(*state, State::Opening { generation: g, .. } if g == generation) {
            drop(state);
            stream.close("keep-alive stream opening abandoned");
            return Err(broken("keep-alive stream opening abandoned"));
        }
        let reader = tokio::spawn(read(Arc::downgrade(self), stream.clone(), responses));
        *lock(&stream.reader) = Some(reader.abort_handle());
        *state = State::Open(stream);
        drop(state);
        drop(opening);
        Ok(Some(()))
    }

    /// What a renewal does next, and (for `Wait`) a registration to be told when the opening
    /// ends, made under the same lock as the look at the state so that no telling is missed.
    fn next_step(&self) -> (Step, Option<Told<'_>>) {
        let mut state = lock(&self.state);
        match &*state {
            State::Open(s) => (Step::Renew(s.clone()), None),
            State::Opening { generation, .. } => {
                let mut told = Box::pin(self.opened.notified());
                told.as_mut().enable();
                (Step::Wait(*generation), Some(told))
            }
            State::Closed => {
                let generation = 1 + self.generations.fetch_add(1, Ordering::Relaxed);
                *state = State::Opening {
                    generation,
                    member: None,
                };
                (Step::Open(generation), None)
            }
        }
    }
}

impl Drop for KeepAliveHub {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut *lock(&self.state), State::Closed);
        if let State::Open(stream) = state {
            stream.close("etcd client dropped");
        }
    }
}

/// One session's renewals on its client's shared stream.
pub(super) struct EtcdRenewer {
    hub: Arc<KeepAliveHub>,
    lease: i64,
    /// The stream (or opening) the renewal in flight depends on: if it goes unanswered, that
    /// stream is the one to give up.
    on: Option<u64>,
    tickets: u64,
}

impl EtcdRenewer {
    pub(super) fn new(hub: Arc<KeepAliveHub>, lease: i64) -> Self {
        EtcdRenewer {
            hub,
            lease,
            on: None,
            tickets: 0,
        }
    }
}

#[async_trait::async_trait]
impl Renewer for EtcdRenewer {
    async fn renew(&mut self) -> Result<Option<Duration>> {
        loop {
            let (step, told) = self.hub.next_step();
            match step {
                Step::Renew(stream) => {
                    self.on = Some(stream.generation);
                    self.tickets += 1;
                    return stream.renew(self.lease, self.tickets).await;
                }
                Step::Wait(generation) => {
                    self.on = Some(generation);
                    if let Some(told) = told {
                        told.await;
                    }
                }
                Step::Open(generation) => {
                    self.on = Some(generation);
                    if self.hub.open(generation, self.lease).await?.is_none() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The renewal went unanswered in the session's time: the stream it was on (or waited
    /// for) goes, with its member, for every session on it.
    fn reset(&mut self) {
        if let Some(generation) = self.on.take() {
            self.hub.unanswered(generation);
        }
    }
}
