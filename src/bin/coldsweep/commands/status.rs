//! `coldsweep status`: where blobs are, and which need a person.

use std::process::ExitCode;

use coldsweep::catalog::{BlobState, Catalog, TaskRow};

use crate::format::out;
use crate::settings::Settings;

/// Quarantined and lost tasks listed at most.
const LIST_LIMIT: usize = 20;

/// `coldsweep status`.
pub(crate) async fn status(settings: Settings) -> anyhow::Result<ExitCode> {
    let catalog = settings.db.connect_migrated().await?;
    let counts = catalog.status(chrono::Utc::now()).await?;

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
