//! The store seam: one small trait for every object store, in either role.
//!
//! A [`Store`] serves many buckets; every call names a [`Location`]
//! (bucket + validated key). The hot store is read and deleted from, the cold
//! store written and verified; restore is the same seam in reverse.
//! Backends live in their own files and classify their failures into
//! [`ErrorKind`]s at the boundary.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use futures::stream::BoxStream;

use crate::error::{Error, ErrorKind, Result};
use crate::keys::ObjectKey;

pub mod fs;
mod opendal;
pub mod probe;
pub mod profile;
pub(crate) mod retry;
pub mod s3;
mod s3_answer;
pub mod settings;
pub mod supabase;

pub use fs::FsStore;
pub use s3::S3Store;
pub use settings::{ColdConfig, HotConfig, Secret};
pub use supabase::SupabaseStore;

/// A bucket and a key inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// Bucket (for the folder store: a top-level sub-folder).
    pub bucket: String,
    /// Key inside the bucket.
    pub key: ObjectKey,
}

impl Location {
    /// A location from parts.
    pub fn new(bucket: impl Into<String>, key: ObjectKey) -> Self {
        Self {
            bucket: bucket.into(),
            key,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.key)
    }
}

/// What to record with an uploaded object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// `Content-Type` to store.
    pub content_type: Option<String>,
    /// `Content-Encoding` to store (`gzip` for task HTML).
    pub content_encoding: Option<String>,
    /// User metadata (`x-amz-meta-*`): coldsweep writes the keys in [`meta`].
    /// Values may be any UTF-8; each backend stores them so they read back
    /// equal (the S3 and folder stores percent-encode them, see `store::opendal`).
    pub metadata: BTreeMap<String, String>,
}

/// User-metadata keys coldsweep records with every upload.
///
/// Hyphenated: a default nginx drops request headers whose names contain
/// `_`, so `x-amz-meta-task_id` never reached a store behind one and the
/// signed upload failed.
pub mod meta {
    /// The catalog's task id.
    pub const TASK_ID: &str = "task-id";
    /// The catalog's job id.
    pub const JOB_ID: &str = "job-id";
    /// Hex SHA-256 of the decoded content, as in the catalog (`html_sha256`).
    pub const SHA256: &str = "sha256";
    /// Hex SHA-256 of the bytes as stored.
    pub const STORED_SHA256: &str = "stored-sha256";
    /// [`STORED_SHA256`] as earlier versions wrote it; still read, so their
    /// copies still verify.
    pub const LEGACY_STORED_SHA256: &str = "stored_sha256";
}

/// What a store reports about an object without reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Stored size in bytes.
    pub size: u64,
    /// ETag as the store reports it, quotes removed.
    pub etag: Option<String>,
    /// Stored `Content-Type`, where the store keeps it.
    pub content_type: Option<String>,
    /// Stored `Content-Encoding`, where the store keeps it.
    pub content_encoding: Option<String>,
    /// User metadata, where the store keeps it.
    pub metadata: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// The MD5 of the stored bytes when the ETag is one: 32 hex digits.
    /// Multipart ETags (`…-N`) and opaque ones give `None`.
    pub fn etag_md5(&self) -> Option<[u8; 16]> {
        etag_md5(self.etag.as_deref()?)
    }

    /// The SHA-256 of the stored bytes recorded at upload, under
    /// [`meta::STORED_SHA256`] or, for copies made by earlier versions,
    /// [`meta::LEGACY_STORED_SHA256`].
    pub fn stored_sha256(&self) -> Option<&str> {
        self.metadata
            .get(meta::STORED_SHA256)
            .or_else(|| self.metadata.get(meta::LEGACY_STORED_SHA256))
            .map(String::as_str)
    }
}

/// What a store answered to an upload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResult {
    /// ETag of the stored object, quotes removed, when the store sends one.
    pub etag: Option<String>,
}

impl PutResult {
    /// The MD5 of the stored bytes when the ETag is one (see [`ObjectMeta::etag_md5`]).
    pub fn etag_md5(&self) -> Option<[u8; 16]> {
        etag_md5(self.etag.as_deref()?)
    }
}

/// 32 hex digits as an MD5; anything else (multipart `…-N`, opaque) is `None`.
fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    let mut md5 = [0u8; 16];
    hex::decode_to_slice(etag.trim_matches('"'), &mut md5).ok()?;
    Some(md5)
}

/// A body read or written piece by piece: peak memory follows the pieces,
/// not the object.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Part size of a streamed upload that a store sends in parts (S3
/// multipart): every part but the last holds exactly this many bytes, so the
/// archiver can compute the multipart ETag (`md5(part md5s)-N`) on the way.
/// Also bounds what one streamed upload buffers (see `archiver::stream`).
pub const STREAM_PART_SIZE: usize = 8 * 1024 * 1024;

/// An object store in either role.
///
/// Contract every backend honours (proven by the conformance suite):
/// `get`/`head` of a missing object fail with [`ErrorKind::NotFound`];
/// `delete` of a missing object succeeds; `put` replaces.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Short provider name recorded in the catalog (`r2`, `s3`, `fs`, …).
    fn provider(&self) -> &str;

    /// The integrity check an upload carries, as shown by `coldsweep check`
    /// (`Content-MD5`, …); `none` when the store checks nothing on the way in.
    fn upload_checksum(&self) -> &str {
        "none"
    }

    /// Whether an MD5 ETag from [`head`](Store::head) proves the stored
    /// bytes: the store checked the upload's Content-MD5 and computes the
    /// ETag of a single-part object from what it stored. When `false` (the
    /// default), verification reads the copy back and hashes it.
    fn etag_proves_md5(&self) -> bool {
        false
    }

    /// Where this store's buckets live (canonical folder, endpoint), so two
    /// stores can be told apart: the archiver refuses to "move" a blob onto
    /// itself, which would delete its only copy. `None` when unknown.
    fn namespace(&self) -> Option<String> {
        None
    }

    /// Check that `bucket` is reachable with the configured credentials.
    async fn ping(&self, bucket: &str) -> Result<()>;

    /// Store `body` at `location`, replacing any object there; what the
    /// store answered (its ETag) is kept, so a copy can be proven without
    /// asking again.
    async fn put(
        &self,
        location: &Location,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutResult>;

    /// Read the whole object.
    async fn get(&self, location: &Location) -> Result<Bytes>;

    /// Read the object as a stream: its size, as the store's answer to the
    /// read states it, and the bytes. Errors before the first byte (a missing
    /// object, a refused request) come from the call, with
    /// [`get`](Store::get)'s kinds; the stream fails if the body breaks
    /// off. The default reads the whole object with `get`, so a store
    /// without a streaming read costs no extra request.
    async fn get_stream(&self, location: &Location) -> Result<(u64, ByteStream)> {
        let bytes = self.get(location).await?;
        Ok((
            bytes.len() as u64,
            futures::stream::once(async move { Ok(bytes) }).boxed(),
        ))
    }

    /// Store the bytes of `body` (`size` of them, as the caller expects) at
    /// `location`, replacing any object there, without holding them all.
    ///
    /// The object appears only once `body` ends without an error: an error
    /// from `body` (the caller found the bytes bad) or from the store
    /// aborts the upload and is returned as it came, and whatever was at
    /// `location` stays. The default collects the body and calls
    /// [`put`](Store::put).
    async fn put_stream(
        &self,
        location: &Location,
        size: u64,
        mut body: ByteStream,
        options: &PutOptions,
    ) -> Result<PutResult> {
        let mut all = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 30));
        while let Some(piece) = body.next().await {
            all.extend_from_slice(&piece?);
        }
        self.put(location, all.freeze(), options).await
    }

    /// Describe the object without reading it.
    async fn head(&self, location: &Location) -> Result<ObjectMeta>;

    /// Remove the object; a missing object is not an error.
    async fn delete(&self, location: &Location) -> Result<()>;

    /// Remove several objects in as few requests as the store allows: one
    /// result per location, in order, each with [`delete`](Store::delete)'s
    /// meaning. A location whose result is an error may still be there and
    /// must be treated as not deleted. The default is [`delete_each`].
    async fn delete_many(&self, locations: &[Location]) -> Vec<Result<()>> {
        delete_each(self, locations).await
    }
}

/// Single deletes in flight at once in [`delete_each`].
const DELETE_MANY_CONCURRENCY: usize = 8;

/// [`Store::delete_many`] by single [`Store::delete`]s, a few at a time: the
/// default, and what a backend falls back to when a batch answer leaves
/// some keys undecided.
pub async fn delete_each<S: Store + ?Sized>(store: &S, locations: &[Location]) -> Vec<Result<()>> {
    let mut results = Vec::with_capacity(locations.len());
    for chunk in locations.chunks(DELETE_MANY_CONCURRENCY) {
        let deletes = chunk.iter().map(|location| store.delete(location));
        results.extend(futures::future::join_all(deletes).await);
    }
    results
}

/// Whether an object exists, telling "absent" apart from "could not ask".
pub async fn exists(store: &dyn Store, location: &Location) -> Result<bool> {
    match store.head(location).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The cold store `config` describes, recording `provider` in the catalog
/// (the provider `config` was read and checked for).
pub fn cold_store(
    provider: profile::Provider,
    config: &ColdConfig,
) -> Result<std::sync::Arc<dyn Store>> {
    if let ColdConfig::S3(s3) = config {
        debug_assert_eq!(
            s3.provider(),
            provider,
            "settings checked for another provider"
        );
    }
    Ok(match config {
        ColdConfig::Fs(fs) => std::sync::Arc::new(FsStore::with_settings(fs)?),
        ColdConfig::S3(s3) => {
            std::sync::Arc::new(S3Store::with_settings(s3)?.with_region_variable("ARCHIVE_REGION"))
        }
    })
}

/// The hot store `config` describes.
pub fn hot_store(config: &HotConfig) -> Result<std::sync::Arc<dyn Store>> {
    hot_store_as(config, FsStore::open_existing_with_settings)
}

/// The hot store `config` describes, in the role `coldsweep restore` needs:
/// the one store it writes to, and only the restored objects themselves
/// (a folder store opened with [`FsStore::open_for_restore`]; the S3 and
/// Supabase stores are the same as [`hot_store`]'s).
pub fn restore_hot_store(config: &HotConfig) -> Result<std::sync::Arc<dyn Store>> {
    hot_store_as(config, FsStore::open_for_restore_with_settings)
}

fn hot_store_as(
    config: &HotConfig,
    open_fs: fn(&fs::FsSettings) -> Result<FsStore>,
) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match config {
        HotConfig::Fs(fs) => std::sync::Arc::new(open_fs(fs).map_err(|e| match e.kind() {
            ErrorKind::BucketNotFound => Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "HOT_FS_ROOT: expected the existing folder that holds the hot buckets, \
                         got {} (not found or not a folder; coldsweep never creates it)",
                    fs.root().display()
                ),
            ),
            _ => e,
        })?),
        HotConfig::S3(s3) => {
            std::sync::Arc::new(S3Store::with_settings(s3)?.with_region_variable("HOT_S3_REGION"))
        }
        HotConfig::Supabase(supabase) => {
            std::sync::Arc::new(SupabaseStore::with_settings(supabase)?)
        }
    })
}
