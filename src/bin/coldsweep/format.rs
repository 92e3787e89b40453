//! Output: text for people (sizes, errors, sweep reports) and the one JSON
//! object of `--json`.

use std::fmt;
use std::io::Write as _;

use coldsweep::SweepReport;

/// `println!` for reports: when stdout is closed early (`coldsweep plan |
/// head`) the process ends quietly, as a command killed by SIGPIPE would,
/// instead of panicking.
macro_rules! out {
    () => {
        $crate::format::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::format::line(format_args!($($arg)*))
    };
}
pub(crate) use out;

/// How a command reports (`--json`, `--quiet`); flattened into the
/// commands that take them.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub(crate) struct OutputArgs {
    /// Print one JSON object on stdout instead of the text report (fields
    /// in the README's "JSON output"); logs and errors stay on stderr.
    #[arg(long, help_heading = "Output")]
    pub(crate) json: bool,
    /// No progress bar (it is only drawn when stderr is a terminal).
    #[arg(long, short, help_heading = "Output")]
    pub(crate) quiet: bool,
}

/// Print `value` as the command's one JSON object on stdout, newline-terminated.
pub(crate) fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string(value)?;
    line(format_args!("{text}"));
    Ok(())
}

/// `now` as RFC 3339 in UTC, to the millisecond: `2026-11-27T23:59:01.250Z`.
pub(crate) fn timestamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Write one line to stdout (erasing the progress bar first, if one is
/// drawn); see [`out!`].
pub(crate) fn line(args: fmt::Arguments<'_>) {
    let written = crate::terminal::with_terminal(|| writeln!(std::io::stdout().lock(), "{args}"));
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // 128 + SIGPIPE, what a shell reports for a command ended by it.
            std::process::exit(141);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// `err` and its causes on one line, each level's own text once.
pub(crate) fn error_chain(err: &anyhow::Error) -> String {
    // anyhow's alternate form walks `source()`, joining with ": ".
    format!("{err:#}")
}

/// `1234567` → `1.2 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A time as `--json` output writes it: RFC 3339, UTC (`…Z`).
pub(crate) fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// "1 blob" / "2 blobs".
pub(crate) fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The counts of a sweep, one line.
pub(crate) fn report_summary(report: &SweepReport) -> String {
    let mut parts = vec![format!(
        "moved {} ({})",
        count(report.archived, "blob", "blobs"),
        bytes(report.bytes)
    )];
    if report.completed > 0 {
        parts.push(format!(
            "finished {}",
            count(report.completed, "interrupted move", "interrupted moves")
        ));
    }
    parts.push(format!("{} quarantined", report.quarantined));
    if report.missing > 0 {
        parts.push(format!("{} missing (suspected)", report.missing));
    }
    parts.push(format!("{} lost", report.lost));
    parts.push(format!("{} failed", report.failed));
    if report.released > 0 {
        parts.push(format!("{} handed back untouched", report.released));
    }
    if report.jobs_archived > 0 {
        parts.push(format!(
            "{} marked archived",
            count(report.jobs_archived, "job", "jobs")
        ));
    }
    let summary = parts.join(", ");
    if report.stopped {
        format!("STOPPED EARLY: {summary}")
    } else {
        summary
    }
}

/// Every problem of a sweep, one per line, indented, in columns as wide
/// as their widest entry (task ids may be 36-character uuids).
pub(crate) fn report_problems(report: &SweepReport) -> String {
    let rows: Vec<(&str, String, &str)> = report
        .problems
        .iter()
        .map(|p| {
            (
                p.task_id.as_deref().unwrap_or("(sweep)"),
                p.what.to_string(),
                p.message.as_str(),
            )
        })
        .collect();
    let task_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let what_width = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (task, what, message) in rows {
        out.push_str(&format!(
            "  {task:<task_width$}  {what:<what_width$}  {message}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn each_cause_is_shown_once() {
        let inner = std::io::Error::other("disk on fire");
        let lib =
            coldsweep::Error::new(coldsweep::ErrorKind::Transient, "write x").with_source(inner);
        let err = anyhow::Error::new(lib).context("sweep");
        assert_eq!(
            error_chain(&err),
            "sweep: write x (transient): disk on fire"
        );
    }
}
