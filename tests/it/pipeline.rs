//! The per-blob pipeline and the sweep, end to end, against the real
//! catalogs (Postgres, SQLite) and stores (S3 protocol server, folders).

use std::any::Any;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use coldsweep::archiver::{CatalogJobMarker, ProblemKind};
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{BlobState, Fence, JobRow, Lease, PgCatalog, SqliteCatalog, TaskRow};
use coldsweep::config::{S3Config, VerifyMode};
use coldsweep::store::{self, FsStore, S3Store, exists};
use coldsweep::{
    ArchiveSource, Archiver, Config, ErrorKind, KeyPrefix, Location, ObjectKey, Provider, Store,
    TaskHtmlSource, task_html_object_path,
};
use sha2::{Digest, Sha256};

use crate::faults::{FaultyStore, Op};
use crate::harness;

pub(crate) const HOT_BUCKET: &str = "task-html";
pub(crate) const COLD_BUCKET: &str = "cold-archive";

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    /// Production shape: Postgres catalog, S3-protocol hot and cold stores.
    PostgresS3,
    /// Embedded default: SQLite catalog, folder stores.
    SqliteFs,
}

pub(crate) const BACKENDS: [Backend; 2] = [Backend::PostgresS3, Backend::SqliteFs];

pub(crate) struct Rig {
    pub(crate) backend: Backend,
    pub(crate) catalog: Arc<dyn Fixtures>,
    pub(crate) hot: Arc<dyn Store>,
    pub(crate) cold: Arc<dyn Store>,
    _keep: Vec<Box<dyn Any + Send + Sync>>,
}

impl Rig {
    pub(crate) async fn new(backend: Backend) -> Rig {
        match backend {
            Backend::PostgresS3 => {
                let db = harness::pg::fresh_database().await;
                let catalog: Arc<dyn Fixtures> =
                    Arc::new(PgCatalog::connect(db.url()).await.expect("connect"));
                let server = harness::s3::S3Server::start().await;
                server.create_bucket(HOT_BUCKET);
                server.create_bucket(COLD_BUCKET);
                let config: S3Config = server.config();
                let hot: Arc<dyn Store> = Arc::new(S3Store::new("minio", &config).unwrap());
                let cold: Arc<dyn Store> = Arc::new(S3Store::new("minio", &config).unwrap());
                catalog.migrate().await.expect("migrate");
                Rig {
                    backend,
                    catalog,
                    hot,
                    cold,
                    _keep: vec![Box::new(db), Box::new(server)],
                }
            }
            Backend::SqliteFs => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite:{}", dir.path().join("catalog.db").display());
                let catalog: Arc<dyn Fixtures> =
                    Arc::new(SqliteCatalog::connect(&url).await.expect("connect"));
                // Both buckets exist, as a deployment's do (the start-up
                // probe's upload creates the cold one).
                std::fs::create_dir_all(dir.path().join("hot").join(HOT_BUCKET)).unwrap();
                std::fs::create_dir_all(dir.path().join("cold").join(COLD_BUCKET)).unwrap();
                let hot: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("hot")).unwrap());
                let cold: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("cold")).unwrap());
                catalog.migrate().await.expect("migrate");
                Rig {
                    backend,
                    catalog,
                    hot,
                    cold,
                    _keep: vec![Box::new(dir)],
                }
            }
        }
    }

    pub(crate) fn config(&self, retention_jobs: u32) -> Config {
        let mut config = Config::default();
        config.provider = match self.backend {
            Backend::PostgresS3 => Provider::Minio,
            Backend::SqliteFs => Provider::Fs,
        };
        config.bucket = COLD_BUCKET.to_owned();
        config.retention_jobs = retention_jobs;
        config.batch_size = 7;
        config.concurrency = 3;
        config.interval = Duration::from_secs(60);
        // Short enough that a blob failing for good (a transient fault
        // retried until the limit) does not stall a test; long enough for
        // a healthy move on a busy machine.
        config.blob_timeout = Duration::from_secs(5);
        config
    }

    /// A rig over a catalog and stores made elsewhere; `keep` holds what
    /// keeps them alive.
    pub(crate) fn from_parts(
        backend: Backend,
        catalog: Arc<dyn Fixtures>,
        hot: Arc<dyn Store>,
        cold: Arc<dyn Store>,
        keep: Vec<Box<dyn Any + Send + Sync>>,
    ) -> Rig {
        Rig {
            backend,
            catalog,
            hot,
            cold,
            _keep: keep,
        }
    }

    /// An archiver over this rig's catalog with the given stores.
    pub(crate) fn archiver_with(
        &self,
        hot: Arc<dyn Store>,
        cold: Arc<dyn Store>,
        config: Config,
    ) -> Archiver {
        let source: Arc<dyn ArchiveSource> = Arc::new(TaskHtmlSource::new(
            self.catalog.clone(),
            config.retention_jobs,
        ));
        Archiver::new(
            cold,
            hot,
            config,
            Arc::new(CatalogJobMarker(self.catalog.clone())),
            vec![source],
        )
    }

    pub(crate) fn archiver(&self, retention_jobs: u32) -> Archiver {
        self.archiver_with(
            self.hot.clone(),
            self.cold.clone(),
            self.config(retention_jobs),
        )
    }

    /// Two completed jobs of one domain: `old`, which moves with retention 1,
    /// and `new`, which that retention keeps hot.
    pub(crate) async fn old_and_new_jobs(&self) {
        self.job("old", 1, "completed", 1).await;
        self.job("new", 1, "completed", 2).await;
    }

    pub(crate) async fn job(&self, id: &str, domain: i32, status: &str, minute: u32) {
        self.catalog
            .insert_job(&JobRow {
                id: id.to_owned(),
                domain_id: domain,
                organisation_id: Some(uuid::Uuid::from_u128(7)),
                status: status.to_owned(),
                created_at: at(minute),
                completed_at: (status != "running").then(|| at(minute + 1)),
            })
            .await
            .unwrap();
    }

    /// A task whose gzip'd HTML sits in the hot store, catalog row consistent.
    pub(crate) async fn task(&self, job: &str, task: &str) -> Bytes {
        let html = format!("<html><body>page {task} of {job}</body></html>").repeat(20);
        let stored = gzip(html.as_bytes());
        self.insert_task(job, task, &stored, Some(sha256_hex(html.as_bytes())))
            .await;
        self.hot
            .put(
                &hot_location(job, task),
                stored.clone(),
                &Default::default(),
            )
            .await
            .unwrap();
        stored
    }

    /// The catalog row only.
    pub(crate) async fn insert_task(
        &self,
        job: &str,
        task: &str,
        stored: &[u8],
        sha: Option<String>,
    ) {
        self.catalog
            .insert_task(&TaskRow {
                id: task.to_owned(),
                job_id: job.to_owned(),
                html_storage_bucket: Some(HOT_BUCKET.to_owned()),
                html_storage_path: Some(task_html_object_path(job, task)),
                html_content_type: Some("text/html; charset=utf-8".to_owned()),
                html_content_encoding: Some("gzip".to_owned()),
                html_compressed_size_bytes: Some(stored.len() as i64),
                html_sha256: sha,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    /// The SQLite/folder rig's temp folder (catalog, `hot/`, `cold/`).
    pub(crate) fn temp_dir(&self) -> Option<&std::path::Path> {
        self._keep
            .iter()
            .find_map(|k| k.downcast_ref::<tempfile::TempDir>())
            .map(|d| d.path())
    }

    /// The Postgres/S3 rig's S3 server (both stores' buckets are its folders).
    pub(crate) fn s3_server(&self) -> Option<&harness::s3::S3Server> {
        self._keep
            .iter()
            .find_map(|k| k.downcast_ref::<harness::s3::S3Server>())
    }

    /// The `coldsweep` binary configured, by environment variables only,
    /// for this Postgres/S3 rig: its catalog, its S3 server as the hot and
    /// the cold store.
    pub(crate) fn command(&self, args: &[&str]) -> std::process::Command {
        let server = self.s3_server().expect("a Postgres/S3 rig");
        let mut cmd = crate::cli::coldsweep();
        // A rig on a database of its own (not a test database) sets it itself.
        if let Some(db) = self
            ._keep
            .iter()
            .find_map(|k| k.downcast_ref::<harness::pg::PgTestDb>())
        {
            cmd.env("DATABASE_URL", db.url());
        }
        cmd.args(args)
            .env("ARCHIVE_PROVIDER", "minio")
            .env("ARCHIVE_BUCKET", COLD_BUCKET)
            .env("ARCHIVE_ENDPOINT", &server.endpoint)
            .env("ARCHIVE_ACCESS_KEY_ID", &server.access_key)
            .env("ARCHIVE_SECRET_ACCESS_KEY", &server.secret_key)
            .env("HOT_STORE", "s3")
            .env("HOT_S3_ENDPOINT", &server.endpoint)
            .env("HOT_S3_ACCESS_KEY_ID", &server.access_key)
            .env("HOT_S3_SECRET_ACCESS_KEY", &server.secret_key);
        cmd
    }

    pub(crate) async fn row(&self, task: &str) -> TaskRow {
        self.catalog.task(task).await.unwrap().expect("task row")
    }

    /// Every row points at a copy that exists with the right bytes: no
    /// dangling pointer, whatever happened before.
    pub(crate) async fn audit(&self, expected: &[(&str, &str, Bytes)]) {
        for (job, task, bytes) in expected {
            let row = self.row(task).await;
            match row.state() {
                BlobState::Hot => {
                    let got = self.hot.get(&hot_location(job, task)).await;
                    assert_eq!(
                        got.ok().as_ref(),
                        Some(bytes),
                        "{task}: hot row without hot bytes"
                    );
                    if let Some(key) = &row.html_archive_key {
                        let cold = cold_location_of(&row, key);
                        assert_eq!(
                            self.cold.get(&cold).await.ok().as_ref(),
                            Some(bytes),
                            "{task}: switched row without cold copy"
                        );
                    }
                }
                BlobState::Archived => {
                    let cold = cold_location_of(&row, row.html_archive_key.as_ref().unwrap());
                    assert_eq!(
                        self.cold.get(&cold).await.ok().as_ref(),
                        Some(bytes),
                        "{task}: archived row without cold copy"
                    );
                    assert!(
                        !exists(self.hot.as_ref(), &hot_location(job, task))
                            .await
                            .unwrap(),
                        "{task}: archived but hot copy left behind"
                    );
                }
                other => panic!("{task}: unexpected state {other:?}"),
            }
        }
    }
}

fn cold_location_of(row: &TaskRow, key: &str) -> Location {
    Location::new(
        row.html_archive_bucket.clone().unwrap(),
        ObjectKey::new(key.to_owned()).unwrap(),
    )
}

pub(crate) fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minute.into())
}

pub(crate) fn gzip(data: &[u8]) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    Bytes::from(enc.finish().unwrap())
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) fn hot_location(job: &str, task: &str) -> Location {
    Location::new(
        HOT_BUCKET,
        ObjectKey::new(task_html_object_path(job, task)).unwrap(),
    )
}

pub(crate) fn cold_location(job: &str, task: &str) -> Location {
    Location::new(
        COLD_BUCKET,
        coldsweep::cold_key(&KeyPrefix::none(), job, task).unwrap(),
    )
}

/// Four completed jobs in one domain (j1 oldest … j4 newest) and an old
/// running job; three tasks each. With retention 2, j1 and j2 move.
async fn standard_set(rig: &Rig) -> Vec<(&'static str, &'static str, Bytes)> {
    let mut all = Vec::new();
    rig.job("j0", 1, "running", 0).await;
    for (job, minute) in [("j1", 10), ("j2", 20), ("j3", 30), ("j4", 40)] {
        rig.job(job, 1, "completed", minute).await;
    }
    for job in ["j0", "j1", "j2", "j3", "j4"] {
        for n in 1..=3 {
            let task: &'static str = Box::leak(format!("{job}-t{n}").into_boxed_str());
            let bytes = rig.task(job, task).await;
            all.push((job, task, bytes));
        }
    }
    all
}

#[tokio::test]
async fn sweep_moves_verified_copies_and_a_rerun_changes_nothing() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let all = standard_set(&rig).await;
        let archiver = rig.archiver(2);

        let report = archiver.sweep().await;
        assert!(report.is_clean(), "{backend:?}: {report:?}");
        assert_eq!(
            report.archived, 6,
            "{backend:?}: j1 and j2 have 3 tasks each"
        );
        // Catches a job marker that only runs at the start of the next sweep.
        assert_eq!(
            report.jobs_archived, 2,
            "{backend:?}: the sweep that empties j1 and j2 marks them"
        );

        for (job, task, bytes) in &all {
            let row = rig.row(task).await;
            if ["j1", "j2"].contains(job) {
                assert_eq!(row.state(), BlobState::Archived, "{task}");
                assert_eq!(
                    row.html_archive_provider.as_deref(),
                    Some(rig.cold.provider())
                );
                assert_eq!(row.html_archive_bucket.as_deref(), Some(COLD_BUCKET));
                assert_eq!(
                    row.html_archive_key.as_deref(),
                    Some(cold_location(job, task).key.as_str())
                );
                assert!(row.html_archived_at.is_some());
                assert_eq!(row.html_storage_path, None);
                let cold = rig.cold.get(&cold_location(job, task)).await.unwrap();
                assert_eq!(&cold, bytes, "{task}: cold bytes differ");
                let meta = rig.cold.head(&cold_location(job, task)).await.unwrap();
                if !meta.metadata.is_empty() {
                    assert_eq!(
                        meta.metadata.get(store::meta::TASK_ID).map(String::as_str),
                        Some(*task)
                    );
                    assert_eq!(
                        meta.metadata.get(store::meta::JOB_ID).map(String::as_str),
                        Some(*job)
                    );
                }
                assert!(
                    !exists(rig.hot.as_ref(), &hot_location(job, task))
                        .await
                        .unwrap()
                );
            } else {
                // Retained (j3, j4) or not terminal (j0): untouched.
                assert_eq!(row.state(), BlobState::Hot, "{task}");
                assert_eq!(row.html_archive_key, None);
                assert!(
                    !exists(rig.cold.as_ref(), &cold_location(job, task))
                        .await
                        .unwrap()
                );
            }
        }
        rig.audit(&all).await;

        let again = archiver.sweep().await;
        assert!(again.is_clean(), "{again:?}");
        assert_eq!(
            (again.archived, again.completed),
            (0, 0),
            "{backend:?}: rerun moved something"
        );
        assert_eq!(again.jobs_archived, 0);
        let jobs = rig.catalog.job_retention().await.unwrap();
        let status_of = |id: &str| {
            jobs.iter()
                .find(|j| j.job.id == id)
                .unwrap()
                .job
                .status
                .clone()
        };
        assert_eq!(status_of("j1"), "archived");
        assert_eq!(status_of("j3"), "completed");
        assert_eq!(status_of("j0"), "running");
        rig.audit(&all).await;
    }
}

#[tokio::test]
async fn digest_mismatch_quarantines_and_leaves_the_hot_copy() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let stored = gzip(b"<html>real page</html>");
        rig.insert_task(
            "old",
            "bad",
            &stored,
            Some(sha256_hex(b"<html>what the crawler saw</html>")),
        )
        .await;
        rig.hot
            .put(
                &hot_location("old", "bad"),
                stored.clone(),
                &Default::default(),
            )
            .await
            .unwrap();
        let good = rig.task("old", "good").await;

        let report = rig.archiver(1).sweep().await;
        assert_eq!(
            (report.archived, report.quarantined),
            (1, 1),
            "{backend:?}: {report:?}"
        );
        let problem = &report.problems[0];
        assert_eq!(
            (problem.task_id.as_deref(), problem.what),
            (Some("bad"), ProblemKind::Quarantined)
        );

        let row = rig.row("bad").await;
        assert_eq!(row.state(), BlobState::Quarantined);
        assert!(row.html_archive_error.unwrap().contains("digest"));
        assert_eq!(
            rig.hot.get(&hot_location("old", "bad")).await.unwrap(),
            stored
        );
        assert!(
            !exists(rig.cold.as_ref(), &cold_location("old", "bad"))
                .await
                .unwrap()
        );
        rig.audit(&[("old", "good", good)]).await;

        // Quarantined rows are not picked again, and keep their job from looking archived.
        let again = rig.archiver(1).sweep().await;
        assert_eq!(
            (again.quarantined, again.archived, again.jobs_archived),
            (0, 0, 0),
            "{again:?}"
        );
        assert_eq!(rig.catalog.status(Utc::now()).await.unwrap().quarantined, 1);
    }
}

#[tokio::test]
async fn hot_gone_with_a_verified_cold_copy_finishes_the_bookkeeping() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        // Crash after the hot delete, before clearing the hot reference.
        let bytes = rig.task("old", "switched").await;
        rig.cold
            .put(
                &cold_location("old", "switched"),
                bytes.clone(),
                &Default::default(),
            )
            .await
            .unwrap();
        // Switched by a worker that then died (its claim handed back here
        // rather than left to expire).
        let now = Utc::now();
        let lease = Lease {
            owner: "crashed".to_owned(),
            free_before: now,
            until: now + chrono::Duration::minutes(1),
        };
        let claimed = rig.catalog.claim_task_html(1, 100, &lease).await.unwrap();
        rig.catalog
            .record_archived(
                "switched",
                Fence {
                    owner: "crashed",
                    now,
                },
                rig.cold.provider(),
                COLD_BUCKET,
                cold_location("old", "switched").key.as_str(),
            )
            .await
            .unwrap();
        let ids: Vec<String> = claimed.iter().map(|c| c.task_id.clone()).collect();
        rig.catalog.hand_back(&ids, "crashed").await.unwrap();
        rig.hot
            .delete(&hot_location("old", "switched"))
            .await
            .unwrap();
        // Crash after the upload, before the switch, then the hot copy vanished.
        let other = rig.task("old", "uploaded").await;
        rig.cold
            .put(
                &cold_location("old", "uploaded"),
                other.clone(),
                &Default::default(),
            )
            .await
            .unwrap();
        rig.hot
            .delete(&hot_location("old", "uploaded"))
            .await
            .unwrap();

        let report = rig.archiver(1).sweep().await;
        assert!(report.is_clean(), "{backend:?}: {report:?}");
        assert_eq!((report.completed, report.archived), (2, 0));
        rig.audit(&[("old", "switched", bytes), ("old", "uploaded", other)])
            .await;
        assert_eq!(rig.row("uploaded").await.state(), BlobState::Archived);
    }
}

/// Catches a verdict taken on one answer: a blob in neither store is first
/// only suspected (`missing`), looked at again no sooner than
/// `lost_after`, and recorded `lost` by that later sweep; reported loudly,
/// never re-swept, and the job is never marked archived.
#[tokio::test]
async fn missing_from_both_stores_is_lost_only_on_a_later_look() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        rig.insert_task("old", "ghost", b"never stored", None).await;
        // Whole microseconds: what Postgres keeps.
        let start = Utc::now().trunc_subsecs(6);
        let sweep_at = |offset: chrono::Duration| {
            let config = rig.config(1);
            rig.archiver_with(rig.hot.clone(), rig.cold.clone(), config)
                .with_clock(Arc::new(move || start + offset))
        };
        let lost_after = chrono::Duration::from_std(rig.config(1).lost_after).unwrap();

        let first = sweep_at(chrono::Duration::zero()).sweep().await;
        assert_eq!(
            (first.missing, first.lost),
            (1, 0),
            "{backend:?}: {first:?}"
        );
        assert!(!first.is_clean());
        let row = rig.row("ghost").await;
        assert_eq!(row.state(), BlobState::Missing);
        assert_eq!(row.html_missing_since, Some(start));
        assert!(row.html_archive_error.is_some());

        // Too soon: the suspicion waits for its time.
        let early = sweep_at(lost_after / 2).sweep().await;
        assert_eq!(
            (early.missing, early.lost),
            (0, 0),
            "{backend:?}: {early:?}"
        );
        assert_eq!(rig.row("ghost").await.state(), BlobState::Missing);

        let later = sweep_at(lost_after + chrono::Duration::minutes(1))
            .sweep()
            .await;
        assert_eq!(
            (later.missing, later.lost),
            (0, 1),
            "{backend:?}: {later:?}"
        );
        let row = rig.row("ghost").await;
        assert_eq!(row.state(), BlobState::Lost);
        assert_eq!(row.html_missing_since, Some(start), "first sighting kept");
        // Lost is not archived: no cold pointer, and the job is not marked archived.
        assert_eq!(row.html_archive_key, None);
        let status = rig.catalog.status(Utc::now()).await.unwrap();
        assert_eq!(
            (
                status.lost,
                status.missing,
                status.archived,
                status.archived_jobs
            ),
            (1, 0, 0, 0)
        );
        let again = sweep_at(lost_after * 3).sweep().await;
        assert_eq!(
            (again.lost, again.missing, again.jobs_archived),
            (0, 0, 0),
            "lost rows are reported once, not re-swept"
        );
    }
}

/// Catches a suspicion that outlives the blob's return: a blob seen
/// missing once and found again on the next look is moved as usual and
/// loses its `missing` state.
#[tokio::test]
async fn a_missing_blob_that_comes_back_is_archived() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let bytes = rig.task("old", "back").await;
        rig.hot.delete(&hot_location("old", "back")).await.unwrap();
        let start = Utc::now();
        let first = rig
            .archiver(1)
            .with_clock(Arc::new(move || start))
            .sweep()
            .await;
        assert_eq!(first.missing, 1, "{backend:?}: {first:?}");

        rig.hot
            .put(
                &hot_location("old", "back"),
                bytes.clone(),
                &Default::default(),
            )
            .await
            .unwrap();
        let later = start + chrono::Duration::from_std(rig.config(1).lost_after).unwrap() * 2;
        let second = rig
            .archiver(1)
            .with_clock(Arc::new(move || later))
            .sweep()
            .await;
        assert!(second.is_clean(), "{backend:?}: {second:?}");
        assert_eq!(second.archived, 1);
        let row = rig.row("back").await;
        assert_eq!(row.state(), BlobState::Archived);
        assert_eq!(row.html_missing_since, None);
        rig.audit(&[("old", "back", bytes)]).await;
    }
}

#[tokio::test]
async fn failed_or_corrupt_cold_put_never_touches_the_hot_copy() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let a = rig.task("old", "a").await;
        let (cold, faults) = FaultyStore::wrap(rig.cold.clone());

        faults.fail_put.store(true, Ordering::SeqCst);
        let report = rig
            .archiver_with(rig.hot.clone(), cold.clone(), rig.config(1))
            .sweep()
            .await;
        assert_eq!(report.failed, 1, "{backend:?}: {report:?}");
        assert_eq!(
            report.problems[0].what,
            ProblemKind::Failed(ErrorKind::Transient)
        );
        let row = rig.row("a").await;
        assert_eq!(
            (row.state(), row.html_archive_attempts),
            (BlobState::Hot, 1)
        );
        assert!(row.html_archive_error.is_some());
        rig.audit(&[("old", "a", a.clone())]).await;

        // A store that silently keeps other bytes fails verification.
        faults.fail_put.store(false, Ordering::SeqCst);
        faults.corrupt_put.store(true, Ordering::SeqCst);
        let later = at(0) + chrono::Duration::days(400_000);
        let report = rig
            .archiver_with(rig.hot.clone(), cold.clone(), rig.config(1))
            .with_clock(Arc::new(move || later))
            .sweep()
            .await;
        assert_eq!(report.failed, 1, "{backend:?}: {report:?}");
        assert_eq!(
            report.problems[0].what,
            ProblemKind::Failed(ErrorKind::Integrity)
        );
        let row = rig.row("a").await;
        assert_eq!(
            (row.state(), row.html_archive_key.as_deref()),
            (BlobState::Hot, None)
        );
        assert_eq!(rig.hot.get(&hot_location("old", "a")).await.unwrap(), a);
    }
}

#[tokio::test]
async fn failed_blob_backs_off_until_its_retry_time_then_moves() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let a = rig.task("old", "a").await;
        let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
        faults.fail_put.store(true, Ordering::SeqCst);
        let now = Utc::now();
        let clock = move || now;
        let failing = rig
            .archiver_with(rig.hot.clone(), cold.clone(), rig.config(1))
            .with_clock(Arc::new(clock));
        assert_eq!(failing.sweep().await.failed, 1);

        faults.fail_put.store(false, Ordering::SeqCst);
        // Same instant: the blob is backing off, nothing is claimed.
        let report = rig
            .archiver_with(rig.hot.clone(), cold.clone(), rig.config(1))
            .with_clock(Arc::new(clock))
            .sweep()
            .await;
        assert_eq!(
            (report.archived, report.failed),
            (0, 0),
            "{backend:?}: {report:?}"
        );
        // After the interval it is retried and moves.
        let later = now + chrono::Duration::minutes(2);
        let report = rig
            .archiver_with(rig.hot.clone(), cold, rig.config(1))
            .with_clock(Arc::new(move || later))
            .sweep()
            .await;
        assert_eq!(report.archived, 1, "{backend:?}: {report:?}");
        rig.audit(&[("old", "a", a)]).await;
    }
}

#[tokio::test]
async fn crash_between_catalog_switch_and_hot_delete_is_finished_next_sweep() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let all = standard_set(&rig).await;
        let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
        faults.fail_delete.store(true, Ordering::SeqCst);

        let report = rig
            .archiver_with(hot, rig.cold.clone(), rig.config(2))
            .sweep()
            .await;
        assert_eq!(report.failed, 6, "{backend:?}: {report:?}");
        for (job, task, _) in all.iter().filter(|(job, ..)| ["j1", "j2"].contains(job)) {
            let row = rig.row(task).await;
            // Switched to cold, hot copy still there: both locations hold the bytes.
            assert_eq!(
                row.html_archive_key.as_deref(),
                Some(cold_location(job, task).key.as_str())
            );
            assert!(row.html_storage_path.is_some());
        }
        rig.audit(&all).await;

        let (cold, cold_faults) = FaultyStore::wrap(rig.cold.clone());
        let later = Utc::now() + chrono::Duration::hours(1);
        let report = rig
            .archiver_with(rig.hot.clone(), cold, rig.config(2))
            .with_clock(Arc::new(move || later))
            .sweep()
            .await;
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.archived, 6);
        assert_eq!(
            cold_faults.puts.load(Ordering::SeqCst),
            0,
            "verified cold copies are reused, not uploaded again"
        );
        rig.audit(&all).await;
        for (_, task, _) in all.iter().filter(|(job, ..)| ["j1", "j2"].contains(job)) {
            assert_eq!(rig.row(task).await.state(), BlobState::Archived);
        }
    }
}

#[tokio::test]
async fn shutdown_mid_sweep_leaves_every_blob_hot_or_fully_archived() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.job("new", 1, "completed", 100).await;
        rig.job("old", 1, "completed", 1).await;
        let mut all = Vec::new();
        for n in 0..30 {
            let task: &'static str = Box::leak(format!("t{n:02}").into_boxed_str());
            all.push(("old", task, rig.task("old", task).await));
        }
        let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
        faults.get_delay_ms.store(50, Ordering::SeqCst);
        let mut config = rig.config(1);
        config.batch_size = 10;
        config.concurrency = 2;
        let archiver = rig.archiver_with(hot, rig.cold.clone(), config);

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(120)).await;
            let _ = tx.send(());
        });
        archiver.run(async { rx.await.unwrap_or(()) }).await;
        stopper.await.unwrap();

        let status = rig.catalog.status(Utc::now()).await.unwrap();
        assert!(
            status.archived > 0,
            "{backend:?}: nothing moved before shutdown: {status:?}"
        );
        assert!(
            status.archived < 30,
            "{backend:?}: shutdown did not stop the sweep: {status:?}"
        );
        assert_eq!(
            status.leased, 0,
            "{backend:?}: claims left behind after a clean shutdown"
        );
        // Catches handed-back claims recorded as failures (`shutdown before
        // start`, one more attempt): `status` showed them failing.
        assert_eq!(
            (status.failing, status.waiting),
            (0, 0),
            "{backend:?}: a clean shutdown is not a failure: {status:?}"
        );
        for (_, task, _) in &all {
            let row = rig.row(task).await;
            assert_eq!(
                (row.html_archive_attempts, row.html_archive_error.as_deref()),
                (0, None),
                "{backend:?}: {task}"
            );
        }
        rig.audit(&all).await;
    }
}

#[tokio::test]
async fn two_workers_on_one_postgres_catalog_move_each_blob_once() {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.job("new", 1, "completed", 100).await;
    rig.job("old", 1, "completed", 1).await;
    let mut all = Vec::new();
    for n in 0..40 {
        let task: &'static str = Box::leak(format!("w{n:02}").into_boxed_str());
        all.push(("old", task, rig.task("old", task).await));
    }
    let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
    let mut config = rig.config(1);
    config.batch_size = 5;
    let a = rig
        .archiver_with(rig.hot.clone(), cold.clone(), config.clone())
        .with_worker_id("a");
    let b = rig
        .archiver_with(rig.hot.clone(), cold, config)
        .with_worker_id("b");
    let (ra, rb) = tokio::join!(a.sweep(), b.sweep());
    assert!(ra.is_clean() && rb.is_clean(), "{ra:?} {rb:?}");
    assert_eq!(ra.archived + rb.archived, 40, "{ra:?} {rb:?}");
    assert_eq!(
        faults.puts.load(Ordering::SeqCst),
        40,
        "a blob was uploaded twice"
    );
    rig.audit(&all).await;
}

#[tokio::test]
async fn blobs_failing_during_a_sweep_wait_for_the_next_one() {
    // With a back-off shorter than the sweep, a sweep that re-claimed its own
    // failures would never end; the guard turns that hang into a failure.
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        for task in ["a", "b", "c"] {
            rig.task("old", task).await;
        }
        let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
        faults.fail_put.store(true, Ordering::SeqCst);
        let mut config = rig.config(1);
        config.batch_size = 1;
        config.interval = Duration::from_millis(1);
        let archiver = rig.archiver_with(rig.hot.clone(), cold, config);
        let report = tokio::time::timeout(Duration::from_secs(20), archiver.sweep())
            .await
            .expect("the sweep kept re-claiming its own failures");
        assert_eq!(report.failed, 3, "{backend:?}: {report:?}");
        for task in ["a", "b", "c"] {
            assert_eq!(rig.row(task).await.html_archive_attempts, 1, "{task}");
        }
    }
}

#[tokio::test]
async fn read_back_verification_catches_a_store_that_lies_about_its_etag() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let a = rig.task("old", "a").await;
        let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
        faults.corrupt_put.store(true, Ordering::SeqCst);
        faults.lie_about_etag.store(true, Ordering::SeqCst);
        let mut config = rig.config(1);
        config.verify = VerifyMode::ReadBack;

        let report = rig
            .archiver_with(rig.hot.clone(), cold, config)
            .sweep()
            .await;
        assert_eq!(report.failed, 1, "{backend:?}: {report:?}");
        assert_eq!(
            report.problems[0].what,
            ProblemKind::Failed(ErrorKind::Integrity)
        );
        let row = rig.row("a").await;
        assert_eq!((row.state(), row.html_archive_key), (BlobState::Hot, None));
        assert_eq!(rig.hot.get(&hot_location("old", "a")).await.unwrap(), a);
    }
}

#[tokio::test]
async fn a_cold_location_that_is_the_hot_object_is_refused() {
    // Same folder, same bucket, no prefix: the "cold copy" would be the hot
    // object itself, and the hot delete would remove the only copy.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("catalog.db").display());
    let catalog: Arc<dyn Fixtures> = Arc::new(SqliteCatalog::connect(&url).await.unwrap());
    catalog.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("blobs")).unwrap());
    let rig = Rig {
        backend: Backend::SqliteFs,
        catalog,
        hot: store.clone(),
        cold: store,
        _keep: vec![Box::new(dir)],
    };
    rig.old_and_new_jobs().await;
    let bytes = rig.task("old", "a").await;
    let mut config = rig.config(1);
    config.bucket = HOT_BUCKET.to_owned();

    let report = rig
        .archiver_with(rig.hot.clone(), rig.cold.clone(), config)
        .sweep()
        .await;
    assert_eq!((report.quarantined, report.archived), (1, 0), "{report:?}");
    assert!(
        report.problems[0].message.contains("same object"),
        "{report:?}"
    );
    assert_eq!(rig.row("a").await.state(), BlobState::Quarantined);
    assert_eq!(rig.hot.get(&hot_location("old", "a")).await.unwrap(), bytes);
}

/// Catches a verification that asks again what the upload already
/// answered (a HEAD after every PUT on a store whose ETag is proof), and a
/// reused cold copy trusted on its ETag without the digest we record.
#[tokio::test]
async fn the_upload_answer_proves_the_copy_and_a_bare_reused_copy_is_read_back() {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.old_and_new_jobs().await;
    // A second old job for the second sweep: `old` is marked archived by the first.
    rig.job("older", 1, "completed", 0).await;
    let fresh = rig.task("old", "fresh").await;
    let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
    assert!(
        cold.etag_proves_md5(),
        "the rig's S3 profile trusts its ETag"
    );
    let report = rig
        .archiver_with(rig.hot.clone(), cold.clone(), rig.config(1))
        .sweep()
        .await;
    assert_eq!(report.archived, 1, "{report:?}");
    assert_eq!(
        (
            faults.calls(Op::Head),
            faults.calls(Op::Put),
            faults.calls(Op::Get)
        ),
        (0, 1, 0),
        "a first claim has no copy to reuse: one upload, nothing before or after it"
    );

    // A copy already in cold, with the right bytes but none of our
    // metadata, for a row claimed before (a worker died holding it): its
    // ETag alone does not make it ours; it is read back.
    let bare = rig.task("older", "bare").await;
    let claimed = rig
        .catalog
        .claim_task_html(
            1,
            10,
            &coldsweep::catalog::Lease {
                owner: "dead".into(),
                free_before: Utc::now(),
                until: Utc::now(),
            },
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    rig.cold
        .put(
            &cold_location("older", "bare"),
            bare.clone(),
            &Default::default(),
        )
        .await
        .unwrap();
    let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
    let report = rig
        .archiver_with(rig.hot.clone(), cold, rig.config(1))
        .sweep()
        .await;
    assert_eq!(report.archived, 1, "{report:?}");
    assert_eq!(
        (faults.calls(Op::Get), faults.calls(Op::Put)),
        (1, 0),
        "read back once, then reused without another upload"
    );
    rig.audit(&[("old", "fresh", fresh), ("older", "bare", bare)])
        .await;
}

/// Catches: progress counters that miss a blob the sweep settled (archived,
/// quarantined or missing), count a problem as fine, or count bytes of
/// blobs that did not move.
#[tokio::test]
async fn a_sweep_counts_every_blob_it_settles_in_its_progress() {
    let rig = Rig::new(Backend::SqliteFs).await;
    rig.old_and_new_jobs().await;
    let mut moved = 0;
    for task in ["t1", "t2", "t3"] {
        moved += rig.task("old", task).await.len() as u64;
    }
    // Hot bytes that disagree with the row: quarantined.
    let page = gzip(b"<html>the page</html>");
    rig.insert_task("old", "bad", &page, Some(sha256_hex(b"another page")))
        .await;
    rig.hot
        .put(&hot_location("old", "bad"), page, &Default::default())
        .await
        .unwrap();
    // In neither store: missing.
    rig.insert_task("old", "gone", b"never stored", None).await;
    rig.task("new", "kept").await;

    let progress = coldsweep::progress::Progress::new();
    let archiver = rig.archiver(1).with_progress(progress.clone());
    let report = archiver.sweep().await;
    assert_eq!(
        (report.archived, report.quarantined, report.missing),
        (3, 1, 1),
        "{report:?}"
    );
    assert_eq!(
        progress.snapshot(),
        coldsweep::progress::Snapshot {
            total: None,
            objects: 5,
            bytes: moved,
            problems: 2,
        }
    );
    // Another sweep of this archiver finds nothing to do and adds nothing.
    archiver.sweep().await;
    assert_eq!(progress.snapshot().objects, 5);
}
