//! Blobs above `ARCHIVE_STREAM_THRESHOLD`: streamed hot → cold (S3
//! multipart, the folder store's atomic write), checked on the way, proven
//! before the hot delete; small blobs keep their requests.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use coldsweep::archiver::ProblemKind;
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{BlobState, TaskRow};
use coldsweep::error::Result;
use coldsweep::store::{
    ByteStream, Location, ObjectMeta, PutOptions, PutResult, S3Store, Store, SupabaseStore, exists,
};
use coldsweep::{Config, ErrorKind, task_html_object_path};
use futures::StreamExt as _;

use crate::faults::{FaultyStore, Op};
use crate::harness;
use crate::pipeline::{
    BACKENDS, Backend, HOT_BUCKET, Rig, cold_location, gzip, hot_location, sha256_hex,
};

/// Streamed above 1 MiB in these tests.
const THRESHOLD: u64 = 1024 * 1024;

fn config(rig: &Rig) -> Config {
    let mut config = rig.config(1);
    config.stream_threshold = THRESHOLD;
    // A 17 MiB blob streamed, possibly twice, on a busy machine.
    config.blob_timeout = std::time::Duration::from_secs(60);
    config
}

/// Bytes that gzip cannot shrink, so the stored blob is as large as asked.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A task whose gzip'd content of about `len` bytes sits in hot; the
/// catalog row consistent, or with `sha` instead of the content's digest.
async fn large_task(rig: &Rig, job: &str, task: &str, len: usize, sha: Option<String>) -> Bytes {
    let content = incompressible(len, len as u64);
    let stored = gzip(&content);
    let sha = sha.unwrap_or_else(|| sha256_hex(&content));
    rig.insert_task(job, task, &stored, Some(sha)).await;
    rig.hot
        .put(
            &hot_location(job, task),
            stored.clone(),
            &Default::default(),
        )
        .await
        .unwrap();
    stored
}

#[tokio::test]
async fn a_large_blob_streams_to_cold_identical_and_the_catalog_switches() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        // Three S3 parts of 8 MiB; and one below a part, streamed in one piece.
        let large = large_task(&rig, "old", "large", 17 * 1024 * 1024, None).await;
        let medium = large_task(&rig, "old", "medium", 5 * 1024 * 1024, None).await;
        let small = rig.task("old", "small").await;
        let report = rig
            .archiver_with(rig.hot.clone(), rig.cold.clone(), config(&rig))
            .sweep()
            .await;
        assert_eq!(report.archived, 3, "{backend:?}: {report:?}");
        assert!(report.is_clean(), "{backend:?}: {report:?}");
        rig.audit(&[
            ("old", "large", large.clone()),
            ("old", "medium", medium),
            ("old", "small", small),
        ])
        .await;
        let meta = rig.cold.head(&cold_location("old", "large")).await.unwrap();
        assert_eq!(meta.size, large.len() as u64);
        if matches!(backend, Backend::PostgresS3) {
            assert!(
                meta.etag.as_deref().is_some_and(|e| e.ends_with("-3")),
                "uploaded in three parts: {meta:?}"
            );
        }
        // Its digest was unknown when the upload began: a reuse reads it back.
        assert_eq!(meta.stored_sha256(), None, "{meta:?}");
        assert_eq!(
            meta.metadata.get("task-id").map(String::as_str),
            Some("large")
        );
    }
}

/// Flips one byte in the middle of every streamed upload.
#[derive(Debug)]
struct CorruptingStore(Arc<dyn Store>);

#[async_trait]
impl Store for CorruptingStore {
    fn provider(&self) -> &str {
        self.0.provider()
    }
    fn etag_proves_md5(&self) -> bool {
        self.0.etag_proves_md5()
    }
    fn namespace(&self) -> Option<String> {
        self.0.namespace()
    }
    async fn ping(&self, bucket: &str) -> Result<()> {
        self.0.ping(bucket).await
    }
    async fn put(
        &self,
        location: &Location,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutResult> {
        self.0.put(location, body, options).await
    }
    async fn put_stream(
        &self,
        location: &Location,
        size: u64,
        body: ByteStream,
        options: &PutOptions,
    ) -> Result<PutResult> {
        let target = size / 2;
        let mut offset = 0u64;
        let body = body
            .map(move |piece| {
                let piece = piece?;
                let end = offset + piece.len() as u64;
                let piece = if (offset..end).contains(&target) {
                    let mut bad = piece.to_vec();
                    bad[(target - offset) as usize] ^= 0x01;
                    Bytes::from(bad)
                } else {
                    piece
                };
                offset = end;
                Ok(piece)
            })
            .boxed();
        self.0.put_stream(location, size, body, options).await
    }
    async fn get(&self, location: &Location) -> Result<Bytes> {
        self.0.get(location).await
    }
    async fn get_stream(&self, location: &Location) -> Result<(u64, ByteStream)> {
        self.0.get_stream(location).await
    }
    async fn head(&self, location: &Location) -> Result<ObjectMeta> {
        self.0.head(location).await
    }
    async fn delete(&self, location: &Location) -> Result<()> {
        self.0.delete(location).await
    }
}

#[tokio::test]
async fn a_byte_corrupted_in_the_streamed_upload_is_caught_before_the_hot_delete() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let large = large_task(&rig, "old", "large", 9 * 1024 * 1024, None).await;
        let cold: Arc<dyn Store> = Arc::new(CorruptingStore(rig.cold.clone()));
        let report = rig
            .archiver_with(rig.hot.clone(), cold, config(&rig))
            .sweep()
            .await;
        assert_eq!(
            (report.archived, report.failed),
            (0, 1),
            "{backend:?}: {report:?}"
        );
        let row = rig.row("large").await;
        assert_eq!(row.state(), BlobState::Hot, "{backend:?}");
        assert_eq!(row.html_archive_key, None, "{backend:?}: never switched");
        assert_eq!(
            rig.hot.get(&hot_location("old", "large")).await.unwrap(),
            large,
            "{backend:?}: the hot copy stays"
        );
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.what == ProblemKind::Failed(ErrorKind::Integrity)),
            "{backend:?}: {report:?}"
        );
    }
}

#[tokio::test]
async fn hot_bytes_that_disagree_with_the_catalog_are_quarantined_with_nothing_in_cold() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let wrong = Some(sha256_hex(b"some other page"));
        let large = large_task(&rig, "old", "large", 9 * 1024 * 1024, wrong).await;
        let report = rig
            .archiver_with(rig.hot.clone(), rig.cold.clone(), config(&rig))
            .sweep()
            .await;
        assert_eq!(report.quarantined, 1, "{backend:?}: {report:?}");
        let row = rig.row("large").await;
        assert_eq!(row.state(), BlobState::Quarantined, "{backend:?}");
        assert!(
            row.html_archive_error
                .as_deref()
                .is_some_and(|e| e.contains("content digest mismatch")),
            "{backend:?}: {row:?}"
        );
        assert!(
            !exists(rig.cold.as_ref(), &cold_location("old", "large"))
                .await
                .unwrap(),
            "{backend:?}: the upload was never completed"
        );
        assert_eq!(
            rig.hot.get(&hot_location("old", "large")).await.unwrap(),
            large
        );
    }
}

/// A small page `old/unsized` in hot whose row records no size.
async fn unsized_task(rig: &Rig) -> Bytes {
    let content = b"<html>a page whose size the catalog lost</html>".repeat(30);
    let stored = gzip(&content);
    rig.catalog
        .insert_task(&TaskRow {
            id: "unsized".into(),
            job_id: "old".into(),
            html_storage_bucket: Some(HOT_BUCKET.into()),
            html_storage_path: Some(task_html_object_path("old", "unsized")),
            html_content_encoding: Some("gzip".into()),
            html_sha256: Some(sha256_hex(&content)),
            ..Default::default()
        })
        .await
        .unwrap();
    rig.hot
        .put(
            &hot_location("old", "unsized"),
            stored.clone(),
            &Default::default(),
        )
        .await
        .unwrap();
    stored
}

#[tokio::test]
async fn small_blobs_keep_their_requests_whether_or_not_the_catalog_knows_the_size() {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.old_and_new_jobs().await;
    let sized = rig.task("old", "sized").await;
    let unsized_ = unsized_task(&rig).await;
    let (hot, hot_calls) = FaultyStore::wrap(rig.hot.clone());
    let (cold, cold_calls) = FaultyStore::wrap(rig.cold.clone());
    let report = rig.archiver_with(hot, cold, config(&rig)).sweep().await;
    assert_eq!(report.archived, 2, "{report:?}");
    let calls = |faults: &crate::faults::Faults| {
        [Op::Get, Op::Put, Op::Head, Op::Delete].map(|op| faults.calls(op))
    };
    assert_eq!(
        calls(&hot_calls),
        [2, 0, 0, 2],
        "hot: one GET, one DELETE each"
    );
    assert_eq!(calls(&cold_calls), [0, 2, 0, 0], "cold: one PUT each");
    rig.audit(&[("old", "sized", sized), ("old", "unsized", unsized_)])
        .await;
}

#[tokio::test]
async fn supabase_hot_streams_a_large_blob_and_reads_a_small_one_in_one_get() {
    let db = harness::pg::fresh_database().await;
    let catalog: Arc<dyn Fixtures> = Arc::new(db.catalog().await);
    catalog.migrate().await.unwrap();
    let s3 = harness::s3::S3Server::start().await;
    s3.create_bucket(crate::pipeline::COLD_BUCKET);
    let supabase = harness::supabase::SupabaseServer::start().await;
    supabase.create_bucket(HOT_BUCKET);
    let hot: Arc<dyn Store> = Arc::new(SupabaseStore::new(&supabase.config()).unwrap());
    let cold: Arc<dyn Store> = Arc::new(S3Store::new("minio", &s3.config()).unwrap());
    let rig = Rig::from_parts(Backend::PostgresS3, catalog, hot, cold, vec![Box::new(db)]);
    rig.old_and_new_jobs().await;
    let large = large_task(&rig, "old", "large", 9 * 1024 * 1024, None).await;
    let small = rig.task("old", "small").await;
    supabase.clear_requests();
    let report = rig
        .archiver_with(rig.hot.clone(), rig.cold.clone(), config(&rig))
        .sweep()
        .await;
    assert_eq!(report.archived, 2, "{report:?}");
    for task in ["large", "small"] {
        let path = task_html_object_path("old", task);
        let on_object: Vec<_> = supabase
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with(&path))
            .map(|r| r.method.to_string())
            .collect();
        // The delete goes with its chunk's, in Supabase's batch delete.
        assert_eq!(on_object, ["GET"], "{task}");
    }
    let bulk_deletes = supabase
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with(&format!("/object/{HOT_BUCKET}")))
        .count();
    assert!(
        (1..=2).contains(&bulk_deletes),
        "{bulk_deletes} batch deletes"
    );
    assert_eq!(supabase.object_count(HOT_BUCKET), 0);
    rig.audit(&[("old", "large", large), ("old", "small", small)])
        .await;
    drop(s3);
}

#[tokio::test]
async fn a_streamed_copy_found_again_lacks_the_stored_digest_and_is_read_back() {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.old_and_new_jobs().await;
    let large = large_task(&rig, "old", "large", 9 * 1024 * 1024, None).await;
    // Streamed and switched; the hot delete fails (a crash right before it).
    let (hot, hot_faults) = FaultyStore::wrap(rig.hot.clone());
    hot_faults
        .fail_delete
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut first = config(&rig);
    // Its retries back off in proportion: keep them short.
    first.blob_timeout = std::time::Duration::from_secs(10);
    let report = rig
        .archiver_with(hot, rig.cold.clone(), first)
        .sweep()
        .await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert!(rig.row("large").await.html_archive_key.is_some());

    // Held whole this time (threshold above it): the copy is found, and
    // since it carries no stored-sha256 its ETag alone is not enough.
    let (cold, cold_faults) = FaultyStore::wrap(rig.cold.clone());
    let mut config = config(&rig);
    config.stream_threshold = u64::MAX;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let report = rig
        .archiver_with(rig.hot.clone(), cold, config)
        .with_clock(Arc::new(move || later))
        .sweep()
        .await;
    assert_eq!(report.archived, 1, "{report:?}");
    assert_eq!(
        (cold_faults.calls(Op::Get), cold_faults.calls(Op::Put)),
        (1, 0),
        "read back once, then reused without another upload"
    );
    rig.audit(&[("old", "large", large)]).await;
}

/// A catalog that understates an object's size (a row written before the
/// object was replaced by a much larger one) must not make the sweep read
/// the object whole: the read's answer says how large it is, and above the
/// threshold it streams, finds the sizes disagree and quarantines it.
#[tokio::test]
async fn a_catalog_that_understates_the_size_does_not_make_the_sweep_buffer_the_object() {
    const LEN: usize = 24 * 1024 * 1024;
    let rig = Rig::new(Backend::SqliteFs).await;
    rig.old_and_new_jobs().await;
    let content = incompressible(LEN, 7);
    let stored = gzip(&content);
    rig.catalog
        .insert_task(&TaskRow {
            id: "understated".into(),
            job_id: "old".into(),
            html_storage_bucket: Some(HOT_BUCKET.into()),
            html_storage_path: Some(task_html_object_path("old", "understated")),
            html_content_encoding: Some("gzip".into()),
            // What the row said of an earlier, small page.
            html_compressed_size_bytes: Some(2048),
            html_sha256: Some(sha256_hex(&content)),
            ..Default::default()
        })
        .await
        .unwrap();
    rig.hot
        .put(
            &hot_location("old", "understated"),
            stored.clone(),
            &Default::default(),
        )
        .await
        .unwrap();
    drop((content, stored));

    crate::alloc::reset_largest();
    let report = rig
        .archiver_with(rig.hot.clone(), rig.cold.clone(), config(&rig))
        .sweep()
        .await;
    let largest_mib = crate::alloc::largest() / 1024 / 1024;

    assert_eq!(report.quarantined, 1, "{report:?}");
    assert_eq!(rig.row("understated").await.state(), BlobState::Quarantined);
    assert!(
        largest_mib < LEN / 1024 / 1024 / 4,
        "a {largest_mib} MiB allocation for a {} MiB object the catalog says is 2 KiB",
        LEN / 1024 / 1024
    );
    assert!(
        !exists(rig.cold.as_ref(), &cold_location("old", "understated"))
            .await
            .unwrap(),
        "nothing committed in cold"
    );
}

/// Announces each object's full size but, while `cut` is set, ends the body
/// 100 bytes early without an error: a connection that closed quietly.
#[derive(Debug)]
struct CutShortStore {
    inner: Arc<dyn Store>,
    cut: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Store for CutShortStore {
    fn provider(&self) -> &str {
        self.inner.provider()
    }
    fn namespace(&self) -> Option<String> {
        self.inner.namespace()
    }
    async fn ping(&self, bucket: &str) -> Result<()> {
        self.inner.ping(bucket).await
    }
    async fn put(
        &self,
        location: &Location,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutResult> {
        self.inner.put(location, body, options).await
    }
    async fn get(&self, location: &Location) -> Result<Bytes> {
        self.inner.get(location).await
    }
    async fn get_stream(&self, location: &Location) -> Result<(u64, ByteStream)> {
        let (size, body) = self.inner.get_stream(location).await?;
        if !self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok((size, body));
        }
        let mut left = size.saturating_sub(100);
        let body = body
            .map(move |piece| {
                let piece = piece?;
                let keep = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                left -= keep as u64;
                Ok(piece.slice(..keep))
            })
            .boxed();
        Ok((size, body))
    }
    async fn head(&self, location: &Location) -> Result<ObjectMeta> {
        self.inner.head(location).await
    }
    async fn delete(&self, location: &Location) -> Result<()> {
        self.inner.delete(location).await
    }
}

/// A hot read cut short says nothing about the blob: the move fails as a
/// passing fault (retried), the row is not quarantined, nothing is
/// committed in cold, and once reads are whole again the blob moves.
#[tokio::test]
async fn a_hot_read_cut_short_is_retried_not_quarantined() {
    let rig = Rig::new(Backend::SqliteFs).await;
    rig.old_and_new_jobs().await;
    let small = rig.task("old", "small").await;
    let large = large_task(&rig, "old", "large", 3 * 1024 * 1024, None).await;
    let hot = Arc::new(CutShortStore {
        inner: rig.hot.clone(),
        cut: true.into(),
    });

    let report = rig
        .archiver_with(hot.clone(), rig.cold.clone(), config(&rig))
        .sweep()
        .await;
    assert_eq!(
        (report.archived, report.quarantined, report.failed),
        (0, 0, 2),
        "{report:?}"
    );
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.what == ProblemKind::Failed(ErrorKind::Transient)),
        "{report:?}"
    );
    for task in ["small", "large"] {
        let row = rig.row(task).await;
        assert_eq!(row.state(), BlobState::Hot, "{task}: {row:?}");
        assert!(
            !exists(rig.cold.as_ref(), &cold_location("old", task))
                .await
                .unwrap(),
            "{task}: committed in cold"
        );
    }

    hot.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    rig.catalog
        .retry_failing_now(chrono::Utc::now())
        .await
        .unwrap();
    let report = rig
        .archiver_with(hot, rig.cold.clone(), config(&rig))
        .sweep()
        .await;
    assert_eq!(report.archived, 2, "{report:?}");
    rig.audit(&[("old", "small", small), ("old", "large", large)])
        .await;
}

/// On the wire, a small blob still costs the hot store one GET (no HEAD
/// before it, whether or not the catalog records its size) and its share of
/// one bulk delete: reading through the read's answer added no request.
#[tokio::test]
async fn on_the_wire_a_small_blob_costs_the_hot_store_one_get() {
    let db = harness::pg::fresh_database().await;
    let catalog: Arc<dyn Fixtures> = Arc::new(db.catalog().await);
    catalog.migrate().await.unwrap();
    let server = harness::s3::S3Server::start().await;
    server.create_bucket(HOT_BUCKET);
    server.create_bucket(crate::pipeline::COLD_BUCKET);
    let relay = harness::capture::RecordingRelay::start(&server.endpoint).await;
    let hot_config = coldsweep::config::S3Config {
        endpoint: Some(relay.endpoint.clone()),
        ..server.config()
    };
    let hot: Arc<dyn Store> = Arc::new(S3Store::new("minio", &hot_config).unwrap());
    let cold: Arc<dyn Store> = Arc::new(S3Store::new("minio", &server.config()).unwrap());
    let rig = Rig::from_parts(
        Backend::PostgresS3,
        catalog,
        hot,
        cold,
        vec![Box::new(db), Box::new(server)],
    );
    rig.old_and_new_jobs().await;
    let sized = rig.task("old", "sized").await;
    let unsized_ = unsized_task(&rig).await;
    let before = relay.requests().len();

    let report = rig
        .archiver_with(rig.hot.clone(), rig.cold.clone(), config(&rig))
        .sweep()
        .await;
    assert_eq!(report.archived, 2, "{report:?}");
    let requests = relay.requests().split_off(before);
    // Requests on objects; the sweep's one listing (its proof that the
    // store sees the bucket) is per sweep, not per blob.
    let count = |method: &str| {
        requests
            .iter()
            .filter(|r| r.method == method && !r.target.contains("list-type"))
            .count()
    };
    assert_eq!(
        (count("GET"), count("HEAD"), count("POST"), count("DELETE")),
        (2, 0, 1, 0),
        "one GET each and one bulk delete: {:?}",
        requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect::<Vec<_>>()
    );
    rig.audit(&[("old", "sized", sized), ("old", "unsized", unsized_)])
        .await;
}
