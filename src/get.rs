//! Read-through get: one task's page, from wherever the catalog says it
//! lives, checked against the catalog before a byte is handed out.
//!
//! The catalog row decides where to read: the hot store while
//! `html_storage_path` is set (also for a row already switched to cold whose
//! hot copy is not yet deleted), else the cold location recorded in
//! `html_archive_provider` / `html_archive_bucket` / `html_archive_key`. A
//! hot read that finds nothing reads the row again and, if it now (or
//! already) records a cold copy, reads that: a sweep may have moved the page
//! in between. The bytes are then checked exactly as the archiver checks
//! hot bytes and the scrub cold ones (`integrity::check_against_catalog`:
//! the stored size against `html_compressed_size_bytes`, the SHA-256 and
//! size of the decoded page against `html_sha256` and `html_size_bytes`);
//! bytes that disagree are never returned.
//!
//! A declared source ([`PageReader::for_source`]) is read the same way by
//! its row key, in the key column's own type: hot while the path column is
//! set and the side table records no hot delete, else the cold copy the
//! side table records. Its bytes are checked against the table's digest and
//! stored size where it records them; a cold copy whose row records no
//! digest is also checked against the SHA-256 coldsweep recorded with the
//! upload. Many tables record neither: such a row's bytes are still served,
//! because they are the copy the catalog points at (one coldsweep moved was
//! proven identical when it moved it), with [`Page::proof`] saying
//! [`Proof::Unchecked`] so the caller can say so.
//!
//! A page is read whole, up to [`GetOptions::max_bytes`] (64 MiB by
//! default) of stored bytes and as much again decoded: a page larger than
//! that is refused before it is read where the catalog records its size, and
//! as soon as the read outgrows the limit where it does not. (Moves stream
//! blobs above `ARCHIVE_STREAM_THRESHOLD`; a reader that hands out the page
//! as one value has to hold it anyway.)
//!
//! Why a page cannot be served is an [`Unservable`], the source of the
//! returned [`Error`] (see [`unservable`]), with the error's kind for a
//! coarse decision: [`ErrorKind::NotFound`] (no such task, no HTML, `lost`,
//! `missing`, hot copy gone with no cold copy), [`ErrorKind::Integrity`]
//! (quarantined, bytes that disagree with the catalog, nothing to check them
//! against), [`ErrorKind::InvalidInput`] (a cold copy on another store than
//! the one configured, a malformed row, a page over the limit). Store and
//! catalog errors keep their own kinds.
//!
//! ```no_run
//! # async fn example(
//! #     catalog: std::sync::Arc<dyn coldsweep::Catalog>,
//! #     hot: std::sync::Arc<dyn coldsweep::Store>,
//! #     cold: std::sync::Arc<dyn coldsweep::Store>,
//! # ) -> coldsweep::Result<()> {
//! use coldsweep::get::{Form, GetOptions, PageReader};
//!
//! let reader = PageReader::new(catalog, hot, cold, "crawler-archive");
//! let options = GetOptions { form: Form::Decoded, ..GetOptions::default() };
//! match reader.get("task-123", &options).await {
//!     Ok(page) => println!("{} bytes of HTML from {}", page.bytes.len(), page.location),
//!     Err(e) => match coldsweep::get::unservable(&e) {
//!         Some(why) => eprintln!("not served: {why}"),
//!         None => return Err(e), // the catalog or a store failed: try again later
//!     },
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::Read as _;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};

use crate::catalog::{BlobState, Catalog, TaskRow};
use crate::error::{Error, ErrorKind, Result};
use crate::integrity::check_against_catalog;
use crate::keys::ObjectKey;
use crate::model::ArchiveCandidate;
use crate::source::{TableRow, TableSource};
use crate::store::{Location, Store};

/// The default [`GetOptions::max_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Which bytes to return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Form {
    /// The bytes as stored (gzip for task HTML), with their content encoding.
    #[default]
    Stored,
    /// The page after undoing its content encoding: the HTML itself.
    Decoded,
}

/// How to read a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetOptions {
    /// Stored or decoded bytes.
    pub form: Form,
    /// Largest page held in memory, stored and (separately) decoded.
    pub max_bytes: u64,
    /// Read a quarantined blob anyway. Its bytes are still checked against
    /// the catalog, so this serves only a blob quarantined for a reason
    /// other than its bytes (one that kept failing to move).
    pub allow_quarantined: bool,
}

impl Default for GetOptions {
    fn default() -> Self {
        Self {
            form: Form::Stored,
            max_bytes: DEFAULT_MAX_BYTES,
            allow_quarantined: false,
        }
    }
}

/// Which store a page was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// The hot store.
    Hot,
    /// The cold store.
    Cold,
}

impl Tier {
    /// `hot` or `cold`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Cold => "cold",
        }
    }
}

/// A task's page, checked against the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The task.
    pub task_id: String,
    /// Its job.
    pub job_id: String,
    /// The bytes, in [`form`](Page::form).
    pub bytes: Bytes,
    /// Stored or decoded.
    pub form: Form,
    /// The page's content type as the catalog records it.
    pub content_type: Option<String>,
    /// The content encoding of [`bytes`](Page::bytes): the catalog's for
    /// stored bytes, `None` once decoded.
    pub content_encoding: Option<String>,
    /// The store it was read from.
    pub tier: Tier,
    /// Where in that store.
    pub location: Location,
    /// What the bytes were checked against.
    pub proof: Proof,
}

/// What a page's bytes were checked against before they were returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The catalog's digest or stored size (or both).
    Catalog,
    /// The SHA-256 of the stored bytes coldsweep recorded when it uploaded
    /// the cold copy (and the catalog's size, where it records one): a
    /// declared source's cold copy whose row records no digest.
    UploadDigest,
    /// Nothing: a declared source's row records neither a digest nor a
    /// size, and the store kept no digest of the upload. The bytes are
    /// those of the copy the catalog points at (a copy coldsweep moved was
    /// proven identical when it moved it).
    Unchecked,
}

/// Why a task's page is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unservable {
    /// No task with this id in the catalog.
    NoSuchTask,
    /// The task records no HTML (neither a hot path nor a cold key).
    NoHtml,
    /// Recorded `lost`: in neither store on two looks.
    Lost {
        /// When it was first found missing.
        since: Option<DateTime<Utc>>,
        /// The recorded reason (`html_archive_error`).
        reason: Option<String>,
    },
    /// Recorded `missing`: in neither store on a sweep's look, to be looked at again.
    Missing {
        /// When it was first found missing.
        since: Option<DateTime<Utc>>,
        /// The recorded reason.
        reason: Option<String>,
    },
    /// Recorded `quarantined`: its bytes disagreed with the catalog, or it
    /// kept failing to move (see [`GetOptions::allow_quarantined`]).
    Quarantined {
        /// The recorded reason.
        reason: Option<String>,
    },
    /// The hot copy is gone and the catalog records no cold copy.
    HotCopyGone {
        /// Where the catalog says the hot copy is.
        location: String,
    },
    /// The cold copy is in another store than the one configured.
    OtherColdStore {
        /// Provider and bucket the catalog records.
        recorded: String,
        /// Provider and bucket configured.
        configured: String,
    },
    /// The bytes read disagree with the catalog.
    Mismatch {
        /// Where they were read.
        location: String,
        /// What disagrees.
        reason: String,
    },
    /// The catalog records neither a digest nor a size to check the bytes against.
    Unverifiable,
    /// No row with this key in a declared source's table.
    NoSuchRow,
    /// A declared source's row records no blob: no hot copy, no cold copy.
    NoBlob,
    /// The row cannot name a location (a path without a bucket, a bad key).
    BadRow {
        /// What is wrong.
        reason: String,
    },
    /// The page is larger than [`GetOptions::max_bytes`].
    TooLarge {
        /// Its size, or the bytes read before giving up.
        size: u64,
        /// The limit.
        limit: u64,
        /// `stored` or `decoded`.
        what: &'static str,
    },
}

impl Unservable {
    /// The kind of the [`Error`] it is returned in.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Unservable::NoSuchTask
            | Unservable::NoHtml
            | Unservable::NoSuchRow
            | Unservable::NoBlob
            | Unservable::Lost { .. }
            | Unservable::Missing { .. }
            | Unservable::HotCopyGone { .. } => ErrorKind::NotFound,
            Unservable::Quarantined { .. }
            | Unservable::Mismatch { .. }
            | Unservable::Unverifiable => ErrorKind::Integrity,
            Unservable::OtherColdStore { .. }
            | Unservable::BadRow { .. }
            | Unservable::TooLarge { .. } => ErrorKind::InvalidInput,
        }
    }

    fn into_error(self, task_id: &str) -> Error {
        self.about(format!("task {task_id}"))
    }

    /// The error saying `subject` (`task t1`, `source "documents" row 42`) is not served.
    fn about(self, subject: String) -> Error {
        Error::new(self.kind(), subject).with_source(self)
    }
}

/// `since <time>` and `: <reason>`, where recorded.
fn since_and_reason(
    f: &mut fmt::Formatter<'_>,
    since: &Option<DateTime<Utc>>,
    reason: &Option<String>,
) -> fmt::Result {
    if let Some(since) = since {
        write!(
            f,
            " since {}",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )?;
    }
    if let Some(reason) = reason {
        write!(f, ": {reason}")?;
    }
    Ok(())
}

impl fmt::Display for Unservable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unservable::NoSuchTask => f.write_str("no such task in the catalog"),
            Unservable::NoHtml => f.write_str("the catalog records no HTML for this task"),
            Unservable::NoSuchRow => f.write_str("no such row in the source's table"),
            Unservable::NoBlob => {
                f.write_str("the row records no blob (neither a hot copy nor a cold copy)")
            }
            Unservable::Lost { since, reason } => {
                f.write_str("recorded lost (in neither store)")?;
                since_and_reason(f, since, reason)
            }
            Unservable::Missing { since, reason } => {
                f.write_str("recorded missing (in neither store when a sweep looked)")?;
                since_and_reason(f, since, reason)
            }
            Unservable::Quarantined { reason } => {
                f.write_str("quarantined, not served")?;
                since_and_reason(f, &None, reason)
            }
            Unservable::HotCopyGone { location } => write!(
                f,
                "the hot copy at {location} is gone and the catalog records no cold copy"
            ),
            Unservable::OtherColdStore {
                recorded,
                configured,
            } => write!(
                f,
                "archived to {recorded}, but the configured cold store is {configured}"
            ),
            Unservable::Mismatch { location, reason } => write!(
                f,
                "the bytes at {location} disagree with the catalog, not served: {reason}"
            ),
            Unservable::Unverifiable => f.write_str(
                "the catalog records neither html_sha256 nor html_compressed_size_bytes: \
                 nothing to check the bytes against, not served",
            ),
            Unservable::BadRow { reason } => write!(f, "the catalog row is malformed: {reason}"),
            Unservable::TooLarge { size, limit, what } => write!(
                f,
                "the {what} page is more than {limit} bytes ({size} at least), the limit for a read"
            ),
        }
    }
}

impl std::error::Error for Unservable {}

/// Why `err` (from [`PageReader::get`]) says the page is not served, when
/// that is what it says; `None` for a failure of the catalog or a store.
pub fn unservable(err: &Error) -> Option<&Unservable> {
    std::error::Error::source(err)?.downcast_ref()
}

/// Reads pages through the catalog: the hot store, the cold store and the
/// cold bucket that archived rows are expected in.
#[derive(Clone, Debug)]
pub struct PageReader {
    rows: Rows,
    hot: Arc<dyn Store>,
    cold: Arc<dyn Store>,
    cold_bucket: String,
}

/// Where a reader finds rows: the built-in task rows, or a declared source's.
#[derive(Clone, Debug)]
enum Rows {
    Tasks(Arc<dyn Catalog>),
    Table(TableSource),
}

/// A row as the reader needs it, from either kind of source.
struct Row {
    /// `task t1`, `source "documents" row 42`: what an error is about.
    subject: String,
    id: String,
    job_id: String,
    state: BlobState,
    /// Bucket and path of the hot copy, while the row says it has one.
    hot: Option<(Option<String>, Option<String>)>,
    /// Provider, bucket and key of the cold copy the row records.
    cold: Option<(Option<String>, Option<String>, String)>,
    missing_since: Option<DateTime<Utc>>,
    error: Option<String>,
    /// Sizes, digest and encoding (its location filled in at each read).
    meta: ArchiveCandidate,
    /// A declared source's row: one recording neither digest nor size is
    /// served unchecked (see the module docs).
    declared: bool,
}

impl Row {
    fn from_task(row: TaskRow) -> Self {
        Row {
            subject: format!("task {}", row.id),
            state: row.state(),
            meta: row.as_candidate("", ""),
            hot: row.html_storage_path.is_some().then(|| {
                (
                    row.html_storage_bucket.clone(),
                    row.html_storage_path.clone(),
                )
            }),
            cold: row.html_archive_key.clone().map(|key| {
                (
                    row.html_archive_provider.clone(),
                    row.html_archive_bucket.clone(),
                    key,
                )
            }),
            missing_since: row.html_missing_since,
            error: row.html_archive_error,
            id: row.id,
            job_id: row.job_id,
            declared: false,
        }
    }

    fn from_table(source: &str, row: TableRow) -> Self {
        Row {
            subject: format!("source {source:?} row {}", row.key),
            state: row.state(),
            meta: row.as_candidate("", ""),
            hot: row
                .is_hot()
                .then(|| (row.hot_bucket.clone(), row.hot_path.clone())),
            cold: row
                .cold
                .clone()
                .map(|c| (Some(c.provider), Some(c.bucket), c.key)),
            missing_since: row.missing_since,
            error: row.error,
            job_id: row.parent.unwrap_or_default(),
            id: row.key,
            declared: true,
        }
    }

    fn refuse(&self, why: Unservable) -> Error {
        why.about(self.subject.clone())
    }
}

impl PageReader {
    /// A reader over `catalog`, reading hot copies from `hot` and cold ones
    /// from `cold`, which must be the store the rows were archived to
    /// (provider `cold.provider()`, bucket `cold_bucket`).
    pub fn new(
        catalog: Arc<dyn Catalog>,
        hot: Arc<dyn Store>,
        cold: Arc<dyn Store>,
        cold_bucket: impl Into<String>,
    ) -> Self {
        Self {
            rows: Rows::Tasks(catalog),
            hot,
            cold,
            cold_bucket: cold_bucket.into(),
        }
    }

    /// A reader over a declared source's rows, keyed by the source's key
    /// column; otherwise as [`PageReader::new`].
    pub fn for_source(
        source: TableSource,
        hot: Arc<dyn Store>,
        cold: Arc<dyn Store>,
        cold_bucket: impl Into<String>,
    ) -> Self {
        Self {
            rows: Rows::Table(source),
            hot,
            cold,
            cold_bucket: cold_bucket.into(),
        }
    }

    /// The page (the blob) of task (row) `task_id`, checked against the
    /// catalog; see the module docs. For a declared source, a key that is
    /// not of the key column's type is an [`ErrorKind::InvalidInput`] error.
    pub async fn get(&self, task_id: &str, options: &GetOptions) -> Result<Page> {
        let row = self.row(task_id, options).await?;
        if row.hot.is_none() {
            return self.read_cold(&row, options).await;
        }
        match self.read(Tier::Hot, &row, options).await {
            Err(e) if e.kind() == ErrorKind::NotFound && unservable(&e).is_none() => {
                // A sweep may have moved it since the row was read: the row
                // as it is now says where to look.
                let now = self.row(task_id, options).await?;
                if now.cold.is_some() {
                    tracing::debug!(task_id, "hot copy gone; reading the cold copy");
                    return self.read_cold(&now, options).await;
                }
                if let Some((bucket, path)) = &now.hot {
                    let location = format!(
                        "{}/{}",
                        bucket.as_deref().unwrap_or_default(),
                        path.as_deref().unwrap_or_default()
                    );
                    return Err(now.refuse(Unservable::HotCopyGone { location }));
                }
                Err(now.refuse(no_blob(&now)))
            }
            read => read,
        }
    }

    /// The row, refused when its state says the page is not to be served.
    async fn row(&self, task_id: &str, options: &GetOptions) -> Result<Row> {
        let row = match &self.rows {
            Rows::Tasks(catalog) => catalog
                .task(task_id)
                .await
                .map_err(|e| e.context(format!("task {task_id}: read the catalog row")))?
                .map(Row::from_task)
                .ok_or_else(|| Unservable::NoSuchTask.into_error(task_id))?,
            Rows::Table(source) => {
                let name = source.spec().name.value.as_str();
                let subject = format!("source {name:?} row {task_id}");
                source
                    .row(task_id)
                    .await
                    .map_err(|e| e.context(format!("{subject}: read the row")))?
                    .map(|row| Row::from_table(name, row))
                    .ok_or_else(|| Unservable::NoSuchRow.about(subject))?
            }
        };
        let refused = match row.state {
            BlobState::Lost => Unservable::Lost {
                since: row.missing_since,
                reason: row.error.clone(),
            },
            BlobState::Missing => Unservable::Missing {
                since: row.missing_since,
                reason: row.error.clone(),
            },
            BlobState::Quarantined if !options.allow_quarantined => Unservable::Quarantined {
                reason: row.error.clone(),
            },
            BlobState::None => no_blob(&row),
            _ => return Ok(row),
        };
        Err(row.refuse(refused))
    }

    /// Read the cold copy the row records, if it is in the configured cold store.
    async fn read_cold(&self, row: &Row, options: &GetOptions) -> Result<Page> {
        let Some((provider, bucket, _)) = &row.cold else {
            return Err(row.refuse(no_blob(row)));
        };
        let provider = provider.as_deref().unwrap_or("?");
        let bucket = bucket.as_deref().unwrap_or("?");
        if provider != self.cold.provider() || bucket != self.cold_bucket {
            return Err(row.refuse(Unservable::OtherColdStore {
                recorded: format!("{provider}:{bucket}"),
                configured: format!("{}:{}", self.cold.provider(), self.cold_bucket),
            }));
        }
        self.read(Tier::Cold, row, options).await
    }

    /// Read the row's copy in `tier` and check it.
    async fn read(&self, tier: Tier, row: &Row, options: &GetOptions) -> Result<Page> {
        let (store, bucket, key) = match (tier, &row.hot, &row.cold) {
            (Tier::Hot, Some((bucket, path)), _) => (&self.hot, bucket.as_deref(), path.as_deref()),
            (Tier::Cold, _, Some((_, bucket, key))) => {
                (&self.cold, bucket.as_deref(), Some(key.as_str()))
            }
            _ => (&self.hot, None, None),
        };
        let (Some(bucket), Some(key)) = (bucket, key) else {
            let reason = format!("a {} key without a bucket", tier.as_str());
            return Err(row.refuse(Unservable::BadRow { reason }));
        };
        let key = ObjectKey::new(key).map_err(|e| {
            let reason = format!("{} key: {}", tier.as_str(), e.message());
            row.refuse(Unservable::BadRow { reason })
        })?;
        let location = Location::new(bucket, key);
        let meta = &row.meta;
        let catalog_checks = match row.declared {
            false => meta.sha256.is_some() || meta.compressed_size_bytes.is_some(),
            true => meta.digest.is_some() || meta.compressed_size_bytes.is_some(),
        };
        if !catalog_checks && !row.declared {
            return Err(row.refuse(Unservable::Unverifiable));
        }
        let limit = options.max_bytes;
        let too_large = |size: u64, what| row.refuse(Unservable::TooLarge { size, limit, what });
        if let Some(size) = meta
            .compressed_size_bytes
            .and_then(|n| u64::try_from(n).ok())
            && size > limit
        {
            return Err(too_large(size, "stored"));
        }
        let subject = &row.subject;
        let read = |e: Error| e.context(format!("{subject}: read {} {location}", tier.as_str()));
        let (size, mut body) = store.get_stream(&location).await.map_err(read)?;
        if size > limit {
            return Err(too_large(size, "stored"));
        }
        let mut stored = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
        while let Some(piece) = body.next().await {
            stored.extend_from_slice(&piece.map_err(read)?);
            if stored.len() as u64 > limit {
                return Err(too_large(stored.len() as u64, "stored"));
            }
        }
        drop(body);
        let stored = stored.freeze();

        // A declared source's cold copy whose row records no digest: the
        // SHA-256 coldsweep recorded with the upload, proven at move time.
        let mut proof = if catalog_checks {
            Proof::Catalog
        } else {
            Proof::Unchecked
        };
        let mut upload_sha = None;
        if row.declared && tier == Tier::Cold && meta.digest.is_none() {
            let head = self.cold.head(&location).await.map_err(read)?;
            if let Some(sha) = head.stored_sha256() {
                upload_sha = Some(sha.trim().to_ascii_lowercase());
                proof = Proof::UploadDigest;
            }
        }

        let mut candidate = meta.clone();
        candidate.storage_bucket = location.bucket.clone();
        candidate.storage_path = location.key.as_str().to_owned();
        let form = options.form;
        // Hashing and decoding up to 64 MiB is CPU work: off the async threads.
        let checked = tokio::task::spawn_blocking(move || {
            check_against_catalog(&candidate, &stored)
                .map_err(|m| m.0)
                .and_then(|()| match upload_sha {
                    Some(expected) => {
                        let actual = hex::encode(Sha256::digest(&stored));
                        if actual == expected {
                            Ok(())
                        } else {
                            Err(format!(
                                "stored bytes hash to {actual}, the upload recorded {expected}"
                            ))
                        }
                    }
                    None => Ok(()),
                })
                .map_err(Err)
                .and_then(|()| match form {
                    Form::Stored => Ok(stored),
                    Form::Decoded => {
                        decode(&stored, candidate.content_encoding.as_deref(), limit).map_err(Ok)
                    }
                })
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, "checking a page").with_source(e))?;
        let bytes = match checked {
            Ok(bytes) => bytes,
            Err(Err(reason)) => {
                tracing::warn!(task_id = row.id, %location, tier = tier.as_str(), %reason, "page disagrees with the catalog; not served");
                let location = format!("{} {location}", tier.as_str());
                return Err(row.refuse(Unservable::Mismatch { location, reason }));
            }
            Err(Ok(unservable)) => return Err(row.refuse(unservable)),
        };
        if proof == Proof::Unchecked {
            tracing::debug!(
                task_id = row.id,
                %location,
                tier = tier.as_str(),
                "served unchecked: the row records neither a digest nor a size"
            );
        }
        Ok(Page {
            task_id: row.id.clone(),
            job_id: row.job_id.clone(),
            bytes,
            form,
            content_type: meta.content_type.clone(),
            content_encoding: match form {
                Form::Stored => meta.content_encoding.clone(),
                Form::Decoded => None,
            },
            tier,
            location,
            proof,
        })
    }
}

/// Why a row with neither copy is not served, in its source's words.
fn no_blob(row: &Row) -> Unservable {
    if row.declared {
        Unservable::NoBlob
    } else {
        Unservable::NoHtml
    }
}

/// Undo `encoding` (none, `identity`, `gzip`), holding at most `limit` bytes.
fn decode(
    stored: &Bytes,
    encoding: Option<&str>,
    limit: u64,
) -> std::result::Result<Bytes, Unservable> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(stored.clone()),
        Some("gzip") | Some("x-gzip") => {
            let mut decoded = Vec::new();
            flate2::read::MultiGzDecoder::new(&stored[..])
                .take(limit.saturating_add(1))
                .read_to_end(&mut decoded)
                .map_err(|e| Unservable::BadRow {
                    reason: format!("content-encoding gzip, but the bytes do not decode: {e}"),
                })?;
            if decoded.len() as u64 > limit {
                return Err(Unservable::TooLarge {
                    size: decoded.len() as u64,
                    limit,
                    what: "decoded",
                });
            }
            Ok(Bytes::from(decoded))
        }
        Some(other) => Err(Unservable::BadRow {
            reason: format!("content-encoding {other:?}: cannot decode it"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn decoding_stops_at_the_limit() {
        let page = vec![b'a'; 10_000];
        let stored = Bytes::from(gzip(&page));
        assert_eq!(decode(&stored, Some("gzip"), 10_000).unwrap(), page);
        let Err(Unservable::TooLarge { size, limit, .. }) = decode(&stored, Some("gzip"), 9_999)
        else {
            panic!("a page over the limit was decoded");
        };
        assert_eq!((size, limit), (10_000, 9_999));
        assert_eq!(decode(&stored, None, 10).unwrap(), stored);
        assert!(decode(&stored, Some("br"), 1 << 20).is_err());
    }

    #[test]
    fn refusals_have_kinds_and_are_found_in_the_error() {
        let err = Unservable::Lost {
            since: None,
            reason: Some("gone".into()),
        }
        .into_error("t1");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(matches!(unservable(&err), Some(Unservable::Lost { .. })));
        assert_eq!(
            err.chain().to_string(),
            "task t1 (not_found): recorded lost (in neither store): gone"
        );
        let store_error = Error::new(ErrorKind::NotFound, "no object");
        assert_eq!(unservable(&store_error), None);
    }
}
