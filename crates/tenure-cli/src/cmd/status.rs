//! `tenure status [PREFIX]`: every lock and election under a prefix, with holder, token,
//! value, waiters and the holder lease's TTL left; a table for people, a JSON array for scripts.

use std::time::Duration;

use anyhow::Result;
use clap::Args;
use tenure::LockStatus;

use crate::cli::{connect, options::GlobalOpts};
use crate::output;

pub const AFTER_HELP: &str = "\
Lists every lock, election, semaphore, read/write lock and registered key (`tenure
register`) whose name starts with PREFIX (default: all), one row each:
  NAME  HOLDER KEY  TOKEN  VALUE  WAITERS  TTL  HELD
A semaphore's row shows its oldest holder, and HELD as H/N: H of its N permits held (H/?
where the holders recorded no count, as Curator's do).
VALUE is the holder's value (a lock holder's `tenure lock --value`, HOST:PID by default; an
election's proposal), shown as UTF-8 with invalid bytes replaced and cut to 32 characters;
TTL is what is left of the holder's lease (- if unknown, as on ZooKeeper). HELD is how a
read/write lock (`tenure lock --shared/--exclusive`) is held: shared(N) by N readers, the
holder the oldest of them, or exclusive by its writer; registered for a key `tenure register`
keeps (NAME is the key, VALUE its value); - for a mutex or an election. WAITERS
are the entries queued behind the holders. On Redis only registered keys are listed (it
keeps no index of locks; a note on stderr says so); Redlock cannot list (exit 2).
--json prints one JSON array (one document, so `jq '.[]'` works), one object per row:
  {\"name\",\"key\",\"value\",\"token\",\"waiters\",\"ttl_ms\",\"rwlock\",\"readers\"}  (ttl_ms null if unknown;
  value in full: a string, or an array of byte values if it is not UTF-8); a semaphore's
  also has \"permits\" (when recorded) and \"holders\": [{\"key\",\"value\",\"token\"}, …];
  a registered key's has \"registered\": true
Exit codes: 0 listed (also when nothing matches); 2 usage; 69 store unreachable;
77 permission denied.
Examples:
  tenure status --url etcd://127.0.0.1:2379
  tenure status --url etcd://127.0.0.1:2379 app/ --json | jq '.[] | select(.waiters > 0)'";

/// Values longer than this are cut in the table.
const VALUE_WIDTH: usize = 32;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only names starting with this (e.g. `app/`); empty means all
    #[arg(default_value = "")]
    pub prefix: String,
}

/// One row of the table.
struct Row {
    name: String,
    key: String,
    token: u64,
    value: String,
    waiters: usize,
    ttl_ms: Option<u64>,
    /// How it is held: a semaphore's `H/N`, a read/write lock's `shared(N)` or `exclusive`,
    /// `-` for a mutex or an election.
    held: String,
}

impl From<LockStatus> for Row {
    fn from(s: LockStatus) -> Self {
        Row {
            name: s.name,
            key: s.holder.key,
            token: s.holder.token.get(),
            value: String::from_utf8_lossy(&s.holder.value).into_owned(),
            waiters: s.waiters,
            ttl_ms: s
                .holder_ttl
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            held: match (s.holders.len(), s.permits, s.rwlock, s.readers) {
                _ if s.registered => "registered".to_string(),
                (0, _, false, _) => "-".to_string(),
                (0, _, true, 0) => "exclusive".to_string(),
                (0, _, true, n) => format!("shared({n})"),
                (held, Some(n), _, _) => format!("{held}/{n}"),
                (held, None, _, _) => format!("{held}/?"),
            },
        }
    }
}

pub async fn run(global: &GlobalOpts, args: StatusArgs) -> Result<u8> {
    if args.prefix.contains('\0') {
        return Err(crate::exit::Failure::new(
            crate::exit::USAGE,
            "the prefix must not contain NUL",
        )
        .into());
    }
    let tenure = connect::coordinating(global, "status").await?;
    let statuses = tenure.status(&args.prefix).await?;
    if tenure.backend() == "redis" {
        eprintln!("tenure: Redis lists registered keys only; its locks, semaphores and read/write locks cannot be listed");
    }
    if global.json {
        // The library's shape (tenure's `serde` feature), so scripts and programs agree.
        output::json(&statuses)?;
    } else {
        let rows: Vec<Row> = statuses.into_iter().map(Row::from).collect();
        output::line(table(&rows))?;
    }
    Ok(0)
}

/// The rows as aligned columns under a header.
fn table(rows: &[Row]) -> String {
    let header = [
        "NAME",
        "HOLDER KEY",
        "TOKEN",
        "VALUE",
        "WAITERS",
        "TTL",
        "HELD",
    ]
    .map(String::from);
    let mut cells = vec![header];
    for r in rows {
        cells.push([
            printable(&r.name, usize::MAX),
            printable(&r.key, usize::MAX),
            r.token.to_string(),
            printable(&r.value, VALUE_WIDTH),
            r.waiters.to_string(),
            r.ttl_ms.map_or_else(|| "-".to_string(), ttl),
            r.held.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let lines: Vec<String> = cells
        .iter()
        .map(|row| {
            let padded: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_string()
        })
        .collect();
    lines.join("\n")
}

/// Control characters escaped (a value must not rewrite the terminal), cut to `max` chars.
fn printable(s: &str, max: usize) -> String {
    let escaped: String = s.chars().flat_map(char::escape_debug).collect();
    let escaped = if escaped.is_empty() {
        "\"\"".to_string()
    } else {
        escaped
    };
    match escaped.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if escaped.chars().count() > max => format!("{}…", &escaped[..cut]),
        _ => escaped,
    }
}

/// Whole seconds left, e.g. `9s`; under a second as `500ms`.
fn ttl(ms: u64) -> String {
    humantime::format_duration(match ms {
        0..=999 => Duration::from_millis(ms),
        _ => Duration::from_secs(ms / 1000),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_printable_and_cut() {
        assert_eq!(printable("abc", 32), "abc");
        assert_eq!(printable("a\nb", 32), "a\\nb");
        assert_eq!(printable("", 32), "\"\"");
        let long = "x".repeat(40);
        let cut = printable(&long, 32);
        assert_eq!(cut.chars().count(), 32);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn table_aligns_columns() {
        let rows = [Row {
            name: "app/jobs".into(),
            key: "app/jobs/694d".into(),
            token: 7,
            value: String::new(),
            waiters: 1,
            ttl_ms: Some(9_400),
            held: "shared(3)".into(),
        }];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME      HOLDER KEY"), "{t}");
        assert!(lines[1].starts_with("app/jobs  app/jobs/694d"), "{t}");
        assert!(lines[1].ends_with("1        9s   shared(3)"), "{t}");
        let semaphore = Row {
            held: "2/3".into(),
            ..rows.into_iter().next().expect("a row")
        };
        let t = table(&[semaphore]);
        assert!(
            t.lines().nth(1).is_some_and(|l| l.ends_with("9s   2/3")),
            "{t}"
        );
    }
}
