//! Restore of a declared source's rows ([`TableRestorer`]): the built-in's
//! flow and order over the source's side table. Each row goes back to the
//! hot bucket and path recorded when it was archived; the switch sets the
//! path column again (when the source cleared it), clears the table's cold
//! columns, records `restored_at` (the row then ages from its restore) and
//! sets a marked parent's status back; the cold copy is deleted only after
//! the switch, with `delete_cold`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;

use super::{Failure, FailureKind, RestoreReport, RestoredRow, SkipReason, Skipped};
use crate::archiver::Clock;
use crate::archiver::lease::{Held, heartbeat};
use crate::error::{Error, ErrorKind, Result};
use crate::integrity::check_against_catalog;
use crate::keys::ObjectKey;
use crate::model::{ArchiveCandidate, Fence, Lease};
use crate::progress::Progress;
use crate::source::{ArchiveSource, ArchivedRow, TableSource};
use crate::store::{Location, PutOptions, Store};
use std::sync::Arc;

/// Which rows of a declared source to restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableRestoreRequest {
    /// These rows, by key.
    pub keys: Vec<String>,
    /// Every row of these parents.
    pub parents: Vec<String>,
}

/// How a restore of a declared source runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRestoreOptions {
    /// Delete each cold copy once its row points hot again (never the default).
    pub delete_cold: bool,
    /// Blobs restored at once (at least 1).
    pub concurrency: usize,
    /// How long a claim hides a row from others if this process dies.
    pub lease: Duration,
    /// Time limit for one blob's copy (read, put, read back).
    pub blob_timeout: Duration,
}

impl Default for TableRestoreOptions {
    fn default() -> Self {
        let config = crate::Config::default();
        Self {
            delete_cold: false,
            concurrency: config.concurrency,
            lease: config.lease,
            blob_timeout: config.blob_timeout,
        }
    }
}

/// One archived row a restore would bring back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePlannedRow {
    /// The row's key.
    pub key: String,
    /// Its parent's key.
    pub parent: Option<String>,
    /// Where the blob is now.
    pub cold: Location,
    /// Cold provider recorded.
    pub cold_provider: Option<String>,
    /// Where it goes back to: the hot location recorded at archive time.
    pub hot: Location,
    /// Stored size, where the table records it.
    pub size: Option<u64>,
    row: ArchivedRow,
}

/// What a restore of a declared source would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableRestorePlan {
    /// Rows that would be restored, by key.
    pub rows: Vec<TablePlannedRow>,
    /// Selected rows and keys that would not be (row key in `task_id`,
    /// parent key in `job_id`).
    pub skipped: Vec<Skipped>,
}

impl TableRestorePlan {
    /// Stored bytes the rows hold, where the table records them.
    pub fn bytes(&self) -> u64 {
        self.rows.iter().filter_map(|r| r.size).sum()
    }
}

/// Restores archived rows of one declared source. Its reports use the
/// built-in's types: the row key as `task_id`, the parent key as `job_id`.
pub struct TableRestorer {
    source: TableSource,
    cold: Arc<dyn Store>,
    hot: Arc<dyn Store>,
    options: TableRestoreOptions,
    worker_id: String,
    clock: Clock,
}

impl fmt::Debug for TableRestorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableRestorer")
            .field("source", &self.source.name())
            .field("options", &self.options)
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl TableRestorer {
    /// A restorer of `source` from `cold` back to `hot` (a hot store opened
    /// for restore).
    pub fn new(
        source: TableSource,
        cold: Arc<dyn Store>,
        hot: Arc<dyn Store>,
        options: TableRestoreOptions,
    ) -> Self {
        Self {
            source,
            cold,
            hot,
            options,
            worker_id: crate::archiver::default_worker_id(),
            clock: Arc::new(Utc::now),
        }
    }

    /// Use `clock` for lease and restore times instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The options in use.
    pub fn options(&self) -> &TableRestoreOptions {
        &self.options
    }

    /// The source restored.
    pub fn source(&self) -> &TableSource {
        &self.source
    }

    /// The dry run: every selected row, restorable or skipped with the
    /// reason. Reads the catalog only.
    pub async fn plan(&self, request: &TableRestoreRequest) -> Result<TableRestorePlan> {
        if request.keys.is_empty() && request.parents.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "restore needs at least one --key KEY or --parent KEY",
            ));
        }
        let rows = self
            .source
            .restore_rows(&request.keys, &request.parents)
            .await?;
        let mut plan = TableRestorePlan::default();
        let found: HashSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        let parents: HashSet<&str> = rows.iter().filter_map(|r| r.parent.as_deref()).collect();
        // Keys are compared as the catalog writes them back.
        for key in &request.keys {
            if !found.contains(key.trim()) {
                plan.skipped.push(Skipped {
                    task_id: Some(key.clone()),
                    job_id: None,
                    reason: SkipReason::NoSuchRow,
                });
            }
        }
        for parent in &request.parents {
            if !parents.contains(parent.trim()) {
                plan.skipped.push(Skipped {
                    task_id: None,
                    job_id: Some(parent.clone()),
                    reason: SkipReason::NoSuchParent,
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

    fn planned(&self, row: ArchivedRow) -> std::result::Result<TablePlannedRow, Skipped> {
        let skip = |row: &ArchivedRow, reason| Skipped {
            task_id: Some(row.key.clone()),
            job_id: row.parent.clone(),
            reason,
        };
        let reason = match row.state.as_deref() {
            Some("lost") => Some(SkipReason::Lost),
            Some("missing") => Some(SkipReason::Missing),
            Some("quarantined") => Some(SkipReason::Quarantined),
            Some(other) => Some(SkipReason::BadRow(format!("unknown state {other:?}"))),
            None if !row.hot_deleted || row.cold_key.is_none() => Some(SkipReason::StillHot),
            None => None,
        };
        if let Some(reason) = reason {
            return Err(skip(&row, reason));
        }
        let bad = |why: String| skip(&row, SkipReason::BadRow(why));
        let (Some(cold_bucket), Some(cold_key)) = (&row.cold_bucket, &row.cold_key) else {
            return Err(bad(
                "the side table records a cold key but no cold bucket".into()
            ));
        };
        let cold = ObjectKey::new(cold_key.as_str())
            .map(|key| Location::new(cold_bucket.as_str(), key))
            .map_err(|e| bad(format!("cold key: {}", e.message())))?;
        let (Some(hot_bucket), Some(hot_path)) = (&row.hot_bucket, &row.hot_path) else {
            return Err(bad(
                "the side table records no hot location it came from".into()
            ));
        };
        let hot = ObjectKey::new(hot_path.as_str())
            .map(|key| Location::new(hot_bucket.as_str(), key))
            .map_err(|e| bad(format!("hot key: {}", e.message())))?;
        if hot == cold
            && self.hot.namespace().is_some()
            && self.hot.namespace() == self.cold.namespace()
        {
            // --delete-cold would delete the only copy.
            return Err(bad(format!(
                "hot and cold are the same object ({hot} in {})",
                self.hot.namespace().unwrap_or_default()
            )));
        }
        Ok(TablePlannedRow {
            key: row.key.clone(),
            parent: row.parent.clone(),
            cold,
            cold_provider: row.cold_provider.clone(),
            hot,
            size: row.stored_size.and_then(|n| u64::try_from(n).ok()),
            row,
        })
    }

    /// Restore the rows `request` selects, adding each to `progress`.
    /// Fails only when nothing could start; every row's own failure is in
    /// the report.
    pub async fn run(
        &self,
        request: &TableRestoreRequest,
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
        let mut buckets: Vec<&str> = plan.rows.iter().map(|r| r.hot.bucket.as_str()).collect();
        buckets.sort_unstable();
        buckets.dedup();
        for bucket in buckets {
            self.hot
                .ping(bucket)
                .await
                .map_err(|e| e.context(format!("hot bucket {bucket}")))?;
        }
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
                self.source.extend_leases(&ids, fence, until).await
            }) => match never {},
        }
        report.restored.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        report.failed.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        report.jobs_reopened.sort();
        report.jobs_reopened.dedup();
        Ok(report)
    }

    async fn restore_chunk(
        &self,
        rows: &[TablePlannedRow],
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
        let keys: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
        let claimed = match self.source.claim_archived(&keys, &lease).await {
            Ok(claimed) => claimed,
            Err(e) => {
                for row in rows {
                    progress.object_done(0, false);
                    report.failed.push(failure(
                        row,
                        FailureKind::Error(e.kind()),
                        e.chain().to_string(),
                    ));
                }
                return;
            }
        };
        held.hold(claimed.iter().map(|r| r.key.clone()));
        let claimed: BTreeMap<String, ArchivedRow> =
            claimed.into_iter().map(|r| (r.key.clone(), r)).collect();
        let mut todo = Vec::new();
        for row in rows {
            match claimed.get(&row.key).map(|r| self.planned(r.clone())) {
                Some(Ok(planned)) => todo.push(planned),
                Some(Err(skipped)) => {
                    progress.object_done(0, false);
                    report.failed.push(failure(
                        row,
                        FailureKind::Error(ErrorKind::InvalidInput),
                        skipped.reason.to_string(),
                    ));
                }
                None => {
                    progress.object_done(0, false);
                    report.failed.push(failure(
                        row,
                        FailureKind::Busy,
                        "another worker holds the row, or it is no longer archived; \
                         nothing was changed, try again later"
                            .to_owned(),
                    ));
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
                    tracing::warn!(source = %self.source.name(), key = %row.key, %kind, %error, "not restored: the row stays archived");
                    progress.object_done(0, false);
                    give_back.push(row.clone());
                    report.failed.push(failure(row, kind, error));
                }
            }
        }
        self.hand_back(&give_back, held).await;

        let keys: Vec<String> = copied.iter().map(|(r, _)| r.key.clone()).collect();
        let switched = match self.source.record_restored(&keys, self.fence()).await {
            Ok(switched) => {
                report.jobs_reopened.extend(switched.parents_reopened);
                switched.keys.into_iter().collect::<HashSet<_>>()
            }
            Err(e) => {
                tracing::warn!(error = %e.chain(), "the catalog switch failed: the rows stay archived");
                for (row, _) in &copied {
                    progress.object_done(0, false);
                    report.failed.push(failure(
                        row,
                        FailureKind::Error(e.kind()),
                        e.chain().to_string(),
                    ));
                }
                let rows: Vec<TablePlannedRow> = copied.iter().map(|(r, _)| (*r).clone()).collect();
                self.hand_back(&rows, held).await;
                return;
            }
        };
        let mut delete = Vec::new();
        for (row, bytes) in copied {
            held.release(&row.key);
            if !switched.contains(&row.key) {
                progress.object_done(0, false);
                report.failed.push(failure(
                    row,
                    FailureKind::Error(ErrorKind::LeaseLost),
                    "the claim ran out or was taken over before the catalog switch; \
                     nothing was changed"
                        .to_owned(),
                ));
                continue;
            }
            progress.object_done(bytes, true);
            report.bytes += bytes;
            report.restored.push(RestoredRow {
                task_id: row.key.clone(),
                job_id: row.parent.clone().unwrap_or_default(),
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
                Err(e) => report.cold_delete_failed.push(failure(
                    row,
                    FailureKind::Error(e.kind()),
                    e.chain().to_string(),
                )),
            }
        }
    }

    /// Rows not restored are handed back at once, so that a re-run need
    /// not wait for their leases to end.
    async fn hand_back(&self, rows: &[TablePlannedRow], held: &Held) {
        if rows.is_empty() {
            return;
        }
        // The trait's hand-back reads only the key.
        let candidates: Vec<ArchiveCandidate> = rows.iter().map(candidate).collect();
        if let Err(e) = self.source.hand_back(&candidates, &self.worker_id).await {
            tracing::warn!(error = %e.chain(), "handing back rows not restored failed; their leases expire");
        }
        for row in rows {
            held.release(&row.key);
        }
    }

    /// Read the cold copy, check it against the table, put it hot, read
    /// it back and compare byte for byte.
    async fn copy(&self, row: &TablePlannedRow) -> std::result::Result<u64, Copy> {
        let expected = candidate(row);
        let bytes: Bytes = self
            .cold
            .get(&row.cold)
            .await
            .map_err(|e| Copy::Failed(e.context(format!("read cold copy {}", row.cold))))?;
        check_against_catalog(&expected, &bytes)
            .map_err(|m| Copy::Corrupt(format!("cold copy {}: {}", row.cold, m.0)))?;
        let options = PutOptions {
            content_type: row.row.content_type.clone(),
            content_encoding: row.row.content_encoding.clone(),
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
    Corrupt(String),
    Failed(Error),
}

/// The row as the integrity checks read it: its size and digest.
fn candidate(row: &TablePlannedRow) -> ArchiveCandidate {
    ArchiveCandidate {
        task_id: row.key.clone(),
        job_id: row.parent.clone().unwrap_or_default(),
        storage_bucket: row.hot.bucket.clone(),
        storage_path: row.hot.key.as_str().to_owned(),
        sha256: None,
        compressed_size_bytes: row.row.stored_size,
        size_bytes: None,
        content_type: row.row.content_type.clone(),
        content_encoding: row.row.content_encoding.clone(),
        archived_at: None,
        attempts: 0,
        claims: 0,
        missing_since: None,
        digest: row.row.digest.clone(),
        cold_name: None,
    }
}

fn failure(row: &TablePlannedRow, kind: FailureKind, error: String) -> Failure {
    Failure {
        task_id: row.key.clone(),
        job_id: row.parent.clone().unwrap_or_default(),
        kind,
        error,
    }
}
