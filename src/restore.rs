//! Restore (rehydrate): copy archived blobs back to the hot store, verified,
//! then point the catalog back at them (`coldsweep restore`).
//!
//! The archive in reverse, row by row and in this order, so that a crash at
//! any point leaves nothing lost and a re-run finishes the job:
//!
//! 1. **claim** the archived row under a lease (as a sweep claims: a row a
//!    sweep or another restore holds is left alone), kept alive by a
//!    heartbeat;
//! 2. **read** the cold copy and **check** it against the catalog (stored
//!    size, SHA-256 of the decoded content) — a copy that disagrees is
//!    `corrupt`: the row stays archived and nothing is written hot;
//! 3. **put** it in the hot store at `task_html_object_path(job, task)`
//!    (no `ARCHIVE_PATH_PREFIX`), with the row's content type and encoding,
//!    replacing whatever an interrupted restore left there;
//! 4. **read the hot copy back** and check it the same way (and byte for
//!    byte against the cold copy);
//! 5. **switch** the catalog, one fenced transaction per chunk of rows: hot
//!    location set, cold location and lease cleared, and each of their jobs
//!    gets `restored_at` and, if it was `archived`, its status before;
//! 6. only with [`RestoreOptions::delete_cold`], **delete** the cold copy.
//!
//! A crash before step 5 leaves the row archived (perhaps with an
//! unreferenced hot copy the next restore overwrites); a crash between 5
//! and 6 leaves an unreferenced cold copy, never a loss. Without
//! `delete_cold` the cold copy is kept on purpose: the catalog no longer
//! points at it, and when the row is archived again the sweep finds the
//! copy and reuses it.
//!
//! Writing to the hot store is the one exception to "the hot store is read
//! and deleted from": only the restored objects themselves are written.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;

use crate::archiver::Clock;
use crate::archiver::lease::{Held, heartbeat};
use crate::catalog::{Catalog, TaskRow};
use crate::error::{Error, ErrorKind, Result};
use crate::integrity::check_against_catalog;
use crate::keys::{ObjectKey, task_html_object_path};
use crate::model::{BlobState, Fence, Lease};
use crate::progress::Progress;
use crate::store::{Location, PutOptions, Store};

mod table;

pub use table::{
    TablePlannedRow, TableRestoreOptions, TableRestorePlan, TableRestoreRequest, TableRestorer,
};

/// Hot buckets looked at when none is given: enough to tell one from many.
const HOT_BUCKETS_ASKED: usize = 2;

/// Which rows to restore: the tasks named and every task of the jobs named.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreRequest {
    /// These tasks.
    pub tasks: Vec<String>,
    /// Every task of these jobs.
    pub jobs: Vec<String>,
}

impl RestoreRequest {
    /// Fail with [`ErrorKind::InvalidInput`] when nothing is selected or an
    /// id is empty.
    pub fn validate(&self) -> Result<()> {
        if self.tasks.is_empty() && self.jobs.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "restore needs at least one --task ID or --job ID",
            ));
        }
        if self
            .tasks
            .iter()
            .chain(&self.jobs)
            .any(|id| id.trim().is_empty())
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "restore: expected a task or job id, got nothing",
            ));
        }
        Ok(())
    }
}

/// How a restore runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Bucket of the hot store the blobs go back to.
    pub hot_bucket: String,
    /// Delete each cold copy once its row points hot again (never the default).
    pub delete_cold: bool,
    /// Blobs restored at once (at least 1).
    pub concurrency: usize,
    /// How long a claim hides a row from others if this process dies; kept
    /// alive every third of it while the process lives.
    pub lease: Duration,
    /// Time limit for one blob's copy (read, put, read back).
    pub blob_timeout: Duration,
}

impl RestoreOptions {
    /// Options for `hot_bucket`, the rest from the sweep's defaults
    /// (`ARCHIVE_CONCURRENCY`, `ARCHIVE_LEASE`, `ARCHIVE_BLOB_TIMEOUT`).
    pub fn new(hot_bucket: impl Into<String>) -> Self {
        let config = crate::Config::default();
        Self {
            hot_bucket: hot_bucket.into(),
            delete_cold: false,
            concurrency: config.concurrency,
            lease: config.lease,
            blob_timeout: config.blob_timeout,
        }
    }
}

/// The hot bucket to restore into: `given`, else the one bucket the
/// catalog's hot rows use. Zero or several buckets is
/// [`ErrorKind::InvalidInput`] asking for `--hot-bucket`.
pub async fn hot_bucket(catalog: &dyn Catalog, given: Option<&str>) -> Result<String> {
    if let Some(bucket) = given {
        if bucket.trim().is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "--hot-bucket: expected a bucket name, got nothing",
            ));
        }
        return Ok(bucket.to_owned());
    }
    let buckets = catalog.hot_buckets(HOT_BUCKETS_ASKED).await?;
    match buckets.as_slice() {
        [one] => Ok(one.bucket.clone()),
        [] => Err(Error::new(
            ErrorKind::InvalidInput,
            "no hot row in the catalog names a hot bucket (archived rows no longer record \
             theirs): give the bucket to restore into with --hot-bucket",
        )),
        _ => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the catalog's hot rows use several buckets ({}, …): say which one to restore \
                 into with --hot-bucket",
                buckets
                    .iter()
                    .map(|b| b.bucket.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Why a selected row (or id) is not restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The row's HTML is in the hot store already (or was never moved).
    StillHot,
    /// Recorded `lost`: in neither store.
    Lost,
    /// Recorded `missing`: suspected lost.
    Missing,
    /// Recorded `quarantined`: its hot bytes disagreed with the catalog.
    Quarantined,
    /// The row records no HTML at all.
    NoHtml,
    /// No task with this id.
    NoSuchTask,
    /// No job with this id.
    NoSuchJob,
    /// No row with this key in a declared source's table.
    NoSuchRow,
    /// No row of a declared source has this parent key.
    NoSuchParent,
    /// The row's cold or hot location is not a valid key (the reason).
    BadRow(String),
}

impl SkipReason {
    /// `still_hot`, `lost`, `missing`, `quarantined`, `no_html`,
    /// `no_such_task`, `no_such_job`, `no_such_row`, `no_such_parent` or
    /// `bad_row`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::StillHot => "still_hot",
            SkipReason::Lost => "lost",
            SkipReason::Missing => "missing",
            SkipReason::Quarantined => "quarantined",
            SkipReason::NoHtml => "no_html",
            SkipReason::NoSuchTask => "no_such_task",
            SkipReason::NoSuchJob => "no_such_job",
            SkipReason::NoSuchRow => "no_such_row",
            SkipReason::NoSuchParent => "no_such_parent",
            SkipReason::BadRow(_) => "bad_row",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::StillHot => "still hot: nothing to restore",
            SkipReason::Lost => "lost: in neither store (see `coldsweep status`)",
            SkipReason::Missing => "missing: suspected lost (see `coldsweep status`)",
            SkipReason::Quarantined => {
                "quarantined: still hot, its bytes disagree with the catalog"
            }
            SkipReason::NoHtml => "no HTML recorded",
            SkipReason::NoSuchTask => "no such task in the catalog",
            SkipReason::NoSuchJob => "no such job in the catalog",
            SkipReason::NoSuchRow => "no such row in the source's table",
            SkipReason::NoSuchParent => "no row of the source has this parent",
            SkipReason::BadRow(why) => return write!(f, "cannot be restored: {why}"),
        })
    }
}

/// A selected task (or job id) that is not restored, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The task, or `None` for a job id that names no job.
    pub task_id: Option<String>,
    /// The task's job (or the job id given).
    pub job_id: Option<String>,
    /// Why.
    pub reason: SkipReason,
}

/// One archived row a restore would bring back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedRow {
    /// The task.
    pub task_id: String,
    /// Its job.
    pub job_id: String,
    /// Where the catalog says the blob is now.
    pub cold: Location,
    /// Cold provider recorded (`r2`, `fs`, …).
    pub cold_provider: Option<String>,
    /// Where the blob will be in the hot store.
    pub hot: Location,
    /// Stored (compressed) size, where the catalog records it.
    pub size: Option<u64>,
    /// The row as read.
    row: TaskRow,
}

/// What a restore would do: the dry run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestorePlan {
    /// Rows that would be restored, by task id.
    pub rows: Vec<PlannedRow>,
    /// Selected rows and ids that would not be, with the reason.
    pub skipped: Vec<Skipped>,
}

impl RestorePlan {
    /// Stored bytes the rows hold, where the catalog records them.
    pub fn bytes(&self) -> u64 {
        self.rows.iter().filter_map(|r| r.size).sum()
    }
}

/// Why a row was not restored although it was archived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The cold copy (or the hot copy read back) disagrees with the catalog.
    Corrupt,
    /// Another worker (a sweep or a restore) holds the row, or it stopped
    /// being archived since it was listed; try again later.
    Busy,
    /// Any other error, by kind.
    Error(ErrorKind),
}

impl FailureKind {
    /// `corrupt`, `busy`, or the error kind's name (`not_found`,
    /// `transient`, `lease_lost`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Corrupt => "corrupt",
            FailureKind::Busy => "busy",
            FailureKind::Error(kind) => kind.as_str(),
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row not restored (or, in [`RestoreReport::cold_delete_failed`], a cold
/// copy not deleted), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The task.
    pub task_id: String,
    /// Its job.
    pub job_id: String,
    /// What went wrong.
    pub kind: FailureKind,
    /// Why, in words.
    pub error: String,
}

/// A row restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredRow {
    /// The task.
    pub task_id: String,
    /// Its job.
    pub job_id: String,
    /// Its hot location now.
    pub hot: Location,
    /// Stored bytes copied.
    pub bytes: u64,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Rows now hot again, by task id.
    pub restored: Vec<RestoredRow>,
    /// Archived rows not restored (still archived), by task id.
    pub failed: Vec<Failure>,
    /// Selected rows and ids not restorable, with the reason.
    pub skipped: Vec<Skipped>,
    /// Cold copies deleted (with [`RestoreOptions::delete_cold`]).
    pub cold_deleted: u64,
    /// Cold copies of restored rows whose delete failed (left in place:
    /// unreferenced, never a loss).
    pub cold_delete_failed: Vec<Failure>,
    /// Jobs whose status came back from `archived`, by id.
    pub jobs_reopened: Vec<String>,
    /// Stored bytes written to the hot store.
    pub bytes: u64,
}

impl RestoreReport {
    /// Every restorable row restored, every requested cold delete done.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.cold_delete_failed.is_empty()
    }
}

/// Restores archived blobs (see the module documentation).
pub struct Restorer {
    catalog: Arc<dyn Catalog>,
    cold: Arc<dyn Store>,
    hot: Arc<dyn Store>,
    options: RestoreOptions,
    worker_id: String,
    clock: Clock,
}

impl fmt::Debug for Restorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restorer")
            .field("cold", &self.cold)
            .field("hot", &self.hot)
            .field("options", &self.options)
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl Restorer {
    /// A restorer from `cold` back to `hot`, bookkept in `catalog`.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        cold: Arc<dyn Store>,
        hot: Arc<dyn Store>,
        options: RestoreOptions,
    ) -> Self {
        Self {
            catalog,
            cold,
            hot,
            options,
            worker_id: crate::archiver::default_worker_id(),
            clock: Arc::new(Utc::now),
        }
    }

    /// Use `clock` for lease times instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Identity recorded on claimed rows (default: host, pid and a random suffix).
    pub fn with_worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = worker_id.into();
        self
    }

    /// The options in use.
    pub fn options(&self) -> &RestoreOptions {
        &self.options
    }

    /// The dry run: every selected row, restorable or skipped with the
    /// reason. Reads the catalog only.
    pub async fn plan(&self, request: &RestoreRequest) -> Result<RestorePlan> {
        request.validate()?;
        let rows = self
            .catalog
            .tasks_selected(&request.tasks, &request.jobs)
            .await?;
        let known_jobs: HashSet<String> = self
            .catalog
            .known_jobs(&request.jobs)
            .await?
            .into_iter()
            .collect();
        let mut plan = RestorePlan::default();
        let found: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        for job in request.jobs.iter().collect::<BTreeSet<_>>() {
            if !known_jobs.contains(job) {
                plan.skipped.push(Skipped {
                    task_id: None,
                    job_id: Some(job.clone()),
                    reason: SkipReason::NoSuchJob,
                });
            }
        }
        for task in request.tasks.iter().collect::<BTreeSet<_>>() {
            if !found.contains(task.as_str()) {
                plan.skipped.push(Skipped {
                    task_id: Some(task.clone()),
                    job_id: None,
                    reason: SkipReason::NoSuchTask,
                });
            }
        }
        for row in rows {
            match self.planned(row) {
                Ok(planned) => plan.rows.push(planned),
                Err(skipped) => plan.skipped.push(skipped),
            }
        }
        Ok(plan)
    }

    /// A row as the plan lists it, or why it is skipped.
    fn planned(&self, row: TaskRow) -> std::result::Result<PlannedRow, Skipped> {
        let skip = |row: &TaskRow, reason| Skipped {
            task_id: Some(row.id.clone()),
            job_id: Some(row.job_id.clone()),
            reason,
        };
        let reason = match row.state() {
            BlobState::Archived => None,
            BlobState::Hot => Some(SkipReason::StillHot),
            BlobState::Lost => Some(SkipReason::Lost),
            BlobState::Missing => Some(SkipReason::Missing),
            BlobState::Quarantined => Some(SkipReason::Quarantined),
            BlobState::None => Some(SkipReason::NoHtml),
        };
        if let Some(reason) = reason {
            return Err(skip(&row, reason));
        }
        let cold = match cold_location(&row) {
            Ok(cold) => cold,
            Err(e) => return Err(skip(&row, SkipReason::BadRow(e.message().to_owned()))),
        };
        let hot_key = match ObjectKey::new(task_html_object_path(&row.job_id, &row.id)) {
            Ok(key) => key,
            Err(e) => {
                return Err(skip(
                    &row,
                    SkipReason::BadRow(format!("hot key: {}", e.message())),
                ));
            }
        };
        let hot = Location::new(self.options.hot_bucket.clone(), hot_key);
        if hot == cold
            && self.hot.namespace().is_some()
            && self.hot.namespace() == self.cold.namespace()
        {
            // Restoring would "copy" the object onto itself, and
            // --delete-cold would then delete the only copy.
            return Err(skip(
                &row,
                SkipReason::BadRow(format!(
                    "hot and cold are the same object ({hot} in {})",
                    self.hot.namespace().unwrap_or_default()
                )),
            ));
        }
        Ok(PlannedRow {
            task_id: row.id.clone(),
            job_id: row.job_id.clone(),
            cold,
            cold_provider: row.html_archive_provider.clone(),
            hot,
            size: row
                .html_compressed_size_bytes
                .and_then(|n| u64::try_from(n).ok()),
            row,
        })
    }

    /// Restore the rows `request` selects, adding each to `progress`.
    ///
    /// Fails only when nothing could start (a bad request, the catalog
    /// unreadable, the hot bucket unreachable); every row's own failure is
    /// in the report.
    pub async fn run(
        &self,
        request: &RestoreRequest,
        progress: &Progress,
    ) -> Result<RestoreReport> {
        if self.options.concurrency == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "restore concurrency: expected at least 1, got 0",
            ));
        }
        let plan = self.plan(request).await?;
        let mut report = RestoreReport {
            skipped: plan.skipped,
            ..RestoreReport::default()
        };
        progress.set_total(plan.rows.len() as u64);
        if plan.rows.is_empty() {
            return Ok(report);
        }
        // A missing hot bucket is a setting to fix, not a reason to write
        // objects somewhere no row will look.
        self.hot
            .ping(&self.options.hot_bucket)
            .await
            .map_err(|e| e.context(format!("hot bucket {}", self.options.hot_bucket)))?;

        let held = Held::default();
        let work = async {
            let chunk = (self.options.concurrency * 4).clamp(16, 500);
            for rows in plan.rows.chunks(chunk) {
                self.restore_chunk(rows, &held, progress, &mut report).await;
            }
        };
        tokio::select! {
            () = work => {}
            never = heartbeat(self.options.lease, &held, "restore", |ids| async move {
                let fence = self.fence();
                let until = self.lease_end(fence.now);
                self.catalog.extend_leases(&ids, fence, until).await
            }) => match never {},
        }
        report.restored.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        report.failed.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        report.jobs_reopened.sort();
        report.jobs_reopened.dedup();
        Ok(report)
    }

    /// Claim, copy, switch and (maybe) delete the cold copies of one chunk.
    async fn restore_chunk(
        &self,
        rows: &[PlannedRow],
        held: &Held,
        progress: &Progress,
        report: &mut RestoreReport,
    ) {
        let now = (self.clock)();
        let lease = Lease {
            owner: self.worker_id.clone(),
            free_before: now,
            until: self.lease_end(now),
        };
        let ids: Vec<String> = rows.iter().map(|r| r.task_id.clone()).collect();
        let claimed = match self.catalog.claim_archived(&ids, &lease).await {
            Ok(claimed) => claimed,
            Err(e) => {
                for row in rows {
                    progress.object_done(0, false);
                    report
                        .failed
                        .push(failure(row, FailureKind::Error(e.kind()), &e));
                }
                return;
            }
        };
        held.hold(claimed.iter().map(|r| r.id.clone()));
        // The claim's own reading of each row: what was listed may have
        // changed since (another restore, an archive of a restored row).
        let claimed: BTreeMap<String, TaskRow> =
            claimed.into_iter().map(|r| (r.id.clone(), r)).collect();
        let mut todo = Vec::new();
        for row in rows {
            match claimed.get(&row.task_id).map(|r| self.planned(r.clone())) {
                Some(Ok(planned)) => todo.push(planned),
                Some(Err(skipped)) => {
                    // Cannot happen for a row the claim found archived;
                    // counted as a failure so it is not silently dropped.
                    progress.object_done(0, false);
                    report.failed.push(Failure {
                        task_id: row.task_id.clone(),
                        job_id: row.job_id.clone(),
                        kind: FailureKind::Error(ErrorKind::InvalidInput),
                        error: skipped.reason.to_string(),
                    });
                }
                None => {
                    progress.object_done(0, false);
                    report.failed.push(Failure {
                        task_id: row.task_id.clone(),
                        job_id: row.job_id.clone(),
                        kind: FailureKind::Busy,
                        error: "another worker holds the row, or it is no longer archived; \
                                nothing was changed, try again later"
                            .to_owned(),
                    });
                }
            }
        }

        let copies = futures::stream::iter(todo.iter().map(|row| async move {
            let copied = tokio::time::timeout(self.options.blob_timeout, self.copy(row))
                .await
                .unwrap_or_else(|_| {
                    Err(Copy::Failed(Error::new(
                        ErrorKind::Transient,
                        format!("timed out after {:?}", self.options.blob_timeout),
                    )))
                });
            (row, copied)
        }))
        .buffer_unordered(self.options.concurrency)
        .collect::<Vec<_>>()
        .await;

        let mut copied = Vec::new();
        let mut give_back = Vec::new();
        for (row, result) in copies {
            match result {
                Ok(bytes) => copied.push((row, bytes)),
                Err(copy) => {
                    let (kind, error) = match copy {
                        Copy::Corrupt(why) => (FailureKind::Corrupt, why),
                        Copy::Failed(e) => (FailureKind::Error(e.kind()), e.chain().to_string()),
                    };
                    tracing::warn!(task_id = %row.task_id, %kind, %error, "not restored: the row stays archived");
                    progress.object_done(0, false);
                    give_back.push(row.task_id.clone());
                    report.failed.push(Failure {
                        task_id: row.task_id.clone(),
                        job_id: row.job_id.clone(),
                        kind,
                        error,
                    });
                }
            }
        }
        // Rows not restored are handed back at once, so a re-run need not
        // wait for their leases to end.
        if let Err(e) = self.catalog.hand_back(&give_back, &self.worker_id).await {
            tracing::warn!(error = %e.chain(), "handing back rows not restored failed; their leases expire");
        }
        for id in &give_back {
            held.release(id);
        }

        let switch: Vec<(String, String)> = copied
            .iter()
            .map(|(row, _)| (row.task_id.clone(), row.hot.key.as_str().to_owned()))
            .collect();
        let written = self
            .catalog
            .record_restored_many(&switch, &self.options.hot_bucket, self.fence())
            .await;
        let switched = match written {
            Ok(restored) => {
                report.jobs_reopened.extend(restored.jobs_reopened);
                restored.tasks.into_iter().collect::<HashSet<_>>()
            }
            Err(e) => {
                tracing::warn!(error = %e.chain(), "the catalog switch failed: the rows stay archived");
                for (row, _) in &copied {
                    progress.object_done(0, false);
                    report
                        .failed
                        .push(failure(row, FailureKind::Error(e.kind()), &e));
                }
                let ids: Vec<String> = copied.iter().map(|(r, _)| r.task_id.clone()).collect();
                if let Err(e) = self.catalog.hand_back(&ids, &self.worker_id).await {
                    tracing::warn!(error = %e.chain(), "handing back rows not restored failed; their leases expire");
                }
                for id in &ids {
                    held.release(id);
                }
                return;
            }
        };
        let mut delete = Vec::new();
        for (row, bytes) in copied {
            held.release(&row.task_id);
            if !switched.contains(&row.task_id) {
                progress.object_done(0, false);
                report.failed.push(Failure {
                    task_id: row.task_id.clone(),
                    job_id: row.job_id.clone(),
                    kind: FailureKind::Error(ErrorKind::LeaseLost),
                    error: "the claim ran out or was taken over before the catalog switch; \
                            nothing was changed"
                        .to_owned(),
                });
                continue;
            }
            tracing::debug!(task_id = %row.task_id, bytes, "restored");
            progress.object_done(bytes, true);
            report.bytes += bytes;
            report.restored.push(RestoredRow {
                task_id: row.task_id.clone(),
                job_id: row.job_id.clone(),
                hot: row.hot.clone(),
                bytes,
            });
            if self.options.delete_cold {
                delete.push(row);
            }
        }
        if delete.is_empty() {
            return;
        }
        // Only now: the catalog no longer points at these copies.
        let locations: Vec<Location> = delete.iter().map(|r| r.cold.clone()).collect();
        for (row, result) in delete.iter().zip(self.cold.delete_many(&locations).await) {
            match result {
                Ok(()) => report.cold_deleted += 1,
                Err(e) => {
                    report
                        .cold_delete_failed
                        .push(failure(row, FailureKind::Error(e.kind()), &e))
                }
            }
        }
    }

    /// Steps 2–4 for one row: the stored bytes copied, or why not.
    async fn copy(&self, row: &PlannedRow) -> std::result::Result<u64, Copy> {
        let expected = row
            .row
            .as_candidate(&row.cold.bucket, row.cold.key.as_str());
        let bytes: Bytes = self
            .cold
            .get(&row.cold)
            .await
            .map_err(|e| Copy::Failed(e.context(format!("read cold copy {}", row.cold))))?;
        check_against_catalog(&expected, &bytes)
            .map_err(|m| Copy::Corrupt(format!("cold copy {}: {}", row.cold, m.0)))?;
        let options = PutOptions {
            content_type: row.row.html_content_type.clone(),
            content_encoding: row.row.html_content_encoding.clone(),
            metadata: BTreeMap::new(),
        };
        self.hot
            .put(&row.hot, bytes.clone(), &options)
            .await
            .map_err(|e| Copy::Failed(e.context(format!("put hot copy {}", row.hot))))?;
        let back = self
            .hot
            .get(&row.hot)
            .await
            .map_err(|e| Copy::Failed(e.context(format!("read back hot copy {}", row.hot))))?;
        if let Err(m) = check_against_catalog(&expected, &back) {
            return Err(Copy::Corrupt(format!(
                "hot copy {} read back: {}",
                row.hot, m.0
            )));
        }
        if back != bytes {
            return Err(Copy::Corrupt(format!(
                "hot copy {} read back differs from the cold copy ({} bytes written, {} read)",
                row.hot,
                bytes.len(),
                back.len()
            )));
        }
        Ok(bytes.len() as u64)
    }

    fn lease_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.options.lease).unwrap_or(chrono::Duration::MAX)
    }

    fn fence(&self) -> Fence<'_> {
        Fence {
            owner: &self.worker_id,
            now: (self.clock)(),
        }
    }
}

/// Why one row's copy did not happen.
enum Copy {
    /// Bytes disagree with the catalog.
    Corrupt(String),
    /// Any other error.
    Failed(Error),
}

fn failure(row: &PlannedRow, kind: FailureKind, error: &Error) -> Failure {
    Failure {
        task_id: row.task_id.clone(),
        job_id: row.job_id.clone(),
        kind,
        error: error.chain().to_string(),
    }
}

/// The cold location an archived row records.
fn cold_location(row: &TaskRow) -> Result<Location> {
    let (Some(bucket), Some(key)) = (&row.html_archive_bucket, &row.html_archive_key) else {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the catalog records a cold key but no cold bucket",
        ));
    };
    let key = ObjectKey::new(key.as_str()).map_err(|e| e.context("cold key in the catalog"))?;
    Ok(Location::new(bucket.as_str(), key))
}
