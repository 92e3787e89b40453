//! `/healthz`, `/readyz` and `/metrics` of `coldsweep run` on
//! `COLDSWEEP_METRICS_ADDR`, as the README's "Health endpoints" documents
//! them: against Postgres and the S3 test server, with the binary.

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coldsweep::archiver::ProblemKind;
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{PgCatalog, TaskRow};
use coldsweep::store::S3Store;
use coldsweep::{Store, task_html_object_path};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::cli::{Daemon, free_port, http_get};
use crate::harness;
use crate::harness::pg::PgCluster;
use crate::pipeline::{Backend, COLD_BUCKET, HOT_BUCKET, Rig, gzip, hot_location, sha256_hex};

/// `method path` over HTTP/1.0: the status line, the headers and the body.
fn http(addr: &str, method: &str, path: &str) -> (String, String, String) {
    try_http(addr, method, path).expect("connect to the endpoint")
}

/// [`http`], `None` while nothing listens on `addr` yet.
fn try_http(addr: &str, method: &str, path: &str) -> Option<(String, String, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Some((status.to_owned(), headers.to_owned(), body.to_owned()))
}

/// Poll `path` until its status line has ` {status} ` (failed after 60 s):
/// the body of that answer.
fn wait_for(addr: &str, path: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        if let Some((line, _, body)) = try_http(addr, "GET", path) {
            if line.contains(&format!(" {status} ")) {
                return body;
            }
            last = Some((line, body));
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}; last answer: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `coldsweep run` for `rig` (one sweep, then an hour's pause), endpoints on a free port.
fn start(mut cmd: Command) -> (Daemon, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    cmd.env("COLDSWEEP_METRICS_ADDR", &addr)
        .env("ARCHIVE_INTERVAL", "1h")
        .env("ARCHIVE_RETENTION_JOBS", "1");
    (Daemon::spawn(cmd), addr)
}

#[tokio::test]
async fn endpoints_answer_as_documented_after_a_good_sweep() {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.old_and_new_jobs().await;
    rig.task("old", "page").await;
    let (mut daemon, addr) = start(rig.command(&["run"]));
    daemon.wait_for_sweep();

    let (status, body) = http_get(&addr, "/healthz");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body.trim(), "ok");
    let (status, body) = http_get(&addr, "/readyz");
    assert!(status.contains(" 200 "), "{status} {body}");
    assert_eq!(body.trim(), "ready");
    let (status, body) = http_get(&addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    assert!(body.contains("coldsweep_sweeps_total 1"), "{body}");
    assert!(
        body.contains("coldsweep_blobs_total{source=\"task_html\",outcome=\"archived\"} 1"),
        "{body}"
    );
    for path in ["/", "/health", "/readyz/x", "/metricsz"] {
        let (status, _) = http_get(&addr, path);
        assert!(status.contains(" 404 "), "{path}: {status}");
    }
    let (status, headers, _) = http(&addr, "POST", "/readyz");
    assert!(status.contains(" 405 "), "{status}");
    assert!(headers.contains("GET, HEAD"), "{headers}");
    let (status, _, body) = http(&addr, "HEAD", "/readyz");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "", "a HEAD answer has no body");

    let (code, log) = daemon.stop("TERM");
    assert_eq!(code, Some(0), "{log}");
}

/// A sweep stopped because the hot store cannot prove it sees a bucket the
/// catalog references: not ready, saying why; alive all the same.
#[tokio::test]
async fn readyz_is_503_with_the_reason_after_a_stopped_sweep() {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.old_and_new_jobs().await;
    rig.catalog
        .insert_task(&TaskRow {
            id: "stray".to_owned(),
            job_id: "old".to_owned(),
            html_storage_bucket: Some("absent-bucket".to_owned()),
            html_storage_path: Some(task_html_object_path("old", "stray")),
            html_content_encoding: Some("gzip".to_owned()),
            ..TaskRow::default()
        })
        .await
        .unwrap();
    let (daemon, addr) = start(rig.command(&["run"]));

    let reason = wait_for(&addr, "/readyz", 503);
    assert!(reason.contains("last sweep"), "{reason}");
    assert!(reason.contains("absent-bucket"), "{reason}");
    assert!(reason.contains("stopped"), "{reason}");
    assert_eq!(reason.trim_end().lines().count(), 1, "{reason}");
    let (status, _) = http_get(&addr, "/healthz");
    assert!(status.contains(" 200 "), "{status}");
    let (status, body) = http_get(&addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    assert!(body.contains("coldsweep_sweep_errors_total"), "{body}");
    drop(daemon);
}

/// The catalog stops answering: not ready within seconds, saying so; ready
/// again once it is back, without a restart or a new sweep.
#[tokio::test]
async fn readyz_follows_the_catalog_down_and_up_again() {
    let cluster = Arc::new(
        tokio::task::spawn_blocking(PgCluster::start)
            .await
            .expect("start a dedicated Postgres cluster"),
    );
    let mut admin = cluster.options().connect().await.expect("connect admin");
    admin.execute("CREATE DATABASE health").await.unwrap();
    admin.close().await.unwrap();
    let url = cluster
        .options()
        .database("health")
        .to_url_lossy()
        .to_string();
    let catalog: Arc<dyn Fixtures> = Arc::new(PgCatalog::connect(&url).await.unwrap());
    catalog.migrate().await.unwrap();
    let server = harness::s3::S3Server::start().await;
    server.create_bucket(HOT_BUCKET);
    server.create_bucket(COLD_BUCKET);
    let hot: Arc<dyn Store> = Arc::new(S3Store::new("minio", &server.config()).unwrap());
    let cold = hot.clone();
    let rig = Rig::from_parts(
        Backend::PostgresS3,
        catalog,
        hot,
        cold,
        vec![Box::new(server)],
    );
    rig.old_and_new_jobs().await;
    rig.task("old", "page").await;

    let mut cmd = rig.command(&["run"]);
    cmd.env("DATABASE_URL", &url);
    let (mut daemon, addr) = start(cmd);
    daemon.wait_for_sweep();
    assert_eq!(wait_for(&addr, "/readyz", 200).trim(), "ready");

    let stop = cluster.clone();
    tokio::task::spawn_blocking(move || stop.stop())
        .await
        .unwrap();
    let began = Instant::now();
    let reason = wait_for(&addr, "/readyz", 503);
    assert!(reason.contains("catalog"), "{reason}");
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "took {:?} to notice",
        began.elapsed()
    );
    let (status, _) = http_get(&addr, "/healthz");
    assert!(status.contains(" 200 "), "{status}");

    let start_again = cluster.clone();
    tokio::task::spawn_blocking(move || start_again.start_again())
        .await
        .unwrap();
    assert_eq!(wait_for(&addr, "/readyz", 200).trim(), "ready");
    let (code, log) = daemon.stop("TERM");
    assert_eq!(code, Some(0), "{log}");
}

/// The library's hook behind `/readyz`: nothing before the first sweep, then
/// how each sweep ended. A blob-level problem is not a failure of the sweep;
/// a sweep stopped by an unproven store is, with its reason.
#[tokio::test]
async fn last_sweep_tells_a_failed_sweep_from_a_blob_problem() {
    let rig = Rig::new(Backend::SqliteFs).await;
    rig.old_and_new_jobs().await;
    rig.task("old", "page").await;
    // Hot bytes that disagree with the catalog: quarantined, a blob's problem.
    let stored = gzip(b"<html>real page</html>");
    rig.insert_task(
        "old",
        "bad",
        &stored,
        Some(sha256_hex(b"<html>other</html>")),
    )
    .await;
    rig.hot
        .put(&hot_location("old", "bad"), stored, &Default::default())
        .await
        .unwrap();
    let archiver = rig.archiver(1);
    let last = archiver.last_sweep();
    assert_eq!(*last.borrow(), None);

    let report = archiver.sweep().await;
    assert_eq!((report.archived, report.quarantined), (1, 1), "{report:?}");
    let first = last.borrow().clone().expect("the sweep published nothing");
    assert_eq!(first.failure, None, "{report:?}");

    // A row in a hot bucket the hot store does not have: the sweep stops.
    rig.catalog
        .insert_task(&TaskRow {
            id: "stray".to_owned(),
            job_id: "old".to_owned(),
            html_storage_bucket: Some("absent-bucket".to_owned()),
            html_storage_path: Some(task_html_object_path("old", "stray")),
            ..TaskRow::default()
        })
        .await
        .unwrap();
    let report = archiver.sweep().await;
    assert!(report.stopped, "{report:?}");
    let second = last.borrow().clone().unwrap();
    let failure = second.failure.expect("a stopped sweep is a failure");
    assert_eq!(failure.what, ProblemKind::Stopped);
    assert!(failure.message.contains("absent-bucket"), "{failure:?}");
    assert!(second.ended_at >= first.ended_at);
}
