//! A declared source ([`SourceSpec`]) run against the catalog: any table
//! whose rows reference blobs, with coldsweep's bookkeeping (leases,
//! states, attempts, the cold location and when the hot copy went) in a
//! side table it owns, so the application's table gains no column.
//!
//! The side table is the record that keeps "no row points at nothing"
//! true: a row's cold location is written there (and on the table's cold
//! columns, when it has them) before its hot copy is deleted, and the hot
//! copy is recorded gone (`hot_deleted_at`) in the same transaction that
//! clears the path column (when the source clears it). A row whose path
//! column is left untouched is hot only while `hot_deleted_at` is NULL;
//! claims skip every other row.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::Mutex;

use crate::catalog::{Catalog, SqlValue, TableName, TextRow, TypeFamily};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{KeyPrefix, ObjectKey};
use crate::model::{
    ArchiveCandidate, ArchivedAt, CatalogDigest, Claim, Fence, Lease, Unreadable, Verdict,
};
use crate::rules::{self, Decisions, JobBytes, Rules, Standing, Standings};
use crate::source::ArchiveSource;
use crate::source::spec::{HotBucket, RuleScope, SourceSpec};

mod read;
mod reset;
mod restore;
mod sql;
mod status;

pub use read::TableRow;
pub use reset::{ResetRow, TableResetFilter};
pub use restore::{ArchivedRow, Switched};

use sql::{Compare, KeyType, Sql, Switch, Types};
pub use status::{BucketUsage, RowState, STATUS_LIST_LIMIT, SourceStatus};

/// A declared source. Clones share the sweep's position.
#[derive(Debug, Clone)]
pub struct TableSource {
    catalog: Arc<dyn Catalog>,
    spec: Arc<SourceSpec>,
    sql: Arc<Sql>,
    sweep: Arc<Mutex<Option<Sweep>>>,
}

/// Where one sweep has got to in its moving units.
#[derive(Debug)]
struct Sweep {
    free_before: DateTime<Utc>,
    units: Vec<String>,
    next: usize,
}

impl TableSource {
    /// The source `spec` declares, over `catalog`; reads the types of the
    /// columns its statements cast to. Validate the declaration first
    /// ([`validate_sources`](crate::source::spec::validate_sources)): a
    /// missing table here is an [`ErrorKind::InvalidInput`] error.
    pub async fn open(catalog: Arc<dyn Catalog>, spec: SourceSpec) -> Result<Self> {
        let Some(side) = spec.side_table.as_ref().map(|s| s.value.clone()) else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "source {:?} needs a side_table: coldsweep keeps each row's lease and \
                     state there",
                    spec.name.value
                ),
            ));
        };
        let family = |table: &TableName, column: &crate::catalog::Ident| {
            let catalog = catalog.clone();
            let table = table.clone();
            let column = column.clone();
            let source = spec.name.value.clone();
            async move {
                let schema = catalog.describe_table(&table).await?.ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("source {source:?}: the catalog has no table {table}"),
                    )
                })?;
                schema.column(&column).map(|c| c.family).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("source {source:?}: table {table} has no column {column}"),
                    )
                })
            }
        };
        let key = KeyType::of(family(&spec.table.value, &spec.key.value).await?);
        let parent_key = match &spec.parent {
            Some(parent) => KeyType::of(family(&parent.table.value, &parent.key.value).await?),
            None => key,
        };
        let rule_table = match (&spec.rule.scope, &spec.parent) {
            (RuleScope::Parent, Some(parent)) => parent.table.value.clone(),
            _ => spec.table.value.clone(),
        };
        let order = match spec.rule.order().first() {
            Some(first) => match family(&rule_table, &first.value).await? {
                TypeFamily::Timestamp { .. } | TypeFamily::Date => Compare::Instant,
                // SQLite keeps times as text: compared as instants.
                TypeFamily::Text => Compare::Instant,
                _ => Compare::AsIs,
            },
            None => Compare::AsIs,
        };
        let types = Types {
            key,
            parent_key,
            order,
        };
        let sql = Sql::new(catalog.dialect(), spec.clone(), &side, types);
        Ok(Self {
            catalog,
            spec: Arc::new(spec),
            sql: Arc::new(sql),
            sweep: Arc::default(),
        })
    }

    /// The declaration.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// Create the side table if it is not there (`coldsweep migrate`).
    pub async fn migrate(&self) -> Result<()> {
        self.catalog
            .run_statements(&[self.sql.create_side_table()])
            .await
            .map(|_| ())
            .map_err(|e| {
                e.context(format!(
                    "creating the side table of source {:?}",
                    self.spec.name.value
                ))
            })
    }

    /// The rules as [`rules::decide`] takes them: `keep_newest` is the
    /// retention; without it, a quota alone moves (retention keeps all),
    /// and with neither, every unit moves.
    fn rules(&self) -> Rules {
        let rule = &self.spec.rule;
        Rules {
            retention_jobs: match (rule.keep_newest, rule.hot_quota) {
                (Some(n), _) => n,
                (None, Some(_)) => u32::MAX,
                (None, None) => 0,
            },
            hot_quota: rule.hot_quota,
            min_age: rule.min_age,
        }
    }

    /// Each unit's fate in a sweep starting at `now` (what `plan` shows and
    /// a sweep moves).
    pub async fn decisions(&self, now: DateTime<Utc>) -> Result<Decisions> {
        let finished = self
            .spec
            .parent
            .as_ref()
            .map(|p| p.finished.value.clone())
            .unwrap_or_default();
        let results = self
            .catalog
            .run_statements(&[
                self.sql.standings(SqlValue::Time(now), &finished),
                self.sql.hot_bytes(),
            ])
            .await?;
        let mut units = Vec::with_capacity(results[0].len());
        for row in &results[0] {
            units.push(standing(row, now, self.spec.rule.min_age.is_some())?);
        }
        let hot_bytes = results
            .get(1)
            .and_then(|rows| rows.first())
            .and_then(|row| row.first().cloned().flatten())
            .map_or(0, |n| size(&n));
        let standings = Standings {
            jobs: units,
            hot_bytes: Some(hot_bytes),
        };
        Ok(rules::decide(&standings, &self.rules(), now))
    }

    async fn moving_units(&self, free_before: DateTime<Utc>) -> Result<Vec<String>> {
        let decisions = self.decisions(free_before).await?;
        if let Some(quota) = decisions.quota.filter(|q| !q.met()) {
            tracing::warn!(
                source = %self.spec.name.value,
                hot_quota_bytes = quota.quota,
                over_by_bytes = quota.over_by,
                held_by_min_age_bytes = quota.held_by_min_age,
                "the source stays over its hot_quota after this sweep: everything its rule \
                 may move is moving; `coldsweep plan` shows what holds the rest"
            );
        }
        Ok(decisions.moving_ids())
    }

    async fn claim_from(&self, sweep: &mut Sweep, batch: usize, lease: &Lease) -> Result<Claim> {
        let mut claim = Claim::default();
        loop {
            let want = batch - claim.candidates.len() - claim.unreadable.len();
            if want == 0 || sweep.next >= sweep.units.len() {
                return Ok(claim);
            }
            let end = sweep.units.len().min(sweep.next + want);
            let window = sweep.units[sweep.next..end].to_vec();
            let part = match self.claim_window(window, want, lease).await {
                Ok(part) => part,
                Err(e) if !claim.candidates.is_empty() || !claim.unreadable.is_empty() => {
                    tracing::warn!(error = %e.chain(), "claiming more candidates failed; moving those claimed");
                    return Ok(claim);
                }
                Err(e) => return Err(e),
            };
            // A full answer may have left rows of the window's units (a
            // parent's many rows): the next claim looks at them again.
            if part.candidates.len() + part.unreadable.len() < want {
                sweep.next = end;
            }
            claim.candidates.extend(part.candidates);
            claim.unreadable.extend(part.unreadable);
        }
    }

    async fn claim_window(&self, units: Vec<String>, want: usize, lease: &Lease) -> Result<Claim> {
        let claimed = self
            .catalog
            .run_statements(&[self.sql.claim(
                units,
                SqlValue::Time(lease.free_before),
                want,
                &lease.owner,
                SqlValue::Time(lease.until),
            )])
            .await?;
        let keys: Vec<String> = claimed
            .into_iter()
            .flatten()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect();
        if keys.is_empty() {
            return Ok(Claim::default());
        }
        let rows = self
            .catalog
            .run_statements(&[self.sql.candidates(keys, &lease.owner)])
            .await?;
        let mut claim = Claim::default();
        for row in rows.into_iter().flatten() {
            match self.candidate(&row) {
                Ok(candidate) => claim.candidates.push(candidate),
                Err((key, reason)) => {
                    let fence = Fence {
                        owner: &lease.owner,
                        now: lease.free_before,
                    };
                    self.write_state(&key, fence, Verdict::Quarantined, &reason)
                        .await?;
                    claim.unreadable.push(Unreadable {
                        task_id: key,
                        reason,
                    });
                }
            }
        }
        Ok(claim)
    }

    /// A candidate from a row of [`Sql::candidates`], or the row's key and
    /// why it cannot move.
    fn candidate(&self, row: &TextRow) -> std::result::Result<ArchiveCandidate, (String, String)> {
        let text = |i: usize| row.get(i).cloned().flatten();
        let key = text(0).unwrap_or_default();
        let bad = |why: String| (key.clone(), why);
        let int = |i: usize, what: &str| -> std::result::Result<Option<i64>, (String, String)> {
            match text(i) {
                None => Ok(None),
                Some(n) => n
                    .trim()
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| bad(format!("{what} {n:?} is not an integer"))),
            }
        };
        let bucket = match &self.spec.hot.bucket {
            HotBucket::Column(_) => text(2),
            HotBucket::Fixed(bucket) => Some(bucket.value.clone()),
        }
        .ok_or_else(|| bad("the hot bucket is NULL".to_owned()))?;
        let path = text(3).ok_or_else(|| bad("the hot path is NULL".to_owned()))?;
        let digest = match (&self.spec.columns.digest, text(6)) {
            (Some(spec), Some(hex)) if !hex.trim().is_empty() => Some(CatalogDigest {
                algorithm: spec.algorithm,
                of: spec.of,
                hex,
            }),
            _ => None,
        };
        let archived_at = match (text(9), text(10), text(11)) {
            (Some(provider), Some(bucket), Some(key)) => Some(ArchivedAt {
                provider,
                bucket,
                key,
            }),
            _ => None,
        };
        let mut values = row[15..].iter();
        let cold_name = {
            let prefix = KeyPrefix::none();
            let mut placeholders = Vec::new();
            for _ in self.spec.cold_key.value.columns() {
                placeholders.push(values.next().cloned().flatten());
            }
            let mut next = placeholders.into_iter();
            self.spec
                .cold_key
                .value
                .render(&prefix, |_| next.next().flatten())
                .map_err(|e| bad(e.message().to_owned()))?
        };
        Ok(ArchiveCandidate {
            task_id: key.clone(),
            job_id: text(1).unwrap_or_default(),
            storage_bucket: bucket,
            storage_path: path,
            sha256: None,
            compressed_size_bytes: int(4, "the stored size")?,
            size_bytes: int(5, "the decoded size")?,
            content_type: text(7).filter(|t| header_safe(t)),
            content_encoding: text(8).filter(|t| header_safe(t)),
            archived_at,
            attempts: int(12, "attempts")?.unwrap_or(0) as i32,
            claims: int(13, "claims")?.unwrap_or(1) as i32,
            missing_since: text(14).and_then(|s| epoch_time(&s)),
            digest,
            cold_name: Some(cold_name.as_str().to_owned()),
        })
    }

    async fn write_state(
        &self,
        key: &str,
        fence: Fence<'_>,
        verdict: Verdict,
        reason: &str,
    ) -> Result<()> {
        self.fenced(
            "state = $4, error = $5, lease_owner = NULL, lease_expires_at = NULL",
            "",
            key,
            fence,
            vec![
                SqlValue::Text(verdict.as_str().to_owned()),
                SqlValue::Text(reason.to_owned()),
            ],
        )
        .await
    }

    /// One fenced write of one side row; a fence miss is [`ErrorKind::LeaseLost`].
    async fn fenced(
        &self,
        set: &str,
        extra: &str,
        key: &str,
        fence: Fence<'_>,
        more: Vec<SqlValue>,
    ) -> Result<()> {
        let rows = self
            .catalog
            .run_statements(&[self.sql.fenced(
                set,
                extra,
                key,
                fence.owner,
                SqlValue::Time(fence.now),
                more,
            )])
            .await?;
        if rows.iter().flatten().next().is_some() {
            Ok(())
        } else {
            Err(lease_lost(&self.spec.name.value, key))
        }
    }

    /// Whether the side table exists (`coldsweep migrate` creates it).
    pub async fn side_table_exists(&self) -> Result<bool> {
        match &self.spec.side_table {
            Some(side) => Ok(self.catalog.describe_table(&side.value).await?.is_some()),
            None => Ok(false),
        }
    }

    /// Make rows failing and waiting for their retry time due now; returns how many.
    pub async fn retry_failing_now(&self, now: DateTime<Utc>) -> Result<u64> {
        let rows = self
            .catalog
            .run_statements(&[self.sql.waiting(SqlValue::Time(now), true)])
            .await?;
        Ok(rows.iter().flatten().count() as u64)
    }

    /// Rows failing and waiting for their retry time at `now`.
    pub async fn waiting(&self, now: DateTime<Utc>) -> Result<u64> {
        let rows = self
            .catalog
            .run_statements(&[self.sql.waiting(SqlValue::Time(now), false)])
            .await?;
        Ok(rows.iter().flatten().count() as u64)
    }

    /// The parent marker: returns how many parents were marked.
    pub async fn mark_parents(&self) -> Result<u64> {
        let Some(statement) = self.sql.mark_parents() else {
            return Ok(0);
        };
        let rows = self.catalog.run_statements(&[statement]).await?;
        Ok(rows.iter().flatten().count() as u64)
    }
}

fn lease_lost(source: &str, key: &str) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!("source {source:?}, row {key}: the lease is no longer held"),
    )
}

/// Whether a value from the table may travel as an HTTP header as it is:
/// visible ASCII and spaces only. Anything else is left out of the upload
/// (the bytes are moved all the same).
fn header_safe(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A size as the catalog wrote it (an integer, or a sum Postgres gives as
/// numeric); anything else counts 0.
fn size(text: &str) -> u64 {
    let text = text.trim();
    text.parse::<u64>()
        .ok()
        .or_else(|| {
            text.parse::<f64>()
                .ok()
                .filter(|f| *f > 0.0)
                .map(|f| f as u64)
        })
        .unwrap_or(0)
}

/// An instant from epoch seconds as text.
///
/// Kept to the millisecond: SQLite's `julianday` is exact to about that,
/// and a microsecond more would show `09:59:59.999990` for `10:00`.
fn epoch_time(text: &str) -> Option<DateTime<Utc>> {
    let seconds: f64 = text.trim().parse().ok()?;
    let millis = (seconds * 1_000.0).round() as i64;
    Utc.timestamp_millis_opt(millis).single()
}

/// A unit's standing from a row of [`Sql::standings`]. A unit with no age
/// time counts as just made when a minimum age is set: nothing moves
/// that cannot be shown old enough.
fn standing(row: &TextRow, now: DateTime<Utc>, floor: bool) -> Result<Standing> {
    let text = |i: usize| row.get(i).cloned().flatten();
    let key = text(0).ok_or_else(|| Error::new(ErrorKind::Unexpected, "a unit without a key"))?;
    let age = text(1).and_then(|s| epoch_time(&s));
    let movable = text(3).is_some_and(|m| m.trim() == "1");
    let hot = text(4).map_or(0, |s| size(&s));
    let moving = text(5).map_or(0, |s| size(&s));
    Ok(Standing {
        job_id: key,
        rank: text(2).and_then(|r| r.trim().parse().ok()),
        job_time: age.or(floor.then_some(now)),
        movable,
        bytes: Some(JobBytes {
            movable_blobs: u64::from(movable),
            movable_bytes: moving,
            hot_bytes: hot,
        }),
    })
}

#[async_trait]
impl ArchiveSource for TableSource {
    fn name(&self) -> &str {
        &self.spec.name.value
    }

    async fn claim(&self, batch: usize, lease: &Lease) -> Result<Claim> {
        let mut sweep = self.sweep.lock().await;
        let sweep = match &mut *sweep {
            Some(current) if current.free_before == lease.free_before => current,
            stale => {
                let units = self.moving_units(lease.free_before).await?;
                stale.insert(Sweep {
                    free_before: lease.free_before,
                    units,
                    next: 0,
                })
            }
        };
        self.claim_from(sweep, batch, lease).await
    }

    fn cold_key(&self, candidate: &ArchiveCandidate, prefix: &KeyPrefix) -> Result<ObjectKey> {
        let name = candidate.cold_name.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("row {} was claimed without its cold key", candidate.task_id),
            )
        })?;
        prefix.apply(name)
    }

    async fn record_archived(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
        key: &str,
    ) -> Result<()> {
        let written = self
            .record_archived_many(&[(candidate, key)], fence, provider, bucket)
            .await?;
        if written.is_empty() {
            Err(lease_lost(&self.spec.name.value, &candidate.task_id))
        } else {
            Ok(())
        }
    }

    async fn record_archived_many(
        &self,
        switches: &[(&ArchiveCandidate, &str)],
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
    ) -> Result<Vec<String>> {
        let switches: Vec<Switch> = switches
            .iter()
            .map(|(c, key)| Switch {
                id: c.task_id.clone(),
                cold_key: (*key).to_owned(),
                hot_bucket: c.storage_bucket.clone(),
                hot_path: c.storage_path.clone(),
            })
            .collect();
        let results = self
            .catalog
            .run_statements(&self.sql.record_archived(
                &switches,
                provider,
                bucket,
                fence.owner,
                SqlValue::Time(fence.now),
            ))
            .await?;
        Ok(first_keys(results))
    }

    async fn clear_hot(&self, candidate: &ArchiveCandidate, fence: Fence<'_>) -> Result<()> {
        let cleared = self.clear_hot_many(&[candidate], fence).await?;
        if !cleared.is_empty() {
            return Ok(());
        }
        // Held but never switched to cold: clearing it would leave the row
        // pointing at nothing, a broken order, not a lost lease (as the
        // built-in source says too).
        let held = self
            .catalog
            .run_statements(&[self.sql.held_without_cold(
                &candidate.task_id,
                fence.owner,
                SqlValue::Time(fence.now),
            )])
            .await?;
        if held.iter().flatten().next().is_some() {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "source {:?}, row {}: no cold copy is recorded; the hot reference stays",
                    self.spec.name.value, candidate.task_id
                ),
            ));
        }
        Err(lease_lost(&self.spec.name.value, &candidate.task_id))
    }

    async fn clear_hot_many(
        &self,
        candidates: &[&ArchiveCandidate],
        fence: Fence<'_>,
    ) -> Result<Vec<String>> {
        let ids = candidates.iter().map(|c| c.task_id.clone()).collect();
        let results = self
            .catalog
            .run_statements(
                &self
                    .sql
                    .clear_hot(ids, fence.owner, SqlValue::Time(fence.now)),
            )
            .await?;
        Ok(first_keys(results))
    }

    async fn mark_lost(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
    ) -> Result<()> {
        self.write_state(&candidate.task_id, fence, Verdict::Lost, reason)
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
        self.fenced(
            "state = 'missing', error = $4, missing_since = COALESCE(missing_since, $5), \
             lease_owner = NULL, lease_expires_at = $6",
            "",
            &candidate.task_id,
            fence,
            vec![
                SqlValue::Text(reason.to_owned()),
                SqlValue::Time(seen_at),
                SqlValue::Time(recheck_at),
            ],
        )
        .await
    }

    async fn clear_missing(&self, candidate: &ArchiveCandidate, fence: Fence<'_>) -> Result<()> {
        self.fenced(
            "state = NULL, error = NULL, missing_since = NULL",
            " AND state = 'missing'",
            &candidate.task_id,
            fence,
            Vec::new(),
        )
        .await
    }

    async fn hand_back(&self, candidates: &[ArchiveCandidate], owner: &str) -> Result<u64> {
        if candidates.is_empty() {
            return Ok(0);
        }
        let ids = candidates.iter().map(|c| c.task_id.clone()).collect();
        let results = self
            .catalog
            .run_statements(&[self.sql.many(
                "lease_owner = NULL, lease_expires_at = NULL",
                "lease_owner = $2",
                ids,
                SqlValue::Text(owner.to_owned()),
                Vec::new(),
            )])
            .await?;
        Ok(results.iter().flatten().count() as u64)
    }

    async fn extend_leases(
        &self,
        task_ids: &[String],
        fence: Fence<'_>,
        until: DateTime<Utc>,
    ) -> Result<u64> {
        if task_ids.is_empty() {
            return Ok(0);
        }
        let results = self
            .catalog
            .run_statements(&[self.sql.many(
                "lease_expires_at = $3",
                &self.sql.fence_on_side(2, 4),
                task_ids.to_vec(),
                SqlValue::Text(fence.owner.to_owned()),
                vec![SqlValue::Time(until), SqlValue::Time(fence.now)],
            )])
            .await?;
        Ok(results.iter().flatten().count() as u64)
    }

    async fn mark_quarantined(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
    ) -> Result<()> {
        self.write_state(&candidate.task_id, fence, Verdict::Quarantined, reason)
            .await
    }

    async fn release(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        self.fenced(
            "attempts = attempts + 1, error = $4, lease_owner = NULL, lease_expires_at = $5",
            "",
            &candidate.task_id,
            fence,
            vec![SqlValue::Text(error.to_owned()), SqlValue::Time(retry_at)],
        )
        .await
    }
}

/// The keys the first statement of a write returned.
fn first_keys(results: Vec<Vec<TextRow>>) -> Vec<String> {
    results
        .into_iter()
        .next()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect()
}
