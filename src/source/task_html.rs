//! Task HTML: the gzip'd page content each crawl task stores.

use std::sync::Arc;

use tokio::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::catalog::Catalog;
use crate::error::Result;
use crate::keys::{KeyPrefix, ObjectKey, cold_key};
use crate::model::{ArchiveCandidate, Claim, Fence, Lease, Verdict};
use crate::rules::{self, Decision, MoveRule, Rules};
use crate::source::ArchiveSource;

/// Task HTML of the jobs the archive rules move ([`crate::rules`]):
/// finished jobs beyond the newest `retention_jobs` of their (domain,
/// organisation), then, under a hot quota, the oldest others until the rest
/// fits; none younger than the minimum age.
///
/// The moving jobs are decided once per sweep (a sweep = the claims made
/// with one [`Lease::free_before`], which is also the rules' "now"); each
/// claim then takes rows from where the last one stopped, so a claim costs
/// about the rows it takes. A job that becomes movable during a sweep is
/// taken by the next one. Clones share the sweep's position.
#[derive(Debug, Clone)]
pub struct TaskHtmlSource {
    catalog: Arc<dyn Catalog>,
    rules: Rules,
    sweep: Arc<Mutex<Option<Sweep>>>,
}

/// Where one sweep has got to in its eligible jobs.
#[derive(Debug)]
struct Sweep {
    free_before: DateTime<Utc>,
    /// The moving jobs, in the order the rules give.
    jobs: Vec<String>,
    /// Every job before this one has no claimable row left for this sweep.
    next: usize,
}

impl TaskHtmlSource {
    /// A source over `catalog` keeping the newest `retention_jobs` jobs hot
    /// (retention alone: no quota, no minimum age).
    pub fn new(catalog: Arc<dyn Catalog>, retention_jobs: u32) -> Self {
        Self::with_rules(catalog, Rules::retention(retention_jobs))
    }

    /// A source over `catalog` moving what `rules` decide.
    pub fn with_rules(catalog: Arc<dyn Catalog>, rules: Rules) -> Self {
        Self {
            catalog,
            rules,
            sweep: Arc::default(),
        }
    }

    /// The moving jobs of a sweep starting at `free_before`, in the order
    /// a sweep takes them; warns when a quota cannot be met.
    async fn moving_jobs(&self, free_before: DateTime<Utc>) -> Result<Vec<String>> {
        let standings = self
            .catalog
            .job_standings(self.rules.scope(), free_before)
            .await?;
        let decisions = rules::decide(&standings, &self.rules, free_before);
        if let Some(quota) = decisions.quota.filter(|q| !q.met()) {
            tracing::warn!(
                hot_quota_bytes = quota.quota,
                hot_bytes_after = decisions.hot_bytes_after.unwrap_or_default(),
                over_by_bytes = quota.over_by,
                held_by_min_age_bytes = quota.held_by_min_age,
                held_unmovable_bytes = quota.held_unmovable,
                "the hot store stays over ARCHIVE_HOT_QUOTA after this sweep: everything the \
                 rules may move is moving; the rest is in jobs younger than ARCHIVE_MIN_AGE or \
                 can move by no rule now (unfinished jobs; quarantined, lost, failing or claimed \
                 blobs); `coldsweep plan` shows which"
            );
        }
        let moving = decisions.moving();
        let by_quota = moving
            .iter()
            .filter(|j| j.decision == Decision::Moves(MoveRule::Quota))
            .count();
        if by_quota > 0 {
            tracing::info!(
                jobs = by_quota,
                "ARCHIVE_HOT_QUOTA moves jobs that retention keeps"
            );
        }
        Ok(decisions.moving_ids())
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
                let jobs = self.moving_jobs(lease.free_before).await?;
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
