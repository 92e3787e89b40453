//! The S3 store boundary against what servers and proxies really answer:
//! metadata values and names that survive signing and proxies, and refusals
//! (wrong region, refused checksum) classified from the S3 answer.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use coldsweep::catalog::BlobState;
use coldsweep::config::{ColdConfig, HotConfig, S3Config, S3Names, Secret};
use coldsweep::error::{Error, Result};
use coldsweep::store::{
    Location, ObjectMeta, PutOptions, PutResult, S3Store, Store, cold_store, hot_store, meta,
};
use coldsweep::{ErrorKind, ObjectKey, Provider};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::harness::capture::UnderscoreDroppingRelay;
use crate::harness::s3::CorruptingRelay;
use crate::pipeline::{Backend, Rig, cold_location, gzip, hot_location, sha256_hex};

/// Catches: ids sent as raw header values (the signer refused `t-ü`, and the
/// row was retried forever) or read back still encoded, and any id that does
/// not come back byte for byte.
#[tokio::test]
async fn ids_of_any_utf8_are_archived_and_read_back_equal() {
    let rig = Rig::new(Backend::PostgresS3).await;
    let old = "j-日本";
    rig.job(old, 1, "completed", 1).await;
    rig.job("new", 1, "completed", 2).await;
    let tasks = ["t-ü", "a_b"];
    let mut stored = Vec::new();
    for task in tasks {
        stored.push(rig.task(old, task).await);
    }

    let report = rig.archiver(1).sweep().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 2, "{report:?}");
    for (task, bytes) in tasks.into_iter().zip(stored) {
        assert_eq!(rig.row(task).await.state(), BlobState::Archived, "{task}");
        let at = cold_location(old, task);
        assert_eq!(rig.cold.get(&at).await.unwrap(), bytes, "{task}");
        let meta = rig.cold.head(&at).await.unwrap();
        assert_eq!(meta.metadata.get(meta::TASK_ID), Some(&task.to_owned()));
        assert_eq!(meta.metadata.get(meta::JOB_ID), Some(&old.to_owned()));
    }
}

/// Catches: metadata names with `_` (`x-amz-meta-task_id`), which a default
/// nginx drops; the store then finds the signature broken and every upload
/// behind such a proxy fails.
#[tokio::test]
async fn archiving_works_behind_a_proxy_that_drops_underscored_headers() {
    let rig = Rig::new(Backend::PostgresS3).await;
    let server = rig.s3_server().expect("an S3 rig");
    let relay = UnderscoreDroppingRelay::start(&server.endpoint).await;
    let behind = S3Config {
        endpoint: Some(relay.endpoint.clone()),
        ..server.config()
    };
    let cold: Arc<dyn Store> = Arc::new(S3Store::new("minio", &behind).unwrap());

    // The relay is as hostile as nginx: a signed header with `_` is dropped,
    // and the store, missing a signed header, refuses the signature.
    let probe = Location::new(
        crate::pipeline::COLD_BUCKET,
        ObjectKey::new("underscore").unwrap(),
    );
    let underscored = PutOptions {
        metadata: BTreeMap::from([("task_id".to_owned(), "t".to_owned())]),
        ..PutOptions::default()
    };
    let err = cold
        .put(&probe, Bytes::from_static(b"x"), &underscored)
        .await
        .expect_err("a signed header dropped on the way must break the signature");
    assert_eq!(relay.dropped(), ["x-amz-meta-task_id"]);
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("proxy"), "{err}");

    rig.old_and_new_jobs().await;
    let bytes = rig.task("old", "t1").await;
    let archiver = rig.archiver_with(rig.hot.clone(), cold.clone(), rig.config(1));
    let report = archiver.sweep().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 1, "{report:?}");
    assert_eq!(rig.row("t1").await.state(), BlobState::Archived);
    let at = cold_location("old", "t1");
    assert_eq!(cold.get(&at).await.unwrap(), bytes);
    let meta = cold.head(&at).await.unwrap();
    assert_eq!(
        meta.metadata.get(meta::TASK_ID).map(String::as_str),
        Some("t1")
    );
    assert!(meta.stored_sha256().is_some(), "{meta:?}");
    assert_eq!(relay.dropped().len(), 1, "{:?}", relay.dropped());
}

/// Catches: a wrong signing region reported as an unexplained error (or as
/// a missing bucket) instead of a bad setting that names the variable to
/// change and the region the store expects, for the cold and the hot store.
#[tokio::test]
async fn a_wrong_region_names_the_variable_and_the_expected_region() {
    let server = WrongRegionServer::start("eu-west-1").await;
    let config = S3Config {
        endpoint: Some(server.endpoint.clone()),
        region: "us-east-1".into(),
        access_key_id: Some("AKIDEXAMPLE".into()),
        secret_access_key: Some(Secret::new("wrong-region-secret")),
        checksum: None,
    };
    let config = config.build(Provider::S3, &S3Names::PLAIN).unwrap();
    let cold = cold_store(Provider::S3, &ColdConfig::S3(config.clone())).unwrap();
    let hot = hot_store(&HotConfig::S3(config)).unwrap();
    let at = Location::new("bucket", ObjectKey::new("k").unwrap());
    for (store, variable) in [(&cold, "ARCHIVE_REGION"), (&hot, "HOT_S3_REGION")] {
        let pinged = store.ping("bucket").await.expect_err("ping");
        // HEAD answers carry no body: only the `x-amz-bucket-region` header.
        let headed = store.head(&at).await.expect_err("head");
        for err in [pinged, headed] {
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            let want = format!("the store expects region eu-west-1: set {variable}=eu-west-1");
            assert!(err.message().contains(&want), "{err}");
        }
    }
    assert!(server.requests() >= 4);
}

/// Catches: S3's `BadDigest` (the store refused the upload's Content-MD5
/// because the body changed on the way) treated as a permanent unexpected
/// error, so a blob one flipped bit away from archived waited a whole sweep
/// or more; it is an integrity error the archiver uploads again.
#[tokio::test]
async fn a_body_damaged_on_the_way_is_refused_and_uploaded_again() {
    let rig = Rig::new(Backend::PostgresS3).await;
    let server = rig.s3_server().expect("an S3 rig");
    let relay = CorruptingRelay::start(&server.endpoint, 0xA5).await;
    let via = S3Config {
        endpoint: Some(relay.endpoint.clone()),
        ..server.config()
    };
    let (cold, put_errors) = PutErrors::wrap(Arc::new(S3Store::new("minio", &via).unwrap()));

    rig.old_and_new_jobs().await;
    // The relay flips the first 0xA5 it forwards: make sure the body has one
    // (headers are ASCII and never do).
    let (html, bytes) = (0..)
        .map(|n| format!("<html>page {n}</html>").repeat(40))
        .map(|html| {
            let bytes = gzip(html.as_bytes());
            (html, bytes)
        })
        .find(|(_, bytes)| bytes.contains(&0xA5))
        .unwrap();
    rig.insert_task("old", "t1", &bytes, Some(sha256_hex(html.as_bytes())))
        .await;
    rig.hot
        .put(
            &hot_location("old", "t1"),
            bytes.clone(),
            &PutOptions::default(),
        )
        .await
        .unwrap();

    let archiver = rig.archiver_with(rig.hot.clone(), cold.clone(), rig.config(1));
    let report = archiver.sweep().await;
    assert!(relay.flipped(), "the relay never damaged the upload");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 1, "{report:?}");
    assert_eq!(rig.row("t1").await.state(), BlobState::Archived);
    assert_eq!(
        rig.cold.get(&cold_location("old", "t1")).await.unwrap(),
        bytes
    );
    let seen = put_errors.lock().unwrap().clone();
    assert_eq!(seen, [(ErrorKind::Integrity, true)], "{seen:?}");
}

/// Kind and retry flag of each failed `put`, in order.
type Seen = Arc<Mutex<Vec<(ErrorKind, bool)>>>;

/// A cold store that records the kind and retry flag of every failed `put`,
/// changing nothing.
#[derive(Debug)]
struct PutErrors {
    inner: Arc<dyn Store>,
    seen: Seen,
}

impl PutErrors {
    fn wrap(inner: Arc<dyn Store>) -> (Arc<dyn Store>, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let store = PutErrors {
            inner,
            seen: seen.clone(),
        };
        (Arc::new(store), seen)
    }
}

#[async_trait]
impl Store for PutErrors {
    fn provider(&self) -> &str {
        self.inner.provider()
    }
    fn upload_checksum(&self) -> &str {
        self.inner.upload_checksum()
    }
    fn etag_proves_md5(&self) -> bool {
        self.inner.etag_proves_md5()
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
        let result = self.inner.put(location, body, options).await;
        if let Err(e) = &result {
            self.seen.lock().unwrap().push((e.kind(), e.is_retryable()));
        }
        result
    }
    async fn get(&self, location: &Location) -> Result<Bytes> {
        self.inner.get(location).await
    }
    async fn head(&self, location: &Location) -> Result<ObjectMeta> {
        self.inner.head(location).await
    }
    async fn delete(&self, location: &Location) -> Result<(), Error> {
        self.inner.delete(location).await
    }
    async fn delete_many(&self, locations: &[Location]) -> Vec<Result<(), Error>> {
        self.inner.delete_many(locations).await
    }
}

/// An S3 endpoint in another region, as AWS and Garage answer a request
/// signed for the wrong one: 400 `AuthorizationHeaderMalformed` naming the
/// expected region in `<Region>` and in `x-amz-bucket-region`.
struct WrongRegionServer {
    endpoint: String,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WrongRegionServer {
    async fn start(region: &'static str) -> WrongRegionServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let counter = counter.clone();
                let service = hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\
                         <Code>AuthorizationHeaderMalformed</Code>\
                         <Message>The authorization header is malformed; the region \
                         'us-east-1' is wrong; expecting '{region}'</Message>\
                         <Region>{region}</Region><RequestId>0</RequestId></Error>"
                    );
                    async move {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(400)
                                .header("content-type", "application/xml")
                                .header("x-amz-bucket-region", region)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        WrongRegionServer {
            endpoint,
            requests,
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for WrongRegionServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
