//! `coldsweep plan`: what the next sweep would move, by which rule, and why
//! the rest stays; the hot bytes before and after.
//!
//! The decisions are the library's (`rules::decide`), the same call a sweep
//! makes; this file only lays them out for people or as JSON.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coldsweep::catalog::{ARCHIVED_STATUS, JobRetention};
use coldsweep::rules::{
    self, Decision, Decisions, JobDecision, MoveRule, Rules, Scope, StayReason,
};
use serde::Serialize;
use uuid::Uuid;

use crate::format;
use crate::format::out;
use crate::settings::Settings;

mod declared;

/// Jobs of one (domain, organisation), newest first.
type Groups<'a> = BTreeMap<(i32, Option<Uuid>), Vec<Row<'a>>>;

/// One job of the plan: the catalog's counts and the rules' decision
/// (`None` for a job the rules were not asked about: not finished, no hot row).
#[derive(Clone, Copy)]
struct Row<'a> {
    job: &'a JobRetention,
    decision: Option<&'a JobDecision>,
    /// 1-based place in the sweep's order, for moving jobs.
    order: Option<usize>,
}

impl Row<'_> {
    fn decision(&self) -> Decision {
        self.decision
            .map_or(Decision::Stays(StayReason::NotFinished), |d| d.decision)
    }

    fn rank(&self) -> Option<u64> {
        self.decision
            .and_then(|d| d.standing.rank)
            .or_else(|| self.job.rank.and_then(|r| u64::try_from(r).ok()))
    }

    fn bytes(&self) -> rules::JobBytes {
        self.decision
            .and_then(|d| d.standing.bytes)
            .unwrap_or_default()
    }
}

/// Why `row`'s HTML stays hot or moves, in words.
fn decision_text(row: &Row<'_>, rules: &Rules) -> String {
    let job = row.job;
    let retention = rules.retention_jobs;
    let rank = row.rank().map_or("-".to_owned(), |r| r.to_string());
    let mut text = match row.decision() {
        Decision::Stays(StayReason::NotFinished) if job.job.status == ARCHIVED_STATUS => {
            "archived: every blob has left hot storage".to_owned()
        }
        Decision::Stays(StayReason::NotFinished) => format!(
            "kept hot: job is {}; only finished jobs (completed, failed, cancelled) move",
            job.job.status
        ),
        Decision::Stays(StayReason::NothingToMove) if row.rank() > Some(u64::from(retention)) => {
            format!("eligible (#{rank} newest), nothing left to move")
        }
        Decision::Stays(StayReason::NothingToMove) => {
            format!("kept hot: #{rank} newest (retention keeps {retention}); nothing left to move")
        }
        Decision::Stays(StayReason::YoungerThanMinAge) => {
            let age = row
                .decision
                .and_then(|d| d.standing.job_time)
                .map_or("-".to_owned(), |t| rounded(Utc::now() - t));
            format!(
                "kept hot: finished {age} ago, younger than ARCHIVE_MIN_AGE ({}); #{rank} newest",
                rules.min_age.map_or("-".to_owned(), human_duration)
            )
        }
        Decision::Stays(StayReason::AmongNewest) => format!(
            "kept hot: #{rank} newest finished job of its domain and organisation \
             (retention keeps {retention})"
        ),
        Decision::Stays(StayReason::QuotaMet) => format!(
            "kept hot: #{rank} newest (retention keeps {retention}); the hot store fits \
             ARCHIVE_HOT_QUOTA without moving it"
        ),
        Decision::Moves(rule) => {
            let bytes = row.bytes();
            let why = match rule {
                MoveRule::Retention => format!("#{rank} newest, beyond retention ({retention})"),
                MoveRule::Quota => {
                    format!("#{rank} newest, within retention ({retention}), for ARCHIVE_HOT_QUOTA")
                }
            };
            format!(
                "moves: {why}; {} ({})",
                format::count(bytes.movable_blobs, "blob", "blobs"),
                format::bytes(bytes.movable_bytes)
            )
        }
    };
    if job.quarantined_tasks > 0 {
        text.push_str(&format!(
            "; {} quarantined (stays hot)",
            job.quarantined_tasks
        ));
    }
    if job.lost_tasks > 0 {
        text.push_str(&format!("; {} lost", job.lost_tasks));
    }
    text
}

/// A duration to the largest whole unit: `3d`, `5h`, `12m`, `40s`.
fn rounded(age: chrono::Duration) -> String {
    let secs = age.num_seconds().max(0);
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn human_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// "domain 101 / organisation 0a11…" or "domain 103 / no organisation".
fn group_label(domain_id: i32, organisation_id: Option<Uuid>) -> String {
    match organisation_id {
        Some(org) => format!("domain {domain_id} / organisation {org}"),
        None => format!("domain {domain_id} / no organisation"),
    }
}

/// `coldsweep plan --json`: one object (see the README's "JSON output").
#[derive(Serialize)]
struct PlanJson {
    generated_at: String,
    archiving_enabled: bool,
    rules: RulesJson,
    hot_bytes_before: u64,
    hot_bytes_after: u64,
    quota: Option<QuotaJson>,
    moving: MovingJson,
    jobs: Vec<JobJson>,
}

#[derive(Serialize)]
struct RulesJson {
    retention_jobs: u32,
    hot_quota_bytes: Option<u64>,
    min_age_seconds: Option<u64>,
}

#[derive(Serialize)]
struct QuotaJson {
    quota_bytes: u64,
    met: bool,
    over_by_bytes: u64,
    held_by_min_age_bytes: u64,
    held_unmovable_bytes: u64,
}

#[derive(Serialize)]
struct MovingJson {
    jobs: u64,
    blobs: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct JobJson {
    job_id: String,
    domain_id: i32,
    organisation_id: Option<String>,
    status: String,
    job_time: Option<String>,
    rank: Option<u64>,
    hot_blobs: i64,
    archived_blobs: i64,
    quarantined_blobs: i64,
    lost_blobs: i64,
    movable_blobs: u64,
    movable_bytes: u64,
    hot_bytes: u64,
    decision: &'static str,
    rule: Option<&'static str>,
    reason: Option<&'static str>,
    move_order: Option<usize>,
}

/// `coldsweep plan`.
pub(crate) async fn plan(
    settings: Settings,
    json: bool,
    only: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (config, enabled) = settings.config_even_if_disabled()?;
    if let Some((_, sources)) = super::declared(&settings, only).await? {
        return declared::plan(&sources, enabled, json).await;
    }
    let catalog = settings.db.connect_migrated().await?;
    let rules = config.rules();
    let now = Utc::now();
    let jobs = catalog.job_retention().await?;
    // Always counted: plan shows the hot bytes before and after, quota or not.
    let standings = catalog.job_standings(Scope::Counted, now).await?;
    let decisions = rules::decide(&standings, &rules, now);

    let by_id: HashMap<&str, &JobDecision> = decisions
        .jobs
        .iter()
        .map(|d| (d.standing.job_id.as_str(), d))
        .collect();
    let order: HashMap<&str, usize> = decisions
        .moving()
        .into_iter()
        .enumerate()
        .map(|(i, d)| (d.standing.job_id.as_str(), i + 1))
        .collect();
    let rows: Vec<Row<'_>> = jobs
        .iter()
        .map(|job| Row {
            job,
            decision: by_id.get(job.job.id.as_str()).copied(),
            order: order.get(job.job.id.as_str()).copied(),
        })
        .collect();

    let moving = decisions.moving();
    let totals = MovingJson {
        jobs: moving.len() as u64,
        blobs: moving
            .iter()
            .map(|d| d.standing.bytes.map_or(0, |b| b.movable_blobs))
            .sum(),
        bytes: moving.iter().map(|d| d.moved_bytes()).sum(),
    };

    if json {
        print_json(&rows, &rules, &decisions, enabled, totals, now)?;
    } else {
        print_text(&rows, &rules, &decisions, enabled, &totals);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(
    rows: &[Row<'_>],
    rules: &Rules,
    decisions: &Decisions,
    enabled: bool,
    moving: MovingJson,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let jobs = rows
        .iter()
        .map(|row| {
            let job = row.job;
            let bytes = row.bytes();
            let (decision, rule, reason) = match row.decision() {
                Decision::Moves(rule) => ("moves", Some(rule.as_str()), None),
                Decision::Stays(reason) => ("stays", None, Some(reason.as_str())),
            };
            JobJson {
                job_id: job.job.id.clone(),
                domain_id: job.job.domain_id,
                organisation_id: job.job.organisation_id.map(|o| o.to_string()),
                status: job.job.status.clone(),
                job_time: row
                    .decision
                    .and_then(|d| d.standing.job_time)
                    .map(format::rfc3339),
                rank: row.rank(),
                hot_blobs: job.hot_tasks,
                archived_blobs: job.archived_tasks,
                quarantined_blobs: job.quarantined_tasks,
                lost_blobs: job.lost_tasks,
                movable_blobs: bytes.movable_blobs,
                movable_bytes: bytes.movable_bytes,
                hot_bytes: bytes.hot_bytes,
                decision,
                rule,
                reason,
                move_order: row.order,
            }
        })
        .collect();
    let plan = PlanJson {
        generated_at: format::rfc3339(now),
        archiving_enabled: enabled,
        rules: RulesJson {
            retention_jobs: rules.retention_jobs,
            hot_quota_bytes: rules.hot_quota,
            min_age_seconds: rules.min_age.map(|d| d.as_secs()),
        },
        hot_bytes_before: decisions.hot_bytes_before.unwrap_or_default(),
        hot_bytes_after: decisions.hot_bytes_after.unwrap_or_default(),
        quota: decisions.quota.map(|q| QuotaJson {
            quota_bytes: q.quota,
            met: q.met(),
            over_by_bytes: q.over_by,
            held_by_min_age_bytes: q.held_by_min_age,
            held_unmovable_bytes: q.held_unmovable,
        }),
        moving,
        jobs,
    };
    out!("{}", serde_json::to_string(&plan)?);
    Ok(())
}

fn print_text(
    rows: &[Row<'_>],
    rules: &Rules,
    decisions: &Decisions,
    enabled: bool,
    moving: &MovingJson,
) {
    let retention = rules.retention_jobs;
    out!("Plan (dry run: nothing is moved)");
    if !enabled {
        out!(
            "Note: archiving is disabled (ARCHIVE_PROVIDER/ARCHIVE_BUCKET unset); \
             this is what a sweep would move once it is switched on."
        );
    }
    out!(
        "Retention: the newest {retention} finished jobs of each (domain, organisation) stay hot."
    );
    match rules.hot_quota {
        Some(quota) => out!(
            "Hot quota: {} ({quota} bytes): while the hot bytes exceed it, the oldest finished \
             jobs move too.",
            format::bytes(quota)
        ),
        None => out!("Hot quota: none (ARCHIVE_HOT_QUOTA unset)."),
    }
    match rules.min_age {
        Some(age) => out!(
            "Minimum age: {}: no job finished or restored more recently moves.",
            human_duration(age)
        ),
        None => out!("Minimum age: none (ARCHIVE_MIN_AGE unset)."),
    }
    out!();
    if rows.is_empty() {
        out!("The catalog has no jobs.");
        return;
    }

    // As wide as the longest job id (uuids are 36 characters) or status.
    let id_width = rows
        .iter()
        .map(|r| r.job.job.id.chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    let status_width = rows
        .iter()
        .map(|r| r.job.job.status.chars().count())
        .max()
        .unwrap_or(0)
        .max(10);
    let mut groups = Groups::new();
    for row in rows {
        groups
            .entry((row.job.job.domain_id, row.job.job.organisation_id))
            .or_default()
            .push(*row);
    }
    for ((domain_id, organisation_id), rows) in groups {
        out!("{}", group_label(domain_id, organisation_id));
        out!(
            "  {:>4}  {:<id_width$} {:<status_width$} {:>6} {:>8}  decision",
            "rank",
            "job",
            "status",
            "hot",
            "archived"
        );
        for row in &rows {
            let rank = row.rank().map_or("-".to_owned(), |r| r.to_string());
            out!(
                "  {rank:>4}  {:<id_width$} {:<status_width$} {:>6} {:>8}  {}",
                row.job.job.id,
                row.job.job.status,
                row.job.hot_tasks,
                row.job.archived_tasks,
                decision_text(row, rules)
            );
        }
        out!();
    }

    if moving.blobs == 0 {
        out!("The next sweep would move nothing.");
    } else {
        out!(
            "The next sweep would move {} ({}) from {}.",
            format::count(moving.blobs, "blob", "blobs"),
            format::bytes(moving.bytes),
            format::count(moving.jobs, "job", "jobs")
        );
    }
    let before = decisions.hot_bytes_before.unwrap_or_default();
    let after = decisions.hot_bytes_after.unwrap_or_default();
    out!(
        "Hot bytes the catalog accounts for (html_compressed_size_bytes of rows with a hot \
         path; no size counts 0): {} now, {} after the next sweep.",
        format::bytes(before),
        format::bytes(after)
    );
    if let Some(quota) = decisions.quota {
        if quota.met() {
            out!(
                "Within the hot quota ({}) after the next sweep.",
                format::bytes(quota.quota)
            );
        } else {
            out!(
                "Stays over the hot quota ({}) by {} after the next sweep: everything the rules \
                 may move is moving; {} is in jobs younger than ARCHIVE_MIN_AGE, {} can move by \
                 no rule now (jobs not finished; quarantined, lost, failing or claimed blobs).",
                format::bytes(quota.quota),
                format::bytes(quota.over_by),
                format::bytes(quota.held_by_min_age),
                format::bytes(quota.held_unmovable)
            );
        }
    }
}
