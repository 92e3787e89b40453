//! `coldsweep plan` over the config file's `[[sources]]`: per source, each
//! unit (a row, or a parent with `scope = "parent"`) and its decision, from
//! the same `TableSource::decisions` a sweep takes its units from.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coldsweep::rules::{Decision, Decisions, JobDecision, MoveRule, StayReason};
use coldsweep::source::TableSource;
use coldsweep::source::spec::{At, RuleScope, SourceSpec};
use serde::Serialize;

use super::{QuotaJson, human_duration, rounded};
use crate::format;
use crate::format::out;

/// Units listed per source at most (moving ones first, in the sweep's order).
const UNITS_LISTED: usize = 50;

#[derive(Serialize)]
struct PlanJson {
    generated_at: String,
    archiving_enabled: bool,
    sources: Vec<SourceJson>,
}

#[derive(Serialize)]
struct SourceJson {
    name: String,
    table: String,
    /// `row` or `parent`.
    scope: &'static str,
    rules: RuleJson,
    hot_bytes_before: u64,
    hot_bytes_after: u64,
    quota: Option<QuotaJson>,
    moving: MovingJson,
    /// Moving units by rule (`retention`, `quota`).
    units_moving: BTreeMap<&'static str, u64>,
    /// Staying units by reason.
    units_staying: BTreeMap<&'static str, u64>,
    units_total: usize,
    /// At most 50: the moving ones in the sweep's order, then the others.
    units: Vec<UnitJson>,
}

#[derive(Serialize)]
struct RuleJson {
    keep_newest: Option<u32>,
    group_by: Vec<String>,
    order_by: Vec<String>,
    age_columns: Vec<String>,
    min_age_seconds: Option<u64>,
    hot_quota_bytes: Option<u64>,
    condition: Option<String>,
}

#[derive(Serialize)]
struct MovingJson {
    units: u64,
    blobs: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct UnitJson {
    key: String,
    rank: Option<u64>,
    age_time: Option<String>,
    movable_blobs: u64,
    movable_bytes: u64,
    hot_bytes: u64,
    decision: &'static str,
    rule: Option<&'static str>,
    reason: Option<&'static str>,
    move_order: Option<usize>,
}

/// One source's decisions, laid out.
struct SourcePlan<'a> {
    spec: &'a SourceSpec,
    decisions: Decisions,
}

impl SourcePlan<'_> {
    fn parent_scope(&self) -> bool {
        self.spec.rule.scope == RuleScope::Parent && self.spec.parent.is_some()
    }

    /// A stay reason in this source's words: a unit outside the ranking
    /// is one the condition excludes, or a parent not finished.
    fn reason(&self, reason: StayReason) -> &'static str {
        match reason {
            StayReason::NotFinished if self.parent_scope() => "parent_not_finished",
            StayReason::NotFinished => "excluded_by_condition",
            reason => reason.as_str(),
        }
    }

    /// The units in listing order: moving ones as the sweep takes them,
    /// then the rest, oldest first.
    fn ordered(&self) -> Vec<(&JobDecision, Option<usize>)> {
        let moving = self.decisions.moving();
        let mut units: Vec<(&JobDecision, Option<usize>)> = moving
            .iter()
            .enumerate()
            .map(|(i, d)| (*d, Some(i + 1)))
            .collect();
        units.extend(
            self.decisions
                .jobs
                .iter()
                .filter(|d| matches!(d.decision, Decision::Stays(_)))
                .map(|d| (d, None)),
        );
        units
    }

    fn moving(&self) -> MovingJson {
        let moving = self.decisions.moving();
        MovingJson {
            units: moving.len() as u64,
            blobs: moving
                .iter()
                .map(|d| d.standing.bytes.map_or(0, |b| b.movable_blobs))
                .sum(),
            bytes: moving.iter().map(|d| d.moved_bytes()).sum(),
        }
    }

    fn json(&self) -> SourceJson {
        let rule = &self.spec.rule;
        let mut units_moving = BTreeMap::new();
        let mut units_staying = BTreeMap::new();
        for unit in &self.decisions.jobs {
            match unit.decision {
                Decision::Moves(rule) => *units_moving.entry(rule.as_str()).or_insert(0) += 1,
                Decision::Stays(reason) => {
                    *units_staying.entry(self.reason(reason)).or_insert(0) += 1
                }
            }
        }
        let units = self
            .ordered()
            .into_iter()
            .take(UNITS_LISTED)
            .map(|(unit, order)| {
                let bytes = unit.standing.bytes.unwrap_or_default();
                let (decision, rule, reason) = match unit.decision {
                    Decision::Moves(rule) => ("moves", Some(rule.as_str()), None),
                    Decision::Stays(reason) => ("stays", None, Some(self.reason(reason))),
                };
                UnitJson {
                    key: unit.standing.job_id.clone(),
                    rank: self.spec.rule.keep_newest.and(unit.standing.rank),
                    age_time: unit.standing.job_time.map(format::rfc3339),
                    movable_blobs: bytes.movable_blobs,
                    movable_bytes: bytes.movable_bytes,
                    hot_bytes: bytes.hot_bytes,
                    decision,
                    rule,
                    reason,
                    move_order: order,
                }
            })
            .collect();
        SourceJson {
            name: self.spec.name.value.clone(),
            table: self.spec.table.value.to_string(),
            scope: if self.parent_scope() { "parent" } else { "row" },
            rules: RuleJson {
                keep_newest: rule.keep_newest,
                group_by: names(&rule.group_by),
                order_by: names(rule.order()),
                age_columns: names(&rule.age_columns),
                min_age_seconds: rule.min_age.map(|d| d.as_secs()),
                hot_quota_bytes: rule.hot_quota,
                condition: rule.condition.as_ref().map(|c| c.value.to_string()),
            },
            hot_bytes_before: self.decisions.hot_bytes_before.unwrap_or_default(),
            hot_bytes_after: self.decisions.hot_bytes_after.unwrap_or_default(),
            quota: self.decisions.quota.map(|q| QuotaJson {
                quota_bytes: q.quota,
                met: q.met(),
                over_by_bytes: q.over_by,
                held_by_min_age_bytes: q.held_by_min_age,
                held_unmovable_bytes: q.held_unmovable,
            }),
            moving: self.moving(),
            units_moving,
            units_staying,
            units_total: self.decisions.jobs.len(),
            units,
        }
    }

    /// What the rule says, in one paragraph.
    fn rule_text(&self) {
        let rule = &self.spec.rule;
        let unit = if self.parent_scope() {
            "parents"
        } else {
            "rows"
        };
        match rule.keep_newest {
            Some(n) => {
                let group = if rule.group_by.is_empty() {
                    String::new()
                } else {
                    format!(" of each ({})", names(&rule.group_by).join(", "))
                };
                out!(
                    "  Keep newest: the newest {n} {unit}{group} by {} stay hot; older ones move.",
                    names(rule.order()).join(", ")
                );
            }
            None if rule.hot_quota.is_none() => {
                out!(
                    "  Keep newest: not set; every {} old enough moves.",
                    unit.trim_end_matches('s')
                )
            }
            None => out!("  Keep newest: not set."),
        }
        match rule.hot_quota {
            Some(quota) => out!(
                "  Hot quota: {} ({quota} bytes): while the hot bytes exceed it, the oldest {unit} \
                 move too.",
                format::bytes(quota)
            ),
            None => out!("  Hot quota: none."),
        }
        match rule.min_age {
            Some(age) => out!(
                "  Minimum age: {} (from {}): nothing younger moves.",
                days(age),
                names(&rule.age_columns).join(", first non-NULL of ")
            ),
            None => out!("  Minimum age: none."),
        }
        if let Some(condition) = &rule.condition {
            out!("  Condition: {}", condition.value);
        }
        if let Some(parent) = self.spec.parent.as_ref().filter(|_| self.parent_scope()) {
            out!(
                "  Parents: {} rows whose {} is one of {}.",
                parent.table.value,
                parent.status_column.value,
                parent.finished.value.join(", ")
            );
        }
    }

    fn decision_text(&self, unit: &JobDecision, now: DateTime<Utc>) -> String {
        let rule = &self.spec.rule;
        // A rank means something only where keep_newest ranks.
        let newest = rule
            .keep_newest
            .and(unit.standing.rank)
            .map_or(String::new(), |r| format!("#{r} newest"));
        let kept = rule
            .keep_newest
            .map_or(String::new(), |n| format!(" (keep_newest {n})"));
        match unit.decision {
            Decision::Stays(StayReason::NotFinished) if self.parent_scope() => {
                "kept hot: parent not finished".to_owned()
            }
            Decision::Stays(StayReason::NotFinished) => {
                "kept hot: excluded by the condition".to_owned()
            }
            Decision::Stays(StayReason::NothingToMove) => format!(
                "kept hot: nothing a sweep could claim now (quarantined, lost, failing, claimed \
                 or excluded by the condition){}",
                if newest.is_empty() {
                    String::new()
                } else {
                    format!("; {newest}")
                }
            ),
            Decision::Stays(StayReason::YoungerThanMinAge) => {
                let age = unit
                    .standing
                    .job_time
                    .map_or("-".to_owned(), |t| rounded(now - t));
                format!(
                    "kept hot: {age} old, younger than min_age ({})",
                    rule.min_age.map_or("-".to_owned(), days)
                )
            }
            Decision::Stays(StayReason::AmongNewest) => {
                format!("kept hot: {newest}{kept}")
            }
            Decision::Stays(StayReason::QuotaMet) => {
                if newest.is_empty() {
                    "kept hot: the hot bytes fit hot_quota without it".to_owned()
                } else {
                    format!("kept hot: {newest}{kept}; the hot bytes fit hot_quota without it")
                }
            }
            Decision::Moves(how) => {
                let bytes = unit.standing.bytes.unwrap_or_default();
                let why = match (how, rule.keep_newest) {
                    (MoveRule::Retention, Some(n)) => {
                        format!("{newest}, beyond keep_newest ({n})")
                    }
                    (MoveRule::Retention, None) => "old enough".to_owned(),
                    (MoveRule::Quota, Some(_)) => format!("{newest}, for hot_quota"),
                    (MoveRule::Quota, None) => "oldest first, for hot_quota".to_owned(),
                };
                format!(
                    "moves: {why}; {} ({})",
                    format::count(bytes.movable_blobs, "blob", "blobs"),
                    format::bytes(bytes.movable_bytes)
                )
            }
        }
    }

    fn print(&self, now: DateTime<Utc>) {
        let unit = if self.parent_scope() { "parent" } else { "row" };
        out!(
            "Source {}: table {}, one {unit} per unit",
            self.spec.name.value,
            self.spec.table.value
        );
        self.rule_text();
        out!();
        let units = self.ordered();
        if units.is_empty() {
            out!("  No {unit} holds a hot blob.");
        } else {
            let width = units
                .iter()
                .take(UNITS_LISTED)
                .map(|(u, _)| u.standing.job_id.chars().count())
                .max()
                .unwrap_or(0)
                .max(10);
            out!("  {:>4}  {:<width$} {:>10}  decision", "rank", unit, "hot");
            for (u, _) in units.iter().take(UNITS_LISTED) {
                let rank = self
                    .spec
                    .rule
                    .keep_newest
                    .and(u.standing.rank)
                    .map_or("-".to_owned(), |r| r.to_string());
                let hot = u.standing.bytes.map_or(0, |b| b.hot_bytes);
                out!(
                    "  {rank:>4}  {:<width$} {:>10}  {}",
                    u.standing.job_id,
                    format::bytes(hot),
                    self.decision_text(u, now)
                );
            }
            if units.len() > UNITS_LISTED {
                out!(
                    "  … and {} more (`--json` counts them by reason)",
                    units.len() - UNITS_LISTED
                );
            }
        }
        out!();
        let moving = self.moving();
        if moving.blobs == 0 {
            out!("  The next sweep would move nothing.");
        } else {
            out!(
                "  The next sweep would move {} ({}) from {}.",
                format::count(moving.blobs, "blob", "blobs"),
                format::bytes(moving.bytes),
                format::count(moving.units, unit, &format!("{unit}s"))
            );
        }
        let size = self
            .spec
            .columns
            .stored_size
            .as_ref()
            .map_or("no size column: every row counts 0".to_owned(), |c| {
                format!("{} of rows with a hot copy; no size counts 0", c.value)
            });
        out!(
            "  Hot bytes the table accounts for ({size}): {} now, {} after the next sweep.",
            format::bytes(self.decisions.hot_bytes_before.unwrap_or_default()),
            format::bytes(self.decisions.hot_bytes_after.unwrap_or_default())
        );
        if let Some(quota) = self.decisions.quota {
            if quota.met() {
                out!(
                    "  Within the hot quota ({}) after the next sweep.",
                    format::bytes(quota.quota)
                );
            } else {
                out!(
                    "  Stays over the hot quota ({}) by {} after the next sweep: everything the \
                     rule may move is moving; {} is in units younger than min_age, {} can move \
                     by no rule now (excluded, parents not finished; quarantined, lost, failing \
                     or claimed rows).",
                    format::bytes(quota.quota),
                    format::bytes(quota.over_by),
                    format::bytes(quota.held_by_min_age),
                    format::bytes(quota.held_unmovable)
                );
            }
        }
    }
}

/// A duration as the config file likely wrote it: `90d` for whole days.
fn days(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ => human_duration(d),
    }
}

fn names(columns: &[At<coldsweep::catalog::Ident>]) -> Vec<String> {
    columns
        .iter()
        .map(|c| c.value.as_str().to_owned())
        .collect()
}

/// `coldsweep plan` with declared sources.
pub(super) async fn plan(
    sources: &[TableSource],
    enabled: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let mut plans = Vec::with_capacity(sources.len());
    for source in sources {
        plans.push(SourcePlan {
            spec: source.spec(),
            decisions: source.decisions(now).await?,
        });
    }
    if json {
        let plan = PlanJson {
            generated_at: format::rfc3339(now),
            archiving_enabled: enabled,
            sources: plans.iter().map(SourcePlan::json).collect(),
        };
        out!("{}", serde_json::to_string(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("Plan (dry run: nothing is moved)");
    if !enabled {
        out!(
            "Note: archiving is disabled (ARCHIVE_PROVIDER/ARCHIVE_BUCKET unset); \
             this is what a sweep would move once it is switched on."
        );
    }
    for plan in &plans {
        out!();
        plan.print(now);
    }
    Ok(ExitCode::SUCCESS)
}
