//! The archive rules: which finished jobs a sweep moves, and why the rest
//! stays hot. One pure function, [`decide`], that both a sweep (through
//! [`TaskHtmlSource`](crate::source::TaskHtmlSource)) and `coldsweep plan`
//! call, so the two can never disagree.
//!
//! The catalog supplies each job's [`Standing`] (its rank among the
//! finished jobs of its domain and organisation, its job time, what it has
//! that a sweep could move) and, when a quota needs them, the hot bytes it
//! accounts for; [`decide`] applies, in order:
//!
//! 1. **Retention**: a finished job beyond the newest `retention_jobs` of
//!    its (domain, organisation) moves.
//! 2. **Quota**: if `hot_quota` is set and the accounted hot bytes, minus
//!    what retention moves, still exceed it, the oldest remaining finished
//!    jobs (job time, then id) move too, even among the newest
//!    `retention_jobs`, until the rest fits.
//!
//! `min_age` is a floor for both: a job whose job time is less than
//! `min_age` before `now` stays. A job with nothing a sweep could move now
//! (every blob archived, quarantined, lost, failing and waiting for its
//! retry, or claimed by a worker) stays too; its hot bytes still count.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The settings the rules read (`ARCHIVE_RETENTION_JOBS`,
/// `ARCHIVE_HOT_QUOTA`, `ARCHIVE_MIN_AGE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Newest finished jobs per (domain, organisation) that retention keeps hot.
    pub retention_jobs: u32,
    /// Most hot bytes the catalog may account for after a sweep; `None`: no quota.
    pub hot_quota: Option<u64>,
    /// No job whose job time is more recent than this moves; `None`: no floor.
    pub min_age: Option<Duration>,
}

impl Rules {
    /// Retention alone: the newest `retention_jobs` finished jobs of each
    /// (domain, organisation) stay hot, every older one moves.
    pub fn retention(retention_jobs: u32) -> Self {
        Self {
            retention_jobs,
            ..Self::default()
        }
    }

    /// What the catalog must read for these rules: with a quota, every job
    /// with its bytes counted; without one, only the jobs retention moves.
    pub fn scope(&self) -> Scope {
        match self.hot_quota {
            Some(_) => Scope::Counted,
            None => Scope::BeyondRetention(self.retention_jobs),
        }
    }
}

/// Which standings the catalog reads ([`Catalog::job_standings`](crate::catalog::Catalog::job_standings)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Finished jobs ranked beyond this many, that have a blob a sweep
    /// could move, bytes not counted: all that retention alone can move.
    /// Costs what ranking the finished jobs costs, plus one index probe each.
    BeyondRetention(u32),
    /// Every finished job, and every job that holds hot bytes, with its
    /// bytes counted: what a quota and `coldsweep plan` need. Reads every
    /// row with a hot path (through the hot-HTML index).
    Counted,
}

/// One job as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    /// The job's id.
    pub job_id: String,
    /// Rank among the finished (`completed`, `failed`, `cancelled`) jobs of
    /// its (domain, organisation), newest = 1; `None` for a job that is not
    /// finished (running, or already `archived`).
    pub rank: Option<u64>,
    /// `COALESCE(restored_at, completed_at, created_at)`: a restored job
    /// counts as finished at its restore. `None` only for a job that is not
    /// finished.
    pub job_time: Option<DateTime<Utc>>,
    /// Whether the job has a blob a sweep could claim now.
    pub movable: bool,
    /// Its bytes, where counted ([`Scope::Counted`]).
    pub bytes: Option<JobBytes>,
}

/// A job's hot blobs and bytes, as the catalog accounts for them: the
/// `html_compressed_size_bytes` of its rows with a hot path, a NULL size
/// counting 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobBytes {
    /// Blobs a sweep could claim now.
    pub movable_blobs: u64,
    /// Their bytes.
    pub movable_bytes: u64,
    /// Bytes of every row of the job with a hot path, movable or not
    /// (quarantined, lost, failing, claimed).
    pub hot_bytes: u64,
}

/// What the catalog supplies to [`decide`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Standings {
    /// The jobs, in any order.
    pub jobs: Vec<Standing>,
    /// Hot bytes the catalog accounts for (every row with a hot path, of
    /// any job); `None` when not counted ([`Scope::BeyondRetention`]).
    pub hot_bytes: Option<u64>,
}

/// Why a job moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MoveRule {
    /// Beyond the newest `retention_jobs` of its (domain, organisation).
    Retention,
    /// Among the oldest finished jobs while the hot bytes exceed the quota.
    Quota,
}

impl MoveRule {
    /// `retention` or `quota`.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveRule::Retention => "retention",
            MoveRule::Quota => "quota",
        }
    }
}

/// Why a job stays hot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StayReason {
    /// Not a finished job (running, or already `archived`).
    NotFinished,
    /// Nothing a sweep could claim now.
    NothingToMove,
    /// Its job time is within `min_age` of now.
    YoungerThanMinAge,
    /// Among the newest `retention_jobs` of its (domain, organisation), and
    /// no quota is set.
    AmongNewest,
    /// Among the newest `retention_jobs`, and the hot bytes fit the quota
    /// without it.
    QuotaMet,
}

impl StayReason {
    /// `not_finished`, `nothing_to_move`, `younger_than_min_age`,
    /// `among_newest` or `quota_met`.
    pub fn as_str(self) -> &'static str {
        match self {
            StayReason::NotFinished => "not_finished",
            StayReason::NothingToMove => "nothing_to_move",
            StayReason::YoungerThanMinAge => "younger_than_min_age",
            StayReason::AmongNewest => "among_newest",
            StayReason::QuotaMet => "quota_met",
        }
    }
}

/// A job's fate in the next sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Its movable blobs move, by this rule.
    Moves(MoveRule),
    /// It stays hot, for this reason.
    Stays(StayReason),
}

/// One job's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobDecision {
    /// The job as the catalog supplied it.
    pub standing: Standing,
    /// What the next sweep does with it.
    pub decision: Decision,
}

impl JobDecision {
    /// The movable bytes this decision takes out of hot storage (0 when
    /// the job stays, or bytes were not counted).
    pub fn moved_bytes(&self) -> u64 {
        match self.decision {
            Decision::Moves(_) => self.standing.bytes.map_or(0, |b| b.movable_bytes),
            Decision::Stays(_) => 0,
        }
    }
}

/// How the quota fares after the next sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaOutcome {
    /// `ARCHIVE_HOT_QUOTA`, in bytes.
    pub quota: u64,
    /// Bytes still above the quota after every move (0 when it is met).
    pub over_by: u64,
    /// Of the hot bytes after the sweep, those of movable blobs in jobs
    /// younger than `min_age`.
    pub held_by_min_age: u64,
    /// Of the hot bytes after the sweep, those no rule may move now: jobs
    /// not finished, blobs quarantined, lost, failing and waiting, or
    /// claimed by a worker.
    pub held_unmovable: u64,
}

impl QuotaOutcome {
    /// Whether the hot bytes fit the quota after the sweep.
    pub fn met(&self) -> bool {
        self.over_by == 0
    }
}

/// Every job's decision, and the hot bytes before and after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Oldest job time first (no time first), then id bytewise.
    pub jobs: Vec<JobDecision>,
    /// Hot bytes the catalog accounts for now, where counted.
    pub hot_bytes_before: Option<u64>,
    /// What remains after the next sweep moves every movable blob of the
    /// moving jobs, where counted.
    pub hot_bytes_after: Option<u64>,
    /// Set when a quota is set and bytes were counted.
    pub quota: Option<QuotaOutcome>,
}

impl Decisions {
    /// The moving jobs in the order a sweep takes them: those retention
    /// moves, oldest first, then those the quota moves, in the order it
    /// chose them (oldest first).
    pub fn moving(&self) -> Vec<&JobDecision> {
        let by = |rule| {
            self.jobs
                .iter()
                .filter(move |j| j.decision == Decision::Moves(rule))
        };
        by(MoveRule::Retention).chain(by(MoveRule::Quota)).collect()
    }

    /// The ids of [`Decisions::moving`], in that order.
    pub fn moving_ids(&self) -> Vec<String> {
        self.moving()
            .into_iter()
            .map(|j| j.standing.job_id.clone())
            .collect()
    }
}

/// Apply `rules` at `now` to `standings`: each job's decision, and the hot
/// bytes before and after the next sweep. See the module documentation for
/// the rules. A quota is applied only where the bytes were counted
/// ([`Scope::Counted`]); without them, jobs that only a quota would move stay
/// [`StayReason::QuotaMet`].
pub fn decide(standings: &Standings, rules: &Rules, now: DateTime<Utc>) -> Decisions {
    let mut jobs: Vec<JobDecision> = standings
        .jobs
        .iter()
        .map(|standing| JobDecision {
            decision: first_look(standing, rules, now),
            standing: standing.clone(),
        })
        .collect();
    // Oldest first; a job without a time sorts first, as in the catalog.
    jobs.sort_by(|a, b| {
        (a.standing.job_time, &a.standing.job_id).cmp(&(b.standing.job_time, &b.standing.job_id))
    });

    let Some(before) = standings.hot_bytes else {
        return Decisions {
            jobs,
            ..Decisions::default()
        };
    };
    let mut after = before.saturating_sub(jobs.iter().map(JobDecision::moved_bytes).sum());
    if let Some(quota) = rules.hot_quota {
        for job in jobs.iter_mut() {
            if after <= quota {
                break;
            }
            if job.decision == Decision::Stays(StayReason::QuotaMet) {
                job.decision = Decision::Moves(MoveRule::Quota);
                after = after.saturating_sub(job.moved_bytes());
            }
        }
    }
    let quota = rules.hot_quota.map(|quota| {
        let held_by_min_age: u64 = jobs
            .iter()
            .filter(|j| j.decision == Decision::Stays(StayReason::YoungerThanMinAge))
            .map(|j| j.standing.bytes.map_or(0, |b| b.movable_bytes))
            .sum();
        let held_by_min_age = held_by_min_age.min(after);
        QuotaOutcome {
            quota,
            over_by: after.saturating_sub(quota),
            held_by_min_age,
            held_unmovable: after - held_by_min_age,
        }
    });
    Decisions {
        jobs,
        hot_bytes_before: Some(before),
        hot_bytes_after: Some(after),
        quota,
    }
}

/// Every rule but the quota's walk: jobs the quota may still take are
/// marked [`StayReason::QuotaMet`] (or [`StayReason::AmongNewest`] without a quota).
fn first_look(standing: &Standing, rules: &Rules, now: DateTime<Utc>) -> Decision {
    let Some(rank) = standing.rank else {
        return Decision::Stays(StayReason::NotFinished);
    };
    if !standing.movable {
        return Decision::Stays(StayReason::NothingToMove);
    }
    if let (Some(min_age), Some(time)) = (rules.min_age, standing.job_time) {
        let age = now.signed_duration_since(time);
        if age < chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX) {
            return Decision::Stays(StayReason::YoungerThanMinAge);
        }
    }
    if rank > u64::from(rules.retention_jobs) {
        return Decision::Moves(MoveRule::Retention);
    }
    match rules.hot_quota {
        Some(_) => Decision::Stays(StayReason::QuotaMet),
        None => Decision::Stays(StayReason::AmongNewest),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, d, 12, 0, 0).unwrap()
    }

    /// A finished job of rank `rank`, finished on day `d`, with `bytes` movable.
    fn job(id: &str, rank: u64, d: u32, bytes: u64) -> Standing {
        Standing {
            job_id: id.into(),
            rank: Some(rank),
            job_time: Some(day(d)),
            movable: true,
            bytes: Some(JobBytes {
                movable_blobs: 1,
                movable_bytes: bytes,
                hot_bytes: bytes,
            }),
        }
    }

    fn counted(jobs: Vec<Standing>, extra_hot: u64) -> Standings {
        let hot = jobs.iter().map(|j| j.bytes.unwrap().hot_bytes).sum::<u64>() + extra_hot;
        Standings {
            jobs,
            hot_bytes: Some(hot),
        }
    }

    fn decisions_of(d: &Decisions) -> Vec<(&str, Decision)> {
        d.jobs
            .iter()
            .map(|j| (j.standing.job_id.as_str(), j.decision))
            .collect()
    }

    use Decision::{Moves, Stays};
    use MoveRule::{Quota, Retention};
    use StayReason::*;

    #[test]
    fn retention_alone_moves_beyond_the_newest_n() {
        // One group: a (oldest, rank 3), b (rank 2), c (rank 1).
        let standings = counted(
            vec![job("c", 1, 3, 10), job("a", 3, 1, 10), job("b", 2, 2, 10)],
            0,
        );
        let d = decide(&standings, &Rules::retention(2), day(20));
        assert_eq!(
            decisions_of(&d),
            [
                ("a", Moves(Retention)),
                ("b", Stays(AmongNewest)),
                ("c", Stays(AmongNewest))
            ]
        );
        assert_eq!(
            (d.hot_bytes_before, d.hot_bytes_after),
            (Some(30), Some(20))
        );
        assert_eq!(d.quota, None);
        assert_eq!(d.moving_ids(), ["a"]);
    }

    #[test]
    fn quota_takes_the_oldest_remaining_until_the_rest_fits() {
        // Two groups, retention 1: r1 and s1 move by retention; the quota
        // then walks the rest oldest first across groups.
        let standings = counted(
            vec![
                job("r1", 2, 1, 100),
                job("r2", 1, 4, 100),
                job("s1", 2, 2, 50),
                job("s2", 1, 3, 70),
            ],
            30, // a running job's bytes
        );
        let rules = Rules {
            retention_jobs: 1,
            hot_quota: Some(120),
            min_age: None,
        };
        let d = decide(&standings, &rules, day(20));
        // 350 hot; retention moves 150 → 200 > 120; s2 (day 3) → 130 > 120;
        // r2 (day 4) → 30.
        assert_eq!(
            decisions_of(&d),
            [
                ("r1", Moves(Retention)),
                ("s1", Moves(Retention)),
                ("s2", Moves(Quota)),
                ("r2", Moves(Quota)),
            ]
        );
        assert_eq!(d.moving_ids(), ["r1", "s1", "s2", "r2"]);
        assert_eq!(
            (d.hot_bytes_before, d.hot_bytes_after),
            (Some(350), Some(30))
        );
        assert!(d.quota.unwrap().met());

        // A looser quota stops after s2; r2 stays, the quota met.
        let rules = Rules {
            hot_quota: Some(130),
            ..rules
        };
        let d = decide(&standings, &rules, day(20));
        assert_eq!(d.moving_ids(), ["r1", "s1", "s2"]);
        assert_eq!(d.jobs[3].decision, Stays(QuotaMet));
        assert_eq!(d.hot_bytes_after, Some(130));
    }

    #[test]
    fn min_age_is_a_floor_for_both_rules() {
        // "old" is beyond retention, "young" too, but finished 5 days ago.
        let standings = counted(
            vec![
                job("old", 3, 1, 100),
                job("young", 2, 15, 100),
                job("newest", 1, 19, 100),
            ],
            0,
        );
        let rules = Rules {
            retention_jobs: 1,
            hot_quota: Some(0),
            min_age: Some(Duration::from_secs(7 * 86_400)),
        };
        let d = decide(&standings, &rules, day(20));
        assert_eq!(
            decisions_of(&d),
            [
                ("old", Moves(Retention)),
                ("young", Stays(YoungerThanMinAge)),
                ("newest", Stays(YoungerThanMinAge)),
            ]
        );
        let quota = d.quota.unwrap();
        assert!(!quota.met());
        assert_eq!(quota.over_by, 200);
        assert_eq!((quota.held_by_min_age, quota.held_unmovable), (200, 0));
        // Exactly min_age old is old enough.
        let d = decide(&standings, &rules, day(22));
        assert_eq!(d.jobs[1].decision, Moves(Retention));
    }

    #[test]
    fn unmovable_bytes_count_and_say_why_the_quota_stays_over() {
        let mut stuck = job("stuck", 1, 2, 0);
        stuck.movable = false;
        stuck.bytes = Some(JobBytes {
            hot_bytes: 40, // quarantined
            ..JobBytes::default()
        });
        let running = Standing {
            job_id: "running".into(),
            rank: None,
            job_time: None,
            movable: true,
            bytes: Some(JobBytes {
                movable_blobs: 3,
                movable_bytes: 25,
                hot_bytes: 25,
            }),
        };
        let standings = counted(vec![stuck, running, job("done", 1, 3, 10)], 0);
        let rules = Rules {
            retention_jobs: 5,
            hot_quota: Some(50),
            min_age: None,
        };
        let d = decide(&standings, &rules, day(20));
        assert_eq!(
            decisions_of(&d),
            [
                ("running", Stays(NotFinished)),
                ("stuck", Stays(NothingToMove)),
                ("done", Moves(Quota)),
            ]
        );
        let quota = d.quota.unwrap();
        assert_eq!((quota.over_by, quota.held_unmovable), (15, 65));
    }

    #[test]
    fn a_job_without_sizes_moves_in_its_turn_but_frees_no_accounted_bytes() {
        // "nulls" is the oldest; its sizes are NULL, so it counts 0.
        let standings = counted(
            vec![
                job("nulls", 1, 1, 0),
                job("sized", 1, 2, 100),
                job("later", 1, 3, 100),
            ],
            0,
        );
        let rules = Rules {
            retention_jobs: 3,
            hot_quota: Some(100),
            min_age: None,
        };
        let d = decide(&standings, &rules, day(20));
        assert_eq!(d.moving_ids(), ["nulls", "sized"]);
        assert_eq!(d.hot_bytes_after, Some(100));
    }

    #[test]
    fn without_counted_bytes_only_retention_and_min_age_apply() {
        let mut standings = counted(vec![job("a", 2, 1, 10), job("b", 1, 2, 10)], 0);
        standings.hot_bytes = None;
        for j in &mut standings.jobs {
            j.bytes = None;
        }
        let rules = Rules {
            retention_jobs: 1,
            hot_quota: Some(0),
            min_age: None,
        };
        let d = decide(&standings, &rules, day(20));
        assert_eq!(d.moving_ids(), ["a"]);
        assert_eq!(d.quota, None);
        assert_eq!(d.hot_bytes_after, None);
    }

    #[test]
    fn ties_in_time_go_by_id_bytewise() {
        let standings = counted(
            vec![job("b", 1, 1, 10), job("B", 1, 1, 10), job("a", 1, 1, 10)],
            0,
        );
        let rules = Rules {
            retention_jobs: 5,
            hot_quota: Some(15),
            min_age: None,
        };
        let d = decide(&standings, &rules, day(20));
        assert_eq!(d.moving_ids(), ["B", "a"]);
    }

    #[test]
    fn scope_follows_the_quota() {
        assert_eq!(Rules::retention(3).scope(), Scope::BeyondRetention(3));
        let rules = Rules {
            hot_quota: Some(1),
            ..Rules::retention(3)
        };
        assert_eq!(rules.scope(), Scope::Counted);
    }
}
