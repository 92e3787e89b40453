//! Sweep scheduling under paused tokio time: at once, then every interval,
//! and a prompt stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use coldsweep::archiver::JobMarker;
use coldsweep::store::FsStore;
use coldsweep::{Archiver, Config, Result, Store};

/// Counts sweeps: the job marker runs once at the start of each.
#[derive(Default)]
struct CountingMarker(AtomicU64);

#[async_trait]
impl JobMarker for CountingMarker {
    async fn mark_archived_jobs(&self) -> Result<u64> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(0)
    }
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn sweeps_at_once_then_every_interval_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path()).unwrap());
    let mut config = Config::default();
    config.interval = Duration::from_secs(60);
    let marker = Arc::new(CountingMarker::default());
    let archiver = Archiver::new(store.clone(), store, config, marker.clone(), Vec::new());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        archiver.run(async { stopped.await.unwrap_or(()) }).await;
    });
    let sweeps = || marker.0.load(Ordering::SeqCst);

    settle().await;
    assert_eq!(sweeps(), 1, "no sweep at start-up");
    tokio::time::advance(Duration::from_secs(59)).await;
    settle().await;
    assert_eq!(sweeps(), 1, "swept before the interval was up");
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(sweeps(), 2, "no sweep after one interval");
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;
    assert_eq!(sweeps(), 3);

    // Shutdown while waiting for the next sweep ends `run` without another one.
    stop.send(()).unwrap();
    settle().await;
    assert!(running.is_finished(), "run did not stop promptly");
    running.await.unwrap();
    assert_eq!(sweeps(), 3);
}
