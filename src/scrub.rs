//! Scrub: read archived blobs back from the cold store and check them
//! against the catalog (`coldsweep verify`).
//!
//! Every archived row (cold key set, hot copy gone) is a promise that the
//! cold store holds its bytes. [`scrub`] walks those rows — all of them, one
//! job's, or a deterministic sample — fetches each cold object and checks the
//! stored size and the digest of the decoded content against the catalog
//! (the archiver's own check), plus the `stored-sha256` recorded at upload (`stored_sha256` in copies made by earlier versions)
//! where the store keeps it. Failures are classified: **missing** (the store
//! says not found), **corrupt** (size or digest disagree) and **unreadable**
//! (any other error, by [`ErrorKind`]: permission, transient, …).
//!
//! It only reads: the catalog and the stores are never changed.
//!
//! Streaming: rows are read one page at a time with a keyset cursor
//! ([`Catalog::archived_tasks_after`]) and at most `concurrency` objects are
//! fetched at once, so memory is bounded by the page size and the
//! concurrency, not by the catalog. Resumable: the report's
//! [`last_checked`](ScrubReport::last_checked) is a task id such that every
//! archived row up to it (in id order, from where the scrub started) has been
//! checked; pass it as [`ScrubOptions::after`] to carry on from there.
//!
//! A declared source ([`scrub_source_with_progress`]) is walked the same
//! way over the rows its side table records archived, in the order of the
//! key column's own type (a bigint key: 2 before 10), its `after` a key of
//! that type.

use std::collections::BTreeMap;
use std::fmt;

use futures::StreamExt as _;
use serde::{Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::catalog::{Catalog, TaskRow};
use crate::error::{Error, ErrorKind, Result};
use crate::integrity::{Digest, check_against_catalog};
use crate::keys::ObjectKey;
use crate::model::ArchiveCandidate;
use crate::progress::Progress;
use crate::source::{TableRow, TableSource};
use crate::store::{Location, Store};

/// Problems kept in [`ScrubReport::problems`] at most; the counts stay exact.
pub const MAX_PROBLEMS_LISTED: usize = 1000;

/// What to scrub and how hard.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrubOptions {
    /// Only this job's tasks.
    pub job: Option<String>,
    /// Only about this percentage of tasks, in `(0, 100]`, with a resolution
    /// of 0.01; the same tasks every run (see [`in_sample`]).
    pub sample_percent: Option<f64>,
    /// Start after this task id (bytewise order), e.g. a previous run's
    /// [`ScrubReport::last_checked`].
    pub after: Option<String>,
    /// Objects fetched at once (at least 1).
    pub concurrency: usize,
    /// Catalog rows read per query (at least 1).
    pub page_size: usize,
}

impl Default for ScrubOptions {
    fn default() -> Self {
        Self {
            job: None,
            sample_percent: None,
            after: None,
            concurrency: crate::Config::default().concurrency,
            page_size: 500,
        }
    }
}

impl ScrubOptions {
    /// Fail with [`ErrorKind::InvalidInput`] on a value out of range.
    pub fn validate(&self) -> Result<()> {
        if let Some(percent) = self.sample_percent
            && !(percent.is_finite() && sample_threshold(percent) >= 1 && percent <= 100.0)
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("--sample: expected a percentage from 0.01 to 100, got {percent}"),
            ));
        }
        if self.concurrency == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "scrub concurrency: expected at least 1, got 0",
            ));
        }
        if self.page_size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "scrub page size: expected at least 1, got 0",
            ));
        }
        if self.job.as_deref().is_some_and(|j| j.trim().is_empty()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "--job: expected a job id, got nothing",
            ));
        }
        Ok(())
    }
}

/// Buckets out of 10 000 a percentage selects.
fn sample_threshold(percent: f64) -> u64 {
    (percent * 100.0).round().clamp(0.0, 10_000.0) as u64
}

/// Whether `task_id` is in a `percent` sample: a stable hash of the id (its
/// SHA-256) decides, so every run, on every machine, picks the same tasks,
/// and a larger percentage picks a superset of a smaller one.
pub fn in_sample(task_id: &str, percent: f64) -> bool {
    let hash = Sha256::digest(task_id.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(head) % 10_000 < sample_threshold(percent)
}

/// Why an archived blob failed its check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScrubProblemKind {
    /// The cold store has no object at the recorded location.
    Missing,
    /// The object's size or digest disagrees with the catalog or with the
    /// digest recorded at upload.
    Corrupt,
    /// The object could not be read or the row names no valid location;
    /// the error's kind says why (permission, transient, invalid input, …).
    Unreadable(ErrorKind),
}

impl ScrubProblemKind {
    /// `missing`, `corrupt` or `unreadable` (the metrics `result` label).
    pub fn as_str(self) -> &'static str {
        match self {
            ScrubProblemKind::Missing => "missing",
            ScrubProblemKind::Corrupt => "corrupt",
            ScrubProblemKind::Unreadable(_) => "unreadable",
        }
    }
}

/// Two fields: `kind` ([`ScrubProblemKind::as_str`]) and `error_kind` (the
/// [`ErrorKind`] of an unreadable object, else null).
impl Serialize for ScrubProblemKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let error_kind = match self {
            ScrubProblemKind::Unreadable(kind) => Some(kind.as_str()),
            _ => None,
        };
        let mut s = serializer.serialize_struct("ScrubProblemKind", 2)?;
        s.serialize_field("kind", self.as_str())?;
        s.serialize_field("error_kind", &error_kind)?;
        s.end()
    }
}

impl fmt::Display for ScrubProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScrubProblemKind::Unreadable(kind) => write!(f, "unreadable ({kind})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// One archived blob that failed its check.
///
/// Serialized (`coldsweep verify --json`) as `task_id`, `job_id`, `bucket`,
/// `key`, `kind`, `error_kind` (see [`ScrubProblemKind`]) and `reason`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubProblem {
    /// Task id; a declared source's row key.
    pub task_id: String,
    /// The task's job; a declared source's parent key (empty without a parent).
    pub job_id: String,
    /// Cold bucket the catalog records (empty if none).
    pub bucket: String,
    /// Cold key the catalog records (empty if none).
    pub key: String,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: ScrubProblemKind,
    /// Why, in words.
    pub reason: String,
}

/// What a scrub found (so far, while it runs).
///
/// Serializes with the field names below, except
/// [`last_checked`](Self::last_checked), which is `after` (what to pass as
/// `--after` to resume), and [`aborted`](Self::aborted), which is null or
/// `{"kind", "message"}`.
#[derive(Debug, Default, Serialize)]
pub struct ScrubReport {
    /// Objects checked: `ok + missing + corrupt + unreadable`.
    pub checked: u64,
    /// Objects that passed every check.
    pub ok: u64,
    /// Objects absent from the cold store.
    pub missing: u64,
    /// Objects whose bytes disagree with the catalog.
    pub corrupt: u64,
    /// Objects that could not be read, in all.
    pub unreadable: u64,
    /// Unreadable objects by error kind (`permission_denied`, `transient`, …).
    pub unreadable_by_kind: BTreeMap<&'static str, u64>,
    /// Archived rows passed over because they are outside the sample.
    pub skipped: u64,
    /// Bytes read from the cold store.
    pub bytes_read: u64,
    /// Every archived row with an id up to this one (and after the starting
    /// point) has been checked or passed over: resume with it as `after`.
    #[serde(rename = "after")]
    pub last_checked: Option<String>,
    /// The failures, the first [`MAX_PROBLEMS_LISTED`] of them, in the order found.
    pub problems: Vec<ScrubProblem>,
    /// Set when the scrub stopped early because the catalog could not be
    /// read; `last_checked` still says where to resume.
    #[serde(serialize_with = "error_or_null")]
    pub aborted: Option<Error>,
}

/// `null`, or the error's kind and its message with every cause.
fn error_or_null<S: Serializer>(
    error: &Option<Error>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Aborted {
        kind: &'static str,
        message: String,
    }
    error
        .as_ref()
        .map(|e| Aborted {
            kind: e.kind().as_str(),
            message: e.chain().to_string(),
        })
        .serialize(serializer)
}

impl ScrubReport {
    /// No problem found and the walk finished.
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.corrupt == 0 && self.unreadable == 0 && self.aborted.is_none()
    }

    /// Problems found, listed or not.
    pub fn problem_count(&self) -> u64 {
        self.missing + self.corrupt + self.unreadable
    }

    fn record(&mut self, row: &Archived, outcome: Outcome, progress: &Progress) {
        progress.object_done(outcome.bytes_read, outcome.result.is_ok());
        self.checked += 1;
        self.bytes_read += outcome.bytes_read;
        let kind = match outcome.result {
            Ok(()) => {
                self.ok += 1;
                crate::metrics::scrub_object("ok");
                return;
            }
            Err((kind, _)) => kind,
        };
        crate::metrics::scrub_object(kind.as_str());
        match kind {
            ScrubProblemKind::Missing => self.missing += 1,
            ScrubProblemKind::Corrupt => self.corrupt += 1,
            ScrubProblemKind::Unreadable(error) => {
                self.unreadable += 1;
                *self.unreadable_by_kind.entry(error.as_str()).or_default() += 1;
            }
        }
        let Err((_, reason)) = outcome.result else {
            unreachable!("handled above")
        };
        tracing::warn!(
            task_id = %row.id,
            job_id = %row.job_id,
            key = row.key.as_deref().unwrap_or_default(),
            problem = %kind,
            reason = %reason,
            "scrub: archived blob failed its check"
        );
        if self.problems.len() < MAX_PROBLEMS_LISTED {
            self.problems.push(ScrubProblem {
                task_id: row.id.clone(),
                job_id: row.job_id.clone(),
                bucket: row.bucket.clone().unwrap_or_default(),
                key: row.key.clone().unwrap_or_default(),
                kind,
                reason,
            });
        }
    }
}

/// Check every archived row `options` selects against `cold`; read-only.
///
/// Fails only for invalid options; a catalog failure mid-walk ends the
/// scrub with [`ScrubReport::aborted`] set.
pub async fn scrub(
    catalog: &dyn Catalog,
    cold: &dyn Store,
    options: &ScrubOptions,
) -> Result<ScrubReport> {
    scrub_with_progress(catalog, cold, options, &Progress::new(), |_| {}).await
}

/// [`scrub`], counting every object checked in `progress` (its stored
/// bytes read; a problem unless it passed) for a progress bar to read at
/// its own pace, and calling `on_object` with the report so far after every
/// object, for what needs more than counts (the resume point,
/// [`ScrubReport::last_checked`]; throttle in the callback). Rows outside
/// the sample are not counted; the total is left to the caller
/// ([`Progress::set_total`]).
pub async fn scrub_with_progress(
    catalog: &dyn Catalog,
    cold: &dyn Store,
    options: &ScrubOptions,
    progress: &Progress,
    on_object: impl FnMut(&ScrubReport),
) -> Result<ScrubReport> {
    options.validate()?;
    walk(Walk::Tasks(catalog), cold, options, progress, on_object).await
}

/// [`scrub_with_progress`] over a declared source's archived rows (a cold
/// copy recorded in its side table, the hot copy gone), in the order of
/// the key column's own type: `after` is a key of that type (a bigint
/// source resumes after `9` at `10`). `job` is the built-in source's and
/// is refused here, as is an `after` that is not of the key's type
/// ([`ErrorKind::InvalidInput`]).
pub async fn scrub_source_with_progress(
    source: &TableSource,
    cold: &dyn Store,
    options: &ScrubOptions,
    progress: &Progress,
    on_object: impl FnMut(&ScrubReport),
) -> Result<ScrubReport> {
    options.validate()?;
    if options.job.is_some() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "--job: only the built-in task source has jobs; a declared source is scrubbed whole",
        ));
    }
    if let Some(after) = &options.after {
        source.parse_key(after)?;
    }
    walk(Walk::Table(source), cold, options, progress, on_object).await
}

/// The rows a scrub walks.
enum Walk<'a> {
    Tasks(&'a dyn Catalog),
    Table(&'a TableSource),
}

impl Walk<'_> {
    /// Up to `limit` archived rows after `after`, in the walk's order.
    async fn page(&self, after: Option<&str>, options: &ScrubOptions) -> Result<Vec<Archived>> {
        Ok(match self {
            Walk::Tasks(catalog) => catalog
                .archived_tasks_after(after, options.job.as_deref(), options.page_size)
                .await?
                .into_iter()
                .map(Archived::from_task)
                .collect(),
            Walk::Table(source) => source
                .archived_after(after, options.page_size)
                .await?
                .into_iter()
                .map(Archived::from_table)
                .collect(),
        })
    }
}

/// One archived row, from either kind of source.
struct Archived {
    id: String,
    job_id: String,
    bucket: Option<String>,
    key: Option<String>,
    /// Sizes, digest and encoding to check the bytes against.
    meta: ArchiveCandidate,
}

impl Archived {
    fn from_task(row: TaskRow) -> Self {
        Archived {
            meta: row.as_candidate("", ""),
            bucket: row.html_archive_bucket,
            key: row.html_archive_key,
            id: row.id,
            job_id: row.job_id,
        }
    }

    fn from_table(row: TableRow) -> Self {
        Archived {
            meta: row.as_candidate("", ""),
            bucket: row.cold.as_ref().map(|c| c.bucket.clone()),
            key: row.cold.as_ref().map(|c| c.key.clone()),
            id: row.key,
            job_id: row.parent.unwrap_or_default(),
        }
    }
}

async fn walk(
    rows: Walk<'_>,
    cold: &dyn Store,
    options: &ScrubOptions,
    progress: &Progress,
    mut on_object: impl FnMut(&ScrubReport),
) -> Result<ScrubReport> {
    let mut report = ScrubReport::default();
    let mut cursor = options.after.clone();
    loop {
        let page = match rows.page(cursor.as_deref(), options).await {
            Ok(page) => page,
            Err(e) => {
                let what = match rows {
                    Walk::Tasks(_) => "scrub: list archived tasks",
                    Walk::Table(_) => "scrub: list archived rows",
                };
                report.aborted = Some(e.context(what));
                break;
            }
        };
        let Some(last) = page.last() else {
            break;
        };
        cursor = Some(last.id.clone());
        scrub_page(&page, cold, options, &mut report, progress, &mut on_object).await;
        if page.len() < options.page_size {
            break;
        }
    }
    Ok(report)
}

/// Check one page of rows, `concurrency` at a time, moving
/// `report.last_checked` only past rows whose every predecessor is done
/// (objects finish out of order).
async fn scrub_page(
    page: &[Archived],
    cold: &dyn Store,
    options: &ScrubOptions,
    report: &mut ScrubReport,
    progress: &Progress,
    on_object: &mut impl FnMut(&ScrubReport),
) {
    let selected: Vec<bool> = page
        .iter()
        .map(|row| options.sample_percent.is_none_or(|p| in_sample(&row.id, p)))
        .collect();
    let mut done: Vec<bool> = selected.iter().map(|s| !s).collect();
    report.skipped += done.iter().filter(|d| **d).count() as u64;
    let mut watermark = 0;
    let mut advance = |done: &[bool], report: &mut ScrubReport| {
        while watermark < page.len() && done[watermark] {
            watermark += 1;
        }
        if watermark > 0 {
            report.last_checked = Some(page[watermark - 1].id.clone());
        }
    };
    advance(&done, report);
    let mut results = futures::stream::iter(
        page.iter()
            .enumerate()
            .filter(|(i, _)| selected[*i])
            .map(|(i, row)| async move { (i, check(cold, row).await) }),
    )
    .buffer_unordered(options.concurrency);
    while let Some((i, outcome)) = results.next().await {
        report.record(&page[i], outcome, progress);
        done[i] = true;
        advance(&done, report);
        on_object(report);
    }
}

/// The result of checking one object and the bytes it took.
struct Outcome {
    result: std::result::Result<(), (ScrubProblemKind, String)>,
    bytes_read: u64,
}

impl Outcome {
    fn problem(kind: ScrubProblemKind, reason: impl Into<String>, bytes_read: u64) -> Self {
        Self {
            result: Err((kind, reason.into())),
            bytes_read,
        }
    }

    /// A store error, classified by kind.
    fn error(err: &Error, bytes_read: u64) -> Self {
        let kind = match err.kind() {
            ErrorKind::NotFound => {
                return Self::problem(
                    ScrubProblemKind::Missing,
                    "no object at this key in the cold store",
                    bytes_read,
                );
            }
            ErrorKind::Integrity => ScrubProblemKind::Corrupt,
            other => ScrubProblemKind::Unreadable(other),
        };
        Self::problem(kind, err.chain().to_string(), bytes_read)
    }
}

/// Fetch one archived row's cold object and check it.
async fn check(cold: &dyn Store, row: &Archived) -> Outcome {
    let (Some(bucket), Some(key)) = (&row.bucket, &row.key) else {
        return Outcome::problem(
            ScrubProblemKind::Unreadable(ErrorKind::InvalidInput),
            "the catalog records a cold key but no cold bucket",
            0,
        );
    };
    let key = match ObjectKey::new(key.as_str()) {
        Ok(key) => key,
        Err(e) => return Outcome::error(&e.context("cold key in the catalog"), 0),
    };
    let location = Location::new(bucket.as_str(), key);
    let bytes = match cold.get(&location).await {
        Ok(bytes) => bytes,
        Err(e) => return Outcome::error(&e, 0),
    };
    let read = bytes.len() as u64;
    // The archiver's own check: compressed size and html_sha256 of the
    // decoded content.
    if let Err(mismatch) = check_against_catalog(&row.meta, &bytes) {
        return Outcome::problem(ScrubProblemKind::Corrupt, mismatch.0, read);
    }
    let meta = match cold.head(&location).await {
        Ok(meta) => meta,
        Err(e) => return Outcome::error(&e.context("head after a successful read"), read),
    };
    if let Some(sha) = meta.stored_sha256() {
        let actual = Digest::of(&bytes).sha256_hex();
        if !sha.eq_ignore_ascii_case(&actual) {
            return Outcome::problem(
                ScrubProblemKind::Corrupt,
                format!("stored bytes hash to {actual}, the upload recorded {sha}"),
                read,
            );
        }
    }
    Outcome {
        result: Ok(()),
        bytes_read: read,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_stable_nested_and_about_the_right_size() {
        let ids: Vec<String> = (0..20_000).map(|n| format!("task-{n}")).collect();
        let five: Vec<&String> = ids.iter().filter(|id| in_sample(id, 5.0)).collect();
        // 5% of 20 000 = 1000; a broken hash (constant, or the wrong modulus) is far off.
        assert!((800..1200).contains(&five.len()), "{}", five.len());
        let again: Vec<&String> = ids.iter().filter(|id| in_sample(id, 5.0)).collect();
        assert_eq!(five, again);
        assert!(five.iter().all(|id| in_sample(id, 20.0)));
        assert!(ids.iter().all(|id| in_sample(id, 100.0)));
    }

    #[test]
    fn out_of_range_options_are_invalid_input() {
        for bad in [0.0, -1.0, 100.5, f64::NAN, 0.001] {
            let options = ScrubOptions {
                sample_percent: Some(bad),
                ..ScrubOptions::default()
            };
            let err = options.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
        }
        let zero = ScrubOptions {
            concurrency: 0,
            ..ScrubOptions::default()
        };
        assert_eq!(zero.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
        let ok = ScrubOptions {
            sample_percent: Some(0.01),
            ..ScrubOptions::default()
        };
        assert!(ok.validate().is_ok());
    }
}
