//! Keeping claims alive: the set of rows a run holds and the heartbeat that
//! extends their leases, shared by the sweep and by `restore`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use crate::error::Result;

/// Task ids of the claims a run holds, shared with its heartbeat.
#[derive(Default)]
pub(crate) struct Held(std::sync::Mutex<HashSet<String>>);

impl Held {
    /// Hold these rows from now on.
    pub(crate) fn hold(&self, ids: impl IntoIterator<Item = String>) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.extend(ids);
    }

    /// The claim on `id` is settled: recorded, handed back, or lost.
    pub(crate) fn release(&self, id: &str) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(id);
    }

    /// The rows held now.
    pub(crate) fn ids(&self) -> Vec<String> {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.iter().cloned().collect()
    }
}

/// Every third of `lease`, call `extend` with the rows in `held` (one
/// write per beat; `extend` computes the fence and the new end and returns
/// how many leases it kept). A beat that fails or hangs is only logged: the
/// leases then run out, and the fenced writes of the rows' work fail
/// instead of racing the next holder. `what` names the run in the logs.
pub(crate) async fn heartbeat<F, Fut>(
    lease: Duration,
    held: &Held,
    what: &str,
    mut extend: F,
) -> Infallible
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let every = (lease / 3).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(every).await;
        let ids = held.ids();
        if ids.is_empty() {
            continue;
        }
        let count = ids.len() as u64;
        match tokio::time::timeout(every, extend(ids)).await {
            Ok(Ok(kept)) if kept < count => {
                tracing::warn!(
                    source = what,
                    held = count,
                    kept,
                    "some claims ran out or were taken over; their blobs will not be finished by this worker"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(source = what, error = %e.chain(), "extending claims failed")
            }
            Err(_) => tracing::warn!(source = what, "extending claims timed out"),
        }
    }
}
