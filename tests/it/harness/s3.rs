//! In-process S3-protocol server for tests: s3s-fs behind SigV4 on 127.0.0.1.
//!
//! Each [`S3Server`] runs on its own thread with its own tokio runtime, so it
//! outlives no test and depends on no test's runtime (a `#[tokio::test]`
//! runtime dies when its test ends). Dropping the server stops it and removes
//! its folder. Buckets are sub-folders of that folder.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use coldsweep::config::{S3Config, Secret};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A running s3s-fs server; stopped on drop.
pub(crate) struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub(crate) endpoint: String,
    /// The one access key the server accepts.
    pub(crate) access_key: String,
    /// Its secret (unique per server, so tests can search output for it).
    pub(crate) secret_key: String,
    root: tempfile::TempDir,
    /// Buckets the key may read but not write or delete in; see [`Self::make_read_only`].
    read_only: Arc<Mutex<HashSet<String>>>,
    /// Requests answered past authentication, per S3 operation; see [`Self::requests`].
    requests: Arc<Mutex<HashMap<String, usize>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Start a server on a free port of 127.0.0.1 over a fresh folder.
    pub(crate) async fn start() -> S3Server {
        let root = tempfile::tempdir().expect("create a folder for the S3 test server");
        let access_key = "coldsweep-test".to_owned();
        let secret_key = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs over the test folder");
        let read_only = Arc::new(Mutex::new(HashSet::new()));
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(
                access_key.clone(),
                secret_key.clone(),
            ));
            b.set_access(Access {
                read_only: read_only.clone(),
                requests: requests.clone(),
            });
            b.build()
        };
        // Bound here so the port is known (and listening) before start() returns.
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for S3 server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("s3-test-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime for the S3 test server");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    serve(listener, service, stopped).await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn the S3 test server thread");
        S3Server {
            endpoint,
            access_key,
            secret_key,
            root,
            read_only,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Create bucket `name` (a sub-folder of the server's folder).
    pub(crate) fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.root.path().join(name))
            .unwrap_or_else(|e| panic!("create bucket {name:?}: {e}"));
    }

    /// From now on, refuse writes and deletes in `bucket` with 403
    /// AccessDenied, as S3 does for a key that may only read (and list) it.
    pub(crate) fn make_read_only(&self, bucket: &str) {
        self.read_only
            .lock()
            .expect("read-only set")
            .insert(bucket.to_owned());
    }

    /// Signed requests of S3 operation `op` (`DeleteObjects`,
    /// `DeleteObject`, `PutObject`, …) the server has taken so far.
    pub(crate) fn requests(&self, op: &str) -> usize {
        self.requests
            .lock()
            .expect("request counts")
            .get(op)
            .copied()
            .unwrap_or(0)
    }

    /// The server's folder (buckets are its sub-folders).
    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// Settings that reach this server: path-style (always, in `S3Store`), region `auto`.
    pub(crate) fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint.clone()),
            region: "auto".into(),
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(Secret::new(self.secret_key.clone())),
            checksum: None,
        }
    }

    /// [`config`](Self::config) with a secret the server does not accept.
    pub(crate) fn config_with_wrong_secret(&self) -> S3Config {
        S3Config {
            secret_access_key: Some(Secret::new(format!("wrong-{}", self.secret_key))),
            ..self.config()
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Joined before the folder goes, so no request sees it half-deleted.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Access control: a signature is required (s3s's default), and the
/// buckets in `read_only` refuse every operation that writes or deletes.
/// Every signed request is counted by operation.
struct Access {
    read_only: Arc<Mutex<HashSet<String>>>,
    requests: Arc<Mutex<HashMap<String, usize>>>,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> s3s::S3Result<()> {
        const WRITES: [&str; 8] = [
            "PutObject",
            "CopyObject",
            "DeleteObject",
            "DeleteObjects",
            "CreateMultipartUpload",
            "UploadPart",
            "CompleteMultipartUpload",
            "AbortMultipartUpload",
        ];
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        }
        *self
            .requests
            .lock()
            .expect("request counts")
            .entry(cx.s3_op().name().to_owned())
            .or_default() += 1;
        let read_only = cx
            .s3_path()
            .get_bucket_name()
            .is_some_and(|b| self.read_only.lock().expect("read-only set").contains(b));
        if read_only && WRITES.contains(&cx.s3_op().name()) {
            return Err(s3s::s3_error!(
                AccessDenied,
                "this key may not write to the bucket"
            ));
        }
        Ok(())
    }
}

/// Serve `service` on `listener` until `stopped` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    service: S3Service,
    mut stopped: oneshot::Receiver<()>,
) {
    let http = ConnBuilder::new(TokioExecutor::new());
    while let Some(socket) = super::accept(&listener, &mut stopped, "S3").await {
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// A TCP relay in front of a server that damages one upload in transit: it
/// flips the first `target` byte it forwards towards the server, once.
/// Pick a `target` that cannot occur in request headers (say `0xA5`).
pub(crate) struct CorruptingRelay {
    /// `http://127.0.0.1:<port>` of the relay.
    pub(crate) endpoint: String,
    flipped: Arc<AtomicBool>,
    _relay: super::Relay,
}

impl CorruptingRelay {
    /// Relay to `upstream` (an `http://host:port` endpoint), tasks on the caller's runtime.
    pub(crate) async fn start(upstream: &str, target: u8) -> CorruptingRelay {
        let flipped = Arc::new(AtomicBool::new(false));
        let flag = flipped.clone();
        let relay = super::Relay::start(upstream, move |client, server| {
            let flag = flag.clone();
            async move { relay(client, server, target, &flag).await }
        })
        .await;
        CorruptingRelay {
            endpoint: relay.endpoint(),
            flipped,
            _relay: relay,
        }
    }

    /// Whether the byte has been flipped yet.
    pub(crate) fn flipped(&self) -> bool {
        self.flipped.load(Ordering::SeqCst)
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    target: u8,
    flipped: &AtomicBool,
) -> std::io::Result<()> {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return to_server.shutdown().await;
            }
            if let Some(i) = buf[..n].iter().position(|&b| b == target)
                && !flipped.swap(true, Ordering::SeqCst)
            {
                buf[i] ^= 0xFF;
            }
            to_server.write_all(&buf[..n]).await?;
        }
    };
    let down = tokio::io::copy(&mut from_server, &mut to_client);
    let (up, down) = tokio::join!(up, down);
    up.and(down.map(|_| ()))
}
