//! Events of a scenario as they happen, stamped with the time since it started.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tokio::time::Instant;

use crate::output;

pub struct Timeline {
    demo: &'static str,
    start: Instant,
    json: bool,
}

#[derive(Serialize)]
struct Event<'a> {
    demo: &'a str,
    t: f64,
    event: &'a str,
    message: &'a str,
}

impl Timeline {
    pub fn start(demo: &'static str, json: bool) -> Self {
        Timeline {
            demo,
            start: Instant::now(),
            json,
        }
    }

    /// Time since the scenario started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Prints that `event` happened now.
    pub fn event(&self, event: &str, message: &str) -> Result<()> {
        self.event_at(self.now(), event, message)
    }

    /// Prints that `event` happened at `t` (recorded where it happened).
    pub fn event_at(&self, t: Duration, event: &str, message: &str) -> Result<()> {
        if self.json {
            output::json(&Event {
                demo: self.demo,
                t: t.as_secs_f64(),
                event,
                message,
            })
        } else {
            output::line(format!("[{:>7.3}s] {message}", t.as_secs_f64()))
        }
    }

    /// A heading for people; nothing in JSON mode.
    pub fn heading(&self, text: &str) -> Result<()> {
        if self.json {
            return Ok(());
        }
        output::line(format!("{} demo: {text}", self.demo))
    }
}
