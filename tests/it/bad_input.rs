//! Bad input: hostile or broken catalog rows, on both backends.
//!
//! Every bad row gets a clear reason of its own and is quarantined (left
//! hot, counted in the sweep report and in `status`), the good rows of the
//! same batch still move, and nothing outside the configured buckets
//! changes: the fs rig's whole temp folder and the S3 server's whole folder
//! are compared before and after.
//!
//! What each case catches if broken: a key check that lets `..`, `/…`, `//`,
//! control characters or over-long keys through shows up as a file outside
//! the expected set (or a failed/lost blob instead of a quarantine); a digest
//! check that is skipped when malformed, or an encoding that is guessed,
//! shows up as an archived blob; a claim that fails on one unreadable row
//! shows up as the good rows not moving.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::Utc;
use coldsweep::archiver::ProblemKind;
use coldsweep::catalog::{BlobState, SqliteCatalog, TaskRow};
use coldsweep::{Location, ObjectKey, task_html_object_path};
use sha2::{Digest, Sha256};

use crate::pipeline::{
    BACKENDS, Backend, COLD_BUCKET, HOT_BUCKET, Rig, cold_location, gzip, hot_location, sha256_hex,
};

const JOB: &str = "old";

/// What a case must end as.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Quarantined with a reason containing this text.
    Quarantined(&'static str),
    /// Moved: nothing in the row to hold the bytes against, or the row is fine.
    Archived,
}

struct Case {
    task: &'static str,
    /// The row, starting from a consistent one for the case's bytes.
    row: TaskRow,
    /// Bytes stored at the task's proper hot location.
    hot: Bytes,
    expect: Expect,
}

fn html(task: &str) -> Vec<u8> {
    format!("<html><body>page {task}</body></html>")
        .repeat(10)
        .into_bytes()
}

/// A consistent row for `stored` (gzip of `html`) at the proper hot location.
fn row(task: &str, stored: &[u8], html: &[u8]) -> TaskRow {
    TaskRow {
        id: task.to_owned(),
        job_id: JOB.to_owned(),
        html_storage_bucket: Some(HOT_BUCKET.to_owned()),
        html_storage_path: Some(task_html_object_path(JOB, task)),
        html_content_type: Some("text/html; charset=utf-8".to_owned()),
        html_content_encoding: Some("gzip".to_owned()),
        html_compressed_size_bytes: Some(stored.len() as i64),
        html_sha256: Some(sha256_hex(html)),
        ..Default::default()
    }
}

/// A case whose row is a consistent row changed by `change`.
fn case(task: &'static str, expect: Expect, change: impl FnOnce(&mut TaskRow)) -> Case {
    let html = html(task);
    let stored = gzip(&html);
    let mut row = row(task, &stored, &html);
    change(&mut row);
    Case {
        task,
        row,
        hot: stored,
        expect,
    }
}

fn cases(backend: Backend) -> Vec<Case> {
    use Expect::{Archived, Quarantined};
    let path = |p: &str| {
        let p = p.to_owned();
        move |r: &mut TaskRow| r.html_storage_path = Some(p)
    };
    let bucket = |b: &'static str| move |r: &mut TaskRow| r.html_storage_bucket = Some(b.into());
    let long_path = format!("jobs/{}x", "a/".repeat(600));
    let mut cases = vec![
        case(
            "path-dotdot",
            Quarantined("'..' segment"),
            path("jobs/../../../outside"),
        ),
        case(
            "path-absolute",
            Quarantined("absolute"),
            path("/etc/passwd"),
        ),
        case(
            "path-empty-segment",
            Quarantined("empty path segment"),
            path("jobs//old/x"),
        ),
        case(
            "path-trailing-slash",
            Quarantined("empty path segment"),
            path("jobs/old/x/"),
        ),
        case(
            "path-control",
            Quarantined("control character"),
            path("jobs/old/\u{1}x"),
        ),
        case(
            "path-backslash",
            Quarantined("backslash"),
            path("jobs\\..\\..\\x"),
        ),
        case(
            "path-too-long",
            Quarantined("longer than 1024 bytes"),
            path(&long_path),
        ),
        case(
            "bucket-dotdot",
            Quarantined("bucket name \"../x\" rejected"),
            bucket("../x"),
        ),
        case(
            "bucket-slash",
            Quarantined("bucket name \"a/b\" rejected"),
            bucket("a/b"),
        ),
        // Documented: with neither digest nor size there is nothing to check
        // the bytes against, so the blob moves (verified cold = hot bytes).
        case("null-digest-and-size", Archived, |r| {
            r.html_sha256 = None;
            r.html_compressed_size_bytes = None;
        }),
        case("digest-not-hex", Quarantined("is not a hex SHA-256"), |r| {
            r.html_sha256 = Some("z".repeat(64));
        }),
        case(
            "digest-wrong-length",
            Quarantined("is not a hex SHA-256"),
            |r| {
                r.html_sha256 = Some("abc123".into());
            },
        ),
        case("digest-empty", Quarantined("is not a hex SHA-256"), |r| {
            r.html_sha256 = Some(String::new());
        }),
        // Hex is hex: the crawler may have written it in capitals.
        case("digest-uppercase", Archived, |r| {
            r.html_sha256 = r.html_sha256.as_ref().map(|s| s.to_uppercase());
        }),
        case("size-negative", Quarantined("size mismatch"), |r| {
            r.html_compressed_size_bytes = Some(-5);
        }),
        case("size-absurd", Quarantined("size mismatch"), |r| {
            r.html_compressed_size_bytes = Some(i64::MAX);
        }),
        case(
            "encoding-br",
            Quarantined("unknown content-encoding \"br\""),
            |r| {
                r.html_content_encoding = Some("br".into());
            },
        ),
        case(
            "encoding-compress",
            Quarantined("unknown content-encoding \"compress\""),
            |r| r.html_content_encoding = Some("compress".into()),
        ),
    ];
    // The catalog says gzip; the hot object is plain HTML.
    let plain = Bytes::from(html("not-gzip"));
    cases.push(Case {
        task: "gzip-but-plain",
        row: TaskRow {
            html_compressed_size_bytes: Some(plain.len() as i64),
            ..row("gzip-but-plain", &plain, &plain)
        },
        hot: plain,
        expect: Quarantined("not valid gzip"),
    });
    // Postgres refuses NUL in text, so such a row can only exist in SQLite.
    if matches!(backend, Backend::SqliteFs) {
        cases.push(case(
            "path-nul",
            Quarantined("control character"),
            path("jobs/old/a\0b"),
        ));
    }
    cases
}

/// Every file (with a digest of its bytes) and folder under `root`,
/// relative to it; the catalog's own files are left out.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<String>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            if rel.to_string_lossy().starts_with("catalog.db") {
                continue;
            }
            if path.is_dir() {
                out.insert(rel, None);
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(rel, Some(hex::encode(Sha256::digest(bytes))));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Where the rig's stores keep bucket folders, under the snapshot root.
fn bucket_dirs(rig: &Rig) -> (PathBuf, PathBuf) {
    match rig.backend {
        Backend::SqliteFs => (
            PathBuf::from("hot").join(HOT_BUCKET),
            PathBuf::from("cold").join(COLD_BUCKET),
        ),
        Backend::PostgresS3 => (PathBuf::from(HOT_BUCKET), PathBuf::from(COLD_BUCKET)),
    }
}

fn snapshot_root(rig: &Rig) -> PathBuf {
    match rig.backend {
        Backend::SqliteFs => rig.temp_dir().unwrap().to_owned(),
        Backend::PostgresS3 => rig.s3_server().unwrap().root().to_owned(),
    }
}

/// Only the moved blobs changed: their hot files went, their cold files
/// came, folders appeared only under the cold bucket (or a store's own
/// dot-folder) and went only under the hot bucket.
fn assert_only_moves_changed(
    rig: &Rig,
    before: &BTreeMap<PathBuf, Option<String>>,
    after: &BTreeMap<PathBuf, Option<String>>,
    moved: &[&str],
) {
    let (hot_dir, cold_dir) = bucket_dirs(rig);
    let is_internal = |p: &Path| {
        p.components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
    };
    let expected_gone: Vec<PathBuf> = moved
        .iter()
        .map(|t| hot_dir.join(task_html_object_path(JOB, t)))
        .collect();
    let expected_new: Vec<PathBuf> = moved
        .iter()
        .map(|t| cold_dir.join(cold_location(JOB, t).key.as_str()))
        .collect();
    for (path, digest) in after {
        match (before.get(path), digest) {
            (Some(old), new) if old == new => {}
            (Some(_), _) => panic!("{:?}: {} changed", rig.backend, path.display()),
            (None, Some(_)) => assert!(
                expected_new.contains(path) || is_internal(path),
                "{:?}: unexpected new file {}",
                rig.backend,
                path.display()
            ),
            (None, None) => assert!(
                path.starts_with(&cold_dir) || is_internal(path),
                "{:?}: unexpected new folder {}",
                rig.backend,
                path.display()
            ),
        }
    }
    for (path, digest) in before {
        if after.contains_key(path) {
            continue;
        }
        match digest {
            Some(_) => assert!(
                expected_gone.contains(path) || is_internal(path),
                "{:?}: unexpected removal of {}",
                rig.backend,
                path.display()
            ),
            None => assert!(
                path.starts_with(&hot_dir) || is_internal(path),
                "{:?}: unexpected removal of folder {}",
                rig.backend,
                path.display()
            ),
        }
    }
    for path in &expected_new {
        assert!(after.contains_key(path), "{}: not archived", path.display());
    }
}

/// Rows SQLite can hold but no `TaskRow` can express: text that is not
/// UTF-8 and a number stored as text. Written through a second pool.
async fn insert_unreadable_rows(rig: &Rig) -> Vec<(&'static str, &'static str)> {
    let db = rig.temp_dir().unwrap().join("catalog.db");
    let raw = SqliteCatalog::open(&db).await.unwrap();
    let mut made = Vec::new();
    for (task, set) in [
        // `jobs/` then 0xFF: not UTF-8.
        (
            "raw-path-not-utf8",
            "html_storage_path = CAST(x'6a6f62732fff' AS TEXT)",
        ),
        (
            "raw-digest-not-utf8",
            "html_sha256 = CAST(x'c0ffee' AS TEXT)",
        ),
        ("raw-size-is-text", "html_compressed_size_bytes = 'lots'"),
    ] {
        let html = html(task);
        let stored = gzip(&html);
        rig.catalog
            .insert_task(&row(task, &stored, &html))
            .await
            .unwrap();
        rig.hot
            .put(&hot_location(JOB, task), stored, &Default::default())
            .await
            .unwrap();
        let sql = format!("UPDATE tasks SET {set} WHERE id = '{task}'");
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(raw.pool())
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        made.push((task, "cannot be read"));
    }
    raw.pool().close().await;
    made
}

#[tokio::test]
async fn bad_rows_are_quarantined_one_by_one_and_nothing_else_is_touched() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.job(JOB, 1, "completed", 1).await;
        rig.job("new", 1, "completed", 2).await;
        let mut good = vec!["good-1", "good-2"];
        let mut bytes = BTreeMap::new();
        for task in &good {
            bytes.insert(*task, rig.task(JOB, task).await);
        }
        let cases = cases(backend);
        for case in &cases {
            bytes.insert(case.task, case.hot.clone());
            rig.catalog.insert_task(&case.row).await.unwrap();
            rig.hot
                .put(
                    &hot_location(JOB, case.task),
                    case.hot.clone(),
                    &Default::default(),
                )
                .await
                .unwrap();
        }
        let unreadable = match backend {
            Backend::SqliteFs => insert_unreadable_rows(&rig).await,
            Backend::PostgresS3 => Vec::new(),
        };
        let root = snapshot_root(&rig);
        let before = snapshot(&root);

        // One batch holds every row: one bad row must not stop the others.
        let mut config = rig.config(1);
        config.batch_size = 100;
        let archiver = rig.archiver_with(rig.hot.clone(), rig.cold.clone(), config.clone());
        let report = archiver.sweep().await;

        // Rows the catalog cannot read are quarantined by the claim itself,
        // and reported like the others.
        let quarantined: Vec<_> = cases
            .iter()
            .filter_map(|c| match c.expect {
                Expect::Quarantined(why) => Some((c.task, why)),
                Expect::Archived => None,
            })
            .chain(unreadable.iter().copied())
            .collect();
        good.extend(
            cases
                .iter()
                .filter(|c| matches!(c.expect, Expect::Archived))
                .map(|c| c.task),
        );
        assert_eq!(
            (report.failed, report.lost),
            (0, 0),
            "{backend:?}: bad rows are not faults: {report:#?}"
        );
        assert_eq!(
            report.archived,
            good.len() as u64,
            "{backend:?}: {report:#?}"
        );
        assert_eq!(
            report.quarantined,
            quarantined.len() as u64,
            "{backend:?}: {report:#?}"
        );
        for (task, why) in &quarantined {
            let problem = report
                .problems
                .iter()
                .find(|p| p.task_id.as_deref() == Some(task))
                .unwrap_or_else(|| panic!("{backend:?}: {task} not reported: {report:#?}"));
            assert_eq!(problem.what, ProblemKind::Quarantined, "{task}");
            assert!(
                problem.message.contains(why),
                "{backend:?}: {task}: reason {:?} lacks {why:?}",
                problem.message
            );
        }
        for (task, why) in &quarantined {
            let row = rig
                .catalog
                .tasks_in_state(BlobState::Quarantined, 1000)
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.id == *task)
                .unwrap_or_else(|| panic!("{backend:?}: {task} not listed as quarantined"));
            let error = row.html_archive_error.clone().unwrap_or_default();
            assert!(error.contains(why), "{backend:?}: {task}: {error:?}");
            assert_eq!(row.html_archive_key, None, "{task}");
            assert!(
                row.html_storage_path.is_some(),
                "{task}: the hot reference must stay"
            );
        }
        for task in &good {
            assert_eq!(rig.row(task).await.state(), BlobState::Archived, "{task}");
            let cold = rig.cold.get(&cold_location(JOB, task)).await.unwrap();
            assert!(
                cold == bytes[task],
                "{backend:?}: {task}: cold bytes differ"
            );
        }
        let status = rig.catalog.status(Utc::now()).await.unwrap();
        assert_eq!(
            status.quarantined,
            quarantined.len() as i64,
            "{backend:?}: {status:?}"
        );
        assert_eq!(status.leased, 0, "{backend:?}: claims left behind");
        if let Backend::SqliteFs = backend {
            // `coldsweep status` lists the rows it cannot fully read too.
            let db = rig.temp_dir().unwrap().join("catalog.db");
            let ran = crate::cli::run(
                crate::cli::coldsweep()
                    .arg("status")
                    .env("DATABASE_URL", format!("sqlite:{}", db.display())),
            );
            assert_eq!(ran.code, Some(0), "{}", ran.show());
            assert!(
                ran.stdout
                    .contains(&format!("Quarantined ({})", status.quarantined)),
                "{}",
                ran.show()
            );
            for (task, why) in &unreadable {
                let line = ran.stdout.lines().find(|l| l.contains(task));
                assert!(
                    line.is_some_and(|l| l.contains(why)),
                    "{task} not listed\n{}",
                    ran.show()
                );
            }
        }

        let after = snapshot(&root);
        assert_only_moves_changed(&rig, &before, &after, &good);

        // Quarantined rows stay put: the next sweep claims nothing.
        let again = rig
            .archiver_with(rig.hot.clone(), rig.cold.clone(), config)
            .sweep()
            .await;
        assert_eq!(
            (again.archived, again.quarantined, again.failed),
            (0, 0, 0),
            "{backend:?}: {again:#?}"
        );
        assert_eq!(snapshot(&root), after, "{backend:?}: a rerun changed files");
    }
}

/// A small object that inflates to `DECODED` bytes: checking it against the
/// catalog's digest streams through a fixed buffer. A check that inflated
/// it into memory would allocate the whole decoded size at once.
#[tokio::test]
async fn gzip_bomb_is_checked_in_bounded_memory_and_quarantined() {
    const DECODED: usize = 128 * 1024 * 1024;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..DECODED / zeros.len() {
        encoder.write_all(&zeros).unwrap();
    }
    drop(zeros);
    let bomb = Bytes::from(encoder.finish().unwrap());
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());

    // SQLite and folders only: the point is the check, not the backend.
    let rig = Rig::new(Backend::SqliteFs).await;
    rig.job(JOB, 1, "completed", 1).await;
    rig.job("new", 1, "completed", 2).await;
    let mut bad = row("bomb", &bomb, b"what the crawler saw");
    bad.html_compressed_size_bytes = Some(bomb.len() as i64);
    rig.catalog.insert_task(&bad).await.unwrap();
    rig.hot
        .put(&hot_location(JOB, "bomb"), bomb, &Default::default())
        .await
        .unwrap();

    crate::alloc::reset_largest();
    // Inflating and hashing it takes seconds in a debug build: a bomb
    // costs time, bounded by the per-blob limit, not memory.
    let mut config = rig.config(1);
    config.blob_timeout = std::time::Duration::from_secs(120);
    let report = rig
        .archiver_with(rig.hot.clone(), rig.cold.clone(), config)
        .sweep()
        .await;
    let largest_mib = crate::alloc::largest() / 1024 / 1024;

    assert_eq!(report.quarantined, 1, "{report:#?}");
    assert!(
        report.problems[0]
            .message
            .contains("content digest mismatch"),
        "{report:#?}"
    );
    assert!(
        // No test allocates anywhere near this in one piece.
        largest_mib < DECODED / 1024 / 1024 / 4,
        "a {largest_mib} MiB allocation while checking a {} MiB bomb",
        DECODED / 1024 / 1024
    );
    assert_eq!(rig.row("bomb").await.state(), BlobState::Quarantined);
    let location = Location::new(
        HOT_BUCKET,
        ObjectKey::new(task_html_object_path(JOB, "bomb")).unwrap(),
    );
    assert!(rig.hot.get(&location).await.is_ok(), "bomb left hot");
}

/// Malformed configuration and environment, through the real binary: each
/// a clear error naming the variable, exit code 2, before anything moves.
#[test]
fn malformed_settings_are_named_and_exit_2() {
    use crate::cli::{coldsweep, files_under, run};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("catalog.db");
    let hot = dir.path().join("hot");
    std::fs::create_dir_all(dir.path().join("cold").join(COLD_BUCKET)).unwrap();
    let folder = dir.path().join("a-folder");
    std::fs::create_dir_all(&folder).unwrap();
    let base = |args: &[&str]| {
        let mut cmd = coldsweep();
        cmd.args(args)
            .env("DATABASE_URL", format!("sqlite:{}", db.display()))
            .env("ARCHIVE_PROVIDER", "fs")
            .env("ARCHIVE_BUCKET", COLD_BUCKET)
            .env("ARCHIVE_FS_ROOT", dir.path().join("cold"))
            .env("HOT_STORE", "fs")
            .env("HOT_FS_ROOT", &hot);
        cmd
    };
    let s3 = [
        ("ARCHIVE_PROVIDER", "minio"),
        ("ARCHIVE_ACCESS_KEY_ID", "id"),
        ("ARCHIVE_SECRET_ACCESS_KEY", "secret"),
    ];
    let sqlite_folder = format!("sqlite:{}", folder.display());
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        // Whitespace only counts as unset: a required value is then missing.
        ("ARCHIVE_FS_ROOT", vec![("ARCHIVE_FS_ROOT", " \t ")]),
        (
            "ARCHIVE_ENDPOINT",
            [&s3[..], &[("ARCHIVE_ENDPOINT", "   ")]].concat(),
        ),
        // Unicode digits are not digits here.
        ("ARCHIVE_BATCH_SIZE", vec![("ARCHIVE_BATCH_SIZE", "５０")]),
        ("ARCHIVE_CONCURRENCY", vec![("ARCHIVE_CONCURRENCY", "٣")]),
        (
            "ARCHIVE_RETENTION_JOBS",
            vec![("ARCHIVE_RETENTION_JOBS", "³")],
        ),
        ("ARCHIVE_INTERVAL", vec![("ARCHIVE_INTERVAL", "３０s")]),
        // Huge numbers.
        (
            "ARCHIVE_RETENTION_JOBS",
            vec![("ARCHIVE_RETENTION_JOBS", "99999999999999999999999")],
        ),
        (
            "ARCHIVE_BATCH_SIZE",
            vec![("ARCHIVE_BATCH_SIZE", "18446744073709551616")],
        ),
        (
            "ARCHIVE_INTERVAL",
            vec![("ARCHIVE_INTERVAL", "18446744073709551615")],
        ),
        (
            "ARCHIVE_LEASE",
            vec![("ARCHIVE_LEASE", "99999999999999999999h")],
        ),
        // Negative durations, ASCII and Unicode minus.
        ("ARCHIVE_INTERVAL", vec![("ARCHIVE_INTERVAL", "-5m")]),
        (
            "ARCHIVE_BLOB_TIMEOUT",
            vec![("ARCHIVE_BLOB_TIMEOUT", "−5s")],
        ),
        // Credentials inside an endpoint URL.
        (
            "ARCHIVE_ENDPOINT",
            [
                &s3[..],
                &[("ARCHIVE_ENDPOINT", "http://user:pw@127.0.0.1:9000")],
            ]
            .concat(),
        ),
        // A lease too short for its heartbeat.
        ("ARCHIVE_LEASE", vec![("ARCHIVE_LEASE", "1s")]),
        // Settings that contradict each other.
        (
            "ARCHIVE_PROBE_PREFIX",
            vec![("ARCHIVE_PROBE_PREFIX", "jobs/probe")],
        ),
        // DATABASE_URL garbage.
        (
            "DATABASE_URL",
            vec![("DATABASE_URL", "mysql://root:pw@db/app")],
        ),
        ("DATABASE_URL", vec![("DATABASE_URL", "")]),
        ("DATABASE_URL", vec![("DATABASE_URL", "  ")]),
        ("DATABASE_URL", vec![("DATABASE_URL", "not a url")]),
        (
            "DATABASE_URL",
            vec![("DATABASE_URL", sqlite_folder.as_str())],
        ),
        (
            "DATABASE_URL",
            vec![("DATABASE_URL", "postgres://app@db:port/app")],
        ),
    ];
    for (name, env) in &cases {
        for command in [&["sweep", "--once"][..], &["status"]] {
            // `status` reads only the catalog's URL.
            if command[0] == "status" && *name != "DATABASE_URL" {
                continue;
            }
            let mut cmd = base(command);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let ran = run(&mut cmd);
            let what = format!("{command:?} with {env:?}");
            assert_eq!(ran.code, Some(2), "{what}\n{}", ran.show());
            assert!(
                ran.stderr.contains(&format!("{name}:")),
                "{what}: the error does not name {name}\n{}",
                ran.show()
            );
            assert!(!ran.stderr.contains("pw@"), "{what}: credentials shown");
        }
    }
    assert!(files_under(&hot).is_empty() && files_under(&folder).is_empty());
}
