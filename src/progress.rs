//! Counters a long run (a sweep, a scrub, a restore) advances as it goes,
//! for a progress bar or a status page to read at its own pace.
//!
//! The run only adds to atomics: it never waits on whoever displays them,
//! and a run nobody watches pays a few relaxed additions per blob.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared progress of one run; clones share the same counters.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    /// Objects the run expects to handle; 0 while unknown.
    total: AtomicU64,
    /// Objects handled, whatever the outcome.
    objects: AtomicU64,
    /// Bytes handled (stored bytes of the objects counted in `objects`).
    bytes: AtomicU64,
    /// Objects among `objects` that did not end well (failed, quarantined,
    /// missing, corrupt…).
    problems: AtomicU64,
}

/// What a [`Progress`] said at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Objects expected; `None` while unknown.
    pub total: Option<u64>,
    /// Objects handled.
    pub objects: u64,
    /// Bytes handled.
    pub bytes: u64,
    /// Objects handled that did not end well.
    pub problems: u64,
}

impl Progress {
    /// Fresh counters, total unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set how many objects the run expects (an estimate: a sweep's count
    /// can change while it runs).
    pub fn set_total(&self, total: u64) {
        self.0.total.store(total, Ordering::Relaxed);
    }

    /// One object handled, `bytes` long; `ok` is false when it did not end well.
    pub fn object_done(&self, bytes: u64, ok: bool) {
        self.0.objects.fetch_add(1, Ordering::Relaxed);
        self.0.bytes.fetch_add(bytes, Ordering::Relaxed);
        if !ok {
            self.0.problems.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let total = self.0.total.load(Ordering::Relaxed);
        Snapshot {
            total: (total > 0).then_some(total),
            objects: self.0.objects.load(Ordering::Relaxed),
            bytes: self.0.bytes.load(Ordering::Relaxed),
            problems: self.0.problems.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_counters() {
        let progress = Progress::new();
        assert_eq!(progress.snapshot().total, None);
        let run = progress.clone();
        run.set_total(3);
        run.object_done(10, true);
        run.object_done(5, false);
        assert_eq!(
            progress.snapshot(),
            Snapshot {
                total: Some(3),
                objects: 2,
                bytes: 15,
                problems: 1
            }
        );
    }
}
