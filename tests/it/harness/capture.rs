//! What a client puts on the wire, and a Supabase-style S3 endpoint under a
//! path prefix, for the provider-profile tests.
//!
//! [`RecordingRelay`] is a TCP relay that forwards every byte unchanged and
//! parses the client's HTTP/1.1 requests as they pass, recording method,
//! request target, headers (in order, as sent) and body. [`PrefixGateway`]
//! serves the S3 protocol under a path prefix (`/storage/v1/s3/{bucket}/…`)
//! the way Supabase Storage does: it checks the SigV4 signature over the
//! full path the client signed, then hands the request, prefix removed, to
//! s3s-fs over an [`S3Server`]'s folder.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hyper::http::Extensions;
use hyper::{HeaderMap, Method, Uri};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::route::S3Route;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, S3, S3Request, S3Response, S3Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::s3::{S3Server, serve};

/// One request as it crossed the wire.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    /// The request target: path and query, as sent.
    pub(crate) target: String,
    /// Header names in lower case, values as sent, in order.
    pub(crate) headers: Vec<(String, String)>,
    /// The body (by `Content-Length`; empty when the request had none).
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    /// The target without its query.
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Every value of header `name` (case-insensitive).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of header `name`; panics if it is sent more than once.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} sent {} times: {self:?}", all.len());
        all.first().copied()
    }
}

/// A relay to an `http://host:port` upstream that records every request.
pub(crate) struct RecordingRelay {
    /// `http://127.0.0.1:<port>` of the relay.
    pub(crate) endpoint: String,
    /// `127.0.0.1:<port>`: the `Host` a path-style request to the relay carries.
    pub(crate) authority: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    _relay: super::Relay,
}

impl RecordingRelay {
    /// Relay to `upstream`, tasks on the caller's runtime.
    pub(crate) async fn start(upstream: &str) -> RecordingRelay {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let relay = super::Relay::start(upstream, move |client, server| {
            let sink = sink.clone();
            async move { relay(client, server, &sink).await }
        })
        .await;
        RecordingRelay {
            endpoint: relay.endpoint(),
            authority: relay.authority.clone(),
            log,
            _relay: relay,
        }
    }

    /// Every request so far, in the order their heads arrived.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("relay log").clone()
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    log: &Mutex<Vec<Recorded>>,
) -> std::io::Result<()> {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = async {
        let mut parser = Parser::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return to_server.shutdown().await;
            }
            // Forwarded first and unchanged: recording never alters traffic.
            to_server.write_all(&buf[..n]).await?;
            for request in parser.feed(&buf[..n]) {
                log.lock().expect("relay log").push(request);
            }
        }
    };
    let down = tokio::io::copy(&mut from_server, &mut to_client);
    let (up, down) = tokio::join!(up, down);
    up.and(down.map(|_| ()))
}

/// Splits a client's byte stream into HTTP/1.1 requests.
#[derive(Default)]
struct Parser {
    pending: Vec<u8>,
    /// A request whose body is still arriving, and how many bytes are missing.
    body: Option<(Recorded, usize)>,
    /// A chunked body: recorded, and nothing after it is parsed.
    gave_up: bool,
}

impl Parser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Recorded> {
        let mut done = Vec::new();
        if self.gave_up {
            return done;
        }
        self.pending.extend_from_slice(bytes);
        loop {
            if let Some((mut request, missing)) = self.body.take() {
                let take = missing.min(self.pending.len());
                request.body.extend(self.pending.drain(..take));
                if take < missing {
                    self.body = Some((request, missing - take));
                    return done;
                }
                done.push(request);
            }
            let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                return done;
            };
            let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            self.pending.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let mut start = lines.next().unwrap_or_default().split(' ');
            let request = Recorded {
                method: start.next().unwrap_or_default().to_owned(),
                target: start.next().unwrap_or_default().to_owned(),
                headers: lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect(),
                body: Vec::new(),
            };
            if request
                .all("transfer-encoding")
                .iter()
                .any(|v| v.to_ascii_lowercase().contains("chunked"))
            {
                done.push(request);
                self.gave_up = true;
                return done;
            }
            let length = request
                .all("content-length")
                .first()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            self.body = Some((request, length));
        }
    }
}

/// Supabase Storage's S3 endpoint in miniature: the S3 protocol under a
/// path prefix, authenticated over the full path, stored by s3s-fs in an
/// [`S3Server`]'s folder (so that server sees the same buckets and objects).
pub(crate) struct PrefixGateway {
    /// `http://127.0.0.1:<port>` (without the prefix).
    pub(crate) endpoint: String,
    stop: Option<oneshot::Sender<()>>,
}

impl PrefixGateway {
    /// Serve `server`'s buckets under `prefix` (e.g. `/storage/v1/s3`) with
    /// `server`'s key; tasks on the caller's runtime.
    pub(crate) async fn start(server: &S3Server, prefix: &str) -> PrefixGateway {
        assert!(
            prefix.starts_with('/') && !prefix.ends_with('/'),
            "{prefix}"
        );
        let backend = {
            let fs = s3s_fs::FileSystem::new(server.root()).expect("s3s-fs over the folder");
            let mut b = S3ServiceBuilder::new(fs);
            // The gateway checked the signature; the backend sees no credentials.
            b.set_access(Authenticated);
            b.build()
        };
        let front = {
            let mut b = S3ServiceBuilder::new(NoBuckets);
            b.set_auth(SimpleAuth::from_single(
                server.access_key.clone(),
                server.secret_key.clone(),
            ));
            b.set_route(StripPrefix {
                prefix: prefix.to_owned(),
                backend,
            });
            b.build()
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let endpoint = format!("http://{}", listener.local_addr().expect("gateway addr"));
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(serve(listener, front, stopped));
        PrefixGateway {
            endpoint,
            stop: Some(stop),
        }
    }
}

impl Drop for PrefixGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Outside the prefix there is nothing: every S3 operation is "not implemented".
struct NoBuckets;

#[async_trait]
impl S3 for NoBuckets {}

/// Lets every request through: only the gateway, which authenticated it, calls the backend.
struct Authenticated;

#[async_trait]
impl S3Access for Authenticated {
    async fn check(&self, _cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
    }
}

/// Takes every request under `prefix` after s3s has checked its signature
/// (over the path as sent, prefix included) and forwards it without the
/// prefix and without its `Authorization` to `backend`.
struct StripPrefix {
    prefix: String,
    backend: S3Service,
}

#[async_trait]
impl S3Route for StripPrefix {
    fn is_match(&self, _: &Method, uri: &Uri, _: &HeaderMap, _: &mut Extensions) -> bool {
        uri.path()
            .strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    // The default `check_access` admits signed requests only.

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let inner = &target[self.prefix.len()..];
        let mut forward = hyper::Request::builder()
            .method(req.method)
            .uri(inner)
            .body(req.input)
            .map_err(|e| s3s::s3_error!(e, InternalError, "gateway: bad forward request"))?;
        *forward.headers_mut() = req.headers;
        forward.headers_mut().remove(hyper::header::AUTHORIZATION);
        let response = self
            .backend
            .call(forward)
            .await
            .map_err(|e| s3s::s3_error!(InternalError, "gateway: backend failed: {e:?}"))?;
        let (parts, body) = response.into_parts();
        let mut out = S3Response::new(body);
        out.status = Some(parts.status);
        out.headers = parts.headers;
        Ok(out)
    }
}

/// A relay that drops every request header whose name contains `_`, as a
/// default nginx does (`underscores_in_headers off`), and forwards the rest
/// of each request, and every answer, unchanged.
pub(crate) struct UnderscoreDroppingRelay {
    /// `http://127.0.0.1:<port>` of the relay.
    pub(crate) endpoint: String,
    dropped: Arc<Mutex<Vec<String>>>,
    _relay: super::Relay,
}

impl UnderscoreDroppingRelay {
    /// Relay to `upstream`, tasks on the caller's runtime.
    pub(crate) async fn start(upstream: &str) -> UnderscoreDroppingRelay {
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let sink = dropped.clone();
        let relay = super::Relay::start(upstream, move |client, server| {
            let sink = sink.clone();
            async move { drop_underscores(client, server, &sink).await }
        })
        .await;
        UnderscoreDroppingRelay {
            endpoint: relay.endpoint(),
            dropped,
            _relay: relay,
        }
    }

    /// Names of the headers dropped so far, lower case.
    pub(crate) fn dropped(&self) -> Vec<String> {
        self.dropped.lock().expect("dropped headers").clone()
    }
}

async fn drop_underscores(
    client: TcpStream,
    server: TcpStream,
    dropped: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = async {
        let mut pending = Vec::new();
        // Body bytes of the current request still to pass through as they are.
        let mut body_left = 0usize;
        // After a chunked body nothing more is parsed; bytes pass unchanged.
        let mut raw = false;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return to_server.shutdown().await;
            }
            pending.extend_from_slice(&buf[..n]);
            loop {
                if raw {
                    to_server.write_all(&pending).await?;
                    pending.clear();
                    break;
                }
                if body_left > 0 {
                    let take = body_left.min(pending.len());
                    to_server.write_all(&pending[..take]).await?;
                    pending.drain(..take);
                    body_left -= take;
                    if body_left > 0 {
                        break;
                    }
                }
                let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                    break;
                };
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                pending.drain(..end + 4);
                let mut out = String::new();
                for (i, line) in head.split("\r\n").enumerate() {
                    let name = line.split(':').next().unwrap_or_default().trim();
                    if i > 0 && name.contains('_') {
                        dropped
                            .lock()
                            .expect("dropped headers")
                            .push(name.to_ascii_lowercase());
                        continue;
                    }
                    let lower = name.to_ascii_lowercase();
                    let value = line.split_once(':').map(|(_, v)| v.trim());
                    if lower == "content-length" {
                        body_left = value.and_then(|v| v.parse().ok()).unwrap_or(0);
                    }
                    if lower == "transfer-encoding" {
                        raw = true;
                    }
                    out.push_str(line);
                    out.push_str("\r\n");
                }
                out.push_str("\r\n");
                to_server.write_all(out.as_bytes()).await?;
            }
        }
    };
    let down = tokio::io::copy(&mut from_server, &mut to_client);
    let (up, down) = tokio::join!(up, down);
    up.and(down.map(|_| ()))
}
