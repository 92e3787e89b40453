//! `coldsweep status`: where blobs are, and which need a person.

use std::process::ExitCode;

use coldsweep::catalog::{BlobState, BucketBytes, Catalog, CatalogStatus, TaskRow};
use serde::Serialize;

use crate::format;
use crate::format::out;
use crate::settings::Settings;

mod declared;

/// Quarantined and lost tasks listed at most.
const LIST_LIMIT: usize = 20;

/// `coldsweep status --json`: one object (see the README's "JSON output").
#[derive(Serialize)]
struct StatusJson {
    generated_at: String,
    backend: &'static str,
    counts: CatalogStatusJson,
    hot_bytes: u64,
    cold_bytes: u64,
    hot_buckets: Vec<BucketJson>,
    cold_buckets: Vec<BucketJson>,
    quarantined: Vec<TaskJson>,
    missing: Vec<TaskJson>,
    lost: Vec<TaskJson>,
    failing: Vec<TaskJson>,
}

#[derive(Serialize)]
struct CatalogStatusJson {
    hot: i64,
    pending_hot_delete: i64,
    archived: i64,
    quarantined: i64,
    missing: i64,
    lost: i64,
    leased: i64,
    failing: i64,
    waiting: i64,
    archived_jobs: i64,
}

impl From<&CatalogStatus> for CatalogStatusJson {
    fn from(c: &CatalogStatus) -> Self {
        Self {
            hot: c.hot,
            pending_hot_delete: c.pending_hot_delete,
            archived: c.archived,
            quarantined: c.quarantined,
            missing: c.missing,
            lost: c.lost,
            leased: c.leased,
            failing: c.failing,
            waiting: c.waiting,
            archived_jobs: c.archived_jobs,
        }
    }
}

#[derive(Serialize)]
struct BucketJson {
    /// Omitted for hot buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<Option<String>>,
    bucket: Option<String>,
    blobs: i64,
    bytes: i64,
    blobs_without_size: i64,
}

impl BucketJson {
    fn hot(b: &BucketBytes) -> Self {
        Self {
            provider: None,
            bucket: b.bucket.clone(),
            blobs: b.blobs,
            bytes: b.bytes,
            blobs_without_size: b.blobs_without_size,
        }
    }

    fn cold(b: &BucketBytes) -> Self {
        Self {
            provider: Some(b.provider.clone()),
            ..Self::hot(b)
        }
    }
}

#[derive(Serialize)]
struct TaskJson {
    task_id: String,
    job_id: String,
    reason: Option<String>,
    attempts: i32,
    missing_since: Option<String>,
    retry_at: Option<String>,
}

impl From<&TaskRow> for TaskJson {
    fn from(t: &TaskRow) -> Self {
        Self {
            task_id: t.id.clone(),
            job_id: t.job_id.clone(),
            reason: t.html_archive_error.clone(),
            attempts: t.html_archive_attempts,
            missing_since: t.html_missing_since.map(format::rfc3339),
            retry_at: t.html_lease_expires_at.map(format::rfc3339),
        }
    }
}

/// Sum of the buckets' bytes (never negative).
fn total(buckets: &[BucketBytes]) -> u64 {
    buckets
        .iter()
        .map(|b| u64::try_from(b.bytes).unwrap_or(0))
        .sum()
}

/// `coldsweep status`.
pub(crate) async fn status(
    settings: Settings,
    json: bool,
    only: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if let Some((catalog, sources)) = super::declared(&settings, only).await? {
        return declared::status(catalog.backend(), &sources, json).await;
    }
    let catalog = settings.db.connect_migrated().await?;
    let now = chrono::Utc::now();
    let counts = catalog.status(now).await?;
    let usage = catalog.bucket_usage().await?;

    if json {
        let listed = |state: BlobState, n: i64| {
            let catalog = catalog.clone();
            async move {
                if n == 0 {
                    return Ok::<_, anyhow::Error>(Vec::new());
                }
                let rows = match state {
                    BlobState::Hot => catalog.failing_tasks(LIST_LIMIT).await?,
                    state => catalog.tasks_in_state(state, LIST_LIMIT).await?,
                };
                Ok(rows.iter().map(TaskJson::from).collect())
            }
        };
        let status = StatusJson {
            generated_at: format::rfc3339(now),
            backend: catalog.backend(),
            counts: CatalogStatusJson::from(&counts),
            hot_bytes: total(&usage.hot),
            cold_bytes: total(&usage.cold),
            hot_buckets: usage.hot.iter().map(BucketJson::hot).collect(),
            cold_buckets: usage.cold.iter().map(BucketJson::cold).collect(),
            quarantined: listed(BlobState::Quarantined, counts.quarantined).await?,
            missing: listed(BlobState::Missing, counts.missing).await?,
            lost: listed(BlobState::Lost, counts.lost).await?,
            // Failing blobs are hot rows with an error: listed by `failing_tasks`.
            failing: listed(BlobState::Hot, counts.failing).await?,
        };
        out!("{}", serde_json::to_string(&status)?);
        return Ok(ExitCode::SUCCESS);
    }

    out!("Catalog ({}):", catalog.backend());
    let rows = [
        ("hot", counts.hot, "blobs in hot storage"),
        (
            "pending hot delete",
            counts.pending_hot_delete,
            "in cold already; the next sweep deletes the hot copy",
        ),
        ("archived", counts.archived, "blobs in cold storage"),
        (
            "quarantined",
            counts.quarantined,
            "bytes disagree with the catalog; kept hot",
        ),
        (
            "missing",
            counts.missing,
            "in neither store on one look; looked at again after ARCHIVE_LOST_AFTER",
        ),
        (
            "lost",
            counts.lost,
            "in neither store on two looks, stores healthy",
        ),
        ("leased", counts.leased, "being moved by a worker right now"),
        (
            "failing",
            counts.failing,
            "last attempt failed; retried later",
        ),
        (
            "waiting",
            counts.waiting,
            "failing blobs whose retry time has not come",
        ),
        (
            "jobs archived",
            counts.archived_jobs,
            "jobs with nothing left hot",
        ),
    ];
    for (name, n, meaning) in rows {
        out!("  {name:<20} {n:>8}   {meaning}");
    }
    buckets(
        "Hot storage, per html_storage_bucket (every row with a hot path)",
        &usage.hot,
        |b| b.bucket.as_deref().unwrap_or("(no bucket)").to_owned(),
    );
    buckets(
        "Cold storage, per provider and bucket (every row with a cold key)",
        &usage.cold,
        |b| {
            format!(
                "{}:{}",
                b.provider.as_deref().unwrap_or("(no provider)"),
                b.bucket.as_deref().unwrap_or("(no bucket)")
            )
        },
    );

    list(catalog.as_ref(), BlobState::Quarantined, counts.quarantined).await?;
    list(catalog.as_ref(), BlobState::Missing, counts.missing).await?;
    list(catalog.as_ref(), BlobState::Lost, counts.lost).await?;
    failing(catalog.as_ref(), counts.failing).await?;
    if counts.quarantined + counts.missing + counts.lost + counts.failing > 0 {
        out!(
            "\nOnce the cause is fixed, `coldsweep reset --state <state>` puts them back into \
             play; `coldsweep sweep --once --retry-failed` retries failing blobs now."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per bucket: name, blobs, bytes; and the total.
fn buckets(title: &str, buckets: &[BucketBytes], name: impl Fn(&BucketBytes) -> String) {
    out!("\n{title}:");
    if buckets.is_empty() {
        out!("  none");
        return;
    }
    let names: Vec<String> = buckets.iter().map(&name).collect();
    let width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    for (bucket, name) in buckets.iter().zip(&names) {
        let mut line = format!(
            "  {name:<width$} {:>8} blobs {:>12}",
            bucket.blobs,
            format::bytes(u64::try_from(bucket.bytes).unwrap_or(0))
        );
        if bucket.blobs_without_size > 0 {
            line.push_str(&format!(
                "   ({} without a recorded size, counted as 0)",
                bucket.blobs_without_size
            ));
        }
        out!("{line}");
    }
    if buckets.len() > 1 {
        out!(
            "  {:<width$} {:>8} blobs {:>12}",
            "total",
            buckets.iter().map(|b| b.blobs).sum::<i64>(),
            format::bytes(total(buckets))
        );
    }
}

/// Failing blobs, soonest retry first: when each is tried again and why it failed.
async fn failing(catalog: &dyn Catalog, total: i64) -> anyhow::Result<()> {
    if total == 0 {
        return Ok(());
    }
    let tasks = catalog.failing_tasks(LIST_LIMIT).await?;
    let now = chrono::Utc::now();
    out!("\nFailing ({total}):");
    for task in &tasks {
        let retry = match task.html_lease_expires_at {
            Some(at) if at > now => format!(
                "retried after {} (in {})",
                at.format("%Y-%m-%d %H:%M:%S UTC"),
                humantime::format_duration(std::time::Duration::from_secs(
                    (at - now).num_seconds().max(0) as u64
                ))
            ),
            _ => "retried by the next sweep".to_owned(),
        };
        out!(
            "  task {} (job {}), {} failed, {retry}: {}",
            task.id,
            task.job_id,
            crate::format::count(
                task.html_archive_attempts.max(0) as u64,
                "attempt",
                "attempts"
            ),
            task.html_archive_error
                .as_deref()
                .unwrap_or("no error recorded")
        );
    }
    let shown = tasks.len() as i64;
    if total > shown {
        out!("  … and {} more", total - shown);
    }
    Ok(())
}

async fn list(catalog: &dyn Catalog, state: BlobState, total: i64) -> anyhow::Result<()> {
    if total == 0 {
        return Ok(());
    }
    let tasks = catalog.tasks_in_state(state, LIST_LIMIT).await?;
    out!("\n{} ({total}):", capitalised(state.as_str()));
    out!("{}", task_lines(&tasks).trim_end());
    if state == BlobState::Missing {
        // When the suspicion started and when a sweep looks again.
        if let Some(first) = tasks.iter().filter_map(|t| t.html_missing_since).min() {
            out!(
                "  first seen missing {} (the earliest of those listed)",
                first.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
        if let Some(next) = tasks.iter().filter_map(|t| t.html_lease_expires_at).min() {
            out!(
                "  looked at again from {}; a blob still in neither store then, with both \
                 stores healthy, is recorded lost",
                next.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
    }
    let shown = tasks.len() as i64;
    if total > shown {
        out!("  … and {} more", total - shown);
    }
    Ok(())
}

/// One line per task: id, job, reason.
pub(crate) fn task_lines(tasks: &[TaskRow]) -> String {
    let mut out = String::new();
    for task in tasks {
        out.push_str(&format!(
            "  task {} (job {}): {}\n",
            task.id,
            task.job_id,
            task.html_archive_error
                .as_deref()
                .unwrap_or("no reason recorded")
        ));
    }
    out
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
