//! The store conformance suite: `pub async fn` checks every [`Store`] must
//! pass, and the tests that run them against each backend (one line each).
//!
//! What a backend keeps beyond the bytes differs (the fs store keeps no ETag
//! or content headers), so each backend declares it in [`Keeps`] and the
//! checks assert exactly that — a backend never skips a check.

use std::collections::BTreeMap;
use std::io::Write;

use bytes::Bytes;
use coldsweep::store::{self, FsStore, Location, PutOptions, S3Store, Store, meta};
use coldsweep::{ErrorKind, ObjectKey};
use md5::{Digest, Md5};

use crate::harness::s3::{CorruptingRelay, S3Server};

/// What a backend keeps besides the bytes and their size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keeps {
    /// An ETag that is the MD5 of a single-part body.
    pub(crate) md5_etag: bool,
    /// `Content-Type`.
    pub(crate) content_type: bool,
    /// `Content-Encoding`.
    pub(crate) content_encoding: bool,
    /// User metadata.
    pub(crate) user_metadata: bool,
}

/// S3 and every S3-compatible service.
pub(crate) const S3_KEEPS: Keeps = Keeps {
    md5_etag: true,
    content_type: true,
    content_encoding: true,
    user_metadata: true,
};

/// The local folder store (user metadata in extended attributes).
pub(crate) const FS_KEEPS: Keeps = Keeps {
    md5_etag: false,
    content_type: false,
    content_encoding: false,
    user_metadata: true,
};

/// Run every check against `store`, whose `bucket` and `other` exist.
pub(crate) async fn run_all(store: &dyn Store, bucket: &str, other: &str, keeps: Keeps) {
    round_trip_is_byte_identical(store, bucket).await;
    head_describes_the_object(store, bucket, keeps).await;
    missing_object_is_not_found(store, bucket).await;
    delete_of_missing_is_ok(store, bucket).await;
    delete_removes(store, bucket).await;
    overwrite_replaces(store, bucket, keeps).await;
    exists_tells_present_from_absent(store, bucket).await;
    ping_finds_the_bucket(store, bucket).await;
    delete_many_across_buckets(store, bucket, other).await;
    delete_many_of_present_and_missing_is_ok(store, bucket, other).await;
    delete_many_results_line_up_with_locations(store, bucket).await;
}

/// A fresh key under a per-run prefix, so checks never see each other's objects.
fn fresh(bucket: &str, name: &str) -> Location {
    let key = format!("conformance/{}/{name}", uuid::Uuid::new_v4().simple());
    Location::new(bucket, ObjectKey::new(key).expect("valid key"))
}

/// Real gzip of 256 KiB of varied HTML: bigger than any server's write
/// chunk, and a client that decoded `Content-Encoding: gzip` would be caught.
fn gzip_body() -> Bytes {
    let mut html = String::from("<!doctype html><html><body>");
    for i in 0..20_000u32 {
        html.push_str(&format!(
            "<p id=\"{i}\">{}</p>",
            i.wrapping_mul(2_654_435_761)
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(html.as_bytes()).unwrap();
    Bytes::from(gz.finish().unwrap())
}

fn task_options() -> PutOptions {
    PutOptions {
        content_type: Some("text/html; charset=utf-8".into()),
        content_encoding: Some("gzip".into()),
        metadata: BTreeMap::from([
            // Ids may be any UTF-8, and `_`, ` ` and `%` must survive too.
            (meta::TASK_ID.into(), "task-ü 7_%41".into()),
            (meta::JOB_ID.into(), "job-日本".into()),
            (
                meta::SHA256.into(),
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            ),
        ]),
    }
}

/// What `put` stored, `get` returns, byte for byte (binary, empty, gzip with
/// `Content-Encoding: gzip`).
pub(crate) async fn round_trip_is_byte_identical(store: &dyn Store, bucket: &str) {
    let binary: Bytes = (0..=255u8).cycle().take(70_001).collect::<Vec<_>>().into();
    for (name, body, options) in [
        ("page.html.gz", gzip_body(), task_options()),
        ("binary", binary, PutOptions::default()),
        ("empty", Bytes::new(), PutOptions::default()),
    ] {
        let at = fresh(bucket, name);
        store.put(&at, body.clone(), &options).await.expect("put");
        let got = store.get(&at).await.expect("get");
        assert!(
            got == body,
            "{at}: got {} bytes back, put {}",
            got.len(),
            body.len()
        );
    }
}

/// `head` gives the size and, where the backend keeps them, an MD5 ETag,
/// the content headers and the user metadata.
pub(crate) async fn head_describes_the_object(store: &dyn Store, bucket: &str, keeps: Keeps) {
    let at = fresh(bucket, "page.html.gz");
    let body = gzip_body();
    let options = task_options();
    store.put(&at, body.clone(), &options).await.expect("put");
    let meta = store.head(&at).await.expect("head");

    assert_eq!(meta.size, body.len() as u64, "{at}: size");
    if keeps.md5_etag {
        let etag = meta
            .etag_md5()
            .unwrap_or_else(|| panic!("{at}: no MD5 ETag: {meta:?}"));
        assert_eq!(etag.as_slice(), Md5::digest(&body).as_slice(), "{at}: ETag");
    } else if let Some(etag) = meta.etag_md5() {
        // A backend may add an ETag later; if it does, it must be right.
        assert_eq!(etag.as_slice(), Md5::digest(&body).as_slice(), "{at}: ETag");
    }
    if keeps.content_type {
        assert_eq!(
            meta.content_type, options.content_type,
            "{at}: content type"
        );
    } else {
        assert_eq!(
            meta.content_type, None,
            "{at}: backend claims not to keep it"
        );
    }
    if keeps.content_encoding {
        assert_eq!(
            meta.content_encoding, options.content_encoding,
            "{at}: encoding"
        );
    } else {
        assert_eq!(
            meta.content_encoding, None,
            "{at}: backend claims not to keep it"
        );
    }
    if keeps.user_metadata {
        for (k, v) in &options.metadata {
            assert_eq!(
                meta.metadata.get(k),
                Some(v),
                "{at}: metadata {k}: {meta:?}"
            );
        }
    } else {
        assert!(
            meta.metadata.is_empty(),
            "{at}: backend claims not to keep it"
        );
    }
}

/// `get` and `head` of a missing object fail with `NotFound`, also when the
/// key's "folder" does not exist. In a missing bucket they fail with
/// `BucketNotFound` where the backend can tell, else `NotFound` (S3's `HEAD`
/// gets a bare 404): [`ping_finds_the_bucket`] is what proves a bucket.
pub(crate) async fn missing_object_is_not_found(store: &dyn Store, bucket: &str) {
    let at = fresh(bucket, "never-written");
    let err = store.get(&at).await.expect_err("get of a missing object");
    assert_eq!(err.kind(), ErrorKind::NotFound, "get {at}: {err}");
    let err = store.head(&at).await.expect_err("head of a missing object");
    assert_eq!(err.kind(), ErrorKind::NotFound, "head {at}: {err}");

    let missing_bucket = format!("missing-{}", uuid::Uuid::new_v4().simple());
    let at = fresh(&missing_bucket, "x");
    let either = [ErrorKind::NotFound, ErrorKind::BucketNotFound];
    let err = store.get(&at).await.expect_err("get in a missing bucket");
    assert!(either.contains(&err.kind()), "get {at}: {err}");
    let err = store.head(&at).await.expect_err("head in a missing bucket");
    assert!(either.contains(&err.kind()), "head {at}: {err}");
}

/// Deleting what is not there succeeds.
pub(crate) async fn delete_of_missing_is_ok(store: &dyn Store, bucket: &str) {
    let at = fresh(bucket, "never-written");
    store.delete(&at).await.expect("delete of a missing object");
    store.delete(&at).await.expect("and again");
}

/// After `delete`, the object is gone; its neighbours are not.
pub(crate) async fn delete_removes(store: &dyn Store, bucket: &str) {
    let at = fresh(bucket, "doomed");
    let neighbour = Location::new(bucket, ObjectKey::new(format!("{}.keep", at.key)).unwrap());
    let opts = PutOptions::default();
    store
        .put(&at, Bytes::from_static(b"x"), &opts)
        .await
        .expect("put");
    store
        .put(&neighbour, Bytes::from_static(b"y"), &opts)
        .await
        .expect("put");
    store.delete(&at).await.expect("delete");
    let err = store.get(&at).await.expect_err("deleted object is gone");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{at}: {err}");
    assert_eq!(store.get(&neighbour).await.expect("neighbour"), &b"y"[..]);
}

/// A second `put` replaces bytes, size and metadata; nothing of the first survives.
pub(crate) async fn overwrite_replaces(store: &dyn Store, bucket: &str, keeps: Keeps) {
    let at = fresh(bucket, "page.html.gz");
    store
        .put(&at, gzip_body(), &task_options())
        .await
        .expect("first put");
    let second = Bytes::from_static(b"shorter second body");
    let options = PutOptions {
        metadata: BTreeMap::from([(meta::JOB_ID.into(), "job-4".into())]),
        ..PutOptions::default()
    };
    store
        .put(&at, second.clone(), &options)
        .await
        .expect("second put");

    assert_eq!(store.get(&at).await.expect("get"), second, "{at}");
    let meta = store.head(&at).await.expect("head");
    assert_eq!(meta.size, second.len() as u64, "{at}");
    if let Some(etag) = meta.etag_md5() {
        assert_eq!(
            etag.as_slice(),
            Md5::digest(&second).as_slice(),
            "{at}: ETag"
        );
    }
    if keeps.user_metadata {
        assert_eq!(
            meta.metadata.get(meta::JOB_ID).map(String::as_str),
            Some("job-4")
        );
        for stale in [meta::TASK_ID, meta::SHA256] {
            assert!(
                !meta.metadata.contains_key(stale),
                "{at}: stale {stale}: {meta:?}"
            );
        }
    }
    assert_eq!(meta.content_encoding, None, "{at}: stale content encoding");
}

/// `exists` is true for a stored object and false (not an error) for a missing one.
pub(crate) async fn exists_tells_present_from_absent(store: &dyn Store, bucket: &str) {
    let at = fresh(bucket, "present");
    assert!(!store::exists(store, &at).await.expect("exists before put"));
    store
        .put(&at, Bytes::from_static(b"here"), &PutOptions::default())
        .await
        .expect("put");
    assert!(store::exists(store, &at).await.expect("exists after put"));
}

/// `ping` succeeds on an existing bucket and fails with `NotFound` on a missing one.
pub(crate) async fn ping_finds_the_bucket(store: &dyn Store, bucket: &str) {
    store
        .ping(bucket)
        .await
        .expect("ping of an existing bucket");
    let missing = format!("missing-{}", uuid::Uuid::new_v4().simple());
    let err = store
        .ping(&missing)
        .await
        .expect_err("ping of a missing bucket");
    // Never NotFound: that would say something about the objects.
    assert_eq!(
        err.kind(),
        ErrorKind::BucketNotFound,
        "ping {missing}: {err}"
    );
}

/// Put a small body at each location.
async fn put_all(store: &dyn Store, locations: &[Location]) {
    for at in locations {
        store
            .put(at, Bytes::from(at.to_string()), &PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("put {at}: {e}"));
    }
}

/// Every location reads as not found.
async fn all_gone(store: &dyn Store, locations: &[Location]) {
    for at in locations {
        let err = store.get(at).await.expect_err("deleted object is gone");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{at}: {err}");
    }
}

/// `delete_many` over keys of two buckets, interleaved: one `Ok` per
/// location, every object gone, the neighbours left.
pub(crate) async fn delete_many_across_buckets(store: &dyn Store, bucket: &str, other: &str) {
    let doomed: Vec<Location> = (0..7)
        .map(|i| {
            fresh(
                if i % 3 == 1 { other } else { bucket },
                &format!("many-{i}"),
            )
        })
        .collect();
    let neighbours = [fresh(bucket, "many-keep"), fresh(other, "many-keep")];
    put_all(store, &doomed).await;
    put_all(store, &neighbours).await;
    let results = store.delete_many(&doomed).await;
    assert_eq!(results.len(), doomed.len());
    for (at, result) in doomed.iter().zip(&results) {
        assert!(result.is_ok(), "{at}: {result:?}");
    }
    all_gone(store, &doomed).await;
    for at in &neighbours {
        assert_eq!(store.get(at).await.expect("neighbour"), at.to_string());
    }
    assert!(store.delete_many(&[]).await.is_empty());
}

/// Missing keys (never written, or listed twice) are deleted as far as
/// `delete_many` is concerned, like a single `delete`.
pub(crate) async fn delete_many_of_present_and_missing_is_ok(
    store: &dyn Store,
    bucket: &str,
    other: &str,
) {
    let present = [fresh(bucket, "mixed-a"), fresh(other, "mixed-b")];
    put_all(store, &present).await;
    let locations = vec![
        fresh(bucket, "mixed-never"),
        present[0].clone(),
        fresh(other, "mixed-never"),
        present[1].clone(),
        present[0].clone(),
    ];
    let results = store.delete_many(&locations).await;
    assert_eq!(results.len(), locations.len());
    for (at, result) in locations.iter().zip(&results) {
        assert!(result.is_ok(), "{at}: {result:?}");
    }
    all_gone(store, &locations).await;
    // And all of them again, now that none is there.
    assert!(
        store
            .delete_many(&locations)
            .await
            .iter()
            .all(Result::is_ok)
    );
}

/// The results follow the locations' order: a location the store must
/// refuse (a bucket name that is no bucket) fails at its own place only.
pub(crate) async fn delete_many_results_line_up_with_locations(store: &dyn Store, bucket: &str) {
    let present = [fresh(bucket, "order-a"), fresh(bucket, "order-b")];
    put_all(store, &present).await;
    let hostile = Location::new("../outside", ObjectKey::new("order-x").unwrap());
    let locations = vec![
        present[0].clone(),
        hostile,
        fresh(bucket, "order-never"),
        present[1].clone(),
    ];
    let results = store.delete_many(&locations).await;
    assert_eq!(results.len(), locations.len());
    for (i, (at, result)) in locations.iter().zip(&results).enumerate() {
        match (i, result) {
            (1, Err(e)) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{at}: {e}"),
            (1, Ok(())) => panic!("{at}: a hostile bucket name was accepted"),
            (_, result) => assert!(result.is_ok(), "{at}: {result:?}"),
        }
    }
    all_gone(store, &present).await;
}

#[tokio::test]
async fn fs_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path().join("root")).unwrap();
    std::fs::create_dir(store.root().join("cold")).unwrap();
    std::fs::create_dir(store.root().join("colder")).unwrap();
    assert_eq!(store.provider(), "fs");
    run_all(&store, "cold", "colder", FS_KEEPS).await;
}

#[tokio::test]
async fn s3_store_conforms() {
    let server = S3Server::start().await;
    server.create_bucket("cold");
    server.create_bucket("colder");
    let store = S3Store::new("minio", &server.config()).unwrap();
    assert_eq!(store.provider(), "minio");
    run_all(&store, "cold", "colder", S3_KEEPS).await;
}

#[tokio::test]
async fn s3_put_lands_in_the_named_bucket_path_style() {
    let server = S3Server::start().await;
    server.create_bucket("cold");
    let store = S3Store::new("r2", &server.config()).unwrap();
    let at = Location::new(
        "cold",
        ObjectKey::new("jobs/j1/tasks/t1/page.html.gz").unwrap(),
    );
    store
        .put(&at, Bytes::from_static(b"on disk"), &PutOptions::default())
        .await
        .unwrap();
    let on_disk = std::fs::read(server.root().join("cold/jobs/j1/tasks/t1/page.html.gz")).unwrap();
    assert_eq!(on_disk, b"on disk");
}

/// Every upload carries `Content-MD5`, so the server refuses a body damaged
/// in transit instead of storing it.
#[tokio::test]
async fn s3_refuses_an_upload_damaged_in_transit() {
    let server = S3Server::start().await;
    server.create_bucket("cold");
    let relay = CorruptingRelay::start(&server.endpoint, 0xA5).await;
    let config = coldsweep::config::S3Config {
        endpoint: Some(relay.endpoint.clone()),
        ..server.config()
    };
    let store = S3Store::new("r2", &config).unwrap();
    let at = Location::new("cold", ObjectKey::new("damaged").unwrap());
    let body = Bytes::from(vec![0xA5u8; 4096]);

    let err = store
        .put(&at, body.clone(), &PutOptions::default())
        .await
        .expect_err("a damaged upload must be refused");
    assert!(relay.flipped(), "the relay never saw the body");
    // S3's BadDigest (400): an integrity error a new upload may cure.
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.is_retryable(), "{err}");

    // The relay damages only once: the same upload now goes through intact.
    store
        .put(&at, body.clone(), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(store.get(&at).await.unwrap(), body);
}

#[tokio::test]
async fn s3_wrong_secret_is_permission_denied() {
    let server = S3Server::start().await;
    server.create_bucket("cold");
    let store = S3Store::new("r2", &server.config_with_wrong_secret()).unwrap();
    let at = Location::new("cold", ObjectKey::new("k").unwrap());
    let errors = [
        store.ping("cold").await.expect_err("ping"),
        store
            .put(&at, Bytes::from_static(b"x"), &PutOptions::default())
            .await
            .expect_err("put"),
        store.get(&at).await.expect_err("get"),
        store.head(&at).await.expect_err("head"),
        store.delete(&at).await.expect_err("delete"),
    ];
    for err in errors {
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains(&server.secret_key),
            "secret in error: {shown}"
        );
    }
    assert!(!server.root().join("cold/k").exists());
}

#[tokio::test]
async fn s3_debug_hides_the_secret() {
    let server = S3Server::start().await;
    server.create_bucket("cold");
    let store = S3Store::new("r2", &server.config()).unwrap();
    store.ping("cold").await.unwrap();
    let shown = format!("{store:?} {store:#?}");
    assert!(!shown.contains(&server.secret_key), "{shown}");
    assert!(shown.contains("r2"), "{shown}");
}

#[tokio::test]
async fn fs_refuses_hostile_bucket_names_and_writes_nothing_outside_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::new(dir.path().join("root")).unwrap();
    std::fs::create_dir(store.root().join("cold")).unwrap();
    let key = ObjectKey::new("escaped").unwrap();
    let hostile = [
        "",
        ".",
        "..",
        "../outside",
        "cold/../..",
        "/tmp",
        "a/b",
        "a\\b",
        "nul\0",
        ".coldsweep-tmp",
    ];
    for bucket in hostile {
        let at = Location::new(bucket, key.clone());
        let body = Bytes::from_static(b"hostile");
        let results = [
            (
                "put",
                store.put(&at, body, &PutOptions::default()).await.err(),
            ),
            ("get", store.get(&at).await.err()),
            ("head", store.head(&at).await.err()),
            ("delete", store.delete(&at).await.err()),
            ("ping", store.ping(bucket).await.err()),
        ];
        for (op, err) in results {
            let err = err.unwrap_or_else(|| panic!("{op} with bucket {bucket:?} succeeded"));
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidInput,
                "{op} {bucket:?}: {err}"
            );
        }
    }
    // Only the root is in the parent folder, and only the bucket and the
    // store's own temp folder are in the root.
    let names = |p: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(dir.path()), ["root"]);
    assert_eq!(names(store.root()), [".coldsweep-tmp", "cold"]);
    assert!(names(&store.root().join("cold")).is_empty());
}

/// `n` objects written straight into the server's bucket folder (s3s-fs
/// stores an object as a file), quicker than `n` uploads.
fn seed_files(server: &S3Server, bucket: &str, n: usize, prefix: &str) -> Vec<Location> {
    (0..n)
        .map(|i| {
            let key = format!("{prefix}/{i:05}.html.gz");
            let path = server.root().join(bucket).join(&key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
            Location::new(bucket, ObjectKey::new(key).unwrap())
        })
        .collect()
}

fn on_disk(server: &S3Server, at: &Location) -> bool {
    server
        .root()
        .join(&at.bucket)
        .join(at.key.as_str())
        .exists()
}

#[tokio::test]
async fn s3_delete_many_takes_one_request_per_thousand_keys() {
    let server = S3Server::start().await;
    server.create_bucket("cold");
    server.create_bucket("colder");
    let store = S3Store::new("minio", &server.config()).unwrap();
    let mut locations = seed_files(&server, "cold", 2345, "bulk");
    locations.extend(seed_files(&server, "colder", 7, "bulk"));
    let results = store.delete_many(&locations).await;
    assert_eq!(results.len(), locations.len());
    assert!(results.iter().all(Result::is_ok));
    assert!(!locations.iter().any(|at| on_disk(&server, at)));
    // ceil(2345 / 1000) for one bucket, one for the other; no single deletes.
    assert_eq!(server.requests("DeleteObjects"), 3 + 1);
    assert_eq!(server.requests("DeleteObject"), 0);

    // A lone key is one plain DeleteObject.
    let lone = seed_files(&server, "cold", 1, "lone");
    assert!(store.delete_many(&lone).await[0].is_ok());
    assert_eq!(
        (
            server.requests("DeleteObjects"),
            server.requests("DeleteObject")
        ),
        (4, 1)
    );
    assert!(!on_disk(&server, &lone[0]));
}

#[tokio::test]
async fn s3_delete_many_without_delete_objects_deletes_one_by_one() {
    let server = S3Server::start().await;
    server.create_bucket("cold");
    // GCS's S3 interoperability has no multi-object delete.
    let store = S3Store::new("gcs", &server.config()).unwrap();
    let locations = seed_files(&server, "cold", 12, "gcs");
    let results = store.delete_many(&locations).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(!locations.iter().any(|at| on_disk(&server, at)));
    assert_eq!(server.requests("DeleteObjects"), 0);
    assert_eq!(server.requests("DeleteObject"), 12);
}

/// A refused batch leaves its keys undecided: each is asked again alone,
/// and each result says what a single delete would have said.
#[tokio::test]
async fn s3_delete_many_refused_in_one_bucket_fails_only_its_keys() {
    let server = S3Server::start().await;
    server.create_bucket("cold");
    server.create_bucket("colder");
    let store = S3Store::new("minio", &server.config()).unwrap();
    let kept = seed_files(&server, "cold", 3, "refused");
    let gone = seed_files(&server, "colder", 3, "allowed");
    server.make_read_only("cold");
    let locations: Vec<Location> = kept
        .iter()
        .zip(&gone)
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let results = store.delete_many(&locations).await;
    assert_eq!(results.len(), locations.len());
    for (at, result) in locations.iter().zip(&results) {
        if at.bucket == "cold" {
            let err = result.as_ref().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{at}: {err}");
            assert!(on_disk(&server, at), "{at} was deleted");
        } else {
            assert!(result.is_ok(), "{at}: {result:?}");
            assert!(!on_disk(&server, at), "{at} is still there");
        }
    }
    assert_eq!(server.requests("DeleteObjects"), 2);
    assert_eq!(server.requests("DeleteObject"), 3);
}
