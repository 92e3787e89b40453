//! The `coldsweep` binary, run for real in temp folders: exit codes, what it
//! tells the user, and what it leaves on disk.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use coldsweep::catalog::{BlobState, JobRow, SqliteCatalog, TaskRow};
use coldsweep::demo::{DemoSpec, MISSING_TASK, TAMPERED_TASK};
use coldsweep::store::{FsStore, PutOptions};
use coldsweep::{Catalog, Location, ObjectKey, Store, task_html_object_path};
use sha2::{Digest, Sha256};

use crate::harness;

const COLD_BUCKET: &str = "cold-archive";
const HOT_BUCKET: &str = "task-html";
/// Longest any one command may take before the test calls it hung.
const LIMIT: Duration = Duration::from_secs(60);

/// The binary with an empty environment, so nothing leaks in from the shell.
pub(crate) fn coldsweep() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coldsweep"));
    cmd.env_clear().env("RUST_LOG", "info");
    cmd
}

pub(crate) struct Ran {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    pub(crate) fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run to completion (killed and failed after [`LIMIT`]).
pub(crate) fn run(cmd: &mut Command) -> Ran {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coldsweep");
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = wait(&mut child, LIMIT);
    Ran {
        code: status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Wait for `child`; kill it and panic after `limit`.
fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for coldsweep") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("coldsweep did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regular files under `dir`, recursively.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else if path.is_file() {
                found.push(path);
            }
        }
    }
    found
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A SQLite catalog and two folder stores in a temp folder, configured for
/// the binary through environment variables only.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(setup.cold_bucket()).unwrap();
        setup
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("catalog.db")
    }

    fn hot_root(&self) -> PathBuf {
        self.dir.path().join("hot")
    }

    fn cold_root(&self) -> PathBuf {
        self.dir.path().join("cold")
    }

    fn cold_bucket(&self) -> PathBuf {
        self.cold_root().join(COLD_BUCKET)
    }

    fn hot_bucket(&self) -> PathBuf {
        self.hot_root().join(HOT_BUCKET)
    }

    /// The binary, configured for this setup by environment variables.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = coldsweep();
        cmd.args(args)
            .env("DATABASE_URL", format!("sqlite:{}", self.db().display()))
            .env("ARCHIVE_PROVIDER", "fs")
            .env("ARCHIVE_BUCKET", COLD_BUCKET)
            .env("ARCHIVE_FS_ROOT", self.cold_root())
            .env("HOT_STORE", "fs")
            .env("HOT_FS_ROOT", self.hot_root());
        cmd
    }

    async fn catalog(&self) -> SqliteCatalog {
        let catalog = SqliteCatalog::open(&self.db()).await.unwrap();
        catalog.migrate().await.unwrap();
        catalog
    }

    fn hot(&self) -> FsStore {
        FsStore::new(self.hot_root()).unwrap()
    }

    /// The demo's sample data (with its one tampered and one missing page).
    async fn seed_demo(&self) {
        let catalog = self.catalog().await;
        coldsweep::demo::seed(&catalog, &self.hot(), &DemoSpec::default())
            .await
            .unwrap();
        catalog.pool().close().await;
    }

    /// Four finished jobs of one domain; the oldest has `tasks` good pages,
    /// so a sweep with the default retention (3) moves exactly those.
    async fn seed_clean(&self, tasks: usize) {
        let catalog = self.catalog().await;
        let hot = self.hot();
        let base = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        for j in 0..4i64 {
            let job_id = format!("clean-{j}");
            catalog
                .insert_job(&JobRow {
                    id: job_id.clone(),
                    domain_id: 7,
                    organisation_id: None,
                    status: "completed".into(),
                    created_at: base + chrono::Duration::days(j),
                    completed_at: Some(
                        base + chrono::Duration::days(j) + chrono::Duration::hours(1),
                    ),
                })
                .await
                .unwrap();
            if j != 0 {
                continue;
            }
            for t in 0..tasks {
                let task_id = format!("{job_id}-t{t}");
                let html = format!("<html><body><h1>page {t}</h1></body></html>");
                let stored = gzip(html.as_bytes());
                let path = task_html_object_path(&job_id, &task_id);
                hot.put(
                    &Location::new(HOT_BUCKET, ObjectKey::new(path.clone()).unwrap()),
                    Bytes::from(stored.clone()),
                    &PutOptions::default(),
                )
                .await
                .unwrap();
                catalog
                    .insert_task(&TaskRow {
                        id: task_id,
                        job_id: job_id.clone(),
                        html_storage_bucket: Some(HOT_BUCKET.into()),
                        html_storage_path: Some(path),
                        html_content_type: Some("text/html; charset=utf-8".into()),
                        html_content_encoding: Some("gzip".into()),
                        html_size_bytes: Some(html.len() as i64),
                        html_compressed_size_bytes: Some(stored.len() as i64),
                        html_sha256: Some(hex::encode(Sha256::digest(html.as_bytes()))),
                        ..TaskRow::default()
                    })
                    .await
                    .unwrap();
            }
        }
        catalog.pool().close().await;
    }
}

#[tokio::test]
async fn demo_moves_explains_and_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let dir_arg = dir.to_str().unwrap();

    let first = run(coldsweep().args(["demo", "--dir", dir_arg]));
    assert_eq!(first.code, Some(0), "{}", first.show());
    for expected in [
        "Seeded",
        "Moved to cold:",
        "Kept hot by retention",
        "newest 3 are kept",
        "still running",
        "QUARANTINED",
        "LOST",
        "deliberate",
        TAMPERED_TASK,
        MISSING_TASK,
    ] {
        assert!(
            first.stdout.contains(expected),
            "missing {expected:?}\n{}",
            first.show()
        );
    }
    assert!(!first.stdout.contains("UNEXPECTED"), "{}", first.show());

    let cold_bucket = dir.join("cold").join(COLD_BUCKET);
    let hot_bucket = dir.join("hot").join(HOT_BUCKET);
    let cold_files = files_under(&cold_bucket);
    let hot_files = files_under(&hot_bucket);
    assert!(
        !cold_files.is_empty(),
        "nothing in {}",
        cold_bucket.display()
    );
    // The count the demo reports is the count on disk.
    let moved = format!("Moved to cold: {} blobs", cold_files.len());
    assert!(
        first.stdout.contains(&moved),
        "expected {moved:?}\n{}",
        first.show()
    );

    // Every archived row points at a cold file whose content is what the
    // crawler recorded, and its hot copy is gone.
    let catalog = SqliteCatalog::open(&dir.join("catalog.db")).await.unwrap();
    let archived = catalog
        .tasks_in_state(BlobState::Archived, 10_000)
        .await
        .unwrap();
    assert_eq!(archived.len(), cold_files.len());
    for task in &archived {
        assert_eq!(task.html_archive_provider.as_deref(), Some("fs"));
        assert_eq!(task.html_archive_bucket.as_deref(), Some(COLD_BUCKET));
        let key = task.html_archive_key.as_deref().unwrap();
        let bytes = std::fs::read(cold_bucket.join(key)).unwrap();
        let digest = hex::encode(Sha256::digest(gunzip(&bytes)));
        assert_eq!(
            Some(digest.as_str()),
            task.html_sha256.as_deref(),
            "{}",
            task.id
        );
        assert!(
            !hot_bucket
                .join(task_html_object_path(&task.job_id, &task.id))
                .exists()
        );
    }
    let quarantined = catalog.task(TAMPERED_TASK).await.unwrap().unwrap();
    assert_eq!(quarantined.state(), BlobState::Quarantined);
    // Only suspected on this first look: lost needs a later one.
    assert_eq!(
        catalog.task(MISSING_TASK).await.unwrap().unwrap().state(),
        BlobState::Missing
    );
    catalog.pool().close().await;

    let second = run(coldsweep().args(["demo", "--dir", dir_arg]));
    assert_eq!(second.code, Some(0), "{}", second.show());
    assert!(
        second.stdout.contains("seeding nothing"),
        "{}",
        second.show()
    );
    assert!(
        second.stdout.contains("Nothing was left to move"),
        "{}",
        second.show()
    );
    assert!(
        !second.stdout.contains("Moved to cold:"),
        "{}",
        second.show()
    );
    assert_eq!(files_under(&cold_bucket).len(), cold_files.len());
    assert_eq!(files_under(&hot_bucket).len(), hot_files.len());

    // --reset starts over: seeded and moved again.
    let third = run(coldsweep().args(["demo", "--reset", "--dir", dir_arg]));
    assert_eq!(third.code, Some(0), "{}", third.show());
    assert!(third.stdout.contains("Seeded"), "{}", third.show());
    assert!(third.stdout.contains(&moved), "{}", third.show());
}

#[test]
fn demo_reset_refuses_a_folder_it_did_not_make() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let ran = run(coldsweep().args(["demo", "--reset", "--dir", tmp.path().to_str().unwrap()]));
    assert_ne!(ran.code, Some(0), "{}", ran.show());
    assert!(ran.stderr.contains("refusing"), "{}", ran.show());
    assert!(tmp.path().join("precious.txt").exists());
}

#[tokio::test]
async fn sweep_once_exits_zero_when_clean() {
    let setup = Setup::new();
    setup.seed_clean(3).await;
    let ran = run(&mut setup.cmd(&["sweep", "--once"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(ran.stdout.contains("moved 3 blobs"), "{}", ran.show());
    assert_eq!(files_under(&setup.cold_bucket()).len(), 3);
    assert!(files_under(&setup.hot_bucket()).is_empty());
}

#[tokio::test]
async fn sweep_once_exits_non_zero_when_a_blob_fails() {
    let setup = Setup::new();
    setup.seed_demo().await;
    let ran = run(&mut setup.cmd(&["sweep", "--once"]));
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    for expected in [
        TAMPERED_TASK,
        "quarantined",
        MISSING_TASK,
        "lost",
        "content digest mismatch",
    ] {
        assert!(
            ran.stdout.contains(expected),
            "missing {expected:?}\n{}",
            ran.show()
        );
    }
    assert!(!files_under(&setup.cold_bucket()).is_empty());

    // Quarantined and lost blobs are not candidates again: the next sweep is clean.
    let again = run(&mut setup.cmd(&["sweep", "--once"]));
    assert_eq!(again.code, Some(0), "{}", again.show());
    assert!(again.stdout.contains("moved 0 blobs"), "{}", again.show());
}

#[tokio::test]
async fn sweep_fails_to_start_when_the_cold_bucket_is_missing() {
    let setup = Setup::new();
    setup.seed_clean(1).await;
    std::fs::remove_dir(setup.cold_bucket()).unwrap();
    let ran = run(&mut setup.cmd(&["sweep", "--once"]));
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(
        ran.stderr
            .contains("cold bucket fs:cold-archive is not reachable"),
        "{}",
        ran.show()
    );
    assert_eq!(
        files_under(&setup.hot_bucket()).len(),
        1,
        "moved despite a failed ping"
    );
}

#[test]
fn sweep_without_once_points_to_run() {
    let setup = Setup::new();
    let ran = run(&mut setup.cmd(&["sweep"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("--once") && ran.stderr.contains("coldsweep run"),
        "{}",
        ran.show()
    );
}

#[test]
fn bad_values_name_their_variable() {
    let setup = Setup::new();
    let cases = [
        ("ARCHIVE_BATCH_SIZE", "abc"),
        ("ARCHIVE_CONCURRENCY", "0"),
        ("ARCHIVE_PROVIDER", "nope"),
        ("ARCHIVE_INTERVAL", "5parsecs"),
        ("ARCHIVE_RETENTION_JOBS", "-1"),
        ("ARCHIVE_BUCKET", "Not_A_Bucket"),
        ("HOT_STORE", "floppy"),
    ];
    for command in ["run", "sweep", "plan"] {
        for (name, value) in cases {
            let mut args = vec![command];
            if command == "sweep" {
                args.push("--once");
            }
            if command == "plan" && name.starts_with("HOT_") {
                // plan reads no store settings
                continue;
            }
            let ran = run(setup.cmd(&args).env(name, value));
            assert_eq!(
                ran.code,
                Some(2),
                "{command} {name}={value}\n{}",
                ran.show()
            );
            assert!(
                ran.stderr.contains(&format!("{name}: ")),
                "{command} {name}={value}: stderr does not name it\n{}",
                ran.show()
            );
        }
    }
    // A flag goes through the same parser and names the variable too.
    let ran = run(&mut setup.cmd(&["run", "--batch-size", "abc"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("ARCHIVE_BATCH_SIZE: expected"),
        "{}",
        ran.show()
    );
    // The flag wins over the environment.
    let ran = run(setup
        .cmd(&["run", "--concurrency", "0"])
        .env("ARCHIVE_CONCURRENCY", "5"));
    assert!(
        ran.stderr.contains("ARCHIVE_CONCURRENCY: expected"),
        "{}",
        ran.show()
    );
}

#[test]
fn help_documents_every_variable_with_its_default() {
    let ran = run(coldsweep()
        .args(["run", "--help"])
        .env("ARCHIVE_SECRET_ACCESS_KEY", "do-not-show-this-secret")
        .env("HOT_S3_SECRET_ACCESS_KEY", "nor-this-one")
        .env("DATABASE_URL", "postgres://app:db-password-here@db/app"));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    for var in coldsweep::config::VARIABLES {
        if var.name.starts_with("ARCHIVE_") || var.name.starts_with("HOT_") {
            assert!(
                ran.stdout.contains(var.name),
                "--help lacks {}\n{}",
                var.name,
                ran.stdout
            );
        }
        if let Some(default) = var.default {
            assert!(
                ran.stdout.contains(&format!("[default: {default}]")),
                "--help lacks {}'s default\n{}",
                var.name,
                ran.stdout
            );
        }
    }
    assert!(ran.stdout.contains("DATABASE_URL"));
    for secret in [
        "do-not-show-this-secret",
        "nor-this-one",
        "db-password-here",
    ] {
        assert!(
            !ran.stdout.contains(secret),
            "--help shows a secret\n{}",
            ran.stdout
        );
    }

    let top = run(coldsweep().arg("--help"));
    assert_eq!(top.code, Some(0), "{}", top.show());
    for expected in ["coldsweep demo", "coldsweep run", "catalog", "verifies"] {
        assert!(
            top.stdout.contains(expected),
            "top-level --help lacks {expected:?}\n{}",
            top.stdout
        );
    }
}

#[test]
fn run_without_provider_or_bucket_says_archiving_is_disabled() {
    let setup = Setup::new();
    let ran = run(setup
        .cmd(&["run"])
        .env_remove("ARCHIVE_PROVIDER")
        .env_remove("ARCHIVE_BUCKET"));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    for expected in [
        "archiving is disabled",
        "ARCHIVE_PROVIDER",
        "ARCHIVE_BUCKET",
    ] {
        assert!(
            ran.stderr.contains(expected),
            "missing {expected:?}\n{}",
            ran.show()
        );
    }
    let ran = run(setup.cmd(&["run"]).env_remove("ARCHIVE_BUCKET"));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("ARCHIVE_BUCKET is not set"),
        "{}",
        ran.show()
    );
}

#[test]
fn run_on_an_unmigrated_catalog_says_to_migrate() {
    let setup = Setup::new();
    let ran = run(&mut setup.cmd(&["run"]));
    assert_ne!(ran.code, Some(0), "{}", ran.show());
    assert!(ran.stderr.contains("coldsweep migrate"), "{}", ran.show());

    let migrated = run(&mut setup.cmd(&["migrate"]));
    assert_eq!(migrated.code, Some(0), "{}", migrated.show());
    assert!(migrated.stdout.contains("Migrated"), "{}", migrated.show());
    let again = run(&mut setup.cmd(&["migrate"]));
    assert_eq!(again.code, Some(0), "{}", again.show());
    assert!(
        again.stdout.contains("already up to date"),
        "{}",
        again.show()
    );

    let status = run(&mut setup.cmd(&["status"]));
    assert_eq!(status.code, Some(0), "{}", status.show());
}

#[test]
fn missing_database_url_is_named() {
    let setup = Setup::new();
    let ran = run(setup.cmd(&["status"]).env_remove("DATABASE_URL"));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("DATABASE_URL"), "{}", ran.show());
}

/// A `coldsweep run` in the background, its stderr read line by line;
/// killed on drop so a failing test leaves no daemon behind.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Daemon {
    /// Start `run` with `ARCHIVE_INTERVAL=1h` (one sweep, then idle).
    fn start(setup: &Setup, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = setup.cmd(&["run"]);
        cmd.env("ARCHIVE_INTERVAL", "1h");
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start coldsweep run");
        let (lines_tx, lines) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in stderr.lines().map_while(Result::ok) {
                let _ = lines_tx.send(line.clone());
                all.push(line);
            }
            all
        });
        Daemon {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Wait for the end of the first sweep (killed and failed after [`LIMIT`]).
    fn wait_for_sweep(&mut self) {
        let deadline = Instant::now() + LIMIT;
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let done = line.contains("sweep done");
                    seen.push(line);
                    if done {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => {
                    panic!(
                        "no sweep logged before the deadline or exit:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    /// Send `signal`; the exit code and the whole log.
    fn stop(mut self, signal: &str) -> (Option<i32>, String) {
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let code = wait(&mut self.child, Duration::from_secs(20));
        let log = self.reader.take().unwrap().join().unwrap();
        (code, log.join("\n"))
    }
}

/// Start `run`, wait for its first sweep, send `signal`, expect a clean exit.
fn stops_cleanly_on(setup: &Setup, signal: &str, log_format: &str) {
    let mut daemon = Daemon::start(setup, &[("COLDSWEEP_LOG_FORMAT", log_format)]);
    daemon.wait_for_sweep();
    let (code, log) = daemon.stop(signal);
    assert_eq!(code, Some(0), "exit after SIG{signal}\n{log}");
    assert!(log.contains("stopped"), "{log}");
    if log_format == "json" {
        assert!(
            log.lines().all(|l| l.starts_with('{')),
            "not JSON lines:\n{log}"
        );
    }
}

#[tokio::test]
async fn run_sweeps_then_stops_cleanly_on_sigterm_and_sigint() {
    let setup = Setup::new();
    setup.seed_clean(2).await;
    stops_cleanly_on(&setup, "TERM", "text");
    assert_eq!(
        files_under(&setup.cold_bucket()).len(),
        2,
        "the first sweep did not move"
    );
    stops_cleanly_on(&setup, "INT", "json");
}

/// `GET path` over plain HTTP/1.0: the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// The value of the sample `name{labels}` in a Prometheus text exposition
/// (labels in any order; the sample must have exactly these labels).
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    exposition.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, mut got) = match series.split_once('{') {
            Some((n, rest)) => (
                n,
                rest.trim_end_matches('}')
                    .split(',')
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            ),
            None => (series, Vec::new()),
        };
        got.sort();
        (series_name == name && got == wanted).then(|| value.parse().ok())?
    })
}

/// A free port on 127.0.0.1 (free when this returns; nothing else here binds at random).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn run_serves_prometheus_metrics_when_asked() {
    let setup = Setup::new();
    setup.seed_clean(3).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut daemon = Daemon::start(&setup, &[("COLDSWEEP_METRICS_ADDR", &addr)]);
    daemon.wait_for_sweep();

    let (status, body) = http_get(&addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}\n{body}");
    let archived = |body: &str| {
        sample(
            body,
            "coldsweep_blobs_total",
            &[("source", "task_html"), ("outcome", "archived")],
        )
    };
    assert_eq!(archived(&body), Some(3.0), "{body}");
    assert_eq!(
        sample(
            &body,
            "coldsweep_blobs_total",
            &[("source", "task_html"), ("outcome", "lost")]
        ),
        Some(0.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "coldsweep_sweeps_total", &[]),
        Some(1.0),
        "{body}"
    );
    assert!(
        body.contains("# TYPE coldsweep_blob_duration_seconds histogram"),
        "{body}"
    );
    assert!(body.contains("# HELP coldsweep_blobs_total "), "{body}");
    // The catalog gauges follow the sweep's log line: poll for them.
    let deadline = Instant::now() + LIMIT;
    let body = loop {
        let (_, body) = http_get(&addr, "/metrics");
        if sample(&body, "coldsweep_catalog_blobs", &[("state", "archived")]).is_some()
            || Instant::now() > deadline
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for (state, count) in [("archived", 3.0), ("hot", 0.0), ("lost", 0.0)] {
        assert_eq!(
            sample(&body, "coldsweep_catalog_blobs", &[("state", state)]),
            Some(count),
            "{state}\n{body}"
        );
    }
    for task in ["clean-0-t0", "clean-0", COLD_BUCKET, HOT_BUCKET] {
        assert!(!body.contains(task), "per-object label {task:?}\n{body}");
    }

    let (code, log) = daemon.stop("TERM");
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("serving Prometheus metrics"), "{log}");
}

#[tokio::test]
async fn run_rejects_a_bad_metrics_address_naming_the_variable() {
    let setup = Setup::new();
    let ran = run(setup
        .cmd(&["run"])
        .env("COLDSWEEP_METRICS_ADDR", "localhost:metrics"));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("COLDSWEEP_METRICS_ADDR: expected"),
        "{}",
        ran.show()
    );
    let ran = run(&mut setup.cmd(&["run", "--metrics-addr", "127.0.0.1"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("COLDSWEEP_METRICS_ADDR"),
        "{}",
        ran.show()
    );

    // A port already taken stops start-up too (not a bad value: exit 1).
    setup.seed_clean(1).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let ran = run(setup.cmd(&["run"]).env("COLDSWEEP_METRICS_ADDR", &addr));
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(
        ran.stderr
            .contains(&format!("COLDSWEEP_METRICS_ADDR: serve metrics on {addr}")),
        "{}",
        ran.show()
    );
    assert_eq!(
        files_under(&setup.hot_bucket()).len(),
        1,
        "swept without its metrics endpoint"
    );
}

#[tokio::test]
async fn plan_moves_nothing_and_status_lists_problems() {
    let setup = Setup::new();
    setup.seed_demo().await;
    let hot_before = files_under(&setup.hot_bucket()).len();

    let plan = run(&mut setup.cmd(&["plan"]));
    assert_eq!(plan.code, Some(0), "{}", plan.show());
    for expected in [
        "dry run",
        "job-01",
        "moves:",
        "kept hot:",
        "running",
        "no organisation",
    ] {
        assert!(
            plan.stdout.contains(expected),
            "missing {expected:?}\n{}",
            plan.show()
        );
    }
    // Four eligible jobs in the demo: job-01 (26 pages), job-02 (15 with HTML),
    // job-07 (16) and job-13 (19).
    assert!(
        plan.stdout.contains("would move 76 blobs"),
        "{}",
        plan.show()
    );
    assert_eq!(files_under(&setup.hot_bucket()).len(), hot_before);
    assert!(files_under(&setup.cold_bucket()).is_empty());

    let sweep = run(&mut setup.cmd(&["sweep", "--once"]));
    assert_eq!(sweep.code, Some(1), "{}", sweep.show());

    let status = run(&mut setup.cmd(&["status"]));
    assert_eq!(status.code, Some(0), "{}", status.show());
    for expected in [
        "Quarantined (1)",
        TAMPERED_TASK,
        "Missing (1)",
        MISSING_TASK,
        "content digest mismatch",
    ] {
        assert!(
            status.stdout.contains(expected),
            "missing {expected:?}\n{}",
            status.show()
        );
    }
    let plan = run(&mut setup.cmd(&["plan"]));
    assert!(
        plan.stdout.contains("would move nothing"),
        "{}",
        plan.show()
    );
}

/// Production shape: Postgres catalog, S3-protocol cold store, configured by
/// variables; the cold secret and database password never reach the output.
#[tokio::test]
async fn sweep_once_against_postgres_and_s3() {
    let setup = Setup::new();
    let db = harness::pg::fresh_database().await;
    let catalog = db.catalog().await;
    catalog.migrate().await.unwrap();
    coldsweep::demo::seed(&catalog, &setup.hot(), &DemoSpec::default())
        .await
        .unwrap();
    catalog.pool().close().await;
    let server = harness::s3::S3Server::start().await;
    server.create_bucket(COLD_BUCKET);

    let s3 = |cmd: &mut Command| {
        cmd.env("DATABASE_URL", db.url())
            .env("ARCHIVE_PROVIDER", "minio")
            .env("ARCHIVE_ENDPOINT", &server.endpoint)
            .env("ARCHIVE_ACCESS_KEY_ID", &server.access_key)
            .env("ARCHIVE_SECRET_ACCESS_KEY", &server.secret_key)
            .env("RUST_LOG", "debug");
    };
    let mut cmd = setup.cmd(&["sweep", "--once"]);
    s3(&mut cmd);
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(
        ran.stdout.contains("Sweep to minio:cold-archive"),
        "{}",
        ran.show()
    );
    assert!(ran.stdout.contains("moved 74 blobs"), "{}", ran.show());
    for (line_no, line) in ran.stdout.lines().chain(ran.stderr.lines()).enumerate() {
        assert!(
            !line.contains(&server.secret_key),
            "secret in output line {line_no}: {line}"
        );
    }
    assert!(files_under(&server.root().join(COLD_BUCKET)).len() >= 74);

    // A wrong secret stops start-up with the reason, and the secret stays hidden.
    let mut cmd = setup.cmd(&["sweep", "--once"]);
    s3(&mut cmd);
    cmd.env("ARCHIVE_SECRET_ACCESS_KEY", "wrong-secret-value-123");
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(
        ran.stderr
            .contains("cold bucket minio:cold-archive is not reachable"),
        "{}",
        ran.show()
    );
    assert!(
        !ran.stderr.contains("wrong-secret-value-123"),
        "{}",
        ran.show()
    );
}
