//! Task HTML: the gzip'd page content each crawl task stores.

use std::sync::Arc;

use tokio::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::catalog::Catalog;
use crate::error::Result;
use crate::keys::{KeyPrefix, ObjectKey, cold_key};
use crate::model::{ArchiveCandidate, Claim, Fence, Lease, Verdict};
use crate::source::ArchiveSource;

/// Task HTML of terminal jobs older than the newest `retention_jobs` terminal
/// jobs of the same (domain, organisation), ordered by
/// `COALESCE(restored_at, completed_at, created_at)` (a restored job counts
/// as finished at its restore).
///
/// The eligible jobs are found once per sweep (a sweep = the claims made
/// with one [`Lease::free_before`]); each claim then takes rows from where
/// the last one stopped, so a claim costs about the rows it takes. A job
/// that becomes eligible during a sweep is taken by the next one. Clones
/// share the sweep's position.
#[derive(Debug, Clone)]
pub struct TaskHtmlSource {
    catalog: Arc<dyn Catalog>,
    retention_jobs: u32,
    sweep: Arc<Mutex<Option<Sweep>>>,
}

/// Where one sweep has got to in its eligible jobs.
#[derive(Debug)]
struct Sweep {
    free_before: DateTime<Utc>,
    /// Oldest first.
    jobs: Vec<String>,
    /// Every job before this one has no claimable row left for this sweep.
    next: usize,
}

impl TaskHtmlSource {
    /// A source over `catalog` keeping the newest `retention_jobs` jobs hot.
    pub fn new(catalog: Arc<dyn Catalog>, retention_jobs: u32) -> Self {
        Self {
            catalog,
            retention_jobs,
            sweep: Arc::default(),
        }
    }

    /// Claim from the next jobs of `sweep` until `batch` rows or its end.
    async fn claim_from(&self, sweep: &mut Sweep, batch: usize, lease: &Lease) -> Result<Claim> {
        let mut claim = Claim::default();
        loop {
            let want = batch - claim.candidates.len() - claim.unreadable.len();
            if want == 0 || sweep.next >= sweep.jobs.len() {
                return Ok(claim);
            }
            // Each job had a claimable row when the sweep began, so `want`
            // jobs usually hold `want` rows; a short answer moves on.
            let end = sweep.jobs.len().min(sweep.next + want);
            let window = &sweep.jobs[sweep.next..end];
            let part = match self.catalog.claim_task_html_rows(window, want, lease).await {
                Ok(part) => part,
                // Rows already claimed stay with this claim: failing it would
                // hide them until their lease ends.
                Err(e) if !claim.candidates.is_empty() || !claim.unreadable.is_empty() => {
                    tracing::warn!(error = %e.chain(), "claiming more candidates failed; moving those claimed");
                    return Ok(claim);
                }
                Err(e) => return Err(e),
            };
            if part.candidates.len() + part.unreadable.len() < want {
                sweep.next = end;
            } else if let Some(last) = part.candidates.last() {
                // Candidates come in job order: the jobs before the last
                // one's are exhausted, that one may have more.
                sweep.next += window.iter().position(|j| *j == last.job_id).unwrap_or(0);
            }
            claim.candidates.extend(part.candidates);
            claim.unreadable.extend(part.unreadable);
        }
    }
}

#[async_trait]
impl ArchiveSource for TaskHtmlSource {
    fn name(&self) -> &str {
        "task_html"
    }

    async fn claim(&self, batch: usize, lease: &Lease) -> Result<Claim> {
        // Held across the claim: claims of one sweep take turns on its position.
        let mut sweep = self.sweep.lock().await;
        let sweep = match &mut *sweep {
            Some(current) if current.free_before == lease.free_before => current,
            stale => {
                let jobs = self
                    .catalog
                    .eligible_jobs(self.retention_jobs, lease.free_before)
                    .await?;
                stale.insert(Sweep {
                    free_before: lease.free_before,
                    jobs,
                    next: 0,
                })
            }
        };
        self.claim_from(sweep, batch, lease).await
    }

    fn cold_key(&self, candidate: &ArchiveCandidate, prefix: &KeyPrefix) -> Result<ObjectKey> {
        cold_key(prefix, &candidate.job_id, &candidate.task_id)
    }

    async fn record_archived(
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

    async fn clear_hot(&self, candidate: &ArchiveCandidate, fence: Fence<'_>) -> Result<()> {
        self.catalog.clear_hot(&candidate.task_id, fence).await
    }

    async fn record_archived_many(
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

    async fn clear_hot_many(
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
            .mark_state(&candidate.task_id, fence, Verdict::Lost, reason)
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
            .mark_state(&candidate.task_id, fence, Verdict::Quarantined, reason)
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
