//! S3-compatible store (R2, AWS S3, B2, MinIO, GCS interop, Supabase's S3
//! endpoint) through OpenDAL.
//!
//! One implementation for every S3-compatible service: path-style addressing,
//! a custom endpoint (with a path such as `/storage/v1/s3` kept in front of
//! the bucket), any region, and only the credentials in [`S3Config`] (never
//! `~/.aws`, `AWS_*` or instance metadata). What differs per service — the
//! upload checksum and whether the ETag proves the stored MD5 — comes from
//! its [`Profile`]. With `Content-MD5` (every profile but `supabase-s3`) a
//! body damaged in transit is refused rather than stored.
//!
//! Refusals that need telling apart — a wrong signing region, a refused
//! checksum, a signature that did not match — are read from the S3 error
//! answer at the HTTP layer (`store::s3_answer`), never from message text.
//! A wrong region names the setting to change; see
//! [`S3Store::with_region_variable`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use ::opendal::layers::TimeoutLayer;
use ::opendal::services::S3;
use ::opendal::{HttpTransporter, Operator};
use async_trait::async_trait;
use bytes::Bytes;

use super::opendal::{Adapter, Retry, check_bucket};
use super::profile::Profile;
use super::profile::{ChecksumMode, Provider};
use super::s3_answer::AnswerReader;
use super::settings::Secret;
use super::{ByteStream, Location, ObjectMeta, PutOptions, PutResult, Store};
use crate::error::{Error, ErrorKind, Result};

mod settings;

pub(crate) use settings::ENDPOINT_EXPECTED;
pub use settings::{S3Config, S3Names, S3Settings};

/// Limit for one request without a body (stat, delete, list).
const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit for one read or write of a body; generous because blobs may be large
/// and links slow, short enough to notice a stalled connection.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Most keys one `DeleteObjects` request may carry (S3's limit, and OpenDAL's batch size).
pub const MAX_DELETE_BATCH: usize = 1000;
/// Temporary failures (5xx, 429, timeouts, resets) are retried with jittered backoff.
const RETRY: Retry = Retry {
    times: 4,
    min_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(5),
};

/// An S3-compatible store serving any number of buckets.
pub struct S3Store {
    /// The provider's profile, with `S3Config::checksum` applied.
    profile: Profile,
    endpoint: Option<String>,
    region: String,
    /// The setting that names `region`, for advice when the store wants another.
    region_variable: Option<String>,
    access_key_id: String,
    secret_access_key: Secret,
    /// One operator per bucket (OpenDAL binds a bucket at build time); they
    /// share the process-wide HTTP client.
    buckets: Mutex<HashMap<String, Adapter>>,
}

impl S3Store {
    /// A store for `provider` (the name recorded in the catalog: `r2`, `s3`,
    /// `minio`, …, see [`Provider`]) reached with `config`, behaving as the
    /// provider's [`Profile`] says (its upload checksum replaced by
    /// `config.checksum` when set): [`S3Config::build`] and
    /// [`S3Store::with_settings`].
    ///
    /// Fails with [`ErrorKind::InvalidInput`] when a value is unusable (see
    /// [`S3Config::build`]) or the provider is not an S3-compatible one.
    pub fn new(provider: &str, config: &S3Config) -> Result<S3Store> {
        let named = provider.trim();
        let Some(provider) = named
            .parse::<Provider>()
            .ok()
            .filter(|p| Profile::of(*p).is_some())
        else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "S3 store: provider {named:?} is not an S3-compatible provider; expected one \
                     of {}",
                    super::profile::PROFILES
                        .map(|p| p.provider.as_str())
                        .join(", ")
                ),
            ));
        };
        S3Store::with_settings(&config.build(provider, &S3Names::PLAIN)?)
    }

    /// A store reached with checked `settings`.
    ///
    /// Builds its client once (no request), so settings OpenDAL refuses
    /// fail here, at start-up.
    pub fn with_settings(settings: &S3Settings) -> Result<S3Store> {
        let store = S3Store {
            profile: settings.profile,
            endpoint: settings.endpoint.clone(),
            region: settings.region.clone(),
            region_variable: None,
            access_key_id: settings.access_key_id.clone(),
            secret_access_key: settings.secret_access_key.clone(),
            buckets: Mutex::new(HashMap::new()),
        };
        store.build("coldsweep-settings-check")?;
        Ok(store)
    }

    /// Name the setting that holds this store's signing region
    /// (`ARCHIVE_REGION`, `HOT_S3_REGION`): when the store answers that the
    /// region is wrong, the error says to set it, with the store's region
    /// when the store names it.
    pub fn with_region_variable(mut self, name: impl Into<String>) -> Self {
        self.region_variable = Some(name.into());
        // Operators built so far (none, unless used already) would not know it.
        self.buckets
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self
    }

    fn build(&self, bucket: &str) -> Result<Adapter> {
        let md5 = self.profile.checksum == ChecksumMode::ContentMd5;
        let op = self.operator(bucket, md5)?;
        // OpenDAL refuses multipart uploads on an operator that sends
        // Content-MD5 (S3 takes no MD5 algorithm for them), so streamed
        // uploads go without it: their parts are proven by the multipart
        // ETag or by reading the copy back (see `archiver::stream`).
        let stream_op = if md5 {
            self.operator(bucket, false)?
        } else {
            op.clone()
        };
        Ok(Adapter::new(op, RETRY).with_stream_op(stream_op, super::STREAM_PART_SIZE))
    }

    /// An operator for `bucket`, sending Content-MD5 with every upload when `md5`.
    fn operator(&self, bucket: &str, md5: bool) -> Result<Operator> {
        let mut builder = S3::default()
            .bucket(bucket)
            .root("/")
            .region(&self.region)
            .access_key_id(&self.access_key_id)
            .secret_access_key(self.secret_access_key.expose())
            .disable_config_load()
            .disable_ec2_metadata();
        // OpenDAL sends at most this one checksum, and no SDK checksum headers.
        if md5 {
            builder = builder.checksum_algorithm("md5");
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint(endpoint);
        }
        let op = Operator::new(builder).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}: S3 settings rejected for bucket {bucket:?}",
                    self.provider()
                ),
            )
            .with_source(e)
        })?;
        // Below every layer, so each attempt's answer is read before OpenDAL's.
        let base = op.base_context().clone();
        let reader = AnswerReader::new(
            base.http_transport().clone(),
            &self.region,
            self.region_variable.clone(),
        );
        Ok(op
            .with_context(base.with_http_transport(HttpTransporter::new(reader)))
            // A timed-out attempt is a temporary error, so the adapter retries it.
            .layer(
                TimeoutLayer::new()
                    .with_timeout(OP_TIMEOUT)
                    .with_io_timeout(IO_TIMEOUT),
            ))
    }

    /// The cached operator for `bucket`, built on first use.
    fn bucket(&self, bucket: &str) -> Result<Adapter> {
        check_bucket(bucket)?;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(adapter) = buckets.get(bucket) {
            return Ok(adapter.clone());
        }
        let adapter = self.build(bucket)?;
        buckets.insert(bucket.to_owned(), adapter.clone());
        Ok(adapter)
    }

    fn named<'a>(&'a self, location: &'a Location) -> Named<'a> {
        Named(self.provider(), location)
    }

    /// The profile this store follows (with any checksum override applied).
    pub fn profile(&self) -> Profile {
        self.profile
    }
}

/// `provider:bucket/key` for messages.
struct Named<'a>(&'a str, &'a Location);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

impl fmt::Debug for S3Store {
    // By hand: the secret and the access key id stay out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buckets: Vec<String> = self
            .buckets
            .lock()
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default();
        buckets.sort();
        f.debug_struct("S3Store")
            .field("provider", &self.provider())
            .field("checksum", &self.profile.checksum)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("region_variable", &self.region_variable)
            .field("buckets", &buckets)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for S3Store {
    fn provider(&self) -> &str {
        self.profile.provider.as_str()
    }

    fn upload_checksum(&self) -> &str {
        // What `build` asks OpenDAL to send.
        match self.profile.checksum {
            ChecksumMode::ContentMd5 => "Content-MD5",
            ChecksumMode::None => "none",
        }
    }

    fn etag_proves_md5(&self) -> bool {
        self.profile.etag_proves_md5()
    }

    fn namespace(&self) -> Option<String> {
        Some(match &self.endpoint {
            Some(endpoint) => format!("s3:{endpoint}"),
            None => format!("s3:aws:{}", self.region),
        })
    }

    async fn ping(&self, bucket: &str) -> Result<()> {
        let what = format!("{}:{bucket}", self.provider());
        self.bucket(bucket)?.check(&what).await
    }

    async fn put(
        &self,
        location: &Location,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutResult> {
        self.bucket(&location.bucket)?
            .put(location.key.as_str(), body, options, &self.named(location))
            .await
    }

    async fn get(&self, location: &Location) -> Result<Bytes> {
        self.bucket(&location.bucket)?
            .get(location.key.as_str(), &self.named(location))
            .await
    }

    async fn get_stream(&self, location: &Location) -> Result<(u64, ByteStream)> {
        self.bucket(&location.bucket)?
            .get_stream(location.key.as_str(), &self.named(location))
            .await
    }

    /// In parts of [`STREAM_PART_SIZE`](super::STREAM_PART_SIZE) bytes
    /// (multipart), or one plain PUT for a body smaller than a part; neither
    /// carries Content-MD5 (see `build`).
    async fn put_stream(
        &self,
        location: &Location,
        _size: u64,
        body: ByteStream,
        options: &PutOptions,
    ) -> Result<PutResult> {
        self.bucket(&location.bucket)?
            .put_stream(location.key.as_str(), body, options, &self.named(location))
            .await
    }

    async fn head(&self, location: &Location) -> Result<ObjectMeta> {
        self.bucket(&location.bucket)?
            .head(location.key.as_str(), &self.named(location))
            .await
    }

    async fn delete(&self, location: &Location) -> Result<()> {
        self.bucket(&location.bucket)?
            .delete(location.key.as_str(), &self.named(location))
            .await
    }

    /// `DeleteObjects` per bucket, [`MAX_DELETE_BATCH`] keys a request,
    /// where the profile says the service takes it; single deletes
    /// otherwise. A request that fails, or whose answer refuses a key or
    /// names one it was not asked about, leaves its keys undecided: each is
    /// then deleted alone, so every result is exact and classified as a
    /// single delete's would be.
    async fn delete_many(&self, locations: &[Location]) -> Vec<Result<()>> {
        if !self.profile.delete_objects {
            return super::delete_each(self, locations).await;
        }
        let mut results: Vec<Option<Result<()>>> = locations.iter().map(|_| None).collect();
        let mut by_bucket: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, location) in locations.iter().enumerate() {
            by_bucket.entry(&location.bucket).or_default().push(i);
        }
        for (bucket, indexes) in by_bucket {
            // A bucket name refused here is refused again, per key, below.
            let adapter = self.bucket(bucket).ok();
            for chunk in indexes.chunks(MAX_DELETE_BATCH) {
                let batched = match &adapter {
                    // One key: a plain DeleteObject is as cheap.
                    Some(adapter) if chunk.len() > 1 => {
                        let paths: Vec<&str> =
                            chunk.iter().map(|&i| locations[i].key.as_str()).collect();
                        match adapter.delete_batch(&paths).await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::debug!(
                                    provider = self.provider(),
                                    bucket,
                                    keys = chunk.len(),
                                    error = %e,
                                    "batch delete left keys undecided; deleting them one by one"
                                );
                                false
                            }
                        }
                    }
                    _ => false,
                };
                if batched {
                    for &i in chunk {
                        results[i] = Some(Ok(()));
                    }
                    continue;
                }
                let undecided: Vec<Location> =
                    chunk.iter().map(|&i| locations[i].clone()).collect();
                let singles = super::delete_each(self, &undecided).await;
                for (&i, result) in chunk.iter().zip(singles) {
                    results[i] = Some(result);
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every location is in one bucket's chunks"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> S3Config {
        S3Config {
            endpoint: Some("http://127.0.0.1:9/".into()),
            region: "auto".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(Secret::new("hunter2-very-secret")),
            checksum: None,
        }
    }

    #[test]
    fn debug_hides_credentials() {
        let store = S3Store::new("r2", &config()).unwrap();
        store.bucket("cold").unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(shown.contains("cold") && shown.contains("r2"), "{shown}");
    }

    #[test]
    fn unusable_settings_are_invalid_input() {
        let mut no_secret = config();
        no_secret.secret_access_key = None;
        let mut bad_endpoint = config();
        bad_endpoint.endpoint = Some("ftp://x".into());
        let mut no_region = config();
        no_region.region = " ".into();
        for (provider, cfg) in [
            ("r2", no_secret),
            ("r2", bad_endpoint),
            ("r2", no_region),
            ("", config()),
            ("fs", config()),
            ("azure", config()),
        ] {
            let err = S3Store::new(provider, &cfg).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            assert!(!err.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn the_profile_decides_the_checksum_unless_overridden() {
        let store = |provider: &str, checksum| {
            let cfg = S3Config {
                checksum,
                ..config()
            };
            let store = S3Store::new(provider, &cfg).unwrap();
            (store.upload_checksum().to_owned(), store.etag_proves_md5())
        };
        let md5 = || ("Content-MD5".to_owned(), true);
        assert_eq!(store("r2", None), md5());
        assert_eq!(store(" MinIO ", None), md5());
        assert_eq!(store("b2", None), ("Content-MD5".to_owned(), false));
        assert_eq!(store("supabase-s3", None), ("none".to_owned(), false));
        assert_eq!(
            store("r2", Some(ChecksumMode::None)),
            ("none".to_owned(), false)
        );
        assert_eq!(
            store("supabase-s3", Some(ChecksumMode::ContentMd5)),
            ("Content-MD5".to_owned(), false)
        );
        assert_eq!(
            S3Store::new("MinIO", &config()).unwrap().provider(),
            "minio"
        );
    }

    #[tokio::test]
    async fn hostile_bucket_is_refused_before_any_request() {
        let store = S3Store::new("minio", &config()).unwrap();
        let key = crate::keys::ObjectKey::new("k").unwrap();
        for bucket in ["", "..", "a/b", "a?x=1"] {
            let err = store
                .get(&Location::new(bucket, key.clone()))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bucket:?}");
        }
    }
}
