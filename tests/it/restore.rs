//! `coldsweep restore`: archived blobs back to the hot store, verified, the
//! catalog pointing hot again; on Postgres + S3, on SQLite + folders, through
//! a crash, and through the binary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{BlobState, JobRow, SqliteCatalog, TaskRow};
use coldsweep::progress::Progress;
use coldsweep::restore::{
    FailureKind, RestoreOptions, RestoreReport, RestoreRequest, Restorer, SkipReason,
};
use coldsweep::store::{FsStore, exists};
use coldsweep::{Archiver, Catalog, Store};

use crate::cli::{Setup, files_under, run};
use crate::faults::{Fault, FaultyStore, Op};
use crate::pipeline::{Backend, HOT_BUCKET, Rig, cold_location, hot_location};

/// Status of job `id`, as the catalog says.
async fn job_status(catalog: &dyn Catalog, id: &str) -> String {
    catalog
        .job_retention()
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.job.id == id)
        .map(|j| j.job.status)
        .expect("job row")
}

fn options() -> RestoreOptions {
    let mut options = RestoreOptions::new(HOT_BUCKET);
    options.concurrency = 3;
    options.blob_timeout = Duration::from_secs(10);
    options
}

fn job(id: &str) -> RestoreRequest {
    RestoreRequest {
        tasks: Vec::new(),
        jobs: vec![id.to_owned()],
    }
}

fn restorer(rig: &Rig, hot: Arc<dyn Store>, options: RestoreOptions) -> Restorer {
    Restorer::new(rig.catalog.clone(), rig.cold.clone(), hot, options)
}

fn restored_ids(report: &RestoreReport) -> Vec<&str> {
    report.restored.iter().map(|r| r.task_id.as_str()).collect()
}

/// Jobs "old" (failed, so its status is not the default) and "new" of one
/// domain, two pages and one page; a sweep with retention 1 archives "old".
async fn archived_old_job(rig: &Rig) -> Vec<(&'static str, &'static str, Bytes)> {
    rig.job("old", 1, "failed", 1).await;
    rig.job("new", 1, "completed", 5).await;
    let mut pages = Vec::new();
    for (job, task) in [("old", "old-t1"), ("old", "old-t2"), ("new", "new-t1")] {
        pages.push((job, task, rig.task(job, task).await));
    }
    let report = rig.archiver(1).sweep().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.archived, 2, "{report}");
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "archived");
    pages
}

#[tokio::test]
async fn restore_round_trip_on_postgres_and_s3() {
    let rig = Rig::new(Backend::PostgresS3).await;
    let pages = archived_old_job(&rig).await;

    // "new" is hot: its bucket is the one to restore into.
    let bucket = coldsweep::restore::hot_bucket(rig.catalog.as_ref(), None).await;
    assert_eq!(bucket.unwrap(), HOT_BUCKET);
    let restorer = restorer(&rig, rig.hot.clone(), options());
    let progress = Progress::new();
    let report = restorer.run(&job("old"), &progress).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(restored_ids(&report), ["old-t1", "old-t2"]);
    assert_eq!(report.jobs_reopened, ["old"]);
    assert_eq!(report.cold_deleted, 0);
    assert_eq!(progress.snapshot().objects, 2);

    for (job, task, original) in &pages[..2] {
        let hot = rig.hot.get(&hot_location(job, task)).await.unwrap();
        assert_eq!(&hot, original, "{task}: hot bytes differ from the original");
        let row = rig.row(task).await;
        assert_eq!(row.state(), BlobState::Hot, "{task}");
        assert_eq!(row.html_storage_bucket.as_deref(), Some(HOT_BUCKET));
        assert_eq!(
            row.html_storage_path.as_deref(),
            Some(hot_location(job, task).key.as_str())
        );
        assert_eq!(row.html_archive_provider, None);
        assert_eq!(row.html_archive_bucket, None);
        assert_eq!(row.html_archive_key, None);
        assert_eq!(row.html_archived_at, None);
        // Kept by default: the catalog no longer points at it.
        let cold = rig.cold.get(&cold_location(job, task)).await.unwrap();
        assert_eq!(&cold, original);
    }
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "failed");

    // The restored job counts as finished now: the newest of its domain,
    // so retention 1 keeps it hot and the next sweep moves "new" instead.
    let report = rig.archiver(1).sweep().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.archived, 1, "{report}");
    assert_eq!(rig.row("new-t1").await.state(), BlobState::Archived);
    for task in ["old-t1", "old-t2"] {
        assert_eq!(rig.row(task).await.state(), BlobState::Hot, "{task}");
    }
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "failed");

    // A second restore of the same job has nothing to do.
    let again = restorer.run(&job("old"), &Progress::new()).await.unwrap();
    assert!(again.restored.is_empty() && again.failed.is_empty());
    assert!(
        again
            .skipped
            .iter()
            .all(|s| s.reason == SkipReason::StillHot),
        "{again:?}"
    );

    // With --delete-cold the cold copy goes, after the switch.
    let mut delete = options();
    delete.delete_cold = true;
    let report = restorer_with(&rig, delete)
        .run(&job("new"), &Progress::new())
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(restored_ids(&report), ["new-t1"]);
    assert_eq!(report.cold_deleted, 1);
    assert_eq!(report.jobs_reopened, ["new"]);
    assert_eq!(job_status(rig.catalog.as_ref(), "new").await, "completed");
    assert!(
        !exists(rig.cold.as_ref(), &cold_location("new", "new-t1"))
            .await
            .unwrap()
    );
    rig.audit(&pages).await;

    // Archived again, the kept cold copies are found and reused: only
    // "new"'s page, whose copy was deleted, is uploaded.
    let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
    let report = rig
        .archiver_with(rig.hot.clone(), cold, rig.config(0))
        .sweep()
        .await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.archived, 3, "{report}");
    assert_eq!(faults.puts.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "archived");
    rig.audit(&pages).await;
}

fn restorer_with(rig: &Rig, options: RestoreOptions) -> Restorer {
    restorer(rig, rig.hot.clone(), options)
}

/// A clock the test moves.
fn clock() -> (coldsweep::archiver::Clock, Arc<Mutex<DateTime<Utc>>>) {
    let now = Arc::new(Mutex::new(Utc::now()));
    let read = now.clone();
    (Arc::new(move || *read.lock().unwrap()), now)
}

#[tokio::test]
async fn a_restore_killed_after_the_hot_put_is_finished_by_the_next_one() {
    let rig = Rig::new(Backend::PostgresS3).await;
    let pages = archived_old_job(&rig).await;

    // The hot read-back of every page waits at the gate: the restore has put
    // its copies but not switched the catalog when it dies.
    let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
    faults.gate.close();
    let (clock, now) = clock();
    let first = restorer(&rig, hot.clone(), options())
        .with_clock(clock.clone())
        .with_worker_id("restore-1");
    let request = job("old");
    let progress = Progress::new();
    tokio::select! {
        _ = first.run(&request, &progress) => panic!("the restore should be held at the gate"),
        () = faults.gate.held(2) => {}
    }
    // Killed: the future is gone, its claims stay until their lease ends.
    drop(first);
    faults.gate.open();
    for task in ["old-t1", "old-t2"] {
        assert_eq!(rig.row(task).await.state(), BlobState::Archived, "{task}");
    }
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "archived");

    // Another restore now leaves the rows alone: they are someone else's.
    let second = restorer(&rig, hot.clone(), options())
        .with_clock(clock.clone())
        .with_worker_id("restore-2");
    let busy = second.run(&request, &Progress::new()).await.unwrap();
    assert!(busy.restored.is_empty(), "{busy:?}");
    assert_eq!(busy.failed.len(), 2, "{busy:?}");
    assert!(busy.failed.iter().all(|f| f.kind == FailureKind::Busy));

    // Once the dead claims expire, a re-run overwrites the copies and switches.
    *now.lock().unwrap() += chrono::Duration::minutes(5);
    let report = second.run(&request, &Progress::new()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(restored_ids(&report), ["old-t1", "old-t2"]);
    assert_eq!(report.jobs_reopened, ["old"]);
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "failed");
    rig.audit(&pages).await;
    // One object per page in the hot bucket ("new"'s and the two restored): nothing duplicated.
    let server = rig.s3_server().unwrap();
    let hot_files: Vec<_> = files_under(&server.root().join(HOT_BUCKET))
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".gz"))
        .collect();
    assert_eq!(hot_files.len(), 3, "{hot_files:?}");
}

#[tokio::test]
async fn a_switch_after_the_lease_ran_out_changes_nothing_and_a_rerun_converges() {
    let rig = Rig::new(Backend::SqliteFs).await;
    let pages = archived_old_job(&rig).await;
    let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
    faults.gate.close();
    let (clock, now) = clock();
    let restorer = restorer(&rig, hot, options()).with_clock(clock);
    let request = job("old");
    let progress = Progress::new();
    let run = restorer.run(&request, &progress);
    tokio::pin!(run);
    // Both pages are put and wait at their read-back; meanwhile the lease
    // runs out (a stalled process), and another worker could take the rows.
    tokio::select! {
        _ = &mut run => panic!("the restore should be held at the gate"),
        () = faults.gate.held(2) => {}
    }
    *now.lock().unwrap() += chrono::Duration::minutes(5);
    faults.gate.open();
    let report = run.await.unwrap();
    assert!(report.restored.is_empty(), "{report:?}");
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.kind == FailureKind::Error(coldsweep::ErrorKind::LeaseLost)),
        "{report:?}"
    );
    assert!(report.jobs_reopened.is_empty());
    for task in ["old-t1", "old-t2"] {
        assert_eq!(rig.row(task).await.state(), BlobState::Archived, "{task}");
    }
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "archived");

    let report = restorer.run(&request, &Progress::new()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(restored_ids(&report), ["old-t1", "old-t2"]);
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "failed");
    rig.audit(&pages).await;
}

#[tokio::test]
async fn a_failed_read_back_leaves_the_row_archived_and_a_rerun_converges() {
    let rig = Rig::new(Backend::SqliteFs).await;
    let pages = archived_old_job(&rig).await;
    let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
    // The put goes through; the read back of the first page is refused.
    faults.fail_next(Op::Get, Fault::Denied, 1);
    let restorer = restorer(&rig, hot, options());
    let report = restorer.run(&job("old"), &Progress::new()).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(
        report.failed[0].kind,
        FailureKind::Error(coldsweep::ErrorKind::PermissionDenied)
    );
    let failed = report.failed[0].task_id.clone();
    assert_eq!(rig.row(&failed).await.state(), BlobState::Archived);
    // Its job still has an archived page, but the other page is hot: no
    // longer archived, with its old status.
    assert_eq!(report.jobs_reopened, ["old"]);
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "failed");
    assert_eq!(faults.calls(Op::Put), 2);

    // Handed back at once: the re-run needs no wait.
    let report = restorer.run(&job("old"), &Progress::new()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(restored_ids(&report), [failed.as_str()]);
    rig.audit(&pages).await;
}

#[tokio::test]
async fn a_corrupt_cold_copy_is_refused_and_nothing_is_written_hot() {
    let rig = Rig::new(Backend::PostgresS3).await;
    let pages = archived_old_job(&rig).await;
    let tampered = cold_location("old", "old-t1");
    let mut bad = pages[0].2.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    rig.cold
        .put(&tampered, Bytes::from(bad), &Default::default())
        .await
        .unwrap();

    let report = restorer_with(&rig, options())
        .run(&job("old"), &Progress::new())
        .await
        .unwrap();
    assert!(!report.is_clean());
    assert_eq!(restored_ids(&report), ["old-t2"]);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].task_id, "old-t1");
    assert_eq!(report.failed[0].kind, FailureKind::Corrupt);
    assert_eq!(rig.row("old-t1").await.state(), BlobState::Archived);
    assert!(
        !exists(rig.hot.as_ref(), &hot_location("old", "old-t1"))
            .await
            .unwrap(),
        "a corrupt copy was written hot"
    );
}

#[tokio::test]
async fn lost_hot_and_unknown_rows_are_skipped_with_their_reason() {
    let rig = Rig::new(Backend::SqliteFs).await;
    archived_old_job(&rig).await;
    rig.catalog
        .insert_task(&TaskRow {
            id: "old-lost".into(),
            job_id: "old".into(),
            html_archive_state: Some("lost".into()),
            html_archive_error: Some("gone".into()),
            ..TaskRow::default()
        })
        .await
        .unwrap();
    let request = RestoreRequest {
        tasks: vec![
            "old-t1".into(),
            "new-t1".into(),
            "old-lost".into(),
            "no-such-task".into(),
        ],
        jobs: vec!["no-such-job".into()],
    };
    let restorer = restorer_with(&rig, options());
    let plan = restorer.plan(&request).await.unwrap();
    let listed: Vec<&str> = plan.rows.iter().map(|r| r.task_id.as_str()).collect();
    assert_eq!(listed, ["old-t1"]);
    assert_eq!(plan.rows[0].hot, hot_location("old", "old-t1"));
    assert_eq!(plan.rows[0].cold, cold_location("old", "old-t1"));
    let reason = |id: &str| {
        plan.skipped
            .iter()
            .find(|s| s.task_id.as_deref() == Some(id) || s.job_id.as_deref() == Some(id))
            .map(|s| s.reason.clone())
    };
    assert_eq!(reason("new-t1"), Some(SkipReason::StillHot));
    assert_eq!(reason("old-lost"), Some(SkipReason::Lost));
    assert_eq!(reason("no-such-task"), Some(SkipReason::NoSuchTask));
    assert_eq!(reason("no-such-job"), Some(SkipReason::NoSuchJob));

    let report = restorer.run(&request, &Progress::new()).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(restored_ids(&report), ["old-t1"]);
    assert_eq!(report.skipped, plan.skipped);
    assert_eq!(rig.row("old-lost").await.state(), BlobState::Lost);
}

#[tokio::test]
async fn the_folder_hot_store_gets_back_only_the_restored_objects() {
    let dir = tempfile::tempdir().unwrap();
    let hot_root = dir.path().join("hot");
    std::fs::create_dir_all(hot_root.join(HOT_BUCKET)).unwrap();
    let url = format!("sqlite:{}", dir.path().join("catalog.db").display());
    let catalog: Arc<dyn Fixtures> = Arc::new(SqliteCatalog::connect(&url).await.unwrap());
    catalog.migrate().await.unwrap();
    let cold: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("cold")).unwrap());
    // The hot role as a deployment opens it: nothing created at its root.
    let hot: Arc<dyn Store> = Arc::new(FsStore::open_existing(&hot_root).unwrap());
    // Seeded the way an application writes its pages: plain files.
    let seeder: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("seed")).unwrap());
    let rig = Rig::from_parts(
        Backend::SqliteFs,
        catalog.clone(),
        seeder,
        cold.clone(),
        vec![],
    );
    rig.job("old", 1, "completed", 1).await;
    rig.job("new", 1, "completed", 5).await;
    let mut pages = Vec::new();
    for task in ["old-t1", "old-t2"] {
        let bytes = rig.task("old", task).await;
        let path = hot_root
            .join(HOT_BUCKET)
            .join(hot_location("old", task).key.as_str());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        pages.push((path, bytes));
    }
    let mut config = rig.config(1);
    config.provider = coldsweep::Provider::Fs;
    let report = Archiver::task_html(config, catalog.clone(), hot, cold.clone())
        .sweep()
        .await;
    assert_eq!(report.archived, 2, "{report}");
    assert!(files_under(&hot_root).is_empty());

    let hot: Arc<dyn Store> = Arc::new(FsStore::open_for_restore(&hot_root).unwrap());
    let report = Restorer::new(catalog.clone(), cold, hot, options())
        .run(&job("old"), &Progress::new())
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    let mut left = files_under(&hot_root);
    left.sort();
    let mut expected: Vec<_> = pages.iter().map(|(path, _)| path.clone()).collect();
    expected.sort();
    assert_eq!(
        left, expected,
        "the hot root holds more than the restored pages"
    );
    for (path, bytes) in &pages {
        assert_eq!(&std::fs::read(path).unwrap(), bytes);
    }
    let top: Vec<_> = std::fs::read_dir(&hot_root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, [HOT_BUCKET], "something was created at the hot root");
}

#[tokio::test]
async fn a_cold_copy_that_is_the_hot_object_itself_is_not_restored() {
    let rig = Rig::new(Backend::SqliteFs).await;
    archived_old_job(&rig).await;
    // Cold store and hot bucket point at the same folder and bucket: the
    // hot object would be the cold copy, and --delete-cold its only copy.
    let root = rig.temp_dir().unwrap().join("cold");
    let same: Arc<dyn Store> = Arc::new(FsStore::open_for_restore(&root).unwrap());
    let mut into_cold = options();
    into_cold.hot_bucket = crate::pipeline::COLD_BUCKET.to_owned();
    into_cold.delete_cold = true;
    let report = Restorer::new(rig.catalog.clone(), rig.cold.clone(), same, into_cold)
        .run(&job("old"), &Progress::new())
        .await
        .unwrap();
    assert!(
        report.restored.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.cold_deleted, 0);
    assert_eq!(report.skipped.len(), 2, "{report:?}");
    assert!(
        report
            .skipped
            .iter()
            .all(|s| matches!(&s.reason, SkipReason::BadRow(why) if why.contains("same object"))),
        "{report:?}"
    );
    for task in ["old-t1", "old-t2"] {
        assert_eq!(rig.row(task).await.state(), BlobState::Archived, "{task}");
        assert!(rig.cold.get(&cold_location("old", task)).await.is_ok());
    }
}

#[tokio::test]
async fn supabase_hot_store_gets_the_page_back_over_a_stale_object() {
    let server = crate::harness::supabase::SupabaseServer::start().await;
    server.create_bucket(HOT_BUCKET);
    let hot: Arc<dyn Store> =
        Arc::new(coldsweep::store::SupabaseStore::new(&server.config()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("catalog.db").display());
    let catalog: Arc<dyn Fixtures> = Arc::new(SqliteCatalog::connect(&url).await.unwrap());
    catalog.migrate().await.unwrap();
    let cold: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("cold")).unwrap());
    let rig = Rig::from_parts(
        Backend::SqliteFs,
        catalog,
        hot.clone(),
        cold,
        vec![Box::new(dir)],
    );
    let mut config = rig.config(1);
    config.provider = coldsweep::Provider::Fs;
    rig.job("old", 1, "failed", 1).await;
    rig.job("new", 1, "completed", 5).await;
    let page = rig.task("old", "old-t1").await;
    rig.task("new", "new-t1").await;
    let report = rig
        .archiver_with(hot.clone(), rig.cold.clone(), config)
        .sweep()
        .await;
    assert_eq!(report.archived, 1, "{report}");
    let key = hot_location("old", "old-t1").key;
    assert_eq!(server.object(HOT_BUCKET, key.as_str()), None);
    // What an interrupted restore (or anyone) left at the key is replaced.
    server.seed(HOT_BUCKET, key.as_str(), b"stale");

    let report = restorer(&rig, hot, options())
        .run(&job("old"), &Progress::new())
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(restored_ids(&report), ["old-t1"]);
    assert_eq!(server.object(HOT_BUCKET, key.as_str()), Some(page));
    assert_eq!(rig.row("old-t1").await.state(), BlobState::Hot);
    assert_eq!(job_status(rig.catalog.as_ref(), "old").await, "failed");
}

#[tokio::test]
async fn the_restore_role_of_a_folder_store_refuses_a_missing_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let err = FsStore::open_for_restore(dir.path().join("absent")).unwrap_err();
    assert_eq!(err.kind(), coldsweep::ErrorKind::BucketNotFound);
    let store = FsStore::open_for_restore(dir.path()).unwrap();
    let at = hot_location("j", "t");
    let err = store
        .put(&at, Bytes::from_static(b"x"), &Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), coldsweep::ErrorKind::BucketNotFound, "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The CLI: a dry run that changes nothing, then `--yes --json`.
#[tokio::test]
async fn cli_dry_run_then_json_report() {
    let setup = Setup::new();
    setup.seed_clean(2).await;
    let ran = run(&mut setup.cmd(&["sweep", "--once"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(files_under(&setup.hot_bucket()).len(), 0);

    let ran = run(&mut setup.cmd(&["restore"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("--task"), "{}", ran.show());

    let hot = ["--hot-bucket", HOT_BUCKET];
    let ran = run(setup
        .cmd(&["restore", "--job", "clean-0", "--task", "nope"])
        .args(hot));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout.contains("Would restore 2 tasks"),
        "{}",
        ran.show()
    );
    assert!(
        ran.stdout.contains("task nope: no such task"),
        "{}",
        ran.show()
    );
    assert!(ran.stdout.contains("--yes"), "{}", ran.show());
    assert_eq!(files_under(&setup.hot_bucket()).len(), 0, "a dry run wrote");

    let ran = run(setup
        .cmd(&["restore", "--job", "clean-0", "--json"])
        .args(hot));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let plan: serde_json::Value = serde_json::from_str(&ran.stdout).expect("one JSON object");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["planned"].as_array().unwrap().len(), 2);
    assert_eq!(plan["planned"][0]["task_id"], "clean-0-t0");
    assert_eq!(
        plan["planned"][0]["hot_key"],
        "jobs/clean-0/tasks/clean-0-t0/page-content.html.gz"
    );

    let ran = run(&mut setup.cmd(&[
        "restore",
        "--job",
        "clean-0",
        "--task",
        "nope",
        "--yes",
        "--json",
        "--delete-cold",
        "--hot-bucket",
        HOT_BUCKET,
    ]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let done: serde_json::Value = serde_json::from_str(&ran.stdout).expect("one JSON object");
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["hot_bucket"], HOT_BUCKET);
    let restored: Vec<&str> = done["restored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(restored, ["clean-0-t0", "clean-0-t1"]);
    assert_eq!(done["failed"].as_array().unwrap().len(), 0);
    assert_eq!(done["skipped"][0]["task_id"], "nope");
    assert_eq!(done["skipped"][0]["reason"], "no_such_task");
    assert_eq!(done["cold_deleted"], 2);
    assert_eq!(done["jobs_reopened"][0], "clean-0");
    assert_eq!(files_under(&setup.hot_bucket()).len(), 2);
    assert_eq!(files_under(&setup.cold_bucket()).len(), 0);
    let catalog = setup.catalog().await;
    assert_eq!(job_status(&catalog, "clean-0").await, "completed");
}

#[tokio::test]
async fn cli_exits_1_on_a_corrupt_cold_copy_and_2_without_a_hot_bucket() {
    let setup = Setup::new();
    setup.seed_clean(1).await;
    let ran = run(&mut setup.cmd(&["sweep", "--once"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let cold = files_under(&setup.cold_bucket());
    assert_eq!(cold.len(), 1);
    std::fs::write(&cold[0], b"not the page").unwrap();

    // No hot row is left to say which bucket: --hot-bucket is required.
    let ran = run(&mut setup.cmd(&["restore", "--job", "clean-0", "--yes"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("--hot-bucket"), "{}", ran.show());

    let ran = run(&mut setup.cmd(&[
        "restore",
        "--job",
        "clean-0",
        "--yes",
        "--hot-bucket",
        HOT_BUCKET,
    ]));
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(ran.stdout.contains("corrupt"), "{}", ran.show());
    assert_eq!(files_under(&setup.hot_bucket()).len(), 0, "{}", ran.show());
    let catalog = setup.catalog().await;
    let row = catalog.task("clean-0-t0").await.unwrap().unwrap();
    assert_eq!(row.state(), BlobState::Archived);
    assert_eq!(job_status(&catalog, "clean-0").await, "archived");
}

/// Jobs in the ranking: a restored job counts as finished at its restore.
#[tokio::test]
async fn a_restored_job_ranks_as_finished_at_its_restore() {
    for backend in [Backend::PostgresS3, Backend::SqliteFs] {
        let rig = Rig::new(backend).await;
        archived_old_job(&rig).await;
        // Marked archived, "old" is no longer a terminal job: not ranked.
        assert_eq!(ids(&rank_order(&rig).await), ["new"], "{backend:?}");
        restorer_with(&rig, options())
            .run(&job("old"), &Progress::new())
            .await
            .unwrap();
        assert_eq!(ids(&rank_order(&rig).await), ["old", "new"], "{backend:?}");
    }
}

async fn rank_order(rig: &Rig) -> Vec<JobRow> {
    let mut jobs = rig.catalog.job_retention().await.unwrap();
    jobs.retain(|j| j.rank.is_some());
    jobs.sort_by_key(|j| j.rank);
    jobs.into_iter().map(|j| j.job).collect()
}

fn ids(jobs: &[JobRow]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}
