//! A fault-injecting wrapper around our own `Store` trait: the one test
//! double allowed, for faults that must happen on command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use coldsweep::error::{Error, ErrorKind, Result};
use coldsweep::store::{Location, ObjectMeta, PutOptions, PutResult, Store};
use md5::Digest as _;

#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// `put` fails with a transient error (a 503 from the provider).
    pub(crate) fail_put: AtomicBool,
    /// `put` stores other bytes than it was given (a silently corrupting store).
    pub(crate) corrupt_put: AtomicBool,
    /// With `corrupt_put`: `head` reports the MD5 ETag of the bytes it was
    /// given, not of what it stored (a store or proxy that lies).
    pub(crate) lie_about_etag: AtomicBool,
    /// ETags to report instead of the real ones.
    lies: Mutex<HashMap<Location, String>>,
    /// `delete` fails, standing in for a crash right before the hot delete.
    pub(crate) fail_delete: AtomicBool,
    /// Every `get` waits this many milliseconds first.
    pub(crate) get_delay_ms: AtomicU64,
    /// While closed, every `get` waits at it: a worker stalled mid-move on command.
    pub(crate) gate: Gate,
    /// Count of `put` calls that reached the inner store.
    pub(crate) puts: AtomicU64,
    /// `get` returns all but the last bytes, as a connection broken
    /// mid-body would if nobody noticed.
    pub(crate) truncate_get: AtomicBool,
    /// Every `get` from this bucket is refused for good (a policy or proxy
    /// that refuses one bucket).
    pub(crate) refuse_bucket: Mutex<Option<String>>,
    /// Scripted failures: the next `n` calls of an operation fail so.
    script: Mutex<HashMap<Op, (Fault, u32)>>,
    /// Every call per operation, failed ones included.
    calls: Mutex<HashMap<Op, u64>>,
}

/// Holds `get` calls while closed (open by default).
#[derive(Debug)]
pub(crate) struct Gate {
    open: tokio::sync::watch::Sender<bool>,
    /// One permit per `get` that found the gate closed.
    held: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            open: tokio::sync::watch::Sender::new(true),
            held: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Gate {
    pub(crate) fn close(&self) {
        self.open.send_replace(false);
    }

    pub(crate) fn open(&self) {
        self.open.send_replace(true);
    }

    /// Wait until `n` more `get` calls are held at the closed gate.
    pub(crate) async fn held(&self, n: u32) {
        self.held.acquire_many(n).await.unwrap().forget();
    }

    async fn pass(&self) {
        let mut open = self.open.subscribe();
        if !*open.borrow_and_update() {
            self.held.add_permits(1);
            open.wait_for(|open| *open).await.unwrap();
        }
    }
}

/// A store operation, for [`Faults::fail_next`] and [`Faults::calls`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Get,
    Put,
    Head,
    Delete,
}

/// What a scripted call fails with, as a backend would classify it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// HTTP 500/503 from the provider.
    ServerError,
    /// HTTP 429 / `SlowDown`.
    Throttled,
    /// The connection dropped.
    ConnectionReset,
    /// The request timed out.
    Timeout,
    /// HTTP 403 `AccessDenied`: permanent.
    Denied,
    /// HTTP 400 for this request alone (a header the store will not take): permanent.
    Refused,
}

impl Fault {
    pub(crate) const TRANSIENT: [Fault; 4] = [
        Fault::ServerError,
        Fault::Throttled,
        Fault::ConnectionReset,
        Fault::Timeout,
    ];

    fn error(self) -> Error {
        let (kind, message) = match self {
            Fault::ServerError => (ErrorKind::Transient, "injected: 500 Internal Server Error"),
            Fault::Throttled => (ErrorKind::Transient, "injected: 429 SlowDown"),
            Fault::ConnectionReset => (ErrorKind::Transient, "injected: connection reset by peer"),
            Fault::Timeout => (ErrorKind::Transient, "injected: request timed out"),
            Fault::Denied => (ErrorKind::PermissionDenied, "injected: 403 AccessDenied"),
            Fault::Refused => (ErrorKind::Unexpected, "injected: 400 InvalidArgument"),
        };
        Error::new(kind, message)
    }
}

impl Faults {
    /// The next `times` calls of `op` fail with `fault` (0 clears; `u32::MAX`: for good).
    pub(crate) fn fail_next(&self, op: Op, fault: Fault, times: u32) {
        self.script.lock().unwrap().insert(op, (fault, times));
    }

    /// Calls of `op` so far, failed ones included.
    pub(crate) fn calls(&self, op: Op) -> u64 {
        self.calls.lock().unwrap().get(&op).copied().unwrap_or(0)
    }

    /// Count a call of `op`; fail it if the script says so.
    fn call(&self, op: Op) -> Result<()> {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        let mut script = self.script.lock().unwrap();
        match script.get_mut(&op) {
            Some((fault, left)) if *left > 0 => {
                *left = left.saturating_sub(u32::from(*left != u32::MAX));
                Err(fault.error())
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug)]
pub(crate) struct FaultyStore {
    inner: Arc<dyn Store>,
    pub(crate) faults: Arc<Faults>,
}

impl FaultyStore {
    pub(crate) fn wrap(inner: Arc<dyn Store>) -> (Arc<dyn Store>, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let store = Arc::new(Self {
            inner,
            faults: faults.clone(),
        });
        (store, faults)
    }
}

#[async_trait]
impl Store for FaultyStore {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn etag_proves_md5(&self) -> bool {
        self.inner.etag_proves_md5()
    }

    fn namespace(&self) -> Option<String> {
        self.inner.namespace()
    }

    async fn ping(&self, bucket: &str) -> Result<()> {
        self.inner.ping(bucket).await
    }

    async fn put(
        &self,
        location: &Location,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutResult> {
        self.faults.call(Op::Put)?;
        if self.faults.fail_put.load(Ordering::SeqCst) {
            return Err(Error::new(ErrorKind::Transient, "injected: 503 Slow Down"));
        }
        self.faults.puts.fetch_add(1, Ordering::SeqCst);
        if self.faults.lie_about_etag.load(Ordering::SeqCst) {
            let md5 = hex::encode(md5::Md5::digest(&body));
            self.faults
                .lies
                .lock()
                .unwrap()
                .insert(location.clone(), md5);
        }
        let lie = self
            .faults
            .lie_about_etag
            .load(Ordering::SeqCst)
            .then(|| hex::encode(md5::Md5::digest(&body)));
        let body = if self.faults.corrupt_put.load(Ordering::SeqCst) {
            let mut bad = body.to_vec();
            bad[0] ^= 0xff;
            Bytes::from(bad)
        } else {
            body
        };
        let put = self.inner.put(location, body, options).await?;
        // The lie reaches the PUT's answer too, not only HEAD's.
        Ok(lie.map_or(put, |etag| PutResult { etag: Some(etag) }))
    }

    async fn get(&self, location: &Location) -> Result<Bytes> {
        self.faults.call(Op::Get)?;
        if self.faults.refuse_bucket.lock().unwrap().as_deref() == Some(&location.bucket) {
            return Err(Fault::Refused.error());
        }
        self.faults.gate.pass().await;
        let delay = self.faults.get_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let bytes = self.inner.get(location).await?;
        if self.faults.truncate_get.load(Ordering::SeqCst) {
            return Ok(bytes.slice(..bytes.len().saturating_sub(7)));
        }
        Ok(bytes)
    }

    async fn head(&self, location: &Location) -> Result<ObjectMeta> {
        self.faults.call(Op::Head)?;
        let mut meta = self.inner.head(location).await?;
        if let Some(lie) = self.faults.lies.lock().unwrap().get(location) {
            meta.etag = Some(lie.clone());
        }
        Ok(meta)
    }

    async fn delete(&self, location: &Location) -> Result<()> {
        self.faults.call(Op::Delete)?;
        if self.faults.fail_delete.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Transient,
                "injected: connection reset",
            ));
        }
        self.inner.delete(location).await
    }
}
