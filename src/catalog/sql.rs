//! SQL both catalog backends run, written once.
//!
//! Shared: the job marker, and the writes to rows a caller names or holds
//! (the fenced writes, lease extension and hand-back, retry, reset), whose
//! text differs between the dialects only in how two times compare and how
//! a bound list of ids becomes a set; sqlx's SQLite takes `$N` placeholders
//! too. Not shared: the claim, eligibility, the reports and
//! `record_archived_many`, which differ in substance (`SKIP LOCKED` against
//! one writer, collations and casts, a rowid, bound lists of different
//! shapes) and stay in their backend.

use std::sync::LazyLock;

use super::ResetFilter;

/// The job marker, the same in both dialects: a task with a hot path
/// (quarantined ones keep theirs) or any state (a lost blob never makes a
/// job look archived) holds its job back.
pub(super) const MARK_ARCHIVED_JOBS: &str = concat!(
    "UPDATE jobs SET status = 'archived', status_before_archived = status
     WHERE status IN ",
    terminal_list!(),
    "
       AND NOT EXISTS (
           SELECT 1 FROM tasks t
           WHERE t.job_id = jobs.id
             AND (t.html_storage_path IS NOT NULL OR t.html_archive_state IS NOT NULL))
       AND EXISTS (
           SELECT 1 FROM tasks t
           WHERE t.job_id = jobs.id AND t.html_archived_at IS NOT NULL)"
);

/// The fragments in which one dialect's SQL differs from the other's.
struct Dialect {
    /// The function both sides of a time comparison go through, if any.
    time_as: Option<&'static str>,
    /// What goes before and after the placeholder of a bound list of ids
    /// to test `id` against it.
    list_open: &'static str,
    list_close: &'static str,
}

/// Postgres compares timestamps as they are and binds a list as an array.
#[cfg(feature = "postgres")]
const POSTGRES_DIALECT: Dialect = Dialect {
    time_as: None,
    list_open: "= ANY(",
    list_close: ")",
};

/// SQLite keeps times as text in more than one format, so it compares their
/// `julianday()` (see its module); it has no arrays, so a list is bound as
/// a JSON array.
#[cfg(feature = "sqlite")]
const SQLITE_DIALECT: Dialect = Dialect {
    time_as: Some("julianday"),
    list_open: "IN (SELECT value FROM json_each(",
    list_close: "))",
};

impl Dialect {
    /// `column >= param`, both times.
    fn at_or_after(&self, column: &str, param: &str) -> String {
        match self.time_as {
            None => format!("{column} >= {param}"),
            Some(f) => format!("{f}({column}) >= {f}({param})"),
        }
    }

    /// `param`, a bound list of ids, as the right-hand side of `id …`.
    fn in_list(&self, param: &str) -> String {
        format!("{}{param}{}", self.list_open, self.list_close)
    }

    /// The fence: the row's lease is `owner`'s and still live at `now`.
    fn fence(&self, owner: &str, now: &str) -> String {
        format!(
            "html_lease_owner = {owner} AND {}",
            self.at_or_after("html_lease_expires_at", now)
        )
    }
}

/// The shared writes in one dialect; each field names its `Catalog` method.
pub(super) struct Writes {
    dialect: &'static Dialect,
    /// Binds `$1` task, `$2` provider, `$3` bucket, `$4` key, `$5` now,
    /// `$6` owner. Recording the same location again (a resumed move) keeps
    /// the first switch time; the write still proves the lease is held.
    pub(super) record_archived: String,
    /// Binds `$1` task, `$2` owner, `$3` now. Refuses a row with no cold
    /// location: clearing it would leave a task that points nowhere
    /// (invariant 2).
    pub(super) clear_hot: String,
    /// Binds `$1` task ids, `$2` owner, `$3` now; returns the ids cleared.
    pub(super) clear_hot_many: String,
    /// Binds `$1` task, `$2` verdict, `$3` reason, `$4` owner, `$5` now.
    pub(super) mark_state: String,
    /// Binds `$1` task, `$2` error, `$3` retry at, `$4` owner, `$5` now.
    /// The back-off reuses the lease column: an ownerless lease until then.
    pub(super) release: String,
    /// Binds `$1` task, `$2` reason, `$3` seen at, `$4` recheck at,
    /// `$5` owner, `$6` now.
    pub(super) mark_missing: String,
    /// Binds `$1` task, `$2` owner, `$3` now.
    pub(super) clear_missing: String,
    /// Binds `$1` task ids, `$2` owner, `$3` until, `$4` now.
    pub(super) extend_leases: String,
    /// Binds `$1` task ids, `$2` owner.
    pub(super) hand_back: String,
    /// Binds `$1` now.
    pub(super) retry_failing_now: String,
}

/// The shared writes in Postgres.
#[cfg(feature = "postgres")]
pub(super) static POSTGRES: LazyLock<Writes> = LazyLock::new(|| Writes::new(&POSTGRES_DIALECT));

/// The shared writes in SQLite.
#[cfg(feature = "sqlite")]
pub(super) static SQLITE: LazyLock<Writes> = LazyLock::new(|| Writes::new(&SQLITE_DIALECT));

impl Writes {
    fn new(d: &'static Dialect) -> Self {
        Self {
            dialect: d,
            record_archived: format!(
                "UPDATE tasks
                 SET html_archive_provider = $2, html_archive_bucket = $3, html_archive_key = $4,
                     html_archived_at = CASE
                         WHEN html_archive_provider = $2 AND html_archive_bucket = $3
                              AND html_archive_key = $4
                         THEN COALESCE(html_archived_at, $5) ELSE $5 END
                 WHERE id = $1 AND {}",
                d.fence("$6", "$5")
            ),
            clear_hot: format!(
                "UPDATE tasks
                 SET html_storage_bucket = NULL, html_storage_path = NULL,
                     html_lease_owner = NULL, html_lease_expires_at = NULL,
                     html_archive_error = NULL
                 WHERE id = $1 AND html_archive_key IS NOT NULL AND {}",
                d.fence("$2", "$3")
            ),
            clear_hot_many: format!(
                "UPDATE tasks
                 SET html_storage_bucket = NULL, html_storage_path = NULL,
                     html_lease_owner = NULL, html_lease_expires_at = NULL,
                     html_archive_error = NULL
                 WHERE id {} AND html_archive_key IS NOT NULL AND {}
                 RETURNING id",
                d.in_list("$1"),
                d.fence("$2", "$3")
            ),
            mark_state: format!(
                "UPDATE tasks
                 SET html_archive_state = $2, html_archive_error = $3,
                     html_lease_owner = NULL, html_lease_expires_at = NULL
                 WHERE id = $1 AND {}",
                d.fence("$4", "$5")
            ),
            release: format!(
                "UPDATE tasks
                 SET html_archive_attempts = html_archive_attempts + 1,
                     html_archive_error = $2,
                     html_lease_owner = NULL, html_lease_expires_at = $3
                 WHERE id = $1 AND {}",
                d.fence("$4", "$5")
            ),
            mark_missing: format!(
                "UPDATE tasks
                 SET html_archive_state = 'missing', html_archive_error = $2,
                     html_missing_since = COALESCE(html_missing_since, $3),
                     html_lease_owner = NULL, html_lease_expires_at = $4
                 WHERE id = $1 AND {}",
                d.fence("$5", "$6")
            ),
            clear_missing: format!(
                "UPDATE tasks
                 SET html_archive_state = NULL, html_archive_error = NULL, html_missing_since = NULL
                 WHERE id = $1 AND html_archive_state = 'missing' AND {}",
                d.fence("$2", "$3")
            ),
            extend_leases: format!(
                "UPDATE tasks SET html_lease_expires_at = $3
                 WHERE id {} AND {}",
                d.in_list("$1"),
                d.fence("$2", "$4")
            ),
            hand_back: format!(
                "UPDATE tasks SET html_lease_owner = NULL, html_lease_expires_at = NULL
                 WHERE id {} AND html_lease_owner = $2",
                d.in_list("$1")
            ),
            retry_failing_now: format!(
                "UPDATE tasks SET html_lease_expires_at = NULL
                 WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
                   AND html_archive_error IS NOT NULL AND html_lease_owner IS NULL
                   AND {}",
                d.at_or_after("html_lease_expires_at", "$1")
            ),
        }
    }

    /// The reset filter's condition; binds `$1` now, `$2` job ids, `$3`
    /// task ids.
    pub(super) fn reset_clause(&self, filter: &ResetFilter) -> String {
        let d = self.dialect;
        filter.where_clause(
            &d.in_list("$2"),
            &d.in_list("$3"),
            &format!(
                "html_lease_owner IS NOT NULL AND {}",
                d.at_or_after("html_lease_expires_at", "$1")
            ),
        )
    }

    /// The reset itself, binding as [`Writes::reset_clause`].
    pub(super) fn reset(&self, filter: &ResetFilter) -> String {
        format!(
            "UPDATE tasks SET {RESET_SET} WHERE {}",
            self.reset_clause(filter)
        )
    }
}

/// What a reset clears: the state and its reason, the attempts, the
/// missing-since time and any back-off.
const RESET_SET: &str = "html_archive_state = NULL, html_archive_error = NULL,
     html_archive_attempts = 0, html_missing_since = NULL,
     html_lease_owner = NULL, html_lease_expires_at = NULL";

#[cfg(all(test, feature = "postgres", feature = "sqlite"))]
mod tests {
    use super::{POSTGRES, SQLITE, Writes};

    /// Every statement's text, by name.
    fn all(w: &Writes) -> [(&'static str, &str); 10] {
        [
            ("record_archived", &w.record_archived),
            ("clear_hot", &w.clear_hot),
            ("clear_hot_many", &w.clear_hot_many),
            ("mark_state", &w.mark_state),
            ("release", &w.release),
            ("mark_missing", &w.mark_missing),
            ("clear_missing", &w.clear_missing),
            ("extend_leases", &w.extend_leases),
            ("hand_back", &w.hand_back),
            ("retry_failing_now", &w.retry_failing_now),
        ]
    }

    /// The `$N` placeholders of `sql`, sorted, without repeats.
    fn placeholders(sql: &str) -> Vec<u32> {
        let mut found: Vec<u32> = sql
            .split('$')
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    #[test]
    fn both_dialects_bind_the_same_placeholders() {
        for ((name, pg), (_, sqlite)) in all(&POSTGRES).into_iter().zip(all(&SQLITE)) {
            let bound = placeholders(pg);
            assert_eq!(bound, placeholders(sqlite), "{name}");
            // Numbered from 1 with no gap, as the backends bind them.
            assert_eq!(
                bound,
                (1..=bound.len() as u32).collect::<Vec<_>>(),
                "{name}"
            );
            assert!(!sqlite.contains('?'), "{name}: one placeholder style");
        }
    }
}
