//! The progress bar of long commands (`sweep --once`, `verify`, `restore`):
//! one line on stderr, redrawn from a [`Progress`] at most ten times a
//! second, only when stderr is a terminal and `--quiet` is not given.
//!
//! The bar shares the terminal with report lines on stdout and log lines on
//! stderr: all three go through [`crate::terminal`], which erases the bar
//! before any other text is written; the next tick draws it again below
//! that text. So a warning logged mid-sweep scrolls up cleanly instead of
//! being glued to the bar.
//!
//! Written here rather than taken from `indicatif`: the bar is drawn from
//! the library's own counters on a tokio interval, so what that crate adds
//! (its own ticker and position, ETA estimator, multi-bars) would go unused,
//! while the formatting tested below stays ours and no crate joins the build.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use coldsweep::progress::{Progress, Snapshot};
use tokio_util::sync::CancellationToken;

use crate::terminal::{ERASE, terminal};

/// How often the bar is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Widest line drawn, so that it never wraps on an 80-column terminal
/// (a wrapped line could not be erased with one carriage return).
const WIDTH: usize = 79;

/// Width of the bar itself, between brackets, when the total is known.
const BAR_WIDTH: usize = 20;

/// Draws a bar until dropped; dropping it erases the bar.
#[must_use = "the bar is erased when this is dropped"]
pub(crate) struct Bar {
    stop: Option<CancellationToken>,
}

/// Show `progress` as a bar labelled `label` (e.g. `sweep`, `verify`,
/// `restore`) on stderr, redrawn about ten times a second, unless `quiet`
/// or stderr is not a terminal (a pipe, a file, a CI log): then nothing is
/// drawn. Objects, bytes, rate, problems; with a known total, a bar,
/// percentage and ETA. Needs a tokio runtime.
pub(crate) fn bar(progress: &Progress, label: &str, quiet: bool) -> Bar {
    if quiet || !std::io::stderr().is_terminal() {
        return Bar { stop: None };
    }
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let progress = progress.clone();
    let label = label.to_owned();
    let started = Instant::now();
    // The first frame at once, so that even a short run shows what it did.
    draw(&stopped, &line(&label, progress.snapshot(), Duration::ZERO));
    tokio::spawn(async move {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + REDRAW_EVERY, REDRAW_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stopped.cancelled() => break,
            }
            let text = line(&label, progress.snapshot(), started.elapsed());
            if !draw(&stopped, &text) {
                break;
            }
        }
    });
    Bar { stop: Some(stop) }
}

/// Draw `text` as the bar unless `stopped`; false when it is.
fn draw(stopped: &CancellationToken, text: &str) -> bool {
    let mut drawn = terminal();
    // Checked under the lock: once the guard has erased the bar, no late
    // tick draws it again.
    if stopped.is_cancelled() {
        return false;
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{ERASE}{text}");
    let _ = err.flush();
    drawn.set_drawn();
    true
}

impl Bar {
    /// Whether this bar is drawn (stderr is a terminal and not `--quiet`):
    /// worth spending a query on its total.
    pub(crate) fn is_drawn(&self) -> bool {
        self.stop.is_some()
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let mut drawn = terminal();
            stop.cancel();
            drawn.erase();
        }
    }
}

/// The bar's text for `snapshot`, `elapsed` after the start:
/// `verify [#####...] 120/500 24% 1.2 MiB 40.0/s ETA 9s 2 problems`.
pub(crate) fn line(label: &str, snapshot: Snapshot, elapsed: Duration) -> String {
    let per_second = rate(snapshot.objects, elapsed);
    let mut text = label.to_owned();
    match snapshot.total {
        Some(total) if snapshot.objects <= total => {
            let filled = (snapshot.objects as f64 / total as f64 * BAR_WIDTH as f64) as usize;
            let _ = write!(
                text,
                " [{}{}] {}/{total} {}%",
                "#".repeat(filled),
                "-".repeat(BAR_WIDTH - filled),
                snapshot.objects,
                snapshot.objects * 100 / total
            );
        }
        // An estimate that fell short: the count goes on, without a bar.
        Some(_) | None => {
            let _ = write!(text, " {}", snapshot.objects);
        }
    }
    let _ = write!(
        text,
        " {} {}",
        crate::format::bytes(snapshot.bytes),
        rate_text(per_second)
    );
    match snapshot
        .total
        .and_then(|total| eta(total, snapshot.objects, per_second))
    {
        Some(left) => {
            let _ = write!(text, " ETA {}", duration(left));
        }
        None => {
            let _ = write!(text, " {}", duration(elapsed));
        }
    }
    if snapshot.problems > 0 {
        let _ = write!(
            text,
            " {}",
            crate::format::count(snapshot.problems, "problem", "problems")
        );
    }
    text.chars().take(WIDTH).collect()
}

/// Objects per second over the run so far; `None` before a rate means anything.
fn rate(objects: u64, elapsed: Duration) -> Option<f64> {
    let seconds = elapsed.as_secs_f64();
    (objects > 0 && seconds >= 0.5).then(|| objects as f64 / seconds)
}

/// `40.0/s`, `0.25/s`; `-/s` while unknown.
pub(crate) fn rate_text(per_second: Option<f64>) -> String {
    match per_second {
        Some(r) if r >= 10.0 => format!("{r:.0}/s"),
        Some(r) if r >= 1.0 => format!("{r:.1}/s"),
        Some(r) => format!("{r:.2}/s"),
        None => "-/s".to_owned(),
    }
}

/// Time left for the objects still to do at `per_second`; `None` when the
/// rate is unknown or the total is already passed.
pub(crate) fn eta(total: u64, done: u64, per_second: Option<f64>) -> Option<Duration> {
    let per_second = per_second.filter(|r| *r > 0.0)?;
    let left = total.checked_sub(done)?;
    Some(Duration::from_secs_f64((left as f64 / per_second).ceil()))
}

/// `9s`, `1m05s`, `2h03m`.
pub(crate) fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(total: Option<u64>, objects: u64, bytes: u64, problems: u64) -> Snapshot {
        Snapshot {
            total,
            objects,
            bytes,
            problems,
        }
    }

    #[test]
    fn durations_read_as_a_clock() {
        assert_eq!(duration(Duration::from_millis(900)), "0s");
        assert_eq!(duration(Duration::from_secs(59)), "59s");
        assert_eq!(duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(
            duration(Duration::from_secs(2 * 3600 + 3 * 60 + 59)),
            "2h03m"
        );
    }

    #[test]
    fn rates_keep_a_few_significant_digits() {
        assert_eq!(rate_text(None), "-/s");
        assert_eq!(rate_text(rate(120, Duration::from_secs(3))), "40/s");
        assert_eq!(rate_text(rate(3, Duration::from_secs(2))), "1.5/s");
        assert_eq!(rate_text(rate(1, Duration::from_secs(4))), "0.25/s");
        // Too early to say: nothing done, or less than half a second.
        assert_eq!(rate(0, Duration::from_secs(9)), None);
        assert_eq!(rate(5, Duration::from_millis(100)), None);
    }

    #[test]
    fn eta_is_what_is_left_at_the_rate_so_far() {
        assert_eq!(
            eta(500, 120, Some(40.0)),
            Some(Duration::from_secs(10)),
            "380 left at 40/s, rounded up"
        );
        assert_eq!(eta(500, 500, Some(40.0)), Some(Duration::ZERO));
        assert_eq!(eta(500, 120, None), None);
        assert_eq!(eta(100, 120, Some(40.0)), None, "an estimate passed");
    }

    #[test]
    fn a_known_total_shows_a_bar_percentage_and_eta() {
        let text = line(
            "verify",
            snapshot(Some(500), 120, 1_258_291, 2),
            Duration::from_secs(3),
        );
        assert_eq!(
            text,
            "verify [####----------------] 120/500 24% 1.2 MiB 40/s ETA 10s 2 problems"
        );
        assert!(text.chars().count() <= WIDTH);
    }

    #[test]
    fn an_unknown_total_shows_counts_and_elapsed_time() {
        assert_eq!(
            line("sweep", snapshot(None, 7, 2048, 0), Duration::from_secs(65)),
            "sweep 7 2.0 KiB 0.11/s 1m05s"
        );
        assert_eq!(
            line("sweep", snapshot(None, 0, 0, 0), Duration::ZERO),
            "sweep 0 0 B -/s 0s"
        );
        // More done than the estimate said: no bar past its end, no ETA.
        assert_eq!(
            line("sweep", snapshot(Some(5), 7, 0, 1), Duration::from_secs(1)),
            "sweep 7 0 B 7.0/s 1s 1 problem"
        );
    }

    #[test]
    fn long_lines_are_cut_to_the_terminal_width() {
        let label = "x".repeat(200);
        assert_eq!(
            line(&label, snapshot(None, 1, 1, 0), Duration::from_secs(1))
                .chars()
                .count(),
            WIDTH
        );
    }
}
