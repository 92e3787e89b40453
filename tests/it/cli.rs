//! The `coldsweep` binary, run for real in temp folders: exit codes, what it
//! tells the user, and what it leaves on disk.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{BlobState, JobRow, Lease, SqliteCatalog, TaskRow};
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

pub(crate) fn gunzip(bytes: &[u8]) -> Vec<u8> {
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
pub(crate) struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(setup.cold_bucket()).unwrap();
        setup
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.dir.path().join("catalog.db")
    }

    pub(crate) fn hot_root(&self) -> PathBuf {
        self.dir.path().join("hot")
    }

    pub(crate) fn cold_root(&self) -> PathBuf {
        self.dir.path().join("cold")
    }

    pub(crate) fn cold_bucket(&self) -> PathBuf {
        self.cold_root().join(COLD_BUCKET)
    }

    pub(crate) fn hot_bucket(&self) -> PathBuf {
        self.hot_root().join(HOT_BUCKET)
    }

    /// The binary, configured for this setup by environment variables.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
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

    pub(crate) async fn catalog(&self) -> SqliteCatalog {
        let catalog = SqliteCatalog::open(&self.db()).await.unwrap();
        catalog.migrate().await.unwrap();
        catalog
    }

    pub(crate) fn hot(&self) -> FsStore {
        FsStore::new(self.hot_root()).unwrap()
    }

    /// The demo's sample data (with its one tampered and one missing page).
    pub(crate) async fn seed_demo(&self) {
        let catalog = self.catalog().await;
        coldsweep::demo::seed(&catalog, &self.hot(), &DemoSpec::default())
            .await
            .unwrap();
        catalog.pool().close().await;
    }

    /// Four finished jobs of one domain; the oldest has `tasks` good pages,
    /// so a sweep with the default retention (3) moves exactly those.
    pub(crate) async fn seed_clean(&self, tasks: usize) {
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

    // The hot root holds the application's bucket and nothing of coldsweep's.
    let hot_root: Vec<_> = std::fs::read_dir(dir.join("hot"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(hot_root, [HOT_BUCKET], "hot root");

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
pub(crate) struct Daemon {
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
        Daemon::spawn(cmd)
    }

    /// Start `cmd` (a configured `coldsweep run`).
    pub(crate) fn spawn(mut cmd: Command) -> Daemon {
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
    pub(crate) fn wait_for_sweep(&mut self) {
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
    pub(crate) fn stop(mut self, signal: &str) -> (Option<i32>, String) {
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
pub(crate) fn http_get(addr: &str, path: &str) -> (String, String) {
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
pub(crate) fn free_port() -> u16 {
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

/// The rows the `reset` tests start from, in jobs `job-a` and `job-b`:
/// `{job}-lost`, `-missing`, `-quar`, `-failing` (each with its reason; the
/// missing and failing ones back off for a day) and `-hot`; and
/// `job-a-busy`, a failing row another worker holds under a live lease.
const RESET_TASKS: [&str; 11] = [
    "job-a-lost",
    "job-a-missing",
    "job-a-quar",
    "job-a-failing",
    "job-a-hot",
    "job-a-busy",
    "job-b-lost",
    "job-b-missing",
    "job-b-quar",
    "job-b-failing",
    "job-b-hot",
];

/// Rows of [`RESET_TASKS`] that `status` lists (all but the plain hot ones).
const PROBLEM_TASKS: [&str; 9] = [
    "job-a-lost",
    "job-a-missing",
    "job-a-quar",
    "job-a-failing",
    "job-a-busy",
    "job-b-lost",
    "job-b-missing",
    "job-b-quar",
    "job-b-failing",
];

impl Setup {
    /// See [`RESET_TASKS`].
    async fn seed_reset_rows(&self) {
        let catalog = self.catalog().await;
        let now = Utc::now();
        let created = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        for job_id in ["job-a", "job-b"] {
            catalog
                .insert_job(&JobRow {
                    id: job_id.into(),
                    domain_id: 7,
                    organisation_id: None,
                    status: "completed".into(),
                    created_at: created,
                    completed_at: Some(created),
                })
                .await
                .unwrap();
        }
        for id in RESET_TASKS {
            let job_id = &id[..5];
            let kind = &id[6..];
            let mut task = TaskRow {
                id: id.into(),
                job_id: job_id.into(),
                html_storage_bucket: Some(HOT_BUCKET.into()),
                html_storage_path: Some(task_html_object_path(job_id, id)),
                html_content_encoding: Some("gzip".into()),
                ..TaskRow::default()
            };
            let backoff = Some(now + chrono::Duration::days(1));
            match kind {
                "lost" => {
                    task.html_archive_state = Some("lost".into());
                    task.html_archive_error = Some(format!("{id}: in neither store twice"));
                    task.html_missing_since = Some(created);
                }
                "missing" => {
                    task.html_archive_state = Some("missing".into());
                    task.html_archive_error = Some(format!("{id}: in neither store once"));
                    task.html_missing_since = Some(created);
                    task.html_lease_expires_at = backoff;
                }
                "quar" => {
                    task.html_archive_state = Some("quarantined".into());
                    task.html_archive_error = Some(format!("{id}: content digest mismatch"));
                }
                "failing" => {
                    task.html_archive_error = Some(format!("{id}: upload refused"));
                    task.html_archive_attempts = 2;
                    task.html_lease_expires_at = backoff;
                }
                "busy" => {
                    task.html_archive_error = Some(format!("{id}: timed out"));
                    task.html_archive_attempts = 1;
                }
                _ => {}
            }
            catalog.insert_task(&task).await.unwrap();
        }
        // Another worker is moving job-a-busy (and the hot rows) right now.
        let lease = Lease {
            owner: "another-worker".into(),
            free_before: now,
            until: now + chrono::Duration::hours(1),
        };
        let claimed = catalog.claim_task_html(0, 100, &lease).await.unwrap();
        let mut claimed: Vec<String> = claimed.into_iter().map(|c| c.task_id).collect();
        claimed.sort();
        assert_eq!(claimed, ["job-a-busy", "job-a-hot", "job-b-hot"]);
        catalog.pool().close().await;
    }

    /// Every row of [`RESET_TASKS`], as the catalog holds it now.
    async fn reset_rows(&self) -> BTreeMap<String, TaskRow> {
        let catalog = self.catalog().await;
        let mut rows = BTreeMap::new();
        for id in RESET_TASKS {
            rows.insert(id.to_owned(), catalog.task(id).await.unwrap().unwrap());
        }
        catalog.pool().close().await;
        rows
    }
}

/// Catches: `reset` without a selector (or with only `--yes`) resetting
/// every row instead of refusing with a usage error.
#[tokio::test]
async fn reset_without_a_selector_exits_2_and_changes_nothing() {
    let setup = Setup::new();
    setup.seed_reset_rows().await;
    let before = setup.reset_rows().await;
    for args in [&["reset"][..], &["reset", "--yes"]] {
        let ran = run(&mut setup.cmd(args));
        assert_eq!(ran.code, Some(2), "{args:?}\n{}", ran.show());
        assert!(
            ran.stderr.contains("--state") && ran.stderr.contains("--all"),
            "the refusal names the selectors\n{}",
            ran.show()
        );
        assert_eq!(setup.reset_rows().await, before, "{args:?} changed rows");
    }
    // --all is a selector of its own, not an addition to the others.
    let ran = run(&mut setup.cmd(&["reset", "--all", "--state", "lost", "--yes"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert_eq!(setup.reset_rows().await, before);
}

/// Catches: a dry run that writes, or that does not show the user which
/// rows `--yes` would reset.
#[tokio::test]
async fn reset_dry_run_lists_the_rows_and_changes_nothing() {
    let setup = Setup::new();
    setup.seed_reset_rows().await;
    let before = setup.reset_rows().await;
    let ran = run(&mut setup.cmd(&["reset", "--state", "lost", "--state", "failing"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(ran.stdout.contains("Would reset 4 rows"), "{}", ran.show());
    assert!(ran.stdout.contains("Dry run"), "{}", ran.show());
    for id in ["job-a-lost", "job-b-lost", "job-a-failing", "job-b-failing"] {
        let line = ran
            .stdout
            .lines()
            .find(|l| l.contains(&format!("task {id} ")))
            .unwrap_or_else(|| panic!("{id} not listed\n{}", ran.show()));
        // The reason is shown, so the user can tell what is reset.
        assert!(line.contains(&format!("{id}: ")), "{line}");
    }
    for id in ["job-a-quar", "job-a-missing", "job-a-hot", "job-a-busy"] {
        assert!(!ran.stdout.contains(id), "{id} listed\n{}", ran.show());
    }
    assert_eq!(setup.reset_rows().await, before, "a dry run wrote");
}

/// Each selector alone and combined, with `--yes`: exactly the selected
/// rows are put back into play (state, reason, attempts, missing-since and
/// back-off cleared, nothing else), `status` stops listing them and still
/// lists the rest, and the row another worker holds is never touched.
///
/// Catches: a selector ignored or widened by the CLI (`--job` resetting
/// every job, repeated `--state` keeping only the last), a reset that
/// leaves a back-off behind, and a reset that takes a row from a worker.
#[tokio::test]
async fn reset_yes_changes_exactly_the_selected_rows() {
    let cases: [(&[&str], &[&str]); 8] = [
        (&["--state", "quarantined"], &["job-a-quar", "job-b-quar"]),
        (
            &["--state", "missing", "--state", "lost"],
            &["job-a-lost", "job-a-missing", "job-b-lost", "job-b-missing"],
        ),
        (&["--state", "failing"], &["job-a-failing", "job-b-failing"]),
        (
            &["--job", "job-a"],
            &["job-a-failing", "job-a-lost", "job-a-missing", "job-a-quar"],
        ),
        (
            &["--task", "job-b-missing", "--task", "job-a-hot"],
            &["job-b-missing"],
        ),
        (&["--job", "job-b", "--state", "lost"], &["job-b-lost"]),
        (
            &["--all"],
            &[
                "job-a-failing",
                "job-a-lost",
                "job-a-missing",
                "job-a-quar",
                "job-b-failing",
                "job-b-lost",
                "job-b-missing",
                "job-b-quar",
            ],
        ),
        (&["--task", "job-a-busy"], &[]),
    ];
    for (selector, expected) in cases {
        let setup = Setup::new();
        setup.seed_reset_rows().await;
        let before = setup.reset_rows().await;
        let mut args = vec!["reset"];
        args.extend_from_slice(selector);
        args.push("--yes");
        let ran = run(&mut setup.cmd(&args));
        assert_eq!(ran.code, Some(0), "{selector:?}\n{}", ran.show());
        if expected.is_empty() {
            assert!(
                ran.stdout.contains("Nothing to reset"),
                "{selector:?}\n{}",
                ran.show()
            );
        } else {
            let done = format!(
                "Reset {} row{}",
                expected.len(),
                if expected.len() == 1 { ":" } else { "s:" }
            );
            assert!(ran.stdout.contains(&done), "{selector:?}\n{}", ran.show());
        }

        let after = setup.reset_rows().await;
        let mut changed: Vec<&str> = RESET_TASKS
            .iter()
            .copied()
            .filter(|id| before[*id] != after[*id])
            .collect();
        changed.sort_unstable();
        assert_eq!(changed, expected, "{selector:?}");
        for id in expected {
            let row = &after[*id];
            assert_eq!(row.state(), BlobState::Hot, "{id} after {selector:?}");
            assert_eq!(row.html_archive_error, None, "{id}");
            assert_eq!(row.html_archive_attempts, 0, "{id}");
            assert_eq!(row.html_missing_since, None, "{id}");
            assert_eq!(row.html_lease_expires_at, None, "{id}: back-off left");
            assert_eq!(
                row.html_storage_path, before[*id].html_storage_path,
                "{id}: the hot reference"
            );
        }

        let status = run(&mut setup.cmd(&["status"]));
        assert_eq!(status.code, Some(0), "{}", status.show());
        for id in PROBLEM_TASKS {
            let listed = status.stdout.contains(&format!("task {id} "));
            assert_eq!(
                listed,
                !expected.contains(&id),
                "{selector:?}: status {} {id}\n{}",
                if listed {
                    "still lists"
                } else {
                    "no longer lists"
                },
                status.show()
            );
        }
    }
}

/// On the demo: the missing page a sweep found is put back into play by
/// `reset --state missing --yes`, and the quarantined one is not.
///
/// Catches: reset not reaching rows the real pipeline recorded (a state
/// name or column the sweep writes differently from what reset matches).
#[tokio::test]
async fn reset_puts_a_swept_missing_page_back_into_play() {
    let setup = Setup::new();
    setup.seed_demo().await;
    let sweep = run(&mut setup.cmd(&["sweep", "--once"]));
    assert_eq!(sweep.code, Some(1), "{}", sweep.show());

    let dry = run(&mut setup.cmd(&["reset", "--state", "missing"]));
    assert_eq!(dry.code, Some(0), "{}", dry.show());
    assert!(dry.stdout.contains(MISSING_TASK), "{}", dry.show());
    assert!(!dry.stdout.contains(TAMPERED_TASK), "{}", dry.show());
    let catalog = setup.catalog().await;
    assert_eq!(
        catalog.task(MISSING_TASK).await.unwrap().unwrap().state(),
        BlobState::Missing,
        "the dry run wrote"
    );
    catalog.pool().close().await;

    let ran = run(&mut setup.cmd(&["reset", "--state", "missing", "--yes"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let catalog = setup.catalog().await;
    let missing = catalog.task(MISSING_TASK).await.unwrap().unwrap();
    assert_eq!(missing.state(), BlobState::Hot);
    assert_eq!(missing.html_missing_since, None);
    assert_eq!(
        catalog.task(TAMPERED_TASK).await.unwrap().unwrap().state(),
        BlobState::Quarantined
    );
    catalog.pool().close().await;

    let status = run(&mut setup.cmd(&["status"]));
    assert_eq!(status.code, Some(0), "{}", status.show());
    assert!(!status.stdout.contains(MISSING_TASK), "{}", status.show());
    assert!(!status.stdout.contains("Missing ("), "{}", status.show());
    assert!(status.stdout.contains(TAMPERED_TASK), "{}", status.show());
}

/// A blob whose cold destination is refused fails; then:
/// - its problem line names the error kind once;
/// - `status` lists it as failing with its attempts, retry time and error;
/// - with the cause fixed, `sweep --once` still does not try it before its
///   back-off ends, says so and exits 1;
/// - `sweep --once --retry-failed` tries it at once, moves it, exits 0.
///
/// Catches: the kind printed twice on a problem line (`failed (x) … (x)`),
/// `status` hiding failing blobs or their retry time, `sweep --once`
/// exiting 0 while a blob waits untried, a blob that failed in this very
/// sweep reported as "not tried", and `--retry-failed` not ending the
/// back-off.
#[tokio::test]
async fn a_failing_blob_is_reported_waits_and_is_retried_on_request() {
    let setup = Setup::new();
    setup.seed_clean(2).await;
    let failing = "clean-0-t0";
    // The cold folder for one blob leads outside the cold root: refused.
    let outside = setup.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let key = task_html_object_path("clean-0", failing);
    let trap = setup.cold_bucket().join(Path::new(&key).parent().unwrap());
    std::fs::create_dir_all(trap.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &trap).unwrap();
    let sweep = |extra: &[&str]| {
        let mut args = vec!["sweep", "--once"];
        args.extend_from_slice(extra);
        run(setup.cmd(&args).env("ARCHIVE_INTERVAL", "1h"))
    };

    let first = sweep(&[]);
    assert_eq!(first.code, Some(1), "{}", first.show());
    assert!(first.stdout.contains("moved 1 blob "), "{}", first.show());
    // It was tried in this very sweep: not reported as waiting untried.
    assert!(!first.stdout.contains("waits"), "{}", first.show());
    let line = first
        .stdout
        .lines()
        .find(|l| l.contains(failing) && l.contains("failed ("))
        .unwrap_or_else(|| panic!("no problem line for {failing}\n{}", first.show()));
    let kind = line
        .split_once("failed (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(kind, _)| kind)
        .unwrap();
    assert_eq!(
        line.matches(kind).count(),
        1,
        "the error kind {kind:?} printed more than once: {line}"
    );

    let catalog = setup.catalog().await;
    let row = catalog.task(failing).await.unwrap().unwrap();
    catalog.pool().close().await;
    assert_eq!(row.html_archive_attempts, 1);
    let error = row
        .html_archive_error
        .clone()
        .expect("the error is recorded");
    let retry_at = row.html_lease_expires_at.expect("a back-off");

    let status = run(&mut setup.cmd(&["status"]));
    assert_eq!(status.code, Some(0), "{}", status.show());
    assert!(status.stdout.contains("Failing (1)"), "{}", status.show());
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains(&format!("task {failing} ")))
        .unwrap_or_else(|| panic!("{failing} not listed\n{}", status.show()));
    for expected in [
        "1 attempt failed",
        &format!("retried after {}", retry_at.format("%Y-%m-%d %H:%M:%S UTC")),
        &error,
    ] {
        assert!(line.contains(expected), "missing {expected:?} in {line}");
    }
    let waiting = status
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("waiting "))
        .unwrap_or_else(|| panic!("no waiting count\n{}", status.show()));
    assert_eq!(
        waiting.split_whitespace().nth(1),
        Some("1"),
        "{}",
        status.show()
    );

    // The cause is fixed, but the blob waits for its back-off: not tried.
    std::fs::remove_file(&trap).unwrap();
    let second = sweep(&[]);
    assert_eq!(
        second.code,
        Some(1),
        "exit 0 while a blob waits\n{}",
        second.show()
    );
    assert!(second.stdout.contains("moved 0 blobs"), "{}", second.show());
    assert!(
        second.stdout.contains("1 blob waits for its retry time"),
        "{}",
        second.show()
    );
    let hot_copy = setup.hot_bucket().join(&key);
    assert!(hot_copy.exists(), "tried before its back-off ended");

    let third = sweep(&["--retry-failed"]);
    assert_eq!(third.code, Some(0), "{}", third.show());
    assert!(
        third.stdout.contains("Retrying now: 1 failing blob "),
        "{}",
        third.show()
    );
    assert!(third.stdout.contains("moved 1 blob "), "{}", third.show());
    assert!(!third.stdout.contains("waits"), "{}", third.show());
    assert!(!hot_copy.exists());
    assert!(setup.cold_bucket().join(&key).exists());
    let catalog = setup.catalog().await;
    assert_eq!(
        catalog.task(failing).await.unwrap().unwrap().state(),
        BlobState::Archived
    );
    catalog.pool().close().await;
    let status = run(&mut setup.cmd(&["status"]));
    assert!(!status.stdout.contains("Failing ("), "{}", status.show());
}

/// `plan` with uuid job ids mixed with short ones, long and short
/// statuses, in two groups: in every table, each row's decision starts at
/// the same character as the header's `decision`.
///
/// Catches: columns sized for short ids, so a 36-character uuid pushes its
/// row's decision out of line.
#[tokio::test]
async fn plan_keeps_columns_aligned_with_uuid_job_ids() {
    let setup = Setup::new();
    let catalog = setup.catalog().await;
    let base = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
    let uuid = |n: u128| uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 + n);
    let mut jobs: Vec<(String, i32, Option<uuid::Uuid>, &str)> = Vec::new();
    for n in 0..5 {
        jobs.push((uuid(n).to_string(), 1, None, "completed"));
    }
    jobs.push(("j1".into(), 1, None, "cancelled"));
    jobs.push((uuid(9).to_string(), 1, None, "running"));
    jobs.push(("short".into(), 2, Some(uuid(100)), "completed"));
    jobs.push((uuid(10).to_string(), 2, Some(uuid(100)), "failed"));
    for (n, (id, domain_id, organisation_id, status)) in jobs.iter().enumerate() {
        let at = base + chrono::Duration::days(n as i64);
        catalog
            .insert_job(&JobRow {
                id: id.clone(),
                domain_id: *domain_id,
                organisation_id: *organisation_id,
                status: (*status).into(),
                created_at: at,
                completed_at: Some(at),
            })
            .await
            .unwrap();
        catalog
            .insert_task(&TaskRow {
                id: format!("{id}-t0"),
                job_id: id.clone(),
                html_storage_bucket: Some(HOT_BUCKET.into()),
                html_storage_path: Some(task_html_object_path(id, &format!("{id}-t0"))),
                html_compressed_size_bytes: Some(100),
                ..TaskRow::default()
            })
            .await
            .unwrap();
    }
    catalog.pool().close().await;

    let plan = run(&mut setup.cmd(&["plan"]));
    assert_eq!(plan.code, Some(0), "{}", plan.show());
    assert!(plan.stdout.contains("moves:"), "{}", plan.show());
    let decisions = ["moves:", "kept hot:", "archived:", "eligible"];
    let lines: Vec<&str> = plan.stdout.lines().collect();
    let mut tables = 0;
    let mut rows = 0;
    for (at, header) in lines.iter().enumerate() {
        if !header.trim_start().starts_with("rank ") {
            continue;
        }
        tables += 1;
        let column = header.find("decision").expect("a decision column");
        for row in lines[at + 1..].iter().take_while(|l| !l.is_empty()) {
            rows += 1;
            let starts = row
                .char_indices()
                .nth(column)
                .map(|(i, _)| &row[i..])
                .unwrap_or("");
            assert!(
                decisions.iter().any(|d| starts.starts_with(d))
                    && row.chars().nth(column - 1) == Some(' '),
                "decision out of line with the header:\n{header}\n{row}\n{}",
                plan.stdout
            );
        }
    }
    assert_eq!((tables, rows), (2, jobs.len()), "{}", plan.stdout);
}

/// Finished jobs of one domain with real gzip'd pages, for the quota
/// tests: `(job, status, days ago or None for running, pages)`. Returns
/// each job's stored bytes (the catalog's `html_compressed_size_bytes`).
async fn seed_jobs(
    setup: &Setup,
    jobs: &[(&str, &str, Option<i64>, usize)],
) -> BTreeMap<String, u64> {
    let catalog = setup.catalog().await;
    let hot = setup.hot();
    let now = Utc::now();
    let mut sizes = BTreeMap::new();
    for &(job_id, status, days_ago, pages) in jobs {
        let at = now - chrono::Duration::days(days_ago.unwrap_or(0));
        catalog
            .insert_job(&JobRow {
                id: job_id.to_owned(),
                domain_id: 7,
                organisation_id: None,
                status: status.into(),
                created_at: at - chrono::Duration::hours(1),
                completed_at: days_ago.map(|_| at),
            })
            .await
            .unwrap();
        let mut total = 0;
        for t in 0..pages {
            let task_id = format!("{job_id}-t{t}");
            let html = format!(
                "<html><body><h1>{job_id} page {t}</h1>{}</body></html>",
                "x".repeat(t * 50)
            );
            let stored = gzip(html.as_bytes());
            total += stored.len() as u64;
            let path = task_html_object_path(job_id, &task_id);
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
                    job_id: job_id.to_owned(),
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
        sizes.insert(job_id.to_owned(), total);
    }
    catalog.pool().close().await;
    sizes
}

/// Run `cmd` with its stdin, stdout and stderr on a terminal (`script`
/// gives it a pseudo-terminal), as a person at a shell would. Everything it
/// writes arrives in `stdout`, as a terminal shows it.
pub(crate) fn run_in_terminal(cmd: &Command) -> Ran {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_str().unwrap().replace('\'', r"'\''"));
    let mut line = quote(cmd.get_program());
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let found = Command::new("script").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "these tests need `script` from util-linux (Debian: package bsdutils) to give \
         coldsweep a terminal"
    );
    let mut script = Command::new("script");
    script
        .env_clear()
        .args(["--quiet", "--return", "--command", &line, "/dev/null"]);
    for (name, value) in cmd.get_envs() {
        if let Some(value) = value {
            script.env(name, value);
        }
    }
    run(&mut script)
}

/// Terminal control in `text`: the progress bar's carriage return and
/// erase-line sequence, or any other escape sequence (log colours).
fn has_control(text: &str) -> bool {
    text.contains('\r') || text.contains('\x1b')
}

/// The one JSON object a `--json` run prints: stdout is exactly one line.
pub(crate) fn json_of(ran: &Ran) -> serde_json::Value {
    assert!(ran.stdout.ends_with('\n'), "{}", ran.show());
    assert_eq!(ran.stdout.lines().count(), 1, "{}", ran.show());
    let value: serde_json::Value = serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", ran.show()));
    assert!(value.is_object(), "{}", ran.show());
    value
}

/// [`json_of`] a run that exited 0.
fn ok_json_of(ran: &Ran) -> serde_json::Value {
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    json_of(ran)
}

/// An RFC 3339 time in UTC (`…Z`).
pub(crate) fn assert_utc_time(value: &serde_json::Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    assert!(text.ends_with('Z'), "{text}");
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
}

/// Catches: a JSON report whose counts are not what the sweep did, human
/// text or a progress bar mixed into it, problems without their task or
/// kind, and a `--json` exit code that says all is well when it is not.
#[tokio::test]
async fn sweep_once_json_reports_what_the_sweep_did() {
    let setup = Setup::new();
    let db = harness::pg::fresh_database().await;
    let catalog = db.catalog().await;
    catalog.migrate().await.unwrap();
    coldsweep::demo::seed(&catalog, &setup.hot(), &DemoSpec::default())
        .await
        .unwrap();
    let server = harness::s3::S3Server::start().await;
    server.create_bucket(COLD_BUCKET);
    let mut cmd = setup.cmd(&["sweep", "--once", "--json"]);
    cmd.env("DATABASE_URL", db.url())
        .env("ARCHIVE_PROVIDER", "minio")
        .env("ARCHIVE_ENDPOINT", &server.endpoint)
        .env("ARCHIVE_ACCESS_KEY_ID", &server.access_key)
        .env("ARCHIVE_SECRET_ACCESS_KEY", &server.secret_key);
    let ran = run(&mut cmd);
    assert_eq!(
        ran.code,
        Some(1),
        "one quarantined, one missing: {}",
        ran.show()
    );
    let json = json_of(&ran);
    assert!(
        !has_control(&ran.stderr),
        "progress off a terminal: {}",
        ran.show()
    );

    // The counts are what the catalog now says happened.
    let archived = catalog
        .archived_tasks_after(None, None, 1000)
        .await
        .unwrap();
    assert_eq!(archived.len(), 74);
    let bytes: i64 = archived
        .iter()
        .map(|r| r.html_compressed_size_bytes.unwrap())
        .sum();
    assert_eq!(json["target"], "minio:cold-archive", "{json}");
    assert_eq!(json["archived"], 74, "{json}");
    assert_eq!(json["bytes"], bytes, "{json}");
    assert_eq!(json["quarantined"], 1, "{json}");
    assert_eq!(json["missing"], 1, "{json}");
    for field in ["lost", "failed", "completed", "released"] {
        assert_eq!(json[field], 0, "{field}: {json}");
    }
    let status = catalog.status(Utc::now()).await.unwrap();
    assert_eq!(json["jobs_archived"], status.archived_jobs, "{json}");
    assert_eq!(json["stopped"], false, "{json}");
    assert_eq!(json["waiting"], 0, "{json}");
    assert_eq!(json["retried_now"], serde_json::Value::Null, "{json}");
    assert_utc_time(&json["started_at"]);
    assert_utc_time(&json["finished_at"]);

    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{json}");
    let problem = |task: &str| {
        problems
            .iter()
            .find(|p| p["task_id"] == task)
            .unwrap_or_else(|| panic!("no problem for {task}: {json}"))
    };
    let tampered = problem(TAMPERED_TASK);
    assert_eq!(tampered["kind"], "quarantined", "{json}");
    assert_eq!(tampered["error_kind"], serde_json::Value::Null, "{json}");
    assert_eq!(tampered["source"], "task_html", "{json}");
    assert!(
        tampered["message"]
            .as_str()
            .unwrap()
            .contains("content digest mismatch"),
        "{json}"
    );
    assert_eq!(problem(MISSING_TASK)["kind"], "missing", "{json}");
    for (task, state) in [(TAMPERED_TASK, "quarantined"), (MISSING_TASK, "missing")] {
        let row = catalog.task(task).await.unwrap().unwrap();
        assert_eq!(row.html_archive_state.as_deref(), Some(state), "{task}");
    }
    catalog.pool().close().await;
}

/// Catches: a bar that is never drawn on a terminal, one drawn anyway with
/// `--quiet`, and one left on screen (not erased before the report).
#[tokio::test]
async fn progress_bar_shows_on_a_terminal_unless_quiet() {
    let setup = Setup::new();
    setup.seed_clean(3).await;

    let ran = run_in_terminal(&setup.cmd(&["sweep", "--once", "--quiet"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(ran.stdout.contains("moved 3 blobs"), "{}", ran.show());
    assert!(!ran.stdout.contains("\x1b[2K"), "--quiet: {}", ran.show());

    let ran = run_in_terminal(&setup.cmd(&["verify"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let drawn = ran
        .stdout
        .find("\x1b[2Kverify ")
        .unwrap_or_else(|| panic!("no bar: {}", ran.show()));
    // Erased (the erase sequence with nothing after it on the line) before
    // the summary, which starts at the beginning of a clean line.
    let summary = ran.stdout.find("Checked 3 archived blobs").unwrap();
    assert!(drawn < summary, "{}", ran.show());
    assert!(
        ran.stdout[..summary].ends_with("\r\x1b[2K"),
        "bar not erased before the summary: {:?}",
        ran.stdout
    );

    let ran = run_in_terminal(&setup.cmd(&["verify", "--quiet"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout.contains("Checked 3 archived blobs"),
        "{}",
        ran.show()
    );
    assert!(!ran.stdout.contains("\x1b[2K"), "--quiet: {}", ran.show());

    // Off a terminal nothing is drawn, quiet or not.
    let ran = run(&mut setup.cmd(&["verify"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        !has_control(&ran.stdout) && !has_control(&ran.stderr),
        "{}",
        ran.show()
    );

    // A restore draws the same bar, erased before its report.
    let restore = ["restore", "--yes", "--hot-bucket", HOT_BUCKET];
    let ran = run_in_terminal(setup.cmd(&restore).args(["--task", "clean-0-t0"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let drawn = ran
        .stdout
        .find("\x1b[2Krestore ")
        .unwrap_or_else(|| panic!("no bar: {}", ran.show()));
    let report = ran
        .stdout
        .find("Restored 1 task")
        .unwrap_or_else(|| panic!("{}", ran.show()));
    assert!(drawn < report, "{}", ran.show());
    let ran = run_in_terminal(
        setup
            .cmd(&restore)
            .args(["--task", "clean-0-t1", "--quiet"]),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(!ran.stdout.contains("\x1b[2K"), "--quiet: {}", ran.show());
    let ran = run(setup.cmd(&restore).args(["--task", "clean-0-t2"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        !has_control(&ran.stdout) && !has_control(&ran.stderr),
        "{}",
        ran.show()
    );
}

/// The jobs `plan --json` says the next sweep moves, in its order.
fn planned_moves(plan: &serde_json::Value) -> Vec<(String, String)> {
    let mut moving: Vec<(u64, String, String)> = plan["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["decision"] == "moves")
        .map(|j| {
            (
                j["move_order"].as_u64().unwrap(),
                j["job_id"].as_str().unwrap().to_owned(),
                j["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    moving.sort();
    moving
        .into_iter()
        .map(|(_, job, rule)| (job, rule))
        .collect()
}

/// Jobs whose every page is archived.
async fn archived_jobs(setup: &Setup, jobs: &[&str], pages: usize) -> Vec<String> {
    let catalog = setup.catalog().await;
    let mut done = Vec::new();
    for job in jobs {
        let mut all = true;
        for t in 0..pages {
            let task = catalog.task(&format!("{job}-t{t}")).await.unwrap().unwrap();
            all &= task.state() == BlobState::Archived;
        }
        if all {
            done.push((*job).to_owned());
        }
    }
    catalog.pool().close().await;
    done
}

/// Quota mode as a user drives it: `plan --json` names the jobs the next
/// sweep moves, by which rule, and the hot bytes before and after; the
/// sweep moves exactly those; the minimum age holds a recent job back (and
/// the sweep warns once that the quota stays exceeded); `status --json`
/// then shows the bytes per bucket.
#[tokio::test]
async fn plan_json_and_the_sweep_agree_under_a_quota() {
    let setup = Setup::new();
    let jobs = ["old", "older-1", "recent", "running"];
    let sizes = seed_jobs(
        &setup,
        &[
            ("old", "completed", Some(40), 2),
            ("older-1", "failed", Some(35), 2),
            ("recent", "completed", Some(1), 2),
            ("running", "running", None, 2),
        ],
    )
    .await;
    let total: u64 = sizes.values().sum();
    // One byte under what retention (1) leaves hot: "recent" must go too.
    let quota = sizes["recent"] + sizes["running"] - 1;
    let quota_arg = quota.to_string();
    let env = |cmd: &mut Command| {
        cmd.env("ARCHIVE_RETENTION_JOBS", "1")
            .env("ARCHIVE_HOT_QUOTA", &quota_arg);
    };

    // With a minimum age of 30 days, "recent" (1 day) stays; the quota is
    // missed by one byte, and the plan says why.
    let mut cmd = setup.cmd(&["plan", "--json"]);
    env(cmd.env("ARCHIVE_MIN_AGE", "30d"));
    let plan = ok_json_of(&run(&mut cmd));
    assert_eq!(
        planned_moves(&plan),
        [
            ("old".to_owned(), "retention".to_owned()),
            ("older-1".to_owned(), "retention".to_owned())
        ],
        "{plan:#}"
    );
    let recent = plan["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == "recent")
        .unwrap();
    assert_eq!(recent["reason"], "younger_than_min_age", "{plan:#}");
    assert_eq!(recent["rank"], 1);
    assert_eq!(plan["hot_bytes_before"], total);
    assert_eq!(plan["hot_bytes_after"], sizes["recent"] + sizes["running"]);
    assert_eq!(plan["rules"]["min_age_seconds"], 30 * 86_400);
    assert_eq!(plan["quota"]["met"], false, "{plan:#}");
    assert_eq!(plan["quota"]["over_by_bytes"], 1);
    assert_eq!(plan["quota"]["held_by_min_age_bytes"], sizes["recent"]);
    assert_eq!(plan["quota"]["held_unmovable_bytes"], sizes["running"]);
    let mut cmd = setup.cmd(&["plan"]);
    env(cmd.env("ARCHIVE_MIN_AGE", "30d"));
    let text = run(&mut cmd);
    assert!(
        text.stdout.contains("Stays over the hot quota") && text.stdout.contains("by 1 B"),
        "{}",
        text.show()
    );

    let mut cmd = setup.cmd(&["sweep", "--once"]);
    env(cmd.env("ARCHIVE_MIN_AGE", "30d"));
    let sweep = run(&mut cmd);
    assert_eq!(sweep.code, Some(0), "{}", sweep.show());
    assert_eq!(
        sweep.stderr.matches("stays over ARCHIVE_HOT_QUOTA").count(),
        1,
        "{}",
        sweep.show()
    );
    assert_eq!(archived_jobs(&setup, &jobs, 2).await, ["old", "older-1"]);

    // Without the minimum age the quota takes "recent", newest as it is.
    let mut cmd = setup.cmd(&["plan", "--json"]);
    env(&mut cmd);
    let plan = ok_json_of(&run(&mut cmd));
    assert_eq!(
        planned_moves(&plan),
        [("recent".to_owned(), "quota".to_owned())],
        "{plan:#}"
    );
    assert_eq!(plan["hot_bytes_before"], sizes["recent"] + sizes["running"]);
    assert_eq!(plan["hot_bytes_after"], sizes["running"]);
    assert_eq!(plan["quota"]["met"], true);
    assert_eq!(plan["moving"]["blobs"], 2);
    let mut cmd = setup.cmd(&["sweep", "--once"]);
    env(&mut cmd);
    let sweep = run(&mut cmd);
    assert_eq!(sweep.code, Some(0), "{}", sweep.show());
    assert!(!sweep.stderr.contains("stays over"), "{}", sweep.show());
    assert_eq!(
        archived_jobs(&setup, &jobs, 2).await,
        ["old", "older-1", "recent"]
    );

    let status = ok_json_of(&run(&mut setup.cmd(&["status", "--json"])));
    assert_eq!(status["hot_bytes"], sizes["running"], "{status:#}");
    assert_eq!(status["cold_bytes"], total - sizes["running"]);
    assert_eq!(
        status["hot_buckets"],
        serde_json::json!([{
            "bucket": HOT_BUCKET, "blobs": 2, "bytes": sizes["running"], "blobs_without_size": 0
        }])
    );
    assert_eq!(
        status["cold_buckets"],
        serde_json::json!([{
            "provider": "fs", "bucket": COLD_BUCKET, "blobs": 6,
            "bytes": total - sizes["running"], "blobs_without_size": 0
        }])
    );
    assert_eq!(status["counts"]["archived"], 6);
    assert_eq!(status["backend"], "sqlite");
    let text = run(&mut setup.cmd(&["status"]));
    assert!(
        text.stdout.contains(&format!("fs:{COLD_BUCKET}")),
        "{}",
        text.show()
    );
}

/// `status --json` lists the blobs that need a person, with their reasons.
#[tokio::test]
async fn status_json_lists_problems() {
    let setup = Setup::new();
    setup.seed_demo().await;
    let sweep = run(&mut setup.cmd(&["sweep", "--once"]));
    assert_eq!(sweep.code, Some(1), "{}", sweep.show());
    let status = ok_json_of(&run(&mut setup.cmd(&["status", "--json"])));
    assert_eq!(status["counts"]["quarantined"], 1, "{status:#}");
    assert_eq!(status["quarantined"][0]["task_id"], TAMPERED_TASK);
    assert!(
        status["quarantined"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("content digest mismatch"),
        "{status:#}"
    );
    assert_eq!(status["missing"][0]["task_id"], MISSING_TASK);
    assert!(status["missing"][0]["missing_since"].is_string());
    assert_eq!(status["lost"], serde_json::json!([]));
}

/// A bad quota or minimum age stops every command that reads them (exit
/// 2), with a message naming the variable and what it takes; the flag goes
/// through the same parser.
#[test]
fn bad_quota_and_min_age_are_named_with_what_they_take() {
    let setup = Setup::new();
    let cases = [
        (
            "ARCHIVE_HOT_QUOTA",
            "800 parsecs",
            "ARCHIVE_HOT_QUOTA: expected a size such as 800MB, 1.5GiB or 500000000",
        ),
        (
            "ARCHIVE_HOT_QUOTA",
            "1.0000001kB",
            "(not a whole number of bytes)",
        ),
        (
            "ARCHIVE_MIN_AGE",
            "a month",
            "ARCHIVE_MIN_AGE: expected a duration greater than zero",
        ),
    ];
    for args in [&["plan"][..], &["plan", "--json"], &["sweep", "--once"]] {
        for (name, value, message) in cases {
            let ran = run(setup.cmd(args).env(name, value));
            assert_eq!(ran.code, Some(2), "{args:?} {name}={value}\n{}", ran.show());
            assert!(ran.stderr.contains(message), "{}", ran.show());
            assert!(ran.stderr.contains(&format!("{value:?}")), "{}", ran.show());
            assert!(ran.stdout.is_empty(), "{}", ran.show());
        }
    }
    let ran = run(&mut setup.cmd(&["plan", "--hot-quota", "lots"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("ARCHIVE_HOT_QUOTA: expected"),
        "{}",
        ran.show()
    );
    let ran = run(&mut setup.cmd(&["plan", "--min-age=-3d"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("ARCHIVE_MIN_AGE: expected"),
        "{}",
        ran.show()
    );
}
