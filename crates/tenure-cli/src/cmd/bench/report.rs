//! The benchmark's output: a table with ratios to the floor, or JSON lines.

use anyhow::Result;
use serde::Serialize;
use tenure::Tenure;

use super::contended::Contended;
use super::solo::Solo;
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
}

#[derive(Serialize)]
struct Row<'a> {
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
        ))?;
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

/// `a / b`, or 0 when `b` is 0 (a store so fast a timer reads zero).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}
