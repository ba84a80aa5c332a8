//! The benchmark's output: a table with ratios to the floor, or JSON lines.

use std::cell::Cell;

use anyhow::Result;
use serde::Serialize;
use tenure::Tenure;

use super::contended::Contended;
use super::counters::PerUnit;
use super::many::Many;
use super::solo::Solo;
use super::waiters::Waiters;
use crate::output::{self, ms};

/// The single-caller figures every row is compared with.
pub struct Baseline {
    pub floor: Solo,
    pub uncontended: Solo,
}

pub struct Report {
    url: String,
    backend: &'static str,
    base: Baseline,
    json: bool,
    /// Whether the contended table's column header was printed.
    columns_shown: Cell<bool>,
}

#[derive(Serialize)]
struct Row<'a> {
    workload: &'static str,
    backend: &'a str,
    workers: usize,
    cycles: usize,
    seconds: f64,
    cycles_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    handoff_p50_ms: f64,
    handoff_p99_ms: f64,
    floor_p50_ms: f64,
    floor_p99_ms: f64,
    uncontended_p50_ms: f64,
    uncontended_p99_ms: f64,
    uncontended_cycles_per_s: f64,
}

impl Report {
    pub fn new(tenure: &Tenure, base: Baseline, json: bool) -> Self {
        Report {
            url: tenure.url().to_string(),
            backend: tenure.backend(),
            base,
            json,
            columns_shown: Cell::new(false),
        }
    }

    pub fn header(&self) -> Result<()> {
        if self.json {
            return Ok(());
        }
        let (f, u) = (self.base.floor.latency, self.base.uncontended.latency);
        output::line(format!("store {} ({})", self.url, self.backend))?;
        output::line(format!(
            "floor (plain write):       p50 {:.3} ms  p99 {:.3} ms",
            ms(f.p50),
            ms(f.p99)
        ))?;
        output::line(format!(
            "uncontended lock+unlock:   p50 {:.3} ms  p99 {:.3} ms  = {:.2}x floor p50  \
             ({:.0} cycles/s)",
            ms(u.p50),
            ms(u.p99),
            ratio(ms(u.p50), ms(f.p50)),
            self.base.uncontended.per_s
        ))
    }

    fn columns(&self) -> Result<()> {
        if self.columns_shown.replace(true) {
            return Ok(());
        }
        output::line(format!(
            "{:>7} {:>7} {:>10} {:>9} {:>12} {:>12} {:>12} {:>9} {:>12}",
            "workers",
            "cycles",
            "cycles/s",
            "vs solo",
            "acquire p50",
            "acquire p99",
            "handoff p50",
            "vs floor",
            "handoff p99"
        ))
    }

    pub fn row(&self, c: &Contended) -> Result<()> {
        let per_s = ratio(c.cycles as f64, c.seconds);
        if self.json {
            return output::json(&self.json_row(c, per_s));
        }
        self.columns()?;
        output::line(format!(
            "{:>7} {:>7} {:>10.0} {:>8.2}x {:>9.3} ms {:>9.3} ms {:>9.3} ms {:>8.2}x {:>9.3} ms",
            c.workers,
            c.cycles,
            per_s,
            ratio(per_s, self.base.uncontended.per_s),
            ms(c.acquire.p50),
            ms(c.acquire.p99),
            ms(c.handoff.p50),
            ratio(ms(c.handoff.p50), ms(self.base.floor.latency.p50)),
            ms(c.handoff.p99),
        ))
    }

    fn json_row(&self, c: &Contended, cycles_per_s: f64) -> Row<'_> {
        let (f, u) = (self.base.floor.latency, self.base.uncontended.latency);
        Row {
            workload: "contended",
            backend: self.backend,
            workers: c.workers,
            cycles: c.cycles,
            seconds: c.seconds,
            cycles_per_s,
            p50_ms: ms(c.acquire.p50),
            p99_ms: ms(c.acquire.p99),
            handoff_p50_ms: ms(c.handoff.p50),
            handoff_p99_ms: ms(c.handoff.p99),
            floor_p50_ms: ms(f.p50),
            floor_p99_ms: ms(f.p99),
            uncontended_p50_ms: ms(u.p50),
            uncontended_p99_ms: ms(u.p99),
            uncontended_cycles_per_s: self.base.uncontended.per_s,
        }
    }
}

#[derive(Serialize)]
struct ManyRow<'a> {
    workload: &'static str,
    backend: &'a str,
    locks: usize,
    tasks: usize,
    cycles: usize,
    seconds: f64,
    cycles_per_s: f64,
    vs_uncontended: f64,
    p50_ms: f64,
    p99_ms: f64,
    floor_p50_ms: f64,
    uncontended_p50_ms: f64,
    uncontended_cycles_per_s: f64,
}

#[derive(Serialize)]
struct WaitersRow<'a> {
    workload: &'static str,
    backend: &'a str,
    waiters: usize,
    handoffs: usize,
    handoff_p50_ms: f64,
    handoff_p99_ms: f64,
    handoff_vs_floor: f64,
    rss_bytes_per_waiter: f64,
    rss_bytes_per_session: f64,
    /// `null` where the store's counters could not be read.
    store_per_handoff: Option<PerUnit>,
    floor_p50_ms: f64,
}

impl Report {
    pub fn many_row(&self, m: &Many) -> Result<()> {
        let per_s = ratio(m.cycles as f64, m.seconds);
        let row = ManyRow {
            workload: "locks",
            backend: self.backend,
            locks: m.locks,
            tasks: m.tasks,
            cycles: m.cycles,
            seconds: m.seconds,
            cycles_per_s: per_s,
            vs_uncontended: ratio(per_s, self.base.uncontended.per_s),
            p50_ms: ms(m.latency.p50),
            p99_ms: ms(m.latency.p99),
            floor_p50_ms: ms(self.base.floor.latency.p50),
            uncontended_p50_ms: ms(self.base.uncontended.latency.p50),
            uncontended_cycles_per_s: self.base.uncontended.per_s,
        };
        if self.json {
            return output::json(&row);
        }
        output::line(format!(
            "{} tasks over {} locks on one session: {} cycles, {:.0} cycles/s = {:.2}x \
             uncontended; lock+unlock p50 {:.3} ms p99 {:.3} ms",
            row.tasks,
            row.locks,
            row.cycles,
            row.cycles_per_s,
            row.vs_uncontended,
            row.p50_ms,
            row.p99_ms
        ))
    }

    pub fn waiters_row(&self, w: &Waiters) -> Result<()> {
        let row = WaitersRow {
            workload: "waiters",
            backend: self.backend,
            waiters: w.waiters,
            handoffs: w.handoffs,
            handoff_p50_ms: ms(w.handoff.p50),
            handoff_p99_ms: ms(w.handoff.p99),
            handoff_vs_floor: ratio(ms(w.handoff.p50), ms(self.base.floor.latency.p50)),
            rss_bytes_per_waiter: w.waiter_bytes,
            rss_bytes_per_session: w.session_bytes,
            store_per_handoff: w.store,
            floor_p50_ms: ms(self.base.floor.latency.p50),
        };
        if self.json {
            return output::json(&row);
        }
        let store = match row.store_per_handoff {
            Some(s) => format!(
                "store per hand-off: {:.2} requests, {:.2} events",
                s.requests, s.events
            ),
            None => "store counters unavailable".to_string(),
        };
        output::line(format!(
            "{} waiters: {:.0} bytes RSS per queued waiter ({:.0} per session); hand-off p50 \
             {:.3} ms = {:.2}x floor, p99 {:.3} ms over {} hand-offs; {store}",
            row.waiters,
            row.rss_bytes_per_waiter,
            row.rss_bytes_per_session,
            row.handoff_p50_ms,
            row.handoff_vs_floor,
            row.handoff_p99_ms,
            row.handoffs
        ))
    }
}

/// `a / b`, or 0 when `b` is 0 (a store so fast a timer reads zero).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}
