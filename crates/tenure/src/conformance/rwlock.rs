//! Read/write lock clauses (docs/contract.md, Read/write locks), on every backend that has
//! them: readers share, a writer excludes everyone, arrival order (no writer starvation),
//! downgrade without a gap, clean cancellation, fencing across both sides.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use super::fixture::{eventually, Fixture};
use super::{read_u64, within};
use crate::{Error, FencingToken, RwLock, Tenure, Write};

/// Who is inside the lock right now, as the holders themselves report it.
#[derive(Default)]
struct Inside {
    readers: AtomicUsize,
    writers: AtomicUsize,
}

impl Inside {
    fn enter_read(&self) {
        self.readers.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            self.writers.load(Ordering::SeqCst),
            0,
            "a reader was granted while a writer held"
        );
    }

    fn leave_read(&self) {
        self.readers.fetch_sub(1, Ordering::SeqCst);
    }

    fn enter_write(&self) {
        assert_eq!(
            self.writers.fetch_add(1, Ordering::SeqCst),
            0,
            "two writers at once"
        );
        assert_eq!(
            self.readers.load(Ordering::SeqCst),
            0,
            "a writer was granted while a reader held"
        );
    }

    fn leave_write(&self) {
        self.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The grants in the order their holders saw them, and the fencing check (C2 for read/write
/// locks): a writer's token is above every token granted before it, a reader's above every
/// writer's granted before it. Holders log while they hold, so a grant that had to wait for
/// another's release is always logged after it.
#[derive(Default)]
struct Grants(StdMutex<Vec<(FencingToken, bool)>>);

impl Grants {
    fn log(&self, token: FencingToken, writer: bool) -> usize {
        let mut log = self.0.lock().unwrap();
        for (earlier, was_writer) in log.iter() {
            if writer || *was_writer {
                assert!(
                    token > *earlier,
                    "token {token:?} granted after {earlier:?}, which it excludes"
                );
            }
        }
        log.push((token, writer));
        log.len()
    }
}

/// Entries of the lock `name` in the store, and what it keeps beside them (downgrade
/// markers, Redis's waiting set).
async fn keys_of(f: &Fixture, name: &str) -> Vec<String> {
    let mut keys = f.admin.keys(&format!("{name}/")).await;
    keys.extend(f.admin.rw_leftovers(name).await);
    keys
}

async fn queued(f: &Fixture, name: &str, n: usize) {
    eventually("waiters queued", || async {
        f.admin.keys(&format!("{name}/")).await.len() == n
    })
    .await;
}

async fn rwlock(tenure: &Tenure, name: &str) -> RwLock {
    tenure.session().await.unwrap().rwlock(name).unwrap()
}

/// Readers share: five sessions hold the read side at once (each waits until all five hold),
/// a writer is kept out until the last one leaves, and its token is above all of theirs.
pub(crate) async fn rw1_readers_share(f: Fixture) {
    let name = f.name("share");
    let all_in = Arc::new(tokio::sync::Barrier::new(5));
    let out = Arc::new(tokio::sync::Barrier::new(6));
    let mut readers = Vec::new();
    for _ in 0..5 {
        let lock = rwlock(&f.tenure, &name).await;
        let (all_in, out) = (all_in.clone(), out.clone());
        readers.push(tokio::spawn(async move {
            let g = lock.read().await.unwrap();
            all_in.wait().await;
            out.wait().await;
            let token = g.token();
            g.unlock().await.unwrap();
            token
        }));
    }
    let writer = rwlock(&f.tenure, &name).await;
    eventually("five readers hold", || async {
        f.admin.keys(&format!("{name}/")).await.len() == 5
    })
    .await;
    match writer.try_write().await {
        Err(Error::Locked { .. }) => {}
        other => panic!("try_write beside readers: expected Locked, got {other:?}"),
    }
    let waiting = tokio::spawn({
        let writer = writer.clone();
        async move { writer.write().await.map(|g| g.token()) }
    });
    queued(&f, &name, 6).await;
    within("readers hold together", out.wait()).await;
    let mut max_reader = FencingToken(0);
    for r in readers {
        max_reader = max_reader.max(within("reader", r).await.unwrap());
    }
    let w = within("writer after readers", waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        w > max_reader,
        "writer {w:?} not above readers' {max_reader:?}"
    );
}

/// A writer excludes everyone: 20 sessions × 50 operations, one in five a write. Writers
/// update two keys with two guarded writes (so the pair is half-updated in between); readers
/// read both and must never see them differ. Tokens obey the fencing order; nothing is left.
pub(crate) async fn rw2_writer_excludes_everyone(f: Fixture) {
    let (sessions, rounds) = (20, 50);
    let name = f.name("exclusive");
    let (a_key, b_key) = (f.name("pair-a"), f.name("pair-b"));
    let inside = Arc::new(Inside::default());
    let grants = Arc::new(Grants::default());
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let (tenure, name) = (f.tenure.clone(), name.clone());
        let (a_key, b_key) = (a_key.clone(), b_key.clone());
        let (inside, grants) = (inside.clone(), grants.clone());
        tasks.push(tokio::spawn(async move {
            let session = tenure.session().await.expect("session");
            let lock = session.rwlock(&name).expect("rwlock");
            let mut writes = 0u64;
            for i in 0..rounds {
                if (s + i) % 5 == 0 {
                    // Each wait is bounded, not the whole run (1000 operations on a loaded
                    // machine take a while; only a hang should fail).
                    let g = within("write", lock.write()).await.expect("write lock");
                    inside.enter_write();
                    grants.log(g.token(), true);
                    let n = read_u64(tenure.read(&a_key).await.expect("read"));
                    let next = (n + 1).to_string();
                    g.write([Write::put(a_key.clone(), next.clone())])
                        .await
                        .expect("guarded write a");
                    g.write([Write::put(b_key.clone(), next)])
                        .await
                        .expect("guarded write b");
                    writes += 1;
                    inside.leave_write();
                    g.unlock().await.expect("unlock writer");
                } else {
                    let g = within("read", lock.read()).await.expect("read lock");
                    inside.enter_read();
                    grants.log(g.token(), false);
                    let a = tenure.read(&a_key).await.expect("read a");
                    let b = tenure.read(&b_key).await.expect("read b");
                    assert_eq!(a, b, "a reader saw a half-done write");
                    inside.leave_read();
                    g.unlock().await.expect("unlock reader");
                }
            }
            session.close().await.expect("close");
            writes
        }));
    }
    let mut writes = 0;
    for t in tasks {
        writes += t.await.expect("contender task");
    }
    let a = read_u64(f.tenure.read(&a_key).await.unwrap());
    assert_eq!(a, writes, "every write counted once");
    assert_eq!(grants.0.lock().unwrap().len(), sessions * rounds);
    eventually("queue empty", || async {
        keys_of(&f, &name).await.is_empty()
    })
    .await;
}

/// No writer starvation: readers keep arriving, each holding a while and overlapping the
/// next, so the lock is never free; a writer that queues among them is still granted, and
/// every reader that arrived after it (a larger token) is granted only after it.
pub(crate) async fn rw3_no_writer_starvation(f: Fixture) {
    let name = f.name("stream");
    let inside = Arc::new(Inside::default());
    let grants = Arc::new(Grants::default());
    let writer_done = Arc::new(AtomicBool::new(false));
    let stream = tokio::spawn({
        let (tenure, name) = (f.tenure.clone(), name.clone());
        let (inside, grants, writer_done) = (inside.clone(), grants.clone(), writer_done.clone());
        async move {
            let mut readers = Vec::new();
            let mut after_writer = 0;
            // Keeps going until a few readers have come after the writer's grant.
            while after_writer < 5 {
                if writer_done.load(Ordering::SeqCst) {
                    after_writer += 1;
                }
                let lock = rwlock(&tenure, &name).await;
                let (inside, grants) = (inside.clone(), grants.clone());
                readers.push(tokio::spawn(async move {
                    let g = lock.read().await.unwrap();
                    inside.enter_read();
                    let seq = grants.log(g.token(), false);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    inside.leave_read();
                    g.unlock().await.unwrap();
                    seq
                }));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for r in readers {
                within("reader", r).await.unwrap();
            }
        }
    });
    // Queue the writer while readers hold.
    eventually("readers streaming", || async {
        !f.admin.keys(&format!("{name}/")).await.is_empty()
    })
    .await;
    let writer = rwlock(&f.tenure, &name).await;
    let w = within("writer amid a stream of readers", writer.write())
        .await
        .unwrap();
    inside.enter_write();
    let w_seq = grants.log(w.token(), true);
    let w_token = w.token();
    inside.leave_write();
    w.unlock().await.unwrap();
    writer_done.store(true, Ordering::SeqCst);
    within("reader stream", stream).await.unwrap();
    let log = grants.0.lock().unwrap().clone();
    let later: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, (t, writer))| !writer && *t > w_token)
        .map(|(i, _)| i + 1)
        .collect();
    assert!(!later.is_empty(), "no reader arrived after the writer");
    assert!(
        later.iter().all(|seq| *seq > w_seq),
        "a reader that arrived after the writer was granted before it"
    );
}

/// Downgrade leaves no gap and lets no writer in. A holds the write side; queued behind it
/// are reader R1, writer W2 and reader R3. A downgrades: it still holds (same key and token),
/// R1 joins it, W2 and R3 stay out (no try gets in either) until A and R1 leave. Then, with a
/// writer queued directly behind a downgrading writer (CURATOR-621), that writer still waits.
pub(crate) async fn rw4_downgrade_without_gap(f: Fixture) {
    let name = f.name("downgrade");
    let inside = Arc::new(Inside::default());
    let a = rwlock(&f.tenure, &name).await;
    let wa = a.write().await.unwrap();
    inside.enter_write();
    let spawn_reader = |lock: RwLock, inside: Arc<Inside>, go: Arc<tokio::sync::Notify>| {
        tokio::spawn(async move {
            let g = lock.read().await.unwrap();
            inside.enter_read();
            go.notified().await;
            inside.leave_read();
            let token = g.token();
            g.unlock().await.unwrap();
            token
        })
    };
    let (go1, go3) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let r1 = spawn_reader(rwlock(&f.tenure, &name).await, inside.clone(), go1.clone());
    queued(&f, &name, 2).await;
    let w2 = tokio::spawn({
        let (lock, inside) = (rwlock(&f.tenure, &name).await, inside.clone());
        async move {
            let g = lock.write().await.unwrap();
            inside.enter_write();
            inside.leave_write();
            let token = g.token();
            g.unlock().await.unwrap();
            token
        }
    });
    queued(&f, &name, 3).await;
    let r3 = spawn_reader(rwlock(&f.tenure, &name).await, inside.clone(), go3.clone());
    queued(&f, &name, 4).await;

    // Counted as a reader, and no longer a writer, before the store hears of it: a writer
    // let in at the downgrade still finds a reader inside.
    inside.enter_read_while_writing();
    inside.leave_write();
    let (key, token) = (wa.key().to_string(), wa.token());
    let ra = wa.downgrade().await.unwrap();
    assert_eq!((ra.key(), ra.token()), (key.as_str(), token));
    assert!(!ra.is_lost());
    // R1 joins the downgraded holder.
    eventually("R1 granted beside the downgraded writer", || async {
        inside.readers.load(Ordering::SeqCst) == 2
    })
    .await;
    let probe = rwlock(&f.tenure, &name).await;
    assert!(matches!(probe.try_write().await, Err(Error::Locked { .. })));
    assert!(
        matches!(probe.try_read().await, Err(Error::Locked { .. })),
        "a try_read jumped the waiting writer"
    );
    assert!(!w2.is_finished() && !r3.is_finished());
    inside.leave_read();
    ra.unlock().await.unwrap();
    go1.notify_one();
    let t1 = within("R1", r1).await.unwrap();
    let t2 = within("W2 after the readers", w2).await.unwrap();
    go3.notify_one();
    let t3 = within("R3 after W2", r3).await.unwrap();
    assert!(
        token < t1 && t1 < t2 && t2 < t3,
        "{token:?} {t1:?} {t2:?} {t3:?}"
    );

    // A writer queued directly behind the writer that downgrades keeps waiting.
    let wb = a.write().await.unwrap();
    let next = tokio::spawn({
        let lock = rwlock(&f.tenure, &name).await;
        async move { lock.write().await.map(|g| g.token()) }
    });
    queued(&f, &name, 2).await;
    let rb = wb.downgrade().await.unwrap();
    assert!(matches!(probe.try_write().await, Err(Error::Locked { .. })));
    let rb_token = rb.token();
    assert!(!next.is_finished(), "a writer got in at the downgrade");
    rb.unlock().await.unwrap();
    let t = within("writer after the downgraded hold", next)
        .await
        .unwrap()
        .unwrap();
    assert!(t > rb_token);
    eventually("queue and markers empty", || async {
        keys_of(&f, &name).await.is_empty()
    })
    .await;
}

impl Inside {
    /// A writer that is about to downgrade counts itself a reader too, for the moment both.
    fn enter_read_while_writing(&self) {
        self.readers.fetch_add(1, Ordering::SeqCst);
    }
}

/// Cancellation leaves no key: readers and writers waiting behind a writer, aborted, timed
/// out or dropped mid-wait, and failed tries, leave nothing; nor does a downgraded release.
pub(crate) async fn rw5_cancellation_leaves_nothing(f: Fixture) {
    let name = f.name("cancel");
    let holder = rwlock(&f.tenure, &name).await;
    let w = holder.write().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let lock = rwlock(&f.tenure, &name).await;
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                lock.read().await.map(|_| ())
            } else {
                lock.write().await.map(|_| ())
            }
        }));
    }
    queued(&f, &name, 9).await;
    for t in &tasks {
        t.abort();
    }
    let late = rwlock(&f.tenure, &name).await;
    let err = late
        .read_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let err = late
        .write_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(matches!(late.try_read().await, Err(Error::Locked { .. })));
    assert!(matches!(late.try_write().await, Err(Error::Locked { .. })));
    eventually("abandoned entries removed", || async {
        keys_of(&f, &name).await == vec![w.key().to_string()]
    })
    .await;
    let r = w.downgrade().await.unwrap();
    assert!(matches!(late.try_write().await, Err(Error::Locked { .. })));
    r.unlock().await.unwrap();
    let g = within("write after cancellations", late.write())
        .await
        .unwrap();
    g.unlock().await.unwrap();
    eventually("queue and markers empty", || async {
        keys_of(&f, &name).await.is_empty()
    })
    .await;
}

/// Fencing across both sides: tokens strictly increase read → write → read → write; try_read
/// shares with a reader and fails behind a writer; a writer whose entry is gone, with a
/// newer grant made, cannot write (C10), nor can a reader whose entry is gone.
pub(crate) async fn rw6_tokens_and_guarded_writes(f: Fixture) {
    let name = f.name("fence");
    let value = f.name("fenced-value");
    let (a, b) = (
        rwlock(&f.tenure, &name).await,
        rwlock(&f.tenure, &name).await,
    );
    let r1 = a.read().await.unwrap();
    let r1b = b.try_read().await.expect("try_read beside a reader");
    let t1 = r1.token().max(r1b.token());
    r1b.unlock().await.unwrap();
    r1.write([Write::put(value.clone(), "r1")]).await.unwrap();
    r1.unlock().await.unwrap();
    let w2 = a.write().await.unwrap();
    assert!(w2.token() > t1);
    assert!(matches!(b.try_read().await, Err(Error::Locked { .. })));
    // The writer's entry is deleted by an operator; a reader is granted after it.
    f.admin.delete(w2.key()).await;
    let r3 = within("reader after the deleted writer", b.read())
        .await
        .unwrap();
    assert!(r3.token() > w2.token());
    assert!(matches!(
        w2.write([Write::put(value.clone(), "stale writer")]).await,
        Err(Error::NotHeld { .. })
    ));
    f.admin.delete(r3.key()).await;
    assert!(matches!(
        r3.write([Write::put(value.clone(), "stale reader")]).await,
        Err(Error::NotHeld { .. })
    ));
    drop(w2);
    let w4 = within("writer", a.write()).await.unwrap();
    assert!(w4.token() > r3.token());
    w4.write([Write::put(value.clone(), "w4")]).await.unwrap();
    assert_eq!(
        f.tenure.read(&value).await.unwrap().as_deref(),
        Some(&b"w4"[..])
    );
    drop(r3);
    w4.unlock().await.unwrap();
}

/// A mutex of the same name is a writer to the read/write lock (etcd, embedded): a mutex
/// holder keeps readers out, and readers keep the mutex out.
pub(crate) async fn rw7_mutex_of_the_same_name_is_a_writer(f: Fixture) {
    let name = f.name("mixed");
    let s = f.tenure.session().await.unwrap();
    let m = s.mutex(&name).unwrap().lock().await.unwrap();
    let r = rwlock(&f.tenure, &name).await;
    assert!(matches!(r.try_read().await, Err(Error::Locked { .. })));
    let reader = tokio::spawn(async move { r.read().await.map(|g| g.token()) });
    queued(&f, &name, 2).await;
    let m_token = m.token();
    m.unlock().await.unwrap();
    let t = within("reader after the mutex", reader)
        .await
        .unwrap()
        .unwrap();
    assert!(t > m_token);
    // And a reader keeps a mutex out.
    let g = rwlock(&f.tenure, &name).await.read().await.unwrap();
    assert!(matches!(
        s.mutex(&name).unwrap().try_lock().await,
        Err(Error::Locked { .. })
    ));
    g.unlock().await.unwrap();
}

/// Redlock refuses read/write locks with `Error::Unsupported` (see backend/redis/rwlock.rs),
/// leaving nothing behind, and a try refuses alike.
pub(crate) async fn rw_redlock_unsupported(f: Fixture) {
    let name = f.name("redlock-rw");
    let lock = rwlock(&f.tenure, &name).await;
    for refused in [
        lock.read().await.map(|_| ()),
        lock.try_write().await.map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(Error::Unsupported { .. })),
            "{refused:?}"
        );
    }
    assert!(keys_of(&f, &name).await.is_empty());
}

/// A reader whose process dies (stops renewing) is released when its session expires, and a
/// waiting writer then proceeds without anyone's help (C6 for readers; on Redis the reader is
/// reclaimed through its session's heartbeat).
pub(crate) async fn rw8_crashed_reader_released_after_ttl(f: Fixture) {
    let name = f.name("crashed-reader");
    let crashed = f.tenure.session_with_ttl(f.short_ttl).await.unwrap();
    let r = crashed.rwlock(&name).unwrap().read().await.unwrap();
    let token = r.token();
    std::mem::forget(r);
    crashed.simulate_crash();
    let writer = rwlock(&f.tenure, &name).await;
    let w = within("writer after a crashed reader", writer.write())
        .await
        .unwrap();
    assert!(w.token() > token);
    w.unlock().await.unwrap();
}

/// C15 for read/write locks: `status` lists one read/write lock once, under the name given,
/// with how many hold it shared and how many wait behind them.
pub(crate) async fn rw9_status_shows_readers_and_waiters(f: Fixture) {
    let name = f.name("status");
    let mut readers = Vec::new();
    for _ in 0..2 {
        readers.push(rwlock(&f.tenure, &name).await.read().await.unwrap());
    }
    let writer = tokio::spawn({
        let lock = rwlock(&f.tenure, &name).await;
        async move { lock.write().await.map(|g| g.token()) }
    });
    queued(&f, &name, 3).await;
    let listed = f.tenure.status(&name).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let s = &listed[0];
    assert_eq!(s.name, name);
    assert!(s.rwlock);
    assert_eq!((s.readers, s.waiters), (2, 1), "{s:?}");
    assert!(readers.iter().any(|r| r.key() == s.holder.key), "{s:?}");
    drop(readers);
    within("writer", writer).await.unwrap().unwrap();
}

/// C13 for read/write locks, at the store level (each step repeated as a retry after a lost
/// answer would repeat it): a repeated try of either side finds its own entry and is granted;
/// a repeated enqueue finds the entry instead of queueing a second; a repeated downgrade is a
/// downgrade; a repeated try refused behind a writer leaves nothing; a repeated conditional
/// delete removes nothing more.
pub(crate) async fn rw13_retried_steps_are_idempotent(f: Fixture) {
    use crate::backend::queue::{Ahead, Role, Ticket};
    let name = f.name("rw-retried");
    let prefix = format!("{name}/");
    let session = f.tenure.session().await.unwrap();
    let store = session
        .inner
        .backend
        .queue_store()
        .expect("a store of the shared recipe");
    for role in [Role::Read, Role::Write] {
        let ticket = Ticket::new();
        let first = store
            .try_enqueue(&prefix, b"v", role, ticket)
            .await
            .unwrap();
        let first = first.expect("a free lock is taken");
        let again = store
            .try_enqueue(&prefix, b"v", role, ticket)
            .await
            .unwrap();
        let again = again.expect("our own entry is ours, not Locked by ourselves");
        assert_eq!(
            (again.mine.clone(), again.first),
            (first.mine.clone(), true)
        );
        assert_eq!(f.admin.keys(&prefix).await, vec![first.mine.key.clone()]);
        assert!(store.remove(&first.mine).await.unwrap());
        assert!(!store.remove(&first.mine).await.unwrap());
    }
    let ticket = Ticket::new();
    let w = store
        .enqueue(&prefix, b"v", Role::Write, ticket)
        .await
        .unwrap();
    let w2 = store
        .enqueue(&prefix, b"v", Role::Write, ticket)
        .await
        .unwrap();
    assert_eq!(w.mine, w2.mine);
    assert!(matches!(
        store.ahead(&prefix, &w.mine).await.unwrap(),
        Ahead::Nobody { .. }
    ));
    // Behind our writer, another session's reader try is refused, twice, leaving nothing.
    let other = f.tenure.session().await.unwrap();
    let other_store = other.inner.backend.queue_store().expect("same store");
    let ticket = Ticket::new();
    for _ in 0..2 {
        let held = other_store
            .try_enqueue(&prefix, b"v", Role::Read, ticket)
            .await
            .unwrap();
        assert_eq!(held.unwrap_err().as_deref(), Some(w.mine.key.as_str()));
    }
    assert_eq!(f.admin.keys(&prefix).await, vec![w.mine.key.clone()]);
    // A repeated downgrade; then the other session's reader is let in beside it.
    assert!(store.downgrade(&w.mine).await.unwrap());
    assert!(store.downgrade(&w.mine).await.unwrap());
    let joined = other_store
        .try_enqueue(&prefix, b"v", Role::Read, ticket)
        .await
        .unwrap()
        .expect("a reader joins the downgraded writer");
    assert_eq!(f.admin.keys(&prefix).await.len(), 2);
    assert!(other_store.remove(&joined.mine).await.unwrap());
    assert!(store.remove(&w.mine).await.unwrap());
    assert!(
        !store.downgrade(&w.mine).await.unwrap(),
        "gone: not downgraded"
    );
    assert!(keys_of(&f, &name).await.is_empty());
}
