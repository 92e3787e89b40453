//! Provider profiles on the wire: for every profile, the store conformance
//! suite through a relay that records each request (one line per profile),
//! and the requests checked against what that provider accepts.
//!
//! What each provider accepts (see `src/store/profile.rs` and the README's
//! "Providers" section for sources): R2 takes at most one checksum per
//! request and no streaming (`aws-chunked`) signature, so an unsigned payload
//! with an explicit `Content-Length`; B2 and Supabase reject
//! `x-amz-checksum-*` / `x-amz-sdk-checksum-algorithm`; everyone takes
//! path-style requests, which MinIO and Supabase require; Supabase's S3 API
//! lives under `/storage/v1/s3`.

use base64::Engine as _;
use bytes::Bytes;
use coldsweep::config::{ChecksumMode, Provider, S3Config};
use coldsweep::store::profile::Profile;
use coldsweep::store::{Location, PutOptions, S3Store, Store};
use coldsweep::{ObjectKey, task_html_object_path};
use md5::{Digest, Md5};

use crate::harness::capture::{PrefixGateway, Recorded, RecordingRelay};
use crate::harness::s3::S3Server;
use crate::pipeline::{Backend, COLD_BUCKET, Rig};
use crate::store_conformance::{S3_KEEPS, run_all};

const BUCKET: &str = "cold";
/// A second bucket, for the conformance suite's bulk deletes.
const OTHER_BUCKET: &str = "colder";
/// Where Supabase serves its S3 API: `https://<ref>.storage.supabase.co/storage/v1/s3`.
const SUPABASE_PREFIX: &str = "/storage/v1/s3";

/// An S3 store for one profile whose every request crosses a recording relay.
struct OnTheWire {
    server: S3Server,
    relay: RecordingRelay,
    store: S3Store,
    /// The endpoint's path: `""`, or [`SUPABASE_PREFIX`] for `supabase-s3`.
    prefix: &'static str,
    region: String,
    _gateway: Option<PrefixGateway>,
}

impl OnTheWire {
    /// The store for `provider` (its upload checksum replaced by `checksum`
    /// when given) as a user would configure it, with `buckets` created.
    async fn start(provider: Provider, checksum: Option<ChecksumMode>, buckets: &[&str]) -> Self {
        let server = S3Server::start().await;
        for bucket in buckets {
            server.create_bucket(bucket);
        }
        // Supabase: relay → prefix gateway → the server's folder.
        let (gateway, upstream, prefix) = if provider == Provider::SupabaseS3 {
            let gateway = PrefixGateway::start(&server, SUPABASE_PREFIX).await;
            let upstream = gateway.endpoint.clone();
            (Some(gateway), upstream, SUPABASE_PREFIX)
        } else {
            (None, server.endpoint.clone(), "")
        };
        let relay = RecordingRelay::start(&upstream).await;
        let endpoint = format!("{}{prefix}", relay.endpoint);
        let profile = Profile::of(provider).expect("an S3 provider");
        // The profile's default region, else what the README says to set.
        let region = match provider {
            Provider::B2 => "us-west-004".to_owned(),
            Provider::SupabaseS3 => "eu-west-2".to_owned(),
            _ => profile
                .default_region(Some(&endpoint))
                .expect("a default region"),
        };
        let config = S3Config {
            endpoint: Some(endpoint),
            region: region.clone(),
            checksum,
            ..server.config()
        };
        let store = S3Store::new(provider.as_str(), &config).expect("store");
        OnTheWire {
            server,
            relay,
            store,
            prefix,
            region,
            _gateway: gateway,
        }
    }
}

/// The conformance suite through the relay, then every recorded request
/// checked against what the provider accepts.
async fn conforms_and_sends_what_the_provider_accepts(
    provider: Provider,
    checksum: Option<ChecksumMode>,
) {
    let wire = OnTheWire::start(provider, checksum, &[BUCKET, OTHER_BUCKET]).await;
    let profile = wire.store.profile();
    assert_eq!(wire.store.provider(), provider.as_str());
    assert_eq!(
        profile.checksum,
        checksum.unwrap_or(Profile::of(provider).unwrap().checksum)
    );

    run_all(&wire.store, BUCKET, OTHER_BUCKET, S3_KEEPS).await;

    // Path-style under the endpoint's path: bucket, then key, on disk as such.
    let at = Location::new(BUCKET, ObjectKey::new("profiles/k.bin").unwrap());
    wire.store
        .put(&at, Bytes::from_static(b"placed"), &PutOptions::default())
        .await
        .expect("put");
    let on_disk = std::fs::read(wire.server.root().join(BUCKET).join("profiles/k.bin"));
    assert_eq!(on_disk.expect("object in the bucket's folder"), b"placed");

    let requests = wire.relay.requests();
    let puts: Vec<&Recorded> = requests.iter().filter(|r| r.method == "PUT").collect();
    assert!(puts.len() >= 10, "{provider}: {} PUTs recorded", puts.len());
    for request in &requests {
        assert_every_request_fits(&wire, request);
    }
    for put in puts {
        assert_put_fits(profile.checksum, put);
    }
    // DeleteObjects where the service has it, always with the Content-MD5
    // AWS requires of it; GCS gets single deletes only.
    let batch_deletes: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.target.contains("?delete"))
        .collect();
    assert_eq!(
        !batch_deletes.is_empty(),
        profile.delete_objects,
        "{provider}: {} DeleteObjects requests",
        batch_deletes.len()
    );
    for delete in batch_deletes {
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&delete.body));
        assert_eq!(
            delete.header("content-md5"),
            Some(md5.as_str()),
            "POST {}",
            delete.target
        );
    }
}

/// Path-style under the endpoint's path, `Host` without the bucket, signed
/// for the profile's region with an unsigned payload, no SDK checksum headers.
fn assert_every_request_fits(wire: &OnTheWire, r: &Recorded) {
    let what = format!("{} {}", r.method, r.target);
    let rest = r
        .path()
        .strip_prefix(wire.prefix)
        .unwrap_or_else(|| panic!("{what}: not under {:?}", wire.prefix));
    let bucket = rest
        .strip_prefix('/')
        .and_then(|r| r.split('/').next())
        .unwrap_or_default();
    assert!(
        bucket == BUCKET || bucket == OTHER_BUCKET || bucket.starts_with("missing-"),
        "{what}: path-style needs the bucket first, got {bucket:?}"
    );
    assert_eq!(
        r.header("host"),
        Some(wire.relay.authority.as_str()),
        "{what}"
    );

    let auth = r.header("authorization").unwrap_or_default();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 "), "{what}: {auth:?}");
    let scope = format!("/{}/s3/aws4_request", wire.region);
    assert!(
        auth.contains(&scope),
        "{what}: not signed for {scope}: {auth}"
    );
    // Payload not hashed into the signature and not streamed in signed
    // chunks (R2 implements neither `STREAMING-*` mode); the checksum header
    // guards the body instead.
    assert_eq!(
        r.header("x-amz-content-sha256"),
        Some("UNSIGNED-PAYLOAD"),
        "{what}"
    );
    for (name, value) in &r.headers {
        let sdk_checksum = name.starts_with("x-amz-checksum")
            || name == "x-amz-sdk-checksum-algorithm"
            || name == "x-amz-trailer"
            || name == "x-amz-decoded-content-length";
        assert!(!sdk_checksum, "{what}: sends {name}: {value}");
    }
    assert_eq!(r.header("transfer-encoding"), None, "{what}");
}

/// `PutObject` carries an explicit `Content-Length`, the profile's checksum
/// and nothing else that claims to check the body.
fn assert_put_fits(checksum: ChecksumMode, put: &Recorded) {
    let what = format!("PUT {}", put.target);
    let length = put.body.len().to_string();
    assert_eq!(
        put.header("content-length"),
        Some(length.as_str()),
        "{what}"
    );
    assert!(
        !put.header("content-encoding")
            .unwrap_or_default()
            .contains("aws-chunked"),
        "{what}"
    );
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&put.body));
    match checksum {
        ChecksumMode::ContentMd5 => {
            assert_eq!(put.header("content-md5"), Some(md5.as_str()), "{what}")
        }
        ChecksumMode::None => assert_eq!(put.header("content-md5"), None, "{what}"),
    }
    let checksums = put
        .headers
        .iter()
        .filter(|(n, _)| n == "content-md5" || n.starts_with("x-amz-checksum"))
        .count();
    assert!(
        checksums <= 1,
        "{what}: {checksums} checksums (R2 takes one)"
    );
}

#[tokio::test]
async fn r2_profile() {
    conforms_and_sends_what_the_provider_accepts(Provider::R2, None).await;
}

#[tokio::test]
async fn s3_profile() {
    conforms_and_sends_what_the_provider_accepts(Provider::S3, None).await;
}

#[tokio::test]
async fn b2_profile() {
    conforms_and_sends_what_the_provider_accepts(Provider::B2, None).await;
}

#[tokio::test]
async fn minio_profile() {
    conforms_and_sends_what_the_provider_accepts(Provider::Minio, None).await;
}

#[tokio::test]
async fn gcs_profile() {
    conforms_and_sends_what_the_provider_accepts(Provider::Gcs, None).await;
}

#[tokio::test]
async fn supabase_s3_profile() {
    conforms_and_sends_what_the_provider_accepts(Provider::SupabaseS3, None).await;
}

#[tokio::test]
async fn r2_profile_with_checksum_none() {
    conforms_and_sends_what_the_provider_accepts(Provider::R2, Some(ChecksumMode::None)).await;
}

#[tokio::test]
async fn supabase_s3_profile_with_checksum_md5() {
    let md5 = Some(ChecksumMode::ContentMd5);
    conforms_and_sends_what_the_provider_accepts(Provider::SupabaseS3, md5).await;
}

/// The gateway is a real prefix: without `/storage/v1/s3` there is no S3
/// API, and a signature over another path is refused.
#[tokio::test]
async fn supabase_s3_needs_the_path_prefix() {
    let wire = OnTheWire::start(Provider::SupabaseS3, None, &[BUCKET]).await;
    wire.store.ping(BUCKET).await.expect("ping with the prefix");
    let bare = S3Config {
        endpoint: Some(wire.relay.endpoint.clone()),
        region: wire.region.clone(),
        ..wire.server.config()
    };
    let store = S3Store::new("supabase-s3", &bare).unwrap();
    store
        .ping(BUCKET)
        .await
        .expect_err("no S3 API outside the prefix");
    let at = Location::new(BUCKET, ObjectKey::new("k").unwrap());
    store
        .put(&at, Bytes::from_static(b"x"), &PutOptions::default())
        .await
        .expect_err("no S3 API outside the prefix");
    let wrong = S3Config {
        endpoint: Some(format!("{}{SUPABASE_PREFIX}", wire.relay.endpoint)),
        region: wire.region.clone(),
        ..wire.server.config_with_wrong_secret()
    };
    let err = S3Store::new("supabase-s3", &wrong)
        .unwrap()
        .ping(BUCKET)
        .await
        .expect_err("a bad signature under the prefix");
    assert_eq!(err.kind(), coldsweep::ErrorKind::PermissionDenied, "{err}");
    assert!(!wire.server.root().join(BUCKET).join("k").exists());
}

/// `ARCHIVE_VERIFY=auto` proves a copy by its ETag only where the profile
/// says the ETag is proof; everywhere else the archiver reads the copy back.
#[tokio::test]
async fn auto_verification_reads_back_unless_the_profile_trusts_the_etag() {
    for (provider, checksum, reads_back) in [
        (Provider::R2, None, false),
        (Provider::S3, None, false),
        (Provider::Minio, None, false),
        (Provider::B2, None, true),
        (Provider::Gcs, None, true),
        (Provider::SupabaseS3, None, true),
        (Provider::R2, Some(ChecksumMode::None), true),
    ] {
        let case = format!("{provider} checksum={checksum:?}");
        let rig = Rig::new(Backend::SqliteFs).await;
        rig.old_and_new_jobs().await;
        rig.task("old", "a").await;
        let wire = OnTheWire::start(provider, checksum, &[COLD_BUCKET]).await;
        let cold: std::sync::Arc<dyn Store> = std::sync::Arc::new(wire.store);
        let mut config = rig.config(1);
        config.provider = provider;

        let report = rig
            .archiver_with(rig.hot.clone(), cold, config)
            .sweep()
            .await;
        assert_eq!(report.archived, 1, "{case}: {report:?}");

        let key = task_html_object_path("old", "a");
        let requests = wire.relay.requests();
        let count = |method: &str| {
            requests
                .iter()
                .filter(|r| r.method == method && r.path().ends_with(&key))
                .count()
        };
        assert_eq!(count("PUT"), 1, "{case}");
        if reads_back {
            assert!(count("GET") > 0, "{case}: verified without reading back");
        } else {
            // A first claim, a store whose ETag is proof: the upload's own
            // answer proves the copy, nothing is asked before or after.
            assert_eq!(
                (count("HEAD"), count("GET")),
                (0, 0),
                "{case}: asked again what the upload answered"
            );
        }
    }
}
