//! Hand-off latency on Redis with many contenders: Tenure's queued wake-up (one waiter woken
//! per release) at several contender counts against redis-py's `Lock` (which sleeps 100 ms
//! between polls), measured in the same run on the same server.
//!
//! ```text
//! cargo run --release -p tenure --example redis_handoff -- redis://127.0.0.1:6379 \
//!     [CONTENDERS=5,20,50] [CYCLES=500] [HOLD_MS=0] [THINK_MS=5] [PY_CONTENDERS=20]
//! ```
//!
//! The last lines are the ratios issue 15 sets targets for: the largest contender count's
//! cycles/s over the smallest's (herd-free waiting keeps it near 1), and Tenure's over
//! redis-py's at `PY_CONTENDERS` (when that count is among `CONTENDERS`). Beside them, the
//! same workload at `PY_CONTENDERS` on the embedded store (`mem://`, no I/O: a hand-off costs
//! microseconds) shows the workload's own ceiling: each contender thinks THINK_MS between its
//! cycles, so no lock can pass more than about contenders / THINK_MS per second; and the
//! hand-off p50 ratio, redis-py's over Tenure's, which the think time does not bound.
//!
//! Each contender holds the lock for HOLD_MS (default 0: no sleep at all, so that the rate is
//! the hand-off's own) — the work it protects — and after unlocking waits THINK_MS (default 5)
//! before asking again, so the lock really passes between contenders instead of staying with
//! whoever just released it (as it does with redis-py, which does not queue).
//!
//! Hand-off = from the moment the holder starts to unlock until a *different* contender holds
//! the lock (a holder re-taking its own lock is not a hand-off). Also reports how evenly the
//! grants were spread (min/max per contender). The redis-py
//! half runs when `python3 -c 'import redis'` works (set `PYTHONPATH`, e.g. to
//! `TENURE_TEST_REDIS_PY_PATH`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

/// The redis-py half: the same measurement with one thread per contender.
const REDIS_PY: &str = r#"
import sys, threading, time, redis
url, n, cycles = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hold, think = float(sys.argv[4]) / 1e3, float(sys.argv[5]) / 1e3
name = "tenure-handoff-py-%d" % time.time_ns()
mu = threading.Lock(); last = [None]; hand = []; left = [cycles]; got = [0] * n
def worker(me):
    r = redis.Redis.from_url(url)
    while True:
        l = r.lock(name, timeout=10)
        l.acquire(blocking=True)
        t = time.perf_counter()
        with mu:
            if left[0] == 0:
                l.release(); return
            left[0] -= 1; got[me] += 1
            if last[0] is not None and last[0][1] != me: hand.append(t - last[0][0])
        time.sleep(hold)
        with mu: last[0] = (time.perf_counter(), me)
        l.release()
        time.sleep(think)
ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
t0 = time.perf_counter(); [t.start() for t in ts]; [t.join() for t in ts]
el = time.perf_counter() - t0; h = sorted(hand)
print("redis-py Lock  %3d contenders  %5d cycles  %7.0f cycles/s  handoff p50 %8.3f ms  p99 %8.3f ms  grants/contender %d..%d"
      % (n, cycles, cycles / el, h[len(h) // 2] * 1e3, h[int(len(h) * 0.99)] * 1e3, min(got), max(got)))
"#;

#[derive(Default)]
struct Shared {
    /// (when the last holder started to unlock, who it was)
    last: StdMutex<Option<(Instant, usize)>>,
    handoffs: StdMutex<Vec<Duration>>,
}

async fn worker(
    tenure: tenure::Tenure,
    name: String,
    me: usize,
    left: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    (hold, think): (Duration, Duration),
) -> tenure::Result<usize> {
    let session = tenure.session().await?;
    let mutex = session.mutex(&name)?;
    let mut got = 0;
    loop {
        let guard = mutex.lock().await?;
        let granted = Instant::now();
        if left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
            .is_err()
        {
            guard.unlock().await?;
            return Ok(got);
        }
        got += 1;
        {
            let last = shared.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, who)) = *last {
                if who != me {
                    let mut h = shared.handoffs.lock().unwrap_or_else(|p| p.into_inner());
                    h.push(granted - at);
                }
            }
        }
        pause(hold).await;
        *shared.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), me));
        guard.unlock().await?;
        pause(think).await;
    }
}

/// Sleeps for `d`; zero means not at all (a timer sleep lasts at least its ~1 ms tick, which
/// would hide the hand-off's own cost).
async fn pause(d: Duration) {
    if d.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(d).await;
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// One Tenure run with `n` contenders on a lock of its own; its cycles/s and hand-off p50 (ms).
async fn run(
    tenure: &tenure::Tenure,
    n: usize,
    cycles: usize,
    pause: (Duration, Duration),
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let name = format!("tenure-handoff-{}-{n}", std::process::id());
    let (left, shared) = (
        Arc::new(AtomicUsize::new(cycles)),
        Arc::new(Shared::default()),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|me| {
            let (t, name, left, shared) =
                (tenure.clone(), name.clone(), left.clone(), shared.clone());
            tokio::spawn(worker(t, name, me, left, shared, pause))
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await??);
    }
    let rate = cycles as f64 / started.elapsed().as_secs_f64();
    let mut h = shared
        .handoffs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    h.sort();
    let kind = tenure.backend();
    println!(
        "tenure {kind:7} {n:3} contenders  {cycles:5} cycles  {rate:7.0} cycles/s  handoff p50 {:8.3} ms  p99 {:8.3} ms  grants/contender {}..{}",
        pct(&h, 0.5),
        pct(&h, 0.99),
        got.iter().min().unwrap_or(&0),
        got.iter().max().unwrap_or(&0),
    );
    Ok((rate, pct(&h, 0.5)))
}

/// The redis-py half; its cycles/s and hand-off p50 (ms), or `None` when python3 or redis-py
/// is missing.
fn run_py(
    url: &str,
    n: usize,
    cycles: usize,
    (hold_ms, think_ms): (u64, u64),
) -> Option<(f64, f64)> {
    let out = std::process::Command::new("python3")
        .args(["-c", REDIS_PY, url, &n.to_string(), &cycles.to_string()])
        .args([hold_ms.to_string(), think_ms.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    println!("{line}");
    let words: Vec<&str> = line.split_whitespace().collect();
    let before = |word: &str| -> Option<f64> {
        let at = words.iter().position(|w| *w == word)?;
        words.get(at.checked_sub(1)?)?.parse().ok()
    };
    let p50 = words.iter().position(|w| *w == "p50")?;
    Some((before("cycles/s")?, words.get(p50 + 1)?.parse().ok()?))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or(
        "usage: redis_handoff REDIS_URL [CONTENDERS=5,20,50] [CYCLES] [HOLD_MS] [THINK_MS] [PY_CONTENDERS]",
    )?;
    let counts: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "5,20,50".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let cycles: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let hold_ms: u64 = args.next().map_or(Ok(0), |a| a.parse())?;
    let think_ms: u64 = args.next().map_or(Ok(5), |a| a.parse())?;
    let py_n: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let pause = (
        Duration::from_millis(hold_ms),
        Duration::from_millis(think_ms),
    );
    let tenure = tenure::Tenure::connect(&url).await?;
    println!("hold {hold_ms} ms, think {think_ms} ms");
    let mut rates = Vec::new();
    for &n in &counts {
        rates.push((n, run(&tenure, n, cycles, pause).await?));
    }
    let py = run_py(&url, py_n, cycles, (hold_ms, think_ms));
    if py.is_none() {
        eprintln!("redis-py half skipped or failed (is `python3 -c 'import redis'` working?)");
    }
    let ceiling = run(
        &tenure::Tenure::connect("mem://").await?,
        py_n,
        cycles,
        pause,
    )
    .await?;
    if let (Some((lo, (lo_rate, _))), Some((hi, (hi_rate, _)))) = (rates.first(), rates.last()) {
        println!(
            "ratio: {hi} contenders / {lo} contenders = {:.2}",
            hi_rate / lo_rate
        );
    }
    let at_py = rates.iter().find(|(n, _)| *n == py_n);
    if let (Some((_, (ours, our_p50))), Some((theirs, their_p50))) = (at_py, py) {
        println!(
            "ratio: tenure / redis-py at {py_n} contenders = {:.1} (the workload's ceiling, mem:// / redis-py: {:.1}); hand-off p50 redis-py / tenure = {:.1}",
            ours / theirs,
            ceiling.0 / theirs,
            their_p50 / our_p50
        );
    }
    Ok(())
}
