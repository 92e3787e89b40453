//! The catalog goes away: Postgres stopped mid-sweep (an operator's restart,
//! a failover) and unreachable when a sweep starts. The archiver reports by
//! kind, loses nothing, and finishes the work once Postgres is back.
//!
//! Each test has its own Postgres cluster (the shared test server must not
//! be stopped), with a pool that gives up acquiring a connection after one
//! second instead of thirty, so an outage shows within a short test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use coldsweep::archiver::{CatalogJobMarker, JobMarker, ProblemKind};
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{BlobState, PgCatalog};
use coldsweep::config::VerifyMode;
use coldsweep::store::{S3Store, exists};
use coldsweep::{ArchiveSource, Archiver, ErrorKind, Store, TaskHtmlSource};
use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions, Connection, Executor};

use crate::faults::FaultyStore;
use crate::harness;
use crate::harness::pg::PgCluster;
use crate::pipeline::{Backend, COLD_BUCKET, HOT_BUCKET, Rig, cold_location, hot_location};

/// A dedicated cluster, a rig on it, and `n` blobs of one old job.
async fn outage_rig(
    n: usize,
) -> (
    Arc<PgCluster>,
    Rig,
    Vec<(&'static str, &'static str, Bytes)>,
) {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("start a dedicated Postgres cluster"),
    );
    let mut admin = cluster.options().connect().await.expect("connect admin");
    admin
        .execute("CREATE DATABASE outage")
        .await
        .expect("create database");
    admin.close().await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(cluster.options().database("outage"));
    let catalog: Arc<dyn Fixtures> = Arc::new(PgCatalog::from_pool(pool));
    catalog.migrate().await.expect("migrate");

    let server = harness::s3::S3Server::start().await;
    server.create_bucket(HOT_BUCKET);
    server.create_bucket(COLD_BUCKET);
    let hot: Arc<dyn Store> = Arc::new(S3Store::new("minio", &server.config()).unwrap());
    let cold: Arc<dyn Store> = Arc::new(S3Store::new("minio", &server.config()).unwrap());
    let rig = Rig::from_parts(
        Backend::PostgresS3,
        catalog,
        hot,
        cold,
        vec![Box::new(server)],
    );
    rig.job("new", 1, "completed", 100).await;
    rig.job("old", 1, "completed", 1).await;
    let mut all = Vec::new();
    for i in 0..n {
        let task: &'static str = Box::leak(format!("o{i:02}").into_boxed_str());
        all.push(("old", task, rig.task("old", task).await));
    }
    (cluster, rig, all)
}

async fn stop(cluster: &Arc<PgCluster>) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap();
}

async fn start(cluster: &Arc<PgCluster>) {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || cluster.start_again())
        .await
        .unwrap();
}

/// Nothing lost, whatever step the outage cut: every blob is in hot
/// storage, or its row says cold and the cold copy holds its bytes (a
/// move cut between the hot delete and clearing the hot reference is
/// finished by the next sweep).
async fn nothing_lost(rig: &Rig, all: &[(&str, &str, Bytes)]) {
    for (job, task, bytes) in all {
        let row = rig.row(task).await;
        assert!(
            matches!(row.state(), BlobState::Hot | BlobState::Archived),
            "{task}: {:?}",
            row.state()
        );
        if exists(rig.hot.as_ref(), &hot_location(job, task))
            .await
            .unwrap()
        {
            continue;
        }
        assert!(
            row.html_archive_key.is_some(),
            "{task}: hot gone, row not switched"
        );
        assert_eq!(
            rig.cold.get(&cold_location(job, task)).await.ok().as_ref(),
            Some(bytes),
            "{task}: hot gone without its cold copy"
        );
    }
}

/// Catches: a catalog error that panics the sweep or is reported as
/// something other than transient (it would then not be retried as one),
/// a hot copy deleted although the catalog never recorded the cold one,
/// and claims left behind by the outage that a later sweep cannot take back.
#[tokio::test]
async fn postgres_restarted_mid_sweep_loses_nothing_and_the_next_sweep_finishes() {
    let (cluster, rig, all) = outage_rig(40).await;
    // Slow read-back verification: a blob in flight when Postgres stops is
    // most likely between verifying its cold copy and switching the catalog,
    // the step whose failure must keep the hot copy.
    let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
    faults
        .get_delay_ms
        .store(300, std::sync::atomic::Ordering::SeqCst);
    let mut config = rig.config(1);
    config.batch_size = 8;
    config.concurrency = 8;
    config.blob_timeout = Duration::from_secs(2);
    config.verify = VerifyMode::ReadBack;
    let archiver = rig.archiver_with(rig.hot.clone(), cold, config);

    // 40 blobs, 8 at a time, 300 ms each: Postgres stops well inside the
    // sweep and stays down until it ends. (Stopped for less than the blob
    // limit, the blob retries bridge the restart and nothing fails.)
    let outage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop(&cluster).await;
    };
    let (report, ()) = tokio::join!(archiver.sweep(), outage);
    start(&cluster).await;

    assert!(report.failed > 0, "the outage went unnoticed: {report:?}");
    assert!(report.archived < 40, "{report:?}");
    for problem in &report.problems {
        assert_eq!(
            problem.what,
            ProblemKind::Failed(ErrorKind::Transient),
            "{problem:?}"
        );
    }
    nothing_lost(&rig, &all).await;

    // Back-offs and the outage's leftover claims have expired a day later.
    let later = Utc::now() + chrono::Duration::days(1);
    let mut archived = report.archived;
    for _ in 0..3 {
        let report = rig
            .archiver(1)
            .with_clock(Arc::new(move || later))
            .sweep()
            .await;
        assert!(report.is_clean(), "{report:?}");
        archived += report.archived + report.completed;
        if rig.catalog.status(later).await.unwrap().archived == 40 {
            break;
        }
    }
    let status = rig.catalog.status(later).await.unwrap();
    assert_eq!(
        (status.archived, status.hot, status.lost),
        (40, 0, 0),
        "{status:?}"
    );
    assert!(archived >= 40, "{archived}");
    rig.audit(&all).await;
}

/// Records what the job marker (the first catalog call of every sweep) got.
struct RecordingMarker {
    inner: CatalogJobMarker,
    seen: Mutex<Vec<Option<ErrorKind>>>,
}

#[async_trait]
impl JobMarker for RecordingMarker {
    async fn mark_archived_jobs(&self) -> coldsweep::Result<u64> {
        let result = self.inner.mark_archived_jobs().await;
        self.seen
            .lock()
            .unwrap()
            .push(result.as_ref().err().map(|e| e.kind()));
        result
    }
}

/// Catches: a `run` loop that stops (or panics) after a sweep whose
/// catalog calls failed — the blobs would then never move.
#[tokio::test]
async fn run_keeps_sweeping_through_a_catalog_outage_and_converges() {
    let (cluster, rig, all) = outage_rig(10).await;
    let marker = Arc::new(RecordingMarker {
        inner: CatalogJobMarker(rig.catalog.clone()),
        seen: Mutex::new(Vec::new()),
    });
    let mut config = rig.config(1);
    config.interval = Duration::from_millis(300);
    let source: Arc<dyn ArchiveSource> = Arc::new(TaskHtmlSource::new(
        rig.catalog.clone(),
        config.retention_jobs,
    ));
    let archiver = Archiver::new(
        rig.cold.clone(),
        rig.hot.clone(),
        config,
        marker.clone(),
        vec![source],
    );

    // Down for a few sweeps (each gives up after about 2 s: the job marker
    // and the claim each wait 1 s for a connection).
    stop(&cluster).await;
    let restart = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        start(&cluster).await;
    };
    let converged = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let marked = marker.seen.lock().unwrap().contains(&None);
            if let Ok(status) = rig.catalog.status(Utc::now()).await
                && status.archived == 10
                && marked
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no convergence within 60 s"
            );
        }
    };
    tokio::join!(archiver.run(converged), restart);

    let seen = marker.seen.lock().unwrap().clone();
    let first_ok = seen
        .iter()
        .position(Option::is_none)
        .expect("no sweep succeeded");
    assert!(first_ok > 0, "no sweep saw the outage: {seen:?}");
    assert!(
        seen[..first_ok]
            .iter()
            .all(|kind| *kind == Some(ErrorKind::Transient)),
        "{seen:?}"
    );
    rig.audit(&all).await;
}
