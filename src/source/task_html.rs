//! Task HTML: the gzip'd page content each crawl task stores.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::catalog::{BlobState, Catalog, Claim, Fence, Lease};
use crate::error::Result;
use crate::keys::{KeyPrefix, ObjectKey, cold_key};
use crate::source::{ArchiveCandidate, ArchiveSource};

/// Task HTML of terminal jobs older than the newest `retention_jobs` terminal
/// jobs of the same (domain, organisation), ordered by
/// `COALESCE(completed_at, created_at)`.
#[derive(Debug, Clone)]
pub struct TaskHtmlSource {
    catalog: Arc<dyn Catalog>,
    retention_jobs: u32,
}

impl TaskHtmlSource {
    /// A source over `catalog` keeping the newest `retention_jobs` jobs hot.
    pub fn new(catalog: Arc<dyn Catalog>, retention_jobs: u32) -> Self {
        Self {
            catalog,
            retention_jobs,
        }
    }
}

#[async_trait]
impl ArchiveSource for TaskHtmlSource {
    fn name(&self) -> &str {
        "task_html"
    }

    async fn find_candidates(&self, batch: usize, lease: &Lease) -> Result<Vec<ArchiveCandidate>> {
        self.catalog
            .claim_task_html(self.retention_jobs, batch, lease)
            .await
    }

    async fn claim(&self, batch: usize, lease: &Lease) -> Result<Claim> {
        self.catalog
            .claim_task_html_rows(self.retention_jobs, batch, lease)
            .await
    }

    fn cold_key(&self, candidate: &ArchiveCandidate, prefix: &KeyPrefix) -> Result<ObjectKey> {
        cold_key(prefix, &candidate.job_id, &candidate.task_id)
    }

    async fn on_archived(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
        key: &str,
    ) -> Result<()> {
        self.catalog
            .record_archived(&candidate.task_id, fence, provider, bucket, key)
            .await
    }

    async fn on_hot_deleted(&self, candidate: &ArchiveCandidate, fence: Fence<'_>) -> Result<()> {
        self.catalog.clear_hot(&candidate.task_id, fence).await
    }

    async fn on_archived_many(
        &self,
        switches: &[(&ArchiveCandidate, &str)],
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
    ) -> Result<Vec<String>> {
        let rows: Vec<(String, String)> = switches
            .iter()
            .map(|(candidate, key)| (candidate.task_id.clone(), (*key).to_owned()))
            .collect();
        self.catalog
            .record_archived_many(&rows, fence, provider, bucket)
            .await
    }

    async fn on_hot_deleted_many(
        &self,
        candidates: &[&ArchiveCandidate],
        fence: Fence<'_>,
    ) -> Result<Vec<String>> {
        let ids: Vec<String> = candidates.iter().map(|c| c.task_id.clone()).collect();
        self.catalog.clear_hot_many(&ids, fence).await
    }

    async fn mark_lost(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
    ) -> Result<()> {
        self.catalog
            .mark_state(&candidate.task_id, fence, BlobState::Lost, reason)
            .await
    }

    async fn mark_missing(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
        seen_at: DateTime<Utc>,
        recheck_at: DateTime<Utc>,
    ) -> Result<()> {
        self.catalog
            .mark_missing(&candidate.task_id, fence, reason, seen_at, recheck_at)
            .await
    }

    async fn clear_missing(&self, candidate: &ArchiveCandidate, fence: Fence<'_>) -> Result<()> {
        self.catalog.clear_missing(&candidate.task_id, fence).await
    }

    async fn hand_back(&self, candidates: &[ArchiveCandidate], owner: &str) -> Result<u64> {
        let ids: Vec<String> = candidates.iter().map(|c| c.task_id.clone()).collect();
        self.catalog.hand_back(&ids, owner).await
    }

    async fn extend_leases(
        &self,
        task_ids: &[String],
        fence: Fence<'_>,
        until: DateTime<Utc>,
    ) -> Result<u64> {
        self.catalog.extend_leases(task_ids, fence, until).await
    }

    async fn mark_quarantined(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
    ) -> Result<()> {
        self.catalog
            .mark_state(&candidate.task_id, fence, BlobState::Quarantined, reason)
            .await
    }

    async fn release(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        self.catalog
            .release(&candidate.task_id, fence, error, retry_at)
            .await
    }
}
