//! `coldsweep status` over the config file's `[[sources]]`: per source,
//! where its rows are (`TableSource::status`), and the rows that need a
//! person with their reasons.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use coldsweep::source::{BucketUsage, RowState, SourceStatus, TableSource};
use serde::Serialize;

use super::capitalised;
use crate::format;
use crate::format::out;

#[derive(Serialize)]
struct StatusJson {
    generated_at: String,
    backend: &'static str,
    sources: Vec<SourceJson>,
}

#[derive(Serialize)]
struct SourceJson {
    name: String,
    table: String,
    counts: CountsJson,
    hot_bytes: u64,
    cold_bytes: u64,
    hot_buckets: Vec<BucketJson>,
    cold_buckets: Vec<BucketJson>,
    quarantined: Vec<RowJson>,
    missing: Vec<RowJson>,
    lost: Vec<RowJson>,
    failing: Vec<RowJson>,
}

#[derive(Serialize)]
struct CountsJson {
    hot: u64,
    pending_hot_delete: u64,
    archived: u64,
    quarantined: u64,
    missing: u64,
    lost: u64,
    claimed: u64,
    failing: u64,
    waiting: u64,
}

#[derive(Serialize)]
struct BucketJson {
    /// Omitted for hot buckets.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<Option<String>>,
    bucket: Option<String>,
    blobs: u64,
    bytes: u64,
    blobs_without_size: u64,
}

impl BucketJson {
    fn hot(b: &BucketUsage) -> Self {
        Self {
            provider: None,
            bucket: b.bucket.clone(),
            blobs: b.blobs,
            bytes: b.bytes,
            blobs_without_size: b.blobs_without_size,
        }
    }

    fn cold(b: &BucketUsage) -> Self {
        Self {
            provider: Some(b.provider.clone()),
            ..Self::hot(b)
        }
    }
}

#[derive(Serialize)]
struct RowJson {
    key: String,
    parent: Option<String>,
    reason: Option<String>,
    attempts: u64,
    missing_since: Option<String>,
    retry_at: Option<String>,
}

impl From<&RowState> for RowJson {
    fn from(r: &RowState) -> Self {
        Self {
            key: r.key.clone(),
            parent: r.parent.clone(),
            reason: r.reason.clone(),
            attempts: r.attempts,
            missing_since: r.missing_since.map(format::rfc3339),
            retry_at: r.retry_at.map(format::rfc3339),
        }
    }
}

fn total(buckets: &[BucketUsage]) -> u64 {
    buckets.iter().map(|b| b.bytes).sum()
}

fn json(source: &TableSource, s: &SourceStatus) -> SourceJson {
    let rows = |rows: &[RowState]| rows.iter().map(RowJson::from).collect();
    SourceJson {
        name: source.spec().name.value.clone(),
        table: source.spec().table.value.to_string(),
        counts: CountsJson {
            hot: s.hot,
            pending_hot_delete: s.pending_hot_delete,
            archived: s.archived,
            quarantined: s.quarantined,
            missing: s.missing,
            lost: s.lost,
            claimed: s.claimed,
            failing: s.failing,
            waiting: s.waiting,
        },
        hot_bytes: total(&s.hot_buckets),
        cold_bytes: total(&s.cold_buckets),
        hot_buckets: s.hot_buckets.iter().map(BucketJson::hot).collect(),
        cold_buckets: s.cold_buckets.iter().map(BucketJson::cold).collect(),
        quarantined: rows(&s.quarantined_rows),
        missing: rows(&s.missing_rows),
        lost: rows(&s.lost_rows),
        failing: rows(&s.failing_rows),
    }
}

/// `coldsweep status` with declared sources.
pub(super) async fn status(
    backend: &'static str,
    sources: &[TableSource],
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let mut statuses = Vec::with_capacity(sources.len());
    for source in sources {
        statuses.push(source.status(now).await?);
    }
    if as_json {
        let status = StatusJson {
            generated_at: format::rfc3339(now),
            backend,
            sources: sources
                .iter()
                .zip(&statuses)
                .map(|(source, s)| json(source, s))
                .collect(),
        };
        out!("{}", serde_json::to_string(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut attention = 0;
    for (source, s) in sources.iter().zip(&statuses) {
        print(source, s, backend, now);
        attention += s.quarantined + s.missing + s.lost + s.failing;
    }
    if attention > 0 {
        out!(
            "\nOnce the cause is fixed, `coldsweep reset --state <state>` puts them back into \
             play; `coldsweep sweep --once --retry-failed` retries failing rows now."
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print(source: &TableSource, s: &SourceStatus, backend: &str, now: DateTime<Utc>) {
    let spec = source.spec();
    out!(
        "Source {} (table {}, {backend}):",
        spec.name.value,
        spec.table.value
    );
    let rows = [
        ("hot", s.hot, "rows whose blob is in hot storage"),
        (
            "pending hot delete",
            s.pending_hot_delete,
            "in cold already; the next sweep deletes the hot copy",
        ),
        (
            "archived",
            s.archived,
            "cold location recorded, hot copy gone",
        ),
        (
            "quarantined",
            s.quarantined,
            "bytes disagree with the table; kept hot",
        ),
        (
            "missing",
            s.missing,
            "in neither store on one look; looked at again after ARCHIVE_LOST_AFTER",
        ),
        (
            "lost",
            s.lost,
            "in neither store on two looks, stores healthy",
        ),
        ("claimed", s.claimed, "being moved by a worker right now"),
        ("failing", s.failing, "last attempt failed; retried later"),
        (
            "waiting",
            s.waiting,
            "failing rows whose retry time has not come",
        ),
    ];
    for (name, n, meaning) in rows {
        out!("  {name:<20} {n:>8}   {meaning}");
    }
    let size = spec
        .columns
        .stored_size
        .as_ref()
        .map_or("no size column: bytes unknown".to_owned(), |c| {
            format!("sizes from {}", c.value)
        });
    buckets(
        &format!("Hot storage, per bucket (rows with a hot copy; {size})"),
        &s.hot_buckets,
        |b| b.bucket.as_deref().unwrap_or("(no bucket)").to_owned(),
    );
    buckets(
        "Cold storage, per provider and bucket (rows with a cold location)",
        &s.cold_buckets,
        |b| {
            format!(
                "{}:{}",
                b.provider.as_deref().unwrap_or("(no provider)"),
                b.bucket.as_deref().unwrap_or("(no bucket)")
            )
        },
    );
    list("quarantined", s.quarantined, &s.quarantined_rows, now);
    list("missing", s.missing, &s.missing_rows, now);
    list("lost", s.lost, &s.lost_rows, now);
    list("failing", s.failing, &s.failing_rows, now);
    out!();
}

fn buckets(title: &str, buckets: &[BucketUsage], name: impl Fn(&BucketUsage) -> String) {
    out!("  {title}:");
    if buckets.is_empty() {
        out!("    none");
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
            "    {name:<width$} {:>8} blobs {:>12}",
            bucket.blobs,
            format::bytes(bucket.bytes)
        );
        if bucket.blobs_without_size > 0 {
            line.push_str(&format!(
                "   ({} without a recorded size, counted as 0)",
                bucket.blobs_without_size
            ));
        }
        out!("{line}");
    }
}

/// The rows of one state with their reasons (bounded), and how many more.
fn list(state: &str, total: u64, rows: &[RowState], now: DateTime<Utc>) {
    if total == 0 {
        return;
    }
    out!("  {} ({total}):", capitalised(state));
    for row in rows {
        let parent = row
            .parent
            .as_deref()
            .map_or(String::new(), |p| format!(" (parent {p})"));
        let reason = row.reason.as_deref().unwrap_or("no reason recorded");
        let when = match (state, row.retry_at) {
            ("failing", Some(at)) if at > now => format!(
                ", {} failed, retried after {}",
                format::count(row.attempts, "attempt", "attempts"),
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            ("failing", _) => format!(
                ", {} failed, retried by the next sweep",
                format::count(row.attempts, "attempt", "attempts")
            ),
            ("missing", Some(at)) => format!(
                ", first seen missing {}, looked at again from {}",
                row.missing_since.map_or("-".to_owned(), |t| t
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string()),
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            _ => String::new(),
        };
        out!("    row {}{parent}{when}: {reason}", row.key);
    }
    let shown = rows.len() as u64;
    if total > shown {
        out!("    … and {} more", total - shown);
    }
}
