//! The verdicts a sweep takes on a blob, and the configuration mistakes
//! that once turned a whole backlog `lost` in one sweep. Each mistake is
//! observed as a user would see it — the sweep stops or reports, no row
//! changes state, nothing is written to the hot store — then fixed, after
//! which a sweep archives everything.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use coldsweep::archiver::ProblemKind;
use coldsweep::catalog::{BlobState, TaskRow};
use coldsweep::config::HotConfig;
use coldsweep::store::{FsStore, PutOptions, S3Store, Store};

use crate::cli::{Ran, coldsweep, run};
use crate::faults::{Fault, FaultyStore, Op};
use crate::harness::s3::S3Server;
use crate::harness::supabase::SupabaseServer;
use crate::pipeline::{
    BACKENDS, Backend, COLD_BUCKET, HOT_BUCKET, Rig, gzip, hot_location, sha256_hex,
};

/// The catalog rows of `tasks`, to prove a stopped sweep changed none.
async fn rows(rig: &Rig, tasks: &[&str]) -> Vec<TaskRow> {
    let mut rows = Vec::new();
    for task in tasks {
        let mut row = rig.row(task).await;
        // A claim handed back leaves no lease; compare the rest.
        row.html_lease_expires_at = None;
        rows.push(row);
    }
    rows
}

/// `n` tasks of job `old` (moved with retention 1), stored in `rig.hot`.
async fn tasks(
    rig: &Rig,
    n: usize,
) -> (Vec<&'static str>, Vec<(&'static str, &'static str, Bytes)>) {
    rig.old_and_new_jobs().await;
    let mut ids = Vec::new();
    let mut blobs = Vec::new();
    for i in 0..n {
        let task: &'static str = Box::leak(format!("t{i:02}").into_boxed_str());
        blobs.push(("old", task, rig.task("old", task).await));
        ids.push(task);
    }
    (ids, blobs)
}

/// The sweep stopped without a verdict on any blob.
fn assert_stopped(report: &coldsweep::SweepReport, names: &str) {
    assert!(report.stopped, "{report:?}");
    assert_eq!(
        (
            report.archived,
            report.missing,
            report.lost,
            report.failed,
            report.quarantined
        ),
        (0, 0, 0, 0, 0),
        "{report:?}"
    );
    let stop = report
        .problems
        .iter()
        .find(|p| p.what == ProblemKind::Stopped)
        .expect("a stop problem");
    assert!(stop.message.contains(names), "{}", stop.message);
}

/// Catches: the hot bucket missing on an S3 endpoint answered as NotFound,
/// which made every blob look lost (45 of 45 on moto, s3rver and Garage).
#[tokio::test]
async fn a_hot_s3_bucket_that_is_not_there_stops_the_sweep() {
    let rig = Rig::new(Backend::PostgresS3).await;
    let (ids, blobs) = tasks(&rig, 3).await;
    let before = rows(&rig, &ids).await;

    let elsewhere = S3Server::start().await;
    let wrong: Arc<dyn Store> = Arc::new(S3Store::new("minio", &elsewhere.config()).unwrap());
    let report = rig
        .archiver_with(wrong, rig.cold.clone(), rig.config(1))
        .sweep()
        .await;
    assert_stopped(&report, "HOT_S3_ENDPOINT");
    assert_eq!(rows(&rig, &ids).await, before);
    assert_eq!(rig.catalog.status(Utc::now()).await.unwrap().leased, 0);

    let fixed = rig.archiver(1).sweep().await;
    assert!(fixed.is_clean(), "{fixed:?}");
    assert_eq!(fixed.archived, 3);
    rig.audit(&blobs).await;
}

/// Catches: a Supabase key that row level security hides the objects from
/// (every GET answers `NoSuchKey`), which marked 18 of 18 blobs lost. Such
/// keys are refused at start-up; this is the key losing its privilege while
/// the daemon runs.
#[tokio::test]
async fn a_supabase_key_without_privilege_stops_the_sweep() {
    let server = SupabaseServer::start().await;
    server.create_bucket(HOT_BUCKET);
    let vars = BTreeMap::from([
        ("HOT_STORE", "supabase".to_owned()),
        ("SUPABASE_URL", server.url.clone()),
        ("SUPABASE_SERVICE_ROLE_KEY", server.service_role_key.clone()),
    ]);
    let config = HotConfig::from_lookup(|name| vars.get(name).cloned()).unwrap();
    let hot = coldsweep::store::hot_store(&config).unwrap();

    let rig = Rig::new(Backend::SqliteFs).await;
    rig.old_and_new_jobs().await;
    let mut ids = Vec::new();
    for task in ["a", "b", "c"] {
        let html = format!("<html><body>{task}</body></html>").repeat(30);
        let stored = gzip(html.as_bytes());
        rig.insert_task("old", task, &stored, Some(sha256_hex(html.as_bytes())))
            .await;
        hot.put(&hot_location("old", task), stored, &PutOptions::default())
            .await
            .unwrap();
        ids.push(task);
    }
    let before = rows(&rig, &ids).await;

    server.demote_service_key();
    let report = rig
        .archiver_with(hot.clone(), rig.cold.clone(), rig.config(1))
        .sweep()
        .await;
    assert_stopped(&report, "SUPABASE_SERVICE_ROLE_KEY");
    assert_eq!(rows(&rig, &ids).await, before);
    assert_eq!(server.object_count(HOT_BUCKET), 3, "nothing deleted");

    server.restore_service_key();
    let fixed = rig
        .archiver_with(hot, rig.cold.clone(), rig.config(1))
        .sweep()
        .await;
    assert!(fixed.is_clean(), "{fixed:?}");
    assert_eq!(fixed.archived, 3);
    assert_eq!(server.object_count(HOT_BUCKET), 0);
}

/// Catches: a verdict on each blob however many look missing at once. A
/// hot root that has the bucket folder but none of the blobs (a wrong
/// mount, an old copy) makes all of them look missing: the sweep stops and
/// records nothing. A few blobs really missing among many are recorded,
/// wherever the claim order puts them.
#[tokio::test]
async fn implausibly_many_missing_blobs_stop_the_sweep_but_a_few_are_recorded() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let (ids, blobs) = tasks(&rig, 12).await;
        let before = rows(&rig, &ids).await;

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(HOT_BUCKET)).unwrap();
        let wrong: Arc<dyn Store> = Arc::new(FsStore::open_existing(dir.path()).unwrap());
        let report = rig
            .archiver_with(wrong, rig.cold.clone(), rig.config(1))
            .sweep()
            .await;
        assert_stopped(&report, "ARCHIVE_MISSING_STOP_COUNT");
        assert_eq!(rows(&rig, &ids).await, before, "{backend:?}");
        let status = rig.catalog.status(Utc::now()).await.unwrap();
        assert_eq!((status.missing, status.lost), (0, 0), "{backend:?}");
        assert_eq!(
            std::fs::read_dir(dir.path().join(HOT_BUCKET))
                .unwrap()
                .count(),
            0,
            "{backend:?}: the hot store was written to"
        );

        // Eleven really gone among 123: more than the count, but under 10 %
        // of what the sweep tried, so each is recorded as a suspicion.
        let mut blobs = blobs;
        for i in 0..100 {
            let task: &'static str = Box::leak(format!("u{i:03}").into_boxed_str());
            blobs.push(("old", task, rig.task("old", task).await));
        }
        for i in 0..11 {
            rig.insert_task("old", &format!("ghost{i:02}"), b"never stored", None)
                .await;
        }
        let mut config = rig.config(1);
        config.batch_size = 50;
        let report = rig
            .archiver_with(rig.hot.clone(), rig.cold.clone(), config)
            .sweep()
            .await;
        assert!(!report.stopped, "{backend:?}: {report:?}");
        assert_eq!((report.archived, report.missing), (112, 11), "{backend:?}");
        assert_eq!(rig.row("ghost00").await.state(), BlobState::Missing);
        rig.audit(&blobs).await;
    }
}

/// Catches two opposite mistakes: a blob refused for a reason of its own
/// (a header its id produces) retried every interval for ever, and a
/// refusal of every upload (a proxy, a policy) quarantining the whole
/// backlog. Only the first is quarantined, after `max_attempts` failures in
/// sweeps where other blobs moved.
#[tokio::test]
async fn only_a_blob_that_fails_alone_is_quarantined_after_max_attempts() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        rig.task("old", "a-stuck").await;
        let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
        let mut config = rig.config(1);
        config.concurrency = 1;
        config.max_attempts = 3;
        let start = Utc::now();
        for round in 0..3i64 {
            // Another blob that moves, after the stuck one (ids in order).
            rig.task("old", &format!("b{round}")).await;
            faults.fail_next(Op::Put, Fault::Refused, 1);
            let at = start + chrono::Duration::minutes(2 * round);
            let report = rig
                .archiver_with(rig.hot.clone(), cold.clone(), config.clone())
                .with_clock(Arc::new(move || at))
                .sweep()
                .await;
            assert_eq!(report.archived, 1, "{backend:?} round {round}: {report:?}");
            let row = rig.row("a-stuck").await;
            if round < 2 {
                assert_eq!(report.failed, 1, "{backend:?}: {report:?}");
                assert_eq!(row.state(), BlobState::Hot);
                assert_eq!(row.html_archive_attempts, round as i32 + 1);
            } else {
                assert_eq!(report.quarantined, 1, "{backend:?}: {report:?}");
                assert_eq!(row.state(), BlobState::Quarantined);
                let reason = row.html_archive_error.unwrap_or_default();
                assert!(reason.contains("failed 3 times"), "{reason}");
                assert!(reason.contains("InvalidArgument"), "{reason}");
            }
        }

        // Every upload refused: nothing moves, nothing is quarantined.
        let rig = Rig::new(backend).await;
        let (ids, _) = tasks(&rig, 3).await;
        let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
        faults.fail_next(Op::Put, Fault::Refused, u32::MAX);
        for round in 0..5i64 {
            let at = start + chrono::Duration::minutes(2 * round);
            let report = rig
                .archiver_with(rig.hot.clone(), cold.clone(), config.clone())
                .with_clock(Arc::new(move || at))
                .sweep()
                .await;
            assert_eq!(
                (report.failed, report.quarantined),
                (3, 0),
                "{backend:?} round {round}: {report:?}"
            );
        }
        for id in ids {
            let row = rig.row(id).await;
            assert_eq!(row.state(), BlobState::Hot, "{backend:?}: {id}");
            assert_eq!(row.html_archive_attempts, 5);
        }
    }
}

/// `coldsweep sweep --once` over the rig's SQLite catalog and folder
/// stores, with the hot root given.
fn sweep_once(dir: &Path, hot_root: &Path) -> Ran {
    run(coldsweep()
        .args(["sweep", "--once"])
        .env(
            "DATABASE_URL",
            format!("sqlite:{}", dir.join("catalog.db").display()),
        )
        .env("ARCHIVE_PROVIDER", "fs")
        .env("ARCHIVE_BUCKET", COLD_BUCKET)
        .env("ARCHIVE_FS_ROOT", dir.join("cold"))
        .env("ARCHIVE_RETENTION_JOBS", "1")
        .env("HOT_STORE", "fs")
        .env("HOT_FS_ROOT", hot_root))
}

/// Catches: a mistyped `HOT_FS_ROOT` that marked 154 blobs lost in one
/// sweep, and the folder store creating the mistyped root (and
/// `.coldsweep-tmp` inside it) although the hot store is only read.
#[tokio::test]
async fn a_wrong_hot_root_never_changes_a_row_or_the_disk() {
    let rig = Rig::new(Backend::SqliteFs).await;
    let (ids, blobs) = tasks(&rig, 12).await;
    let before = rows(&rig, &ids).await;
    let dir = rig.temp_dir().unwrap().to_owned();

    // A root that does not exist: a bad setting, refused before anything.
    let typo = dir.join("hto");
    let ran = sweep_once(&dir, &typo);
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("HOT_FS_ROOT"), "{}", ran.show());
    assert!(!typo.exists(), "the mistyped root was created");

    // A folder without the bucket: the store cannot prove it sees it.
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let ran = sweep_once(&dir, &empty);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(ran.stdout.contains("STOPPED EARLY"), "{}", ran.show());
    assert!(ran.stdout.contains("HOT_FS_ROOT"), "{}", ran.show());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // A folder with the bucket but none of the blobs: implausibly many missing.
    std::fs::create_dir(empty.join(HOT_BUCKET)).unwrap();
    let ran = sweep_once(&dir, &empty);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(
        ran.stdout.contains("ARCHIVE_MISSING_STOP_COUNT"),
        "{}",
        ran.show()
    );
    assert_eq!(
        std::fs::read_dir(empty.join(HOT_BUCKET)).unwrap().count(),
        0
    );

    assert_eq!(rows(&rig, &ids).await, before);
    let status = rig.catalog.status(Utc::now()).await.unwrap();
    assert_eq!((status.missing, status.lost, status.failing), (0, 0, 0));

    let ran = sweep_once(&dir, &dir.join("hot"));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    rig.audit(&blobs).await;
    assert_eq!(rig.catalog.status(Utc::now()).await.unwrap().archived, 12);
}

/// Catches evidence taken from the wrong place: blobs of one hot bucket
/// moving do not show that another bucket's settings work. A bucket whose
/// every read is refused keeps all its blobs in play, failing, never
/// quarantined, while the other bucket's blobs move.
#[tokio::test]
async fn a_refused_hot_bucket_is_never_quarantined_because_another_moves() {
    let rig = Rig::new(Backend::SqliteFs).await;
    rig.old_and_new_jobs().await;
    const OTHER: &str = "other-bucket";
    let mut refused = Vec::new();
    for i in 0..3 {
        let task = format!("r{i}");
        let stored = gzip(format!("<html>{task}</html>").as_bytes());
        let path = coldsweep::task_html_object_path("old", &task);
        rig.catalog
            .insert_task(&TaskRow {
                id: task.clone(),
                job_id: "old".into(),
                html_storage_bucket: Some(OTHER.into()),
                html_storage_path: Some(path.clone()),
                html_content_encoding: Some("gzip".into()),
                html_compressed_size_bytes: Some(stored.len() as i64),
                ..TaskRow::default()
            })
            .await
            .unwrap();
        let at = coldsweep::Location::new(OTHER, coldsweep::ObjectKey::new(path).unwrap());
        rig.hot
            .put(&at, stored, &PutOptions::default())
            .await
            .unwrap();
        refused.push(task);
    }
    let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
    *faults.refuse_bucket.lock().unwrap() = Some(OTHER.to_owned());
    let mut config = rig.config(1);
    config.max_attempts = 2;
    let start = Utc::now();
    for round in 0..4i64 {
        rig.task("old", &format!("m{round}")).await;
        let at = start + chrono::Duration::minutes(2 * round);
        let report = rig
            .archiver_with(hot.clone(), rig.cold.clone(), config.clone())
            .with_clock(Arc::new(move || at))
            .sweep()
            .await;
        assert_eq!(
            (report.archived, report.failed, report.quarantined),
            (1, 3, 0),
            "round {round}: {report:?}"
        );
    }
    for task in &refused {
        let row = rig.row(task).await;
        assert_eq!(row.state(), BlobState::Hot, "{task}");
        assert_eq!(row.html_archive_attempts, 4, "{task}");
    }
}
