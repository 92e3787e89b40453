//! The start-up probe and `coldsweep check`: against a folder store, the
//! in-process S3 server and the Supabase test server, with good settings and
//! each way a deployment is commonly wrong (bad credentials, missing bucket,
//! read-only bucket, a Supabase key without the service role).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{JobRow, SqliteCatalog, TaskRow};
use coldsweep::store::probe::{ProbeReport, ProbeStep, StepOutcome, probe, probe_read_only};
use coldsweep::store::{FsStore, PutOptions, S3Store, Store, SupabaseStore, exists};
use coldsweep::{Catalog, ErrorKind, Location, ObjectKey};

use crate::cli::{Ran, coldsweep, files_under, run};
use crate::faults::FaultyStore;
use crate::harness::s3::S3Server;
use crate::harness::supabase::SupabaseServer;

const COLD: &str = "cold-archive";
const HOT: &str = "task-html";
const PROBE_STEPS: [ProbeStep; 6] = [
    ProbeStep::Reach,
    ProbeStep::Write,
    ProbeStep::Read,
    ProbeStep::Verify,
    ProbeStep::Delete,
    ProbeStep::Gone,
];

fn prefix() -> ObjectKey {
    ObjectKey::new(".coldsweep-probe").unwrap()
}

/// Each step with `P`assed, `F`ailed (and its kind) or `S`kipped.
fn outcomes(report: &ProbeReport) -> Vec<(ProbeStep, String)> {
    report
        .steps
        .iter()
        .map(|s| {
            let outcome = match &s.outcome {
                StepOutcome::Passed(_) => "P".to_owned(),
                StepOutcome::Failed(e) => format!("F {}", e.kind()),
                StepOutcome::Skipped(_) => "S".to_owned(),
                _ => "?".to_owned(),
            };
            (s.step, outcome)
        })
        .collect()
}

/// `PROBE_STEPS` with the given outcomes, in order.
fn expect(outcomes: [&str; 6]) -> Vec<(ProbeStep, String)> {
    PROBE_STEPS
        .into_iter()
        .zip(outcomes.map(str::to_owned))
        .collect()
}

fn s3_store(server: &S3Server) -> S3Store {
    S3Store::new("minio", &server.config()).unwrap()
}

#[tokio::test]
async fn probe_passes_on_a_folder_store_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path()).unwrap();
    std::fs::create_dir(dir.path().join(COLD)).unwrap();

    let report = probe(&store, COLD, &prefix()).await;
    assert_eq!(outcomes(&report), expect(["P"; 6]), "{report:#?}");
    assert!(report.passed() && report.failure().is_none());
    assert_eq!(report.left_behind(), None);
    // The probe object went under the prefix, with a fresh name each time.
    assert!(
        report
            .location
            .key
            .as_str()
            .starts_with(".coldsweep-probe/")
    );
    let again = probe(&store, COLD, &prefix()).await;
    assert_ne!(again.location, report.location);
    // A folder keeps no ETag: verification must read copies back.
    assert_eq!(report.etag_is_md5, Some(false));
    assert!(files_under(&dir.path().join(COLD)).is_empty());
    report.into_result().unwrap();
}

#[tokio::test]
async fn probe_passes_on_s3_and_leaves_nothing() {
    let server = S3Server::start().await;
    server.create_bucket(COLD);
    let store = s3_store(&server);

    let report = probe(&store, COLD, &prefix()).await;
    assert_eq!(outcomes(&report), expect(["P"; 6]), "{report:#?}");
    // s3s keeps content type, encoding and metadata, and its ETag is the MD5.
    assert_eq!(report.etag_is_md5, Some(true));
    let StepOutcome::Passed(verified) = &report.steps[3].outcome else {
        panic!("{report:#?}")
    };
    assert!(
        verified.contains("content type, content encoding and user metadata kept"),
        "{verified}"
    );
    assert!(!exists(&store, &report.location).await.unwrap());
    assert!(files_under(&server.root().join(COLD)).is_empty());
}

#[tokio::test]
async fn read_only_bucket_fails_at_write_after_passing_reach() {
    let server = S3Server::start().await;
    server.create_bucket(COLD);
    server.make_read_only(COLD);
    let store = s3_store(&server);

    let report = probe(&store, COLD, &prefix()).await;
    assert_eq!(
        outcomes(&report),
        expect(["P", "F permission_denied", "S", "S", "S", "S"]),
        "{report:#?}"
    );
    assert_eq!(report.left_behind(), None);
    let failure = report.failure().unwrap();
    assert_eq!(failure.step, ProbeStep::Write);
    assert!(
        failure.reason().unwrap().starts_with("write not allowed"),
        "{failure:?}"
    );
    assert!(files_under(&server.root().join(COLD)).is_empty());
    let err = report.into_result().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("write not allowed"), "{err}");
}

#[tokio::test]
async fn wrong_secret_fails_at_reach_with_permission_denied() {
    let server = S3Server::start().await;
    server.create_bucket(COLD);
    let store = S3Store::new("minio", &server.config_with_wrong_secret()).unwrap();

    let report = probe(&store, COLD, &prefix()).await;
    assert_eq!(
        outcomes(&report),
        expect(["F permission_denied", "S", "S", "S", "S", "S"]),
        "{report:#?}"
    );
    let err = report.into_result().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("credentials refused"), "{shown}");
    assert!(!shown.contains(&server.secret_key), "{shown}");
}

#[tokio::test]
async fn missing_bucket_fails_at_reach_with_bucket_not_found() {
    let server = S3Server::start().await;
    let report = probe(&s3_store(&server), COLD, &prefix()).await;
    assert_eq!(
        outcomes(&report),
        expect(["F bucket_not_found", "S", "S", "S", "S", "S"]),
        "{report:#?}"
    );
    assert!(
        report
            .failure()
            .unwrap()
            .reason()
            .unwrap()
            .starts_with("bucket not found")
    );

    let dir = tempfile::tempdir().unwrap();
    let report = probe(&FsStore::new(dir.path()).unwrap(), COLD, &prefix()).await;
    assert_eq!(
        outcomes(&report),
        expect(["F bucket_not_found", "S", "S", "S", "S", "S"]),
        "{report:#?}"
    );
}

#[tokio::test]
async fn bytes_changed_on_the_way_fail_verify_and_the_object_is_still_removed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(COLD)).unwrap();
    let (store, faults) = FaultyStore::wrap(Arc::new(FsStore::new(dir.path()).unwrap()));
    faults.corrupt_put.store(true, Ordering::SeqCst);

    let report = probe(store.as_ref(), COLD, &prefix()).await;
    assert_eq!(
        outcomes(&report),
        expect(["P", "P", "P", "F integrity", "P", "P"]),
        "{report:#?}"
    );
    assert_eq!(report.left_behind(), None);
    assert!(files_under(&dir.path().join(COLD)).is_empty());
    assert_eq!(
        report.into_result().unwrap_err().kind(),
        ErrorKind::Integrity
    );
}

#[tokio::test]
async fn a_refused_delete_is_reported_with_the_object_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(COLD)).unwrap();
    let (store, faults) = FaultyStore::wrap(Arc::new(FsStore::new(dir.path()).unwrap()));
    faults.fail_delete.store(true, Ordering::SeqCst);

    let report = probe(store.as_ref(), COLD, &prefix()).await;
    assert_eq!(
        outcomes(&report),
        expect(["P", "P", "P", "P", "F transient", "S"]),
        "{report:#?}"
    );
    let left = report.left_behind().cloned().unwrap();
    assert_eq!(left, report.location);
    assert_eq!(files_under(&dir.path().join(COLD)).len(), 1);
    let err = report.into_result().unwrap_err();
    assert!(err.to_string().contains(&left.to_string()), "{err}");
}

#[tokio::test]
async fn a_failed_upload_is_cleaned_up_and_later_steps_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(COLD)).unwrap();
    let (store, faults) = FaultyStore::wrap(Arc::new(FsStore::new(dir.path()).unwrap()));
    faults.fail_put.store(true, Ordering::SeqCst);

    let report = probe(store.as_ref(), COLD, &prefix()).await;
    assert_eq!(
        outcomes(&report),
        expect(["P", "F transient", "S", "S", "S", "S"]),
        "{report:#?}"
    );
    assert_eq!(report.left_behind(), None);
}

// ---------------------------------------------------------------------------
// `coldsweep check` and the start-up check of `coldsweep run`.

/// A SQLite catalog with one hot blob in a folder hot store, and an S3
/// cold store, configured for the binary by environment variables only.
struct Deployment {
    dir: tempfile::TempDir,
    server: S3Server,
}

const HOT_PATH: &str = "jobs/j1/tasks/t1/page-content.html.gz";

impl Deployment {
    async fn new() -> Deployment {
        let deployment = Deployment {
            dir: tempfile::tempdir().unwrap(),
            server: S3Server::start().await,
        };
        deployment.server.create_bucket(COLD);
        let hot = FsStore::new(deployment.hot_root()).unwrap();
        hot.put(
            &Location::new(HOT, ObjectKey::new(HOT_PATH).unwrap()),
            Bytes::from_static(b"\x1f\x8bnot-really-gzip"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
        let catalog = SqliteCatalog::open(&deployment.db()).await.unwrap();
        catalog.migrate().await.unwrap();
        catalog
            .insert_job(&JobRow {
                id: "j1".into(),
                domain_id: 1,
                organisation_id: None,
                status: "completed".into(),
                created_at: chrono::Utc::now(),
                completed_at: None,
            })
            .await
            .unwrap();
        catalog
            .insert_task(&TaskRow {
                id: "t1".into(),
                job_id: "j1".into(),
                html_storage_bucket: Some(HOT.into()),
                html_storage_path: Some(HOT_PATH.into()),
                ..TaskRow::default()
            })
            .await
            .unwrap();
        catalog.pool().close().await;
        deployment
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("catalog.db")
    }

    fn hot_root(&self) -> PathBuf {
        self.dir.path().join("hot")
    }

    fn cold_files(&self) -> Vec<PathBuf> {
        files_under(&self.server.root().join(COLD))
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = coldsweep();
        cmd.args(args)
            .env("DATABASE_URL", format!("sqlite:{}", self.db().display()))
            .env("ARCHIVE_PROVIDER", "minio")
            .env("ARCHIVE_BUCKET", COLD)
            .env("ARCHIVE_ENDPOINT", &self.server.endpoint)
            .env("ARCHIVE_REGION", "us-east-1")
            .env("ARCHIVE_ACCESS_KEY_ID", &self.server.access_key)
            .env("ARCHIVE_SECRET_ACCESS_KEY", &self.server.secret_key)
            .env("HOT_STORE", "fs")
            .env("HOT_FS_ROOT", self.hot_root());
        cmd
    }

    /// Run `check` with extra variables.
    fn check(&self, env: &[(&str, &str)]) -> Ran {
        let mut cmd = self.cmd(&["check"]);
        for (name, value) in env {
            cmd.env(name, value);
        }
        let ran = run(&mut cmd);
        self.assert_no_secret(&ran);
        ran
    }

    fn assert_no_secret(&self, ran: &Ran) {
        for line in ran.stdout.lines().chain(ran.stderr.lines()) {
            assert!(
                !line.contains(&self.server.secret_key),
                "secret in output: {line}"
            );
        }
    }
}

/// The line of `stdout` that names `what` (a check's title).
fn line<'a>(ran: &'a Ran, what: &str) -> &'a str {
    ran.stdout
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line with {what:?}\n{}", ran.show()))
}

fn assert_line(ran: &Ran, what: &str, starts: &str, contains: &str) {
    let line = line(ran, what).trim_start();
    assert!(
        line.starts_with(starts) && line.contains(contains),
        "expected {starts:?}…{contains:?} in the {what:?} line, got {line:?}\n{}",
        ran.show()
    );
}

#[tokio::test]
async fn check_passes_a_good_deployment_and_changes_nothing() {
    let d = Deployment::new().await;
    let ran = d.check(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    for (what, contains) in [
        ("connected", "sqlite"),
        ("migrations applied", ""),
        ("tasks readable", "hot blobs in 1 bucket task-html"),
        ("Cold store minio:cold-archive", ".coldsweep-probe/"),
        ("bucket reachable with these credentials", ""),
        ("write allowed", "bytes of gzip"),
        ("read allowed", "bytes"),
        ("read back identical", "the ETag is their MD5"),
        ("delete allowed", ""),
        ("probe object gone after delete", ""),
        ("task-html: object the catalog references found", HOT_PATH),
        (
            "task-html: delete allowed (tried on a name that does not exist)",
            "task-html/.coldsweep-probe/absent-",
        ),
    ] {
        let starts = if what.starts_with("Cold store") {
            "Cold store"
        } else {
            "✓"
        };
        assert_line(&ran, what, starts, contains);
    }
    assert_line(&ran, "upload checksum", "·", "Content-MD5");
    assert_line(&ran, "task-html: bucket reachable", "✓", "");
    assert!(!ran.stdout.contains('✗'), "{}", ran.show());
    assert!(
        ran.stdout.contains("All 12 checks passed."),
        "{}",
        ran.show()
    );
    assert!(d.cold_files().is_empty(), "{:?}", d.cold_files());
    assert_eq!(files_under(&d.hot_root()).len(), 1);
}

#[tokio::test]
async fn check_names_refused_credentials() {
    let d = Deployment::new().await;
    let wrong = format!("wrong-{}", d.server.secret_key);
    let ran = d.check(&[("ARCHIVE_SECRET_ACCESS_KEY", &wrong)]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert_line(
        &ran,
        "✗ bucket reachable",
        "✗",
        "credentials refused: check the access key id and secret",
    );
    assert_line(&ran, "write allowed", "-", "not tried");
    // The catalog and hot store are still checked and pass.
    assert_line(&ran, "migrations applied", "✓", "");
    assert_line(
        &ran,
        "task-html: object the catalog references found",
        "✓",
        "",
    );
    assert!(
        ran.stdout.contains("1 of 7 checks failed."),
        "{}",
        ran.show()
    );
    assert!(!ran.stdout.contains(&wrong), "{}", ran.show());
}

#[tokio::test]
async fn check_names_a_missing_bucket() {
    let d = Deployment::new().await;
    let ran = d.check(&[("ARCHIVE_BUCKET", "no-such-bucket")]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert_line(
        &ran,
        "✗ bucket reachable",
        "✗",
        "bucket not found: check the bucket name and the endpoint",
    );
    assert!(
        ran.stdout.contains("minio:no-such-bucket"),
        "{}",
        ran.show()
    );
}

#[tokio::test]
async fn check_names_a_read_only_bucket() {
    let d = Deployment::new().await;
    d.server.make_read_only(COLD);
    let ran = d.check(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert_line(&ran, "bucket reachable with these credentials", "✓", "");
    assert_line(
        &ran,
        "write allowed",
        "✗",
        "write not allowed: these credentials reach the bucket but may not upload to it,",
    );
    for skipped in ["read allowed", "read back identical", "delete allowed"] {
        assert_line(&ran, skipped, "-", "not tried, nothing was written");
    }
    assert!(
        ran.stdout.contains("1 of 8 checks failed."),
        "{}",
        ran.show()
    );
    assert!(d.cold_files().is_empty());
}

#[tokio::test]
async fn check_finds_what_is_wrong_with_the_catalog_and_the_hot_store() {
    let d = Deployment::new().await;

    // The hot store has no object where the catalog says one is.
    std::fs::remove_file(d.hot_root().join(HOT).join(HOT_PATH)).unwrap();
    let ran = d.check(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert_line(&ran, "task-html: bucket reachable", "✓", "");
    assert_line(
        &ran,
        "task-html: object the catalog references found",
        "✗",
        "the catalog references an object this store does not have",
    );
    assert_line(&ran, "probe object gone after delete", "✓", "");

    // A mistyped hot root is a bad setting, and is not created.
    let elsewhere = d.dir.path().join("elsewhere");
    let ran = d.check(&[("HOT_FS_ROOT", elsewhere.to_str().unwrap())]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("HOT_FS_ROOT"), "{}", ran.show());
    assert!(!elsewhere.exists(), "check created the hot root");

    // A hot root that exists but holds no such bucket.
    std::fs::create_dir(&elsewhere).unwrap();
    let ran = d.check(&[("HOT_FS_ROOT", elsewhere.to_str().unwrap())]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert_line(&ran, "task-html: bucket reachable", "✗", "bucket not found");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // An unmigrated catalog: the stores are still checked.
    let empty = d.dir.path().join("empty.db");
    let ran = d.check(&[("DATABASE_URL", &format!("sqlite:{}", empty.display()))]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert_line(&ran, "migrations applied", "✗", "run `coldsweep migrate`");
    assert_line(&ran, "tasks readable", "-", "not tried");
    assert_line(&ran, "probe object gone after delete", "✓", "");
}

#[tokio::test]
async fn check_with_bad_settings_exits_2_naming_the_variable() {
    let d = Deployment::new().await;
    let ran = d.check(&[("ARCHIVE_PROBE_PREFIX", "jobs")]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("ARCHIVE_PROBE_PREFIX"),
        "{}",
        ran.show()
    );
    assert!(ran.stdout.is_empty(), "{}", ran.show());

    let ran = run(d.cmd(&["check"]).env_remove("DATABASE_URL"));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("DATABASE_URL"), "{}", ran.show());
    assert!(ran.stdout.is_empty(), "{}", ran.show());

    let ran = d.check(&[("ARCHIVE_PROVIDER", "")]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("archiving is disabled"),
        "{}",
        ran.show()
    );
}

#[tokio::test]
async fn probe_prefix_is_configurable_and_follows_the_path_prefix() {
    let d = Deployment::new().await;
    let ran = d.check(&[
        ("ARCHIVE_PATH_PREFIX", "preview-7"),
        ("ARCHIVE_PROBE_PREFIX", "ops/probe"),
    ]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_line(&ran, "Cold store", "Cold store", "preview-7/ops/probe/");
}

#[tokio::test]
async fn run_refuses_to_start_when_the_cold_bucket_is_read_only() {
    let d = Deployment::new().await;
    d.server.make_read_only(COLD);
    let ran = run(d.cmd(&["run"]).env("ARCHIVE_RETENTION_JOBS", "0"));
    d.assert_no_secret(&ran);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    for expected in [
        "cold bucket minio:cold-archive failed the start-up check",
        "write not allowed",
        "coldsweep check",
    ] {
        assert!(
            ran.stderr.contains(expected),
            "missing {expected:?}\n{}",
            ran.show()
        );
    }
    assert!(!ran.stderr.contains("sweep done"), "{}", ran.show());
    // Nothing moved: the hot blob and its row are as they were.
    assert_eq!(files_under(&d.hot_root()).len(), 1);
    let catalog = SqliteCatalog::open(&d.db()).await.unwrap();
    let task = catalog.task("t1").await.unwrap().unwrap();
    assert_eq!(task.html_storage_path.as_deref(), Some(HOT_PATH));
    assert_eq!(task.html_archive_key, None);

    // The same deployment with write access starts and reports the check.
    let ok = Deployment::new().await;
    let ran = run(&mut ok.cmd(&["sweep", "--once"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stderr.contains("cold bucket passed the start-up check"),
        "{}",
        ran.show()
    );
}

// ---------------------------------------------------------------------------
// The hot store's read-only probe, and `check` with an S3 or Supabase hot store.

const READ_ONLY_STEPS: [ProbeStep; 3] =
    [ProbeStep::Reach, ProbeStep::Find, ProbeStep::DeleteAbsent];

fn expect_read_only(outcomes: [&str; 3]) -> Vec<(ProbeStep, String)> {
    READ_ONLY_STEPS
        .into_iter()
        .zip(outcomes.map(str::to_owned))
        .collect()
}

fn hot_location() -> Location {
    Location::new(HOT, ObjectKey::new(HOT_PATH).unwrap())
}

#[tokio::test]
async fn read_only_probe_deletes_a_name_that_cannot_exist_and_nothing_else() {
    // Folder.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(HOT)).unwrap();
    let fs = FsStore::open_existing(dir.path()).unwrap();
    std::fs::create_dir_all(dir.path().join(HOT).join("jobs/j1/tasks/t1")).unwrap();
    std::fs::write(dir.path().join(HOT).join(HOT_PATH), b"kept").unwrap();
    let report = probe_read_only(&fs, &hot_location(), &prefix()).await;
    assert_eq!(outcomes(&report), expect_read_only(["P"; 3]), "{report:#?}");
    assert_eq!(files_under(&dir.path().join(HOT)).len(), 1);

    // S3: writable, then read-only (reads allowed, deletes refused).
    let server = S3Server::start().await;
    server.create_bucket(HOT);
    let s3 = s3_store(&server);
    s3.put(
        &hot_location(),
        Bytes::from_static(b"kept"),
        &PutOptions::default(),
    )
    .await
    .unwrap();
    let report = probe_read_only(&s3, &hot_location(), &prefix()).await;
    assert_eq!(outcomes(&report), expect_read_only(["P"; 3]), "{report:#?}");
    server.make_read_only(HOT);
    let report = probe_read_only(&s3, &hot_location(), &prefix()).await;
    assert_eq!(
        outcomes(&report),
        expect_read_only(["P", "P", "F permission_denied"]),
        "{report:#?}"
    );
    let failure = report.failure().unwrap();
    assert!(
        failure.reason().unwrap().starts_with("delete not allowed"),
        "{failure:?}"
    );
    assert_eq!(files_under(&server.root().join(HOT)).len(), 1);

    // Supabase: the service key passes; once demoted, the bucket is hidden.
    let supabase = SupabaseServer::start().await;
    supabase.create_bucket(HOT);
    supabase.seed(HOT, HOT_PATH, b"kept");
    let store = SupabaseStore::new(&supabase.config()).unwrap();
    supabase.clear_requests();
    let report = probe_read_only(&store, &hot_location(), &prefix()).await;
    assert_eq!(outcomes(&report), expect_read_only(["P"; 3]), "{report:#?}");
    let deletes: Vec<_> = supabase
        .requests()
        .into_iter()
        .filter(|r| r.method == hyper::Method::DELETE)
        .map(|r| r.path)
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(
        deletes[0].starts_with("/storage/v1/object/task-html/.coldsweep-probe/absent-"),
        "{deletes:?}"
    );
    supabase.demote_service_key();
    let report = probe_read_only(&store, &hot_location(), &prefix()).await;
    assert_eq!(
        outcomes(&report),
        expect_read_only(["F bucket_not_found", "S", "S"]),
        "{report:#?}"
    );
    assert_eq!(supabase.object_count(HOT), 1);
}

/// `check` with `HOT_STORE=supabase` against `server`, whose bucket holds
/// the deployment's hot blob.
fn supabase_hot(server: &SupabaseServer) -> Vec<(&'static str, String)> {
    server.create_bucket(HOT);
    server.seed(HOT, HOT_PATH, b"\x1f\x8bnot-really-gzip");
    vec![
        ("HOT_STORE", "supabase".into()),
        ("SUPABASE_URL", server.url.clone()),
        ("SUPABASE_SERVICE_ROLE_KEY", server.service_role_key.clone()),
        ("SUPABASE_PUBLISHABLE_KEY", server.publishable_key.clone()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn check_names_the_supabase_key_when_it_cannot_see_the_bucket() {
    let d = Deployment::new().await;
    let server = SupabaseServer::start().await;
    let env = supabase_hot(&server);
    let ran = d.check(&borrowed(&env));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_line(
        &ran,
        "Hot store supabase",
        "Hot store",
        "nothing is written",
    );
    assert_line(&ran, "task-html: delete allowed", "✓", "absent-");

    server.demote_service_key();
    let ran = d.check(&borrowed(&env));
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert_line(
        &ran,
        "task-html: bucket reachable",
        "✗",
        "check the bucket name, and that SUPABASE_SERVICE_ROLE_KEY holds the service_role key",
    );
    assert_line(
        &ran,
        "task-html: object the catalog references found",
        "-",
        "not tried",
    );
    assert_line(&ran, "task-html: delete allowed", "-", "not tried");
    assert!(!ran.stdout.contains("access key id"), "{}", ran.show());
    for key in [&server.service_role_key, &server.publishable_key] {
        assert!(!ran.stdout.contains(key.as_str()) && !ran.stderr.contains(key.as_str()));
    }
    assert_eq!(server.object_count(HOT), 1, "nothing was deleted");
}

#[tokio::test]
async fn check_names_the_hot_s3_keys_when_they_may_not_delete() {
    let d = Deployment::new().await;
    d.server.create_bucket(HOT);
    s3_store(&d.server)
        .put(
            &hot_location(),
            Bytes::from_static(b"kept"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let hot = |secret: &str| {
        vec![
            ("HOT_STORE", "s3".to_owned()),
            ("HOT_S3_ENDPOINT", d.server.endpoint.clone()),
            ("HOT_S3_ACCESS_KEY_ID", d.server.access_key.clone()),
            ("HOT_S3_SECRET_ACCESS_KEY", secret.to_owned()),
        ]
    };
    let good = hot(&d.server.secret_key);
    let ran = d.check(&borrowed(&good));
    assert_eq!(ran.code, Some(0), "{}", ran.show());

    d.server.make_read_only(HOT);
    let ran = d.check(&borrowed(&good));
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert_line(&ran, "task-html: bucket reachable", "✓", "");
    assert_line(
        &ran,
        "task-html: object the catalog references found",
        "✓",
        HOT_PATH,
    );
    assert_line(
        &ran,
        "task-html: delete allowed",
        "✗",
        "delete not allowed: check HOT_S3_ACCESS_KEY_ID and HOT_S3_SECRET_ACCESS_KEY",
    );
    assert!(
        ran.stdout.contains("1 of 12 checks failed."),
        "{}",
        ran.show()
    );

    let wrong = format!("wrong-{}", d.server.secret_key);
    let ran = d.check(&borrowed(&hot(&wrong)));
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert_line(
        &ran,
        "task-html: bucket reachable",
        "✗",
        "credentials refused: check HOT_S3_ACCESS_KEY_ID and HOT_S3_SECRET_ACCESS_KEY",
    );
    assert!(!ran.stdout.contains(&wrong), "{}", ran.show());
    assert_eq!(files_under(&d.server.root().join(HOT)).len(), 1);
}
