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
    /// `delete` fails, standing in for a crash right before the hot delete
    /// (in `delete_many`, for every key).
    pub(crate) fail_delete: AtomicBool,
    /// Keys whose delete fails so, alone or in a `delete_many` that
    /// really deletes the others; see [`Faults::fail_delete_of`].
    refuse_delete: Mutex<HashMap<Location, Fault>>,
    /// The next `delete_many` deletes only its first so many keys, then
    /// fails as a whole; see [`Faults::cut_next_delete_many`].
    cut_delete_many: Mutex<Option<usize>>,
    /// Every `get` waits this many milliseconds first.
    pub(crate) get_delay_ms: AtomicU64,
    /// While closed, every `get` waits at it: a worker stalled mid-move on command.
    pub(crate) gate: Gate,
    /// When set, only the `get` of this location waits at the gate: one slow blob.
    gate_only: Mutex<Option<Location>>,
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
    /// Counted per key, in `delete` and in `delete_many` alike.
    Delete,
    /// A `delete_many` call; a scripted failure fails it whole, deleting nothing.
    DeleteMany,
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

    /// Only the `get` of `location` waits at the closed gate (`None`: every `get`).
    pub(crate) fn gate_only(&self, location: Option<Location>) {
        *self.gate_only.lock().unwrap() = location;
    }

    /// From now on, deleting `location` fails with `fault`, alone or in a
    /// `delete_many` that deletes the other keys (`None` clears).
    pub(crate) fn fail_delete_of(&self, location: &Location, fault: Option<Fault>) {
        let mut refused = self.refuse_delete.lock().unwrap();
        match fault {
            Some(fault) => refused.insert(location.clone(), fault),
            None => refused.remove(location),
        };
    }

    /// The next `delete_many` deletes only the first `deleted` keys it
    /// would delete, then fails for every key: a crash or a dropped
    /// connection in the middle of a bulk delete, which leaves the caller
    /// unable to tell which keys went.
    pub(crate) fn cut_next_delete_many(&self, deleted: usize) {
        *self.cut_delete_many.lock().unwrap() = Some(deleted);
    }

    /// Why deleting `location` fails, if it does: a scripted `Delete`,
    /// `fail_delete`, or a key chosen with `fail_delete_of`.
    fn delete_fault(&self, location: &Location) -> Result<()> {
        self.call(Op::Delete)?;
        if self.fail_delete.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Transient,
                "injected: connection reset",
            ));
        }
        match self.refuse_delete.lock().unwrap().get(location) {
            Some(fault) => Err(fault.error().context(format!("delete {location}"))),
            None => Ok(()),
        }
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
        let gated = match &*self.faults.gate_only.lock().unwrap() {
            Some(only) => only == location,
            None => true,
        };
        if gated {
            self.faults.gate.pass().await;
        }
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
        self.faults.delete_fault(location)?;
        self.inner.delete(location).await
    }

    /// The keys no fault stops go to the inner store's `delete_many` in
    /// one call; the others fail alone.
    async fn delete_many(&self, locations: &[Location]) -> Vec<Result<()>> {
        if let Err(e) = self.faults.call(Op::DeleteMany) {
            let message = e.message().to_owned();
            return locations
                .iter()
                .map(|_| Err(Error::new(e.kind(), message.clone())))
                .collect();
        }
        let mut results: Vec<Option<Result<()>>> = Vec::with_capacity(locations.len());
        let mut passed = Vec::new();
        for (i, location) in locations.iter().enumerate() {
            match self.faults.delete_fault(location) {
                Ok(()) => {
                    passed.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let forwarded: Vec<Location> = passed.iter().map(|&i| locations[i].clone()).collect();
        let cut = self.faults.cut_delete_many.lock().unwrap().take();
        if let Some(deleted) = cut {
            let deleted = deleted.min(forwarded.len());
            // What got through before the cut is really gone; nobody is told.
            let _ = self.inner.delete_many(&forwarded[..deleted]).await;
            return locations
                .iter()
                .map(|l| {
                    Err(Error::new(
                        ErrorKind::Transient,
                        format!("injected: connection reset during a bulk delete ({l})"),
                    ))
                })
                .collect();
        }
        for (i, result) in passed
            .into_iter()
            .zip(self.inner.delete_many(&forwarded).await)
        {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every key has a result"))
            .collect()
    }
}

/// Four small objects in a fresh S3 server's bucket, through `store`.
async fn four_objects(store: &dyn Store) -> Vec<Location> {
    let mut locations = Vec::new();
    for i in 0..4 {
        let at = Location::new(
            "hot",
            coldsweep::ObjectKey::new(format!("bulk/{i}")).unwrap(),
        );
        store
            .put(&at, Bytes::from_static(b"x"), &PutOptions::default())
            .await
            .unwrap();
        locations.push(at);
    }
    locations
}

async fn present(store: &dyn Store, at: &Location) -> bool {
    coldsweep::store::exists(store, at).await.unwrap()
}

#[tokio::test]
async fn chosen_keys_fail_alone_in_a_bulk_delete() {
    let server = crate::harness::s3::S3Server::start().await;
    server.create_bucket("hot");
    let inner: Arc<dyn Store> =
        Arc::new(coldsweep::store::S3Store::new("minio", &server.config()).unwrap());
    let (store, faults) = FaultyStore::wrap(inner.clone());
    let locations = four_objects(&*inner).await;
    faults.fail_delete_of(&locations[1], Some(Fault::Denied));
    let results = store.delete_many(&locations).await;
    for (i, (at, result)) in locations.iter().zip(&results).enumerate() {
        if i == 1 {
            let err = result.as_ref().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
            assert!(present(&*inner, at).await, "{at} deleted");
        } else {
            assert!(result.is_ok(), "{at}: {result:?}");
            assert!(!present(&*inner, at).await, "{at} still there");
        }
    }
    assert_eq!(
        (faults.calls(Op::DeleteMany), faults.calls(Op::Delete)),
        (1, 4)
    );
    // The other three went in one request.
    assert_eq!(server.requests("DeleteObjects"), 1);
    // A single delete of the key is refused too, until cleared.
    assert!(store.delete(&locations[1]).await.is_err());
    faults.fail_delete_of(&locations[1], None);
    assert!(store.delete_many(&locations[1..2]).await[0].is_ok());
    assert!(!present(&*inner, &locations[1]).await);
}

#[tokio::test]
async fn a_cut_bulk_delete_deletes_some_keys_and_fails_every_one() {
    let server = crate::harness::s3::S3Server::start().await;
    server.create_bucket("hot");
    let inner: Arc<dyn Store> =
        Arc::new(coldsweep::store::S3Store::new("minio", &server.config()).unwrap());
    let (store, faults) = FaultyStore::wrap(inner.clone());
    let locations = four_objects(&*inner).await;
    faults.cut_next_delete_many(2);
    let results = store.delete_many(&locations).await;
    assert_eq!(results.len(), 4);
    for result in &results {
        assert_eq!(result.as_ref().unwrap_err().kind(), ErrorKind::Transient);
    }
    let left: Vec<bool> =
        futures::future::join_all(locations.iter().map(|at| present(&*inner, at))).await;
    assert_eq!(left, [false, false, true, true]);
    // Only the next call was cut.
    assert!(
        store
            .delete_many(&locations)
            .await
            .iter()
            .all(Result::is_ok)
    );
    for at in &locations {
        assert!(!present(&*inner, at).await);
    }
    // A scripted whole-call failure deletes nothing.
    let locations = four_objects(&*inner).await;
    faults.fail_next(Op::DeleteMany, Fault::ServerError, 1);
    assert!(
        store
            .delete_many(&locations)
            .await
            .iter()
            .all(Result::is_err)
    );
    for at in &locations {
        assert!(present(&*inner, at).await);
    }
}
