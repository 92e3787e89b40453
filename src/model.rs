//! The words every layer shares: a candidate blob, where it was archived, a
//! claim and its lease, the fence a move's writes hold under, a blob's
//! state. Plain data with no behaviour beyond naming, so the catalog, the
//! sources and the archiver can all speak it without importing each other.

use chrono::{DateTime, Utc};

/// A cold location already recorded in the catalog for a candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedAt {
    /// Provider name recorded (`r2`, `s3`, …).
    pub provider: String,
    /// Cold bucket.
    pub bucket: String,
    /// Cold key.
    pub key: String,
}

/// One blob eligible to move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveCandidate {
    /// Task row id.
    pub task_id: String,
    /// The task's job.
    pub job_id: String,
    /// Hot bucket.
    pub storage_bucket: String,
    /// Hot key inside `storage_bucket`, as the catalog holds it (validated before use).
    pub storage_path: String,
    /// Hex SHA-256 of the decoded (gunzipped) content, when the catalog has it.
    pub sha256: Option<String>,
    /// Size of the stored (compressed) bytes, when the catalog has it.
    pub compressed_size_bytes: Option<i64>,
    /// Size of the decoded content (`html_size_bytes`), when the catalog has it.
    pub size_bytes: Option<i64>,
    /// Stored content type.
    pub content_type: Option<String>,
    /// Stored content encoding (`gzip`).
    pub content_encoding: Option<String>,
    /// Set when an earlier sweep already switched the row to cold but did
    /// not finish deleting the hot copy.
    pub archived_at: Option<ArchivedAt>,
    /// Failed attempts recorded so far.
    pub attempts: i32,
    /// Times the row has been claimed, this claim included: 1 on a first
    /// claim, more after a crash, a hand-back or a lease lost mid-move.
    pub claims: i32,
    /// When an earlier sweep first found the blob missing from both stores.
    pub missing_since: Option<DateTime<Utc>>,
    /// A digest a declared source's table records, of the stored or the
    /// decoded bytes ([`ArchiveCandidate::sha256`] is the built-in's).
    pub digest: Option<CatalogDigest>,
    /// The cold key before the prefix, when the source renders it at claim
    /// time from the row's columns.
    pub cold_name: Option<String>,
}

/// Which digest a table records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-256, hex.
    Sha256,
    /// MD5, hex.
    Md5,
}

impl DigestAlgorithm {
    /// Its name in config files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Md5 => "md5",
        }
    }
}

/// Of which bytes a digest or size is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestOf {
    /// The bytes as stored (gzip'd, if they are).
    Stored,
    /// The bytes after the content encoding is undone.
    Decoded,
}

/// A digest as a table records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogDigest {
    /// Its algorithm.
    pub algorithm: DigestAlgorithm,
    /// Of which bytes.
    pub of: DigestOf,
    /// The hex digest, as read.
    pub hex: String,
}

/// A claim on candidate rows: who holds it and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Worker identity (host + pid + random), recorded on claimed rows.
    pub owner: String,
    /// Rows whose lease (or back-off) ended before this instant are free to
    /// claim; the archiver passes the start of the sweep.
    pub free_before: DateTime<Utc>,
    /// When this claim expires if the worker dies.
    pub until: DateTime<Utc>,
}

/// The condition every catalog write of a move holds under (invariant 9):
/// the row's lease is `owner`'s and has not ended at `now`. A write whose
/// fence fails changes nothing and returns [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence<'a> {
    /// The worker that claimed the row ([`Lease::owner`]).
    pub owner: &'a str,
    /// The worker's current time; a lease that ended before it is lost.
    pub now: DateTime<Utc>,
}

/// What a worker records of a blob it does not move; every other
/// [`BlobState`] follows from the row's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// In neither store on a later look, both stores proven healthy.
    Lost,
    /// The hot bytes disagree with the catalog, or the blob alone kept failing.
    Quarantined,
}

impl Verdict {
    /// The `html_archive_state` value recorded.
    pub fn as_str(self) -> &'static str {
        BlobState::from(self).as_str()
    }
}

impl From<Verdict> for BlobState {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Lost => BlobState::Lost,
            Verdict::Quarantined => BlobState::Quarantined,
        }
    }
}

/// What happened to a task's HTML, beyond "hot" and "archived".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobState {
    /// In hot storage (possibly already copied to cold, hot copy not yet deleted).
    Hot,
    /// In cold storage only.
    Archived,
    /// Hot bytes disagreed with the catalog; kept hot, not moved again until reset.
    Quarantined,
    /// Seen missing from both stores once: a suspicion, re-checked by a
    /// later sweep before it becomes [`BlobState::Lost`].
    Missing,
    /// Missing from both stores on two sweeps at least `ARCHIVE_LOST_AFTER`
    /// apart, with both stores proven healthy each time.
    Lost,
    /// No HTML recorded for the task.
    None,
}

impl BlobState {
    /// Name as stored in `tasks.html_archive_state` and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobState::Hot => "hot",
            BlobState::Archived => "archived",
            BlobState::Quarantined => "quarantined",
            BlobState::Missing => "missing",
            BlobState::Lost => "lost",
            BlobState::None => "none",
        }
    }
}

/// What one claim took: candidates to move, and rows that could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    /// Rows to move, oldest jobs first.
    pub candidates: Vec<ArchiveCandidate>,
    /// Claimed rows that could not be read into a candidate; already
    /// quarantined in the catalog with the reason.
    pub unreadable: Vec<Unreadable>,
}

/// A claimed row that could not be read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// The row's id (shown lossily if it is not UTF-8 itself).
    pub task_id: String,
    /// The reason recorded with the quarantine.
    pub reason: String,
}
