//! The history of one cluster run and the checks on it (issue 11, "a history checker"): the
//! critical sections the recorders logged, every `tenure` invocation with its exit code, the
//! faults injected, and the final value of the counter every section increments.
//!
//! Times are CLOCK_MONOTONIC nanoseconds, which every process on the machine shares, so the
//! recorders' lines, the invocations' exits and the faults are on one time line.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

const SEC: f64 = 1e9;

/// One critical section as its recorder logged it.
#[derive(Clone, Debug)]
pub struct Section {
    /// The invocation that ran it (`<worker>-<n>`).
    pub id: String,
    pub token: u64,
    pub start: u64,
    /// `None` when the recorder was stopped before it could log its end.
    pub end: Option<u64>,
}

/// One `tenure lock` process a worker ran.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub id: String,
    pub exited: u64,
    /// As a shell reports it: the code, or 128+N for death by signal N.
    pub code: i32,
    /// The last lines of its stderr, for the report of an unexpected exit.
    pub stderr: String,
}

/// One injected fault, from its start until the member was back.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: &'static str,
    pub member: String,
    pub from: u64,
    pub to: u64,
}

/// Parses the recorders' log: `start ID TOKEN T` and `end ID TOKEN T` lines.
pub fn parse_sections(log: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for line in log.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [what, id, token, at] = fields[..] else {
            panic!("malformed history line {line:?}")
        };
        let (Ok(token), Ok(at)) = (token.parse::<u64>(), at.parse::<u64>()) else {
            panic!("malformed history line {line:?}")
        };
        match what {
            "start" => {
                assert!(
                    open.insert(id.to_string(), sections.len()).is_none(),
                    "{id} started twice"
                );
                sections.push(Section {
                    id: id.to_string(),
                    token,
                    start: at,
                    end: None,
                });
            }
            "end" => {
                let i = open
                    .remove(id)
                    .unwrap_or_else(|| panic!("{id} ended but never started"));
                assert_eq!(sections[i].token, token, "{id} ended with another token");
                sections[i].end = Some(at);
            }
            _ => panic!("malformed history line {line:?}"),
        }
    }
    sections
}

/// Everything one run recorded, and the two stretches to compare.
pub struct History {
    pub sections: Vec<Section>,
    pub invocations: Vec<Invocation>,
    pub faults: Vec<Fault>,
    /// The counter every critical section read, then wrote back incremented, before logging
    /// its end.
    pub counter: u64,
    /// The fault-free stretch: `[from, to)`.
    pub baseline: (u64, u64),
    /// The stretch with faults: `[from, to)`.
    pub faulted: (u64, u64),
}

/// The outcome of the checks: the figures of the run and every violation found.
pub struct Report {
    pub figures: Value,
    pub overlaps: Vec<String>,
    pub token_order: Vec<String>,
    /// Sections that started and never ended although their `tenure` did not report the lock
    /// lost (exit 75): the write they were making was acknowledged by no one, yet lost.
    pub unfinished: Vec<String>,
    /// An acknowledged increment (its section logged its end) is missing from the counter.
    pub lost_writes: Option<String>,
    /// Invocations whose exit is not one of 0, 69, 75.
    pub bad_exits: Vec<String>,
    pub exit69: usize,
    pub sessions_lost: usize,
    pub baseline_rate: f64,
    pub faulted_rate: f64,
    /// The longest stretch of the faulted phase without a grant, in seconds.
    pub longest_gap: f64,
    /// Grants after the last fault ended.
    pub grants_after_faults: usize,
}

impl Report {
    /// The throughput of the faulted stretch as a share of the fault-free one.
    pub fn ratio(&self) -> f64 {
        if self.baseline_rate > 0.0 {
            self.faulted_rate / self.baseline_rate
        } else {
            0.0
        }
    }

    /// The violations every run must be free of, whatever its faults: mutual exclusion,
    /// token order, no acknowledged write lost, exits only 0, 69 or 75.
    pub fn safety_violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        v.extend(self.overlaps.iter().map(|o| format!("overlap: {o}")));
        v.extend(self.token_order.iter().map(|o| format!("token order: {o}")));
        v.extend(self.unfinished.iter().map(|o| format!("unfinished: {o}")));
        v.extend(self.lost_writes.iter().map(|o| format!("lost write: {o}")));
        v.extend(self.bad_exits.iter().map(|o| format!("exit: {o}")));
        v
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / SEC
}

impl History {
    pub fn check(&self, scenario: &str) -> Report {
        let by_id: HashMap<&str, &Invocation> = self
            .invocations
            .iter()
            .map(|i| (i.id.as_str(), i))
            .collect();
        let mut sections = self.sections.clone();
        sections.sort_by_key(|s| s.start);

        // A section the lock's loss stopped has no end line; it ran at most until its tenure
        // exited, which is the bound the overlap check uses for it.
        let mut unfinished = Vec::new();
        let mut ends = Vec::with_capacity(sections.len());
        for s in &sections {
            let inv = by_id.get(s.id.as_str());
            ends.push(match (s.end, inv) {
                (Some(end), _) => end,
                (None, Some(inv)) => {
                    if inv.code != 75 {
                        unfinished.push(format!(
                            "{} (token {}) has no end, but its tenure exited {}: {}",
                            s.id, s.token, inv.code, inv.stderr
                        ));
                    }
                    inv.exited
                }
                (None, None) => {
                    unfinished.push(format!("{} (token {}) has no end", s.id, s.token));
                    u64::MAX
                }
            });
        }

        let mut overlaps = Vec::new();
        let mut token_order = Vec::new();
        let mut latest: Option<(usize, u64)> = None; // the section that ends last so far
        for (i, s) in sections.iter().enumerate() {
            if let Some((j, end)) = latest {
                if s.start < end {
                    overlaps.push(format!(
                        "{} (token {}) started {:.3} s before {} (token {}) ended",
                        s.id,
                        s.token,
                        secs(end.saturating_sub(s.start)),
                        sections[j].id,
                        sections[j].token
                    ));
                }
            }
            if i > 0 && s.token <= sections[i - 1].token {
                token_order.push(format!(
                    "{} got token {} after {} got {}",
                    s.id,
                    s.token,
                    sections[i - 1].id,
                    sections[i - 1].token
                ));
            }
            if latest.map_or(true, |(_, end)| ends[i] > end) {
                latest = Some((i, ends[i]));
            }
        }

        let ended = sections.iter().filter(|s| s.end.is_some()).count() as u64;
        let stopped = sections.len() as u64 - ended;
        let lost_writes = (self.counter < ended).then(|| {
            format!(
                "counter is {} but {ended} sections acknowledged their increment",
                self.counter
            )
        });
        let excess = (self.counter > ended + stopped).then(|| {
            format!(
                "counter is {} but only {} sections ran",
                self.counter,
                ended + stopped
            )
        });

        let mut exits: BTreeMap<i32, usize> = BTreeMap::new();
        let mut bad_exits = Vec::new();
        for inv in &self.invocations {
            *exits.entry(inv.code).or_default() += 1;
            if ![0, 69, 75].contains(&inv.code) {
                bad_exits.push(format!("{} exited {}: {}", inv.id, inv.code, inv.stderr));
            }
        }

        let starts: Vec<u64> = sections.iter().map(|s| s.start).collect();
        let rate = |(from, to): (u64, u64)| {
            let n = starts.iter().filter(|&&t| t >= from && t < to).count();
            n as f64 / secs(to.saturating_sub(from)).max(1e-9)
        };
        let (baseline_rate, faulted_rate) = (rate(self.baseline), rate(self.faulted));
        let longest_gap = longest_gap(&starts, self.faulted.0, self.faulted.1);
        let mut by_kind: BTreeMap<&str, f64> = BTreeMap::new();
        for f in &self.faults {
            let g = longest_gap_touching(&starts, f.from, f.to);
            let e = by_kind.entry(f.kind).or_default();
            *e = e.max(g);
        }
        let last_fault_end = self.faults.iter().map(|f| f.to).max().unwrap_or(0);
        let grants_after_faults = starts.iter().filter(|&&t| t > last_fault_end).count();
        // Every exit other than 0, with when it came (seconds into the faulted stretch) and
        // during which fault, for the report of what went wrong.
        let held: std::collections::HashSet<&str> =
            self.sections.iter().map(|s| s.id.as_str()).collect();
        let exit_samples: Vec<String> = self
            .invocations
            .iter()
            .filter(|i| i.code != 0)
            .take(12)
            .map(|i| {
                let during = self
                    .faults
                    .iter()
                    .find(|f| i.exited >= f.from && i.exited <= f.to)
                    .map_or("no fault".to_string(), |f| {
                        format!("{} {}", f.kind, f.member)
                    });
                let state = if held.contains(i.id.as_str()) {
                    "held"
                } else {
                    "waiting"
                };
                format!(
                    "{} while {state} at {:+.2}s ({during}): {}",
                    i.code,
                    (i.exited as f64 - self.faulted.0 as f64) / SEC,
                    i.stderr
                )
            })
            .collect();
        let exit69 = exits.get(&69).copied().unwrap_or(0);
        let sessions_lost = exits.get(&75).copied().unwrap_or(0);

        let figures = json!({
            "scenario": scenario,
            "grants": sections.len(),
            "baseline_grants_per_s": round(baseline_rate),
            "faulted_grants_per_s": round(faulted_rate),
            "throughput_ratio": round(if baseline_rate > 0.0 { faulted_rate / baseline_rate } else { 0.0 }),
            "longest_gap_s": round(longest_gap),
            "longest_gap_s_by_fault": by_kind.iter().map(|(k, v)| (k.to_string(), json!(round(*v)))).collect::<serde_json::Map<_, _>>(),
            "faults": self.faults.iter().map(|f| format!("{} {} {:.1}s", f.kind, f.member, secs(f.to - f.from))).collect::<Vec<_>>(),
            "exits": exits.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "sessions_lost": sessions_lost,
            "exit69": exit69,
            "overlaps": overlaps.len(),
            "token_order_violations": token_order.len(),
            "unfinished_sections": unfinished.len(),
            "counter": self.counter,
            "grants_after_faults": grants_after_faults,
            "fault_times_s": self.faults.iter().map(|f| format!("{} {} {:+.2}..{:+.2}", f.kind, f.member, (f.from as f64 - self.faulted.0 as f64) / SEC, (f.to as f64 - self.faulted.0 as f64) / SEC)).collect::<Vec<_>>(),
            "exit_samples": exit_samples,
        });
        Report {
            figures,
            overlaps,
            token_order,
            unfinished,
            lost_writes: lost_writes.or(excess),
            bad_exits,
            exit69,
            sessions_lost,
            baseline_rate,
            faulted_rate,
            longest_gap,
            grants_after_faults,
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The longest time within `[from, to]` without a grant (`starts` sorted), in seconds.
fn longest_gap(starts: &[u64], from: u64, to: u64) -> f64 {
    let mut edges = vec![from];
    edges.extend(starts.iter().copied().filter(|&t| t > from && t < to));
    edges.push(to);
    edges
        .windows(2)
        .map(|w| secs(w[1] - w[0]))
        .fold(0.0, f64::max)
}

/// The longest time between two grants (`starts` sorted) among the stretches that overlap
/// `[from, to]`: how long the fault held up the queue, including the tail after recovery.
fn longest_gap_touching(starts: &[u64], from: u64, to: u64) -> f64 {
    starts
        .windows(2)
        .filter(|w| w[1] >= from && w[0] <= to)
        .map(|w| secs(w[1] - w[0]))
        .fold(0.0, f64::max)
}

/// Self-checks of the checker, run before any cluster: it must flag what it exists to flag.
pub fn self_check() {
    let inv = |id: &str, code| Invocation {
        id: id.into(),
        exited: 100,
        code,
        stderr: String::new(),
    };
    let history = |log: &str, counter, invocations| History {
        sections: parse_sections(log),
        invocations,
        faults: vec![],
        counter,
        baseline: (0, 50),
        faulted: (50, 100),
    };
    let good = history(
        "start a 5 10\nend a 5 20\nstart b 6 20\nend b 6 30\n",
        2,
        vec![inv("a", 0), inv("b", 0)],
    )
    .check("self-check");
    assert!(good.safety_violations().is_empty());

    let overlap = history(
        "start a 5 10\nstart b 6 15\nend a 5 20\nend b 6 30\n",
        2,
        vec![inv("a", 0), inv("b", 0)],
    )
    .check("self-check");
    assert_eq!(overlap.overlaps.len(), 1);

    let order = history(
        "start a 6 10\nend a 6 20\nstart b 5 20\nend b 5 30\n",
        2,
        vec![inv("a", 0), inv("b", 0)],
    )
    .check("self-check");
    assert_eq!(order.token_order.len(), 1);

    // a's section was stopped (its tenure exited 75 at 100): it may have run until then.
    let killed = history(
        "start a 5 10\nstart b 6 40\nend b 6 50\n",
        1,
        vec![inv("a", 75), inv("b", 0)],
    )
    .check("self-check");
    assert_eq!(killed.overlaps.len(), 1);
    assert!(killed.unfinished.is_empty());

    let lost = history(
        "start a 5 10\nend a 5 20\nstart b 6 20\nend b 6 30\n",
        1,
        vec![inv("a", 0), inv("b", 1)],
    )
    .check("self-check");
    assert!(lost.lost_writes.is_some());
    assert_eq!(lost.bad_exits.len(), 1);
}
