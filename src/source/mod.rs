//! Archive sources: kinds of archivable data.
//!
//! A source finds (and claims) candidates in the catalog and records each
//! step of a move. The archiver drives any number of sources through the
//! same per-blob pipeline.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::catalog::Catalog;
use crate::error::{ErrorKind, Result};
use crate::keys::{KeyPrefix, ObjectKey};
use crate::model::{Claim, Fence, Lease};

pub mod spec;
mod table;
mod task_html;

// Where embedders have always found the candidate types.
pub use crate::model::{ArchiveCandidate, ArchivedAt};
pub use table::{
    ArchivedRow, BucketUsage, ResetRow, RowState, STATUS_LIST_LIMIT, SourceStatus, Switched,
    TableResetFilter, TableRow, TableSource,
};
pub use task_html::TaskHtmlSource;

/// Check `specs` against `catalog`'s live schema
/// ([`spec::validate_sources`]) and open each as a [`TableSource`]; returns
/// the sources and the remarks worth logging. Side tables are not created
/// here ([`TableSource::migrate`]).
pub async fn open_declared(
    catalog: Arc<dyn Catalog>,
    specs: Vec<spec::SourceSpec>,
) -> Result<(Vec<TableSource>, Vec<spec::Note>)> {
    let notes = spec::validate_sources(&specs, catalog.as_ref()).await?;
    let mut sources = Vec::with_capacity(specs.len());
    for spec in specs {
        sources.push(TableSource::open(catalog.clone(), spec).await?);
    }
    Ok((sources, notes))
}

/// One kind of archivable data.
#[async_trait]
pub trait ArchiveSource: Send + Sync {
    /// Name used in logs, reports and metrics.
    fn name(&self) -> &str;

    /// Claim up to `batch` candidates under `lease` (claimed rows are
    /// hidden from other workers until the lease expires or is handed
    /// back), telling which claimed rows could not be read and were
    /// quarantined instead, so the sweep can report them.
    async fn claim(&self, batch: usize, lease: &Lease) -> Result<Claim>;

    /// The cold key for `candidate` under `prefix`.
    fn cold_key(&self, candidate: &ArchiveCandidate, prefix: &KeyPrefix) -> Result<ObjectKey>;

    /// Switch the catalog to the verified cold copy (the hot copy still
    /// exists). Every write below is fenced: it holds only while `fence`
    /// holds the row's lease, else it changes nothing and fails with
    /// [`ErrorKind::LeaseLost`].
    async fn record_archived(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
        key: &str,
    ) -> Result<()>;

    /// Clear the hot reference once the hot copy is gone; ends the lease.
    async fn clear_hot(&self, candidate: &ArchiveCandidate, fence: Fence<'_>) -> Result<()>;

    /// [`record_archived`](ArchiveSource::record_archived) for many candidates, each
    /// with its cold key, all to `provider`/`bucket`, in one write where the
    /// source can. Returns the task ids written: a candidate missing from
    /// them lost its lease and was left as it was. The default writes one
    /// by one.
    async fn record_archived_many(
        &self,
        switches: &[(&ArchiveCandidate, &str)],
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
    ) -> Result<Vec<String>> {
        let mut written = Vec::with_capacity(switches.len());
        for (candidate, key) in switches {
            match self
                .record_archived(candidate, fence, provider, bucket, key)
                .await
            {
                Ok(()) => written.push(candidate.task_id.clone()),
                Err(e) if e.kind() == ErrorKind::LeaseLost => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// [`clear_hot`](ArchiveSource::clear_hot) for many
    /// candidates in one write where the source can; returns the task ids
    /// cleared, as [`record_archived_many`](ArchiveSource::record_archived_many).
    async fn clear_hot_many(
        &self,
        candidates: &[&ArchiveCandidate],
        fence: Fence<'_>,
    ) -> Result<Vec<String>> {
        let mut cleared = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            match self.clear_hot(candidate, fence).await {
                Ok(()) => cleared.push(candidate.task_id.clone()),
                Err(e) if e.kind() == ErrorKind::LeaseLost => {}
                Err(e) => return Err(e),
            }
        }
        Ok(cleared)
    }

    /// The blob is still in neither store on a later look, both stores
    /// proven healthy: record it as lost; ends the lease.
    async fn mark_lost(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
    ) -> Result<()>;

    /// The blob is in neither store, seen for the first time (or again too
    /// soon for a verdict): record the suspicion and look again after
    /// `recheck_at`; ends the lease.
    async fn mark_missing(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
        seen_at: DateTime<Utc>,
        recheck_at: DateTime<Utc>,
    ) -> Result<()>;

    /// The blob suspected missing was found after all: drop the suspicion.
    async fn clear_missing(&self, candidate: &ArchiveCandidate, fence: Fence<'_>) -> Result<()>;

    /// Hand claims held by `owner` back untouched (not a failure), in one
    /// write; returns how many.
    async fn hand_back(&self, candidates: &[ArchiveCandidate], owner: &str) -> Result<u64>;

    /// The heartbeat: extend to `until` the claims on `task_ids` that
    /// `fence` still holds, in one write; returns how many.
    async fn extend_leases(
        &self,
        task_ids: &[String],
        fence: Fence<'_>,
        until: DateTime<Utc>,
    ) -> Result<u64>;

    /// The hot bytes disagree with the catalog: keep them hot, record why; ends the lease.
    async fn mark_quarantined(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
    ) -> Result<()>;

    /// Give the claim back after a failure, recording the error for `status`;
    /// the candidate is not claimed again before `retry_at`.
    async fn release(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()>;
}
