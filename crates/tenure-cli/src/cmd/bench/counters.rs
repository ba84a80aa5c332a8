//! The store's own work counters, read around a measured window so that "requests per
//! hand-off" comes from the server, not from what the client believes it sent: etcd's
//! `/metrics` (gRPC calls and watch events), ZooKeeper's `mntr` (reads and writes it served
//! under the lock's top-level node, watches deletes fired), Redis's `INFO commandstats`
//! (commands and `PUBLISH`es).
//!
//! Read over plain TCP on the URL's first endpoint. A store that cannot be asked (TLS, a
//! password, `mem://`, a ZooKeeper without `mntr` in its four-letter-word whitelist) has no
//! counters, and the bench says so with `null`s instead of failing.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one scrape may take before the counters are given up for this run.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Cumulative counts at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Requests the store served (etcd: unary gRPC calls and watch create/cancel messages;
    /// ZooKeeper: reads and writes; Redis: commands other than the INFO that reads them).
    pub requests: f64,
    /// Notifications the store sent (etcd: watch events; ZooKeeper: watches fired by deletes;
    /// Redis: PUBLISHes).
    pub events: f64,
}

/// The difference between two readings, per unit of work.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PerUnit {
    pub requests: f64,
    pub events: f64,
}

impl Counts {
    pub fn per(self, before: Counts, units: usize) -> PerUnit {
        let n = units.max(1) as f64;
        PerUnit {
            requests: (self.requests - before.requests) / n,
            events: (self.events - before.events) / n,
        }
    }
}

/// Where to read the counters of the store behind `url`.
#[derive(Debug, Clone)]
pub enum Source {
    Etcd(String),
    /// The server, and the top-level node whose reads and writes count (ZooKeeper's
    /// per-namespace counters): the chroot's, else the lock name's.
    ZooKeeper(String, Option<String>),
    Redis(String),
}

impl Source {
    /// The counter source for the lock `name` on `url`.
    pub fn for_lock(url: &str, name: &str) -> Option<Source> {
        match Source::for_url(url)? {
            Source::ZooKeeper(host, None) => {
                let top = name.trim_start_matches('/').split('/').next();
                let namespace = top.filter(|t| !t.is_empty()).map(str::to_string);
                Some(Source::ZooKeeper(host, namespace))
            }
            other => Some(other),
        }
    }

    /// The counter source for `url`, if plain TCP without credentials can reach one.
    pub fn for_url(url: &str) -> Option<Source> {
        let (scheme, rest) = url.split_once("://")?;
        if rest.contains('@') {
            return None;
        }
        let host = rest.split([',', '/']).next()?.to_string();
        if host.is_empty() {
            return None;
        }
        let chroot = rest.split_once('/').map(|(_, path)| path);
        let namespace = chroot
            .and_then(|path| path.split('/').find(|s| !s.is_empty()))
            .map(str::to_string);
        match scheme {
            "etcd" => Some(Source::Etcd(host)),
            "zk" => Some(Source::ZooKeeper(host, namespace)),
            "redis" => Some(Source::Redis(host)),
            _ => None,
        }
    }

    /// The counters now; `None` if the store would not say.
    pub async fn read(&self) -> Option<Counts> {
        let read = async {
            match self {
                Source::Etcd(host) => etcd(host).await,
                Source::ZooKeeper(host, namespace) => zookeeper(host, namespace.as_deref()).await,
                Source::Redis(host) => redis(host).await,
            }
        };
        match tokio::time::timeout(SCRAPE_TIMEOUT, read).await {
            Ok(Ok(counts)) => Some(counts),
            Ok(Err(e)) => {
                tracing::warn!("store counters unavailable: {e}");
                None
            }
            Err(_) => {
                tracing::warn!("store counters unavailable: no answer in {SCRAPE_TIMEOUT:?}");
                None
            }
        }
    }
}

/// Sends `request` and reads until the server closes the connection.
async fn exchange(host: &str, request: &[u8]) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(host).await?;
    conn.write_all(request).await?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).await?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// The value at the end of a Prometheus sample line.
fn sample_value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn etcd(host: &str) -> std::io::Result<Counts> {
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n");
    let text = exchange(host, request.as_bytes()).await?;
    Ok(parse_etcd(&text))
}

/// Unary calls handled (Txn, Range, LeaseGrant…) plus watch create/cancel messages received;
/// watch events sent. Keep-alive stream messages are left out: every open session renews in
/// the background, whatever the locks do.
fn parse_etcd(text: &str) -> Counts {
    let mut counts = Counts::default();
    for line in text.lines() {
        let unary =
            line.starts_with("grpc_server_handled_total{") && line.contains("grpc_type=\"unary\"");
        let watch_request = line.starts_with("grpc_server_msg_received_total{")
            && line.contains("grpc_method=\"Watch\"");
        if unary || watch_request {
            counts.requests += sample_value(line);
        } else if line.starts_with("etcd_debugging_mvcc_events_total ") {
            counts.events += sample_value(line);
        }
    }
    counts
}

async fn zookeeper(host: &str, namespace: Option<&str>) -> std::io::Result<Counts> {
    let text = exchange(host, b"mntr").await?;
    parse_mntr(&text, namespace).ok_or_else(|| {
        std::io::Error::other(format!(
            "ZooKeeper answered mntr without its counters (is mntr in 4lw.commands.whitelist?): {}",
            text.trim()
        ))
    })
}

/// Reads and writes served under `namespace`, the lock's top-level node (the server's
/// per-namespace counters), else all of them (latency samples counted; pings are neither); and
/// the watches that deletes fired. The namespace leaves out the sessions' renewals (a read of
/// `/` every third of the TTL), as etcd's count leaves out keep-alives: background work of
/// every open session, whatever the locks do (10,000 sessions at a 30 s TTL renew 1,000 times
/// a second, more than the hand-offs themselves).
fn parse_mntr(text: &str, namespace: Option<&str>) -> Option<Counts> {
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('\t')?;
            (k == key).then(|| v.trim().parse::<f64>().ok()).flatten()
        })
    };
    let scoped = namespace.and_then(|ns| {
        Some(
            value(&format!("zk_cnt_{ns}_read_per_namespace"))?
                + value(&format!("zk_cnt_{ns}_write_per_namespace"))?,
        )
    });
    let requests = match scoped {
        Some(requests) => requests,
        None => value("zk_cnt_readlatency")? + value("zk_cnt_updatelatency")?,
    };
    Some(Counts {
        requests,
        events: value("zk_sum_node_deleted_watch_count")?,
    })
}

async fn redis(host: &str) -> std::io::Result<Counts> {
    // QUIT after INFO, so the server closes and the reply ends there.
    let text = exchange(
        host,
        b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n*1\r\n$4\r\nQUIT\r\n",
    )
    .await?;
    Ok(parse_commandstats(&text))
}

/// `cmdstat_<name>:calls=N,…` lines: every command but the INFO and QUIT that read them.
fn parse_commandstats(text: &str) -> Counts {
    let mut counts = Counts::default();
    for line in text.lines() {
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let calls = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        match name {
            "info" | "quit" => {}
            "publish" | "spublish" => {
                counts.requests += calls;
                counts.events += calls;
            }
            _ => counts.requests += calls,
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_from_urls() {
        assert!(matches!(
            Source::for_url("etcd://127.0.0.1:2379,127.0.0.1:2380"),
            Some(Source::Etcd(h)) if h == "127.0.0.1:2379"
        ));
        assert!(matches!(
            Source::for_url("zk://127.0.0.1:2181/chroot"),
            Some(Source::ZooKeeper(h, Some(ns))) if h == "127.0.0.1:2181" && ns == "chroot"
        ));
        assert!(matches!(
            Source::for_lock("zk://127.0.0.1:2181", "tenure-bench/1/waiters-0"),
            Some(Source::ZooKeeper(_, Some(ns))) if ns == "tenure-bench"
        ));
        assert!(matches!(
            Source::for_url("redis://127.0.0.1:6379/2"),
            Some(Source::Redis(h)) if h == "127.0.0.1:6379"
        ));
        for url in [
            "mem://",
            "redis://u:p@h:1",
            "etcds://h:1",
            "redlock://a:1,b:2",
        ] {
            assert!(Source::for_url(url).is_none(), "{url}");
        }
    }

    #[test]
    fn parses_each_stores_counters() {
        let etcd = "# HELP x\n\
            grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Txn\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 7\n\
            grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"} 50\n\
            grpc_server_msg_received_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 3\n\
            etcd_debugging_mvcc_events_total 4\n";
        let c = parse_etcd(etcd);
        assert_eq!((c.requests, c.events), (10.0, 4.0));
        let mntr = "zk_version\t3.8\nzk_cnt_readlatency\t5\nzk_cnt_updatelatency\t6\n\
            zk_sum_node_deleted_watch_count\t2\n";
        let c = parse_mntr(mntr, Some("tenure-bench")).expect("counters");
        assert_eq!((c.requests, c.events), (11.0, 2.0));
        let scoped = format!(
            "{mntr}zk_cnt_tenure-bench_read_per_namespace\t3\n\
             zk_cnt_tenure-bench_write_per_namespace\t1\n"
        );
        let c = parse_mntr(&scoped, Some("tenure-bench")).expect("counters");
        assert_eq!((c.requests, c.events), (4.0, 2.0));
        let refused = "mntr is not executed because it is not in the whitelist.";
        assert!(parse_mntr(refused, None).is_none());
        let info = "$100\r\n# Commandstats\r\ncmdstat_evalsha:calls=9,usec=1\r\n\
            cmdstat_publish:calls=2,usec=1\r\ncmdstat_info:calls=40,usec=1\r\n+OK\r\n";
        let c = parse_commandstats(info);
        assert_eq!((c.requests, c.events), (11.0, 2.0));
        let later = Counts {
            requests: 31.0,
            events: 12.0,
        };
        let per = later.per(c, 10);
        assert_eq!((per.requests, per.events), (2.0, 1.0));
    }
}
