//! A Supabase Storage REST server for tests, on 127.0.0.1.
//!
//! It answers the endpoints coldsweep uses the way Supabase's gateway and
//! Storage server (`supabase/storage`) do:
//!
//! - Gateway: `apikey` missing or unknown → 401 `{"message":…,"hint":…}`; an
//!   `sb_…` key as bearer must equal `apikey` (documented for the new keys).
//! - Storage errors are JSON with `statusCode` as a *string*, wrapped in
//!   HTTP 400 unless the status is 500 (`{"statusCode":"404","code":"NoSuchKey",
//!   "error":"not_found","message":"Object not found"}`);
//!   [`answer_missing_with_404`](SupabaseServer::answer_missing_with_404)
//!   switches not-found answers to a real 404, as some versions send.
//! - Tokens: JWTs are signed with the server's own secret. A badly signed or
//!   expired one is `AccessDenied` (`"statusCode":"403"`) on the
//!   authenticated routes; the lenient ones (`GET /object/{bucket}/…`,
//!   `/object/info/{bucket}/…`) carry on as the public and find no private
//!   bucket. No `Authorization` header is `"400"` `InvalidRequest`.
//! - Row Level Security: only the `service_role` JWT and the `sb_secret_…`
//!   key see everything. A validly signed token with another role (or none)
//!   and the publishable key are hidden from the objects, as on the real
//!   server with no policies: reads answer `NoSuchKey`, the bucket route
//!   `NoSuchBucket`, an upload or single delete `"403"` `AccessDenied`, a
//!   batch delete `200 []` with nothing deleted. [`mint_jwt`](SupabaseServer::mint_jwt)
//!   makes such tokens; [`demote_service_key`](SupabaseServer::demote_service_key)
//!   makes the service keys act like them from then on.
//! - Routes that do not exist get the web framework's 404 (numeric `statusCode`).
//! - Upload without `x-upsert: true` over an existing object → `Duplicate`;
//!   `x-metadata` is base64 JSON; keys outside Storage's allowed characters
//!   → `InvalidKey`; batch delete takes 1 to 1000 names, skips missing ones
//!   and answers the rows it deleted (`name`, `bucket_id`, `id`, …).
//! - [`keep_from_delete`](SupabaseServer::keep_from_delete): a delete policy
//!   that keeps one object, which a batch delete then silently leaves out.
//!
//! Objects live in memory. Faults ([`Fault`]) can be queued for the next
//! requests, and every request is recorded with its headers and the status
//! answered. Like the S3 server, it runs on its own thread and runtime.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use coldsweep::config::{Secret, SupabaseConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Where the Storage API lives under the project URL.
const API: &str = "/storage/v1";
/// Storage's cap on one batch delete.
const MAX_DELETE_BATCH: usize = 1000;

/// A failure to answer the next request(s) with, before anything else.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fault {
    /// HTTP 429 with Storage's `SlowDown` body.
    RateLimited,
    /// HTTP 503 with a gateway's plain-text body.
    Unavailable,
    /// HTTP 400 wrapping Storage's `"statusCode":"503"` (`DatabaseReadOnly`).
    WrappedUnavailable,
    /// HTTP 400 `InvalidRequest` (`"statusCode":"400"`): permanent.
    BadRequest,
    /// HTTP 544 with Storage's `DatabaseTimeout` body, not wrapped in a 400.
    DatabaseTimeout,
    /// Answer normally, after this pause.
    Stall(Duration),
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub(crate) method: Method,
    /// Path as sent (still percent-encoded).
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    /// HTTP status answered.
    pub(crate) status: StatusCode,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Stored {
    id: String,
    body: Bytes,
    content_type: String,
    cache_control: String,
    user_metadata: Option<Value>,
    etag: String,
    at: String,
}

#[derive(Default)]
struct State {
    buckets: BTreeMap<String, BTreeMap<String, Stored>>,
    faults: VecDeque<Fault>,
    requests: Vec<Recorded>,
    real_404: bool,
    /// The service keys act as `authenticated` (see `demote_service_key`).
    demoted: bool,
    /// Objects Row Level Security keeps from being deleted (see `keep_from_delete`).
    undeletable: std::collections::BTreeSet<(String, String)>,
}

struct Keys {
    /// Signs and checks JWTs (the project's JWT secret).
    jwt_secret: String,
    service_role: String,
    secret: String,
    publishable: String,
}

impl Keys {
    /// A JWT with `claims`, signed with this project's secret.
    fn mint(&self, claims: &Value) -> String {
        let part = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let signed = format!(
            "{}.{}",
            part(r#"{"alg":"HS256","typ":"JWT"}"#),
            part(&claims.to_string())
        );
        let signature = self.signature(&signed);
        format!("{signed}.{signature}")
    }

    /// Not HMAC, but only a holder of `jwt_secret` can make it, which is all
    /// the tests need of a signature.
    fn signature(&self, signed: &str) -> String {
        let digest = Sha256::digest(format!("{}.{signed}", self.jwt_secret));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    }

    /// The claims of a JWT signed with this project's secret.
    fn verify(&self, token: &str) -> Option<serde_json::Map<String, Value>> {
        let (signed, signature) = token.rsplit_once('.')?;
        let (_, payload) = signed.split_once('.')?;
        if signature != self.signature(signed) {
            return None;
        }
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        match serde_json::from_slice(&json).ok()? {
            Value::Object(claims) => Some(claims),
            _ => None,
        }
    }
}

/// A running fake Supabase Storage; stopped on drop.
pub(crate) struct SupabaseServer {
    /// Project URL, `http://127.0.0.1:<port>` (the API is under `/storage/v1`).
    pub(crate) url: String,
    /// A legacy `service_role` key (a JWT with that role; the signature is
    /// not checked, the value is).
    pub(crate) service_role_key: String,
    /// A new-style secret key, `sb_secret_…`.
    pub(crate) secret_key: String,
    /// The publishable key, `sb_publishable_…`.
    pub(crate) publishable_key: String,
    keys: Arc<Keys>,
    state: Arc<Mutex<State>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SupabaseServer {
    /// Start a server on a free port of 127.0.0.1 with fresh keys and no buckets.
    pub(crate) async fn start() -> SupabaseServer {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut keys = Keys {
            jwt_secret: uuid::Uuid::new_v4().simple().to_string(),
            service_role: String::new(),
            secret: format!("sb_secret_{unique}"),
            publishable: format!("sb_publishable_{unique}"),
        };
        keys.service_role = keys.mint(&json!({"iss": "supabase", "role": "service_role"}));
        let keys = Arc::new(keys);
        let state = Arc::new(Mutex::new(State::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0 for the Supabase test server");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel();
        let server_state = state.clone();
        let server_keys = keys.clone();
        let thread = std::thread::Builder::new()
            .name("supabase-test-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime for the Supabase test server");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    serve(listener, server_state, server_keys, stopped).await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn the Supabase test server thread");
        SupabaseServer {
            url,
            service_role_key: keys.service_role.clone(),
            secret_key: keys.secret.clone(),
            publishable_key: keys.publishable.clone(),
            keys,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Create (private) bucket `name`.
    pub(crate) fn create_bucket(&self, name: &str) {
        self.state().buckets.entry(name.to_owned()).or_default();
    }

    /// Settings with the legacy `service_role` key and the publishable key.
    pub(crate) fn config(&self) -> SupabaseConfig {
        self.config_with(&self.service_role_key, Some(&self.publishable_key))
    }

    /// Settings with these keys.
    pub(crate) fn config_with(&self, secret: &str, publishable: Option<&str>) -> SupabaseConfig {
        SupabaseConfig {
            url: self.url.clone(),
            secret_key: Secret::new(secret),
            publishable_key: publishable.map(Secret::new),
        }
    }

    /// Answer the next `times` requests with `fault`.
    pub(crate) fn inject(&self, fault: Fault, times: usize) {
        self.state()
            .faults
            .extend(std::iter::repeat_n(fault, times));
    }

    /// A JWT validly signed for this project with `role` as its role claim
    /// (none when `None`): `authenticated` is what a signed-in user's token
    /// carries. Any role but `service_role` is hidden from the objects.
    pub(crate) fn mint_jwt(&self, role: Option<&str>) -> String {
        let mut claims = json!({"iss": "supabase", "sub": uuid::Uuid::new_v4().to_string()});
        if let Some(role) = role {
            claims["role"] = json!(role);
        }
        self.keys.mint(&claims)
    }

    /// A JWT validly signed for this project with exactly `claims` (`exp`
    /// is checked, in seconds since 1970).
    pub(crate) fn mint_jwt_claims(&self, claims: &Value) -> String {
        self.keys.mint(claims)
    }

    /// From now on the `service_role` key and the `sb_secret_…` key act like
    /// an `authenticated` token: hidden from every object and bucket, as a
    /// key that lost its privilege (or was never the service key) would be.
    pub(crate) fn demote_service_key(&self) {
        self.state().demoted = true;
    }

    /// From now on a delete policy of Row Level Security keeps `bucket/key`
    /// from being deleted, while reads still see it: as for a key whose
    /// role may read every object but delete only some. Storage answers
    /// a single `DELETE` of it `"403"` `AccessDenied` (it finds the object
    /// as superuser, then its RLS-bound `DELETE` removes no row) and leaves
    /// it out of a batch delete's answer, deleting the others.
    pub(crate) fn keep_from_delete(&self, bucket: &str, key: &str) {
        self.state()
            .undeletable
            .insert((bucket.to_owned(), key.to_owned()));
    }

    /// Undo [`demote_service_key`](SupabaseServer::demote_service_key).
    pub(crate) fn restore_service_key(&self) {
        self.state().demoted = false;
    }

    /// Answer "object/bucket not found" with a real 404 instead of the usual 400.
    pub(crate) fn answer_missing_with_404(&self, on: bool) {
        self.state().real_404 = on;
    }

    /// Every request so far.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Forget the requests so far.
    pub(crate) fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// The stored bytes of `bucket/key`, if any.
    pub(crate) fn object(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.state()
            .buckets
            .get(bucket)
            .and_then(|b| b.get(key))
            .map(|o| o.body.clone())
    }

    /// Number of objects in `bucket`.
    pub(crate) fn object_count(&self, bucket: &str) -> usize {
        self.state().buckets.get(bucket).map_or(0, BTreeMap::len)
    }

    /// Store `body` at `bucket/key` directly (no request); the bucket must exist.
    pub(crate) fn seed(&self, bucket: &str, key: &str, body: &[u8]) {
        let mut state = self.state();
        let bucket = state
            .buckets
            .get_mut(bucket)
            .unwrap_or_else(|| panic!("seed: no bucket {bucket}"));
        bucket.insert(
            key.to_owned(),
            stored(
                Bytes::copy_from_slice(body),
                DEFAULT_TYPE.into(),
                "no-cache".into(),
                None,
            ),
        );
    }
}

impl Drop for SupabaseServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    keys: Arc<Keys>,
    mut stopped: oneshot::Receiver<()>,
) {
    let http = ConnBuilder::new(TokioExecutor::new());
    while let Some(socket) = super::accept(&listener, &mut stopped, "Supabase").await {
        let state = state.clone();
        let keys = keys.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let state = state.clone();
            let keys = keys.clone();
            async move { Ok::<_, Infallible>(answer(&state, &keys, request).await) }
        });
        let conn = http
            .serve_connection(TokioIo::new(socket), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

type Answer = Response<Full<Bytes>>;

const DEFAULT_TYPE: &str = "application/octet-stream";

/// Handle one request and record it with the status answered.
async fn answer(state: &Mutex<State>, keys: &Keys, request: Request<Incoming>) -> Answer {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let fault = lock(state).faults.pop_front();
    let response = match fault {
        Some(Fault::Stall(pause)) => {
            tokio::time::sleep(pause).await;
            route(state, keys, &parts, body)
        }
        Some(fault) => fault_answer(fault),
        None => route(state, keys, &parts, body),
    };
    lock(state).requests.push(Recorded {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        status: response.status(),
    });
    response
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn fault_answer(fault: Fault) -> Answer {
    match fault {
        Fault::RateLimited => json_answer(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"statusCode": "429", "code": "SlowDown", "error": "too_many_connections",
                    "message": "Too many connections issued to the database"}),
        ),
        Fault::Unavailable => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from_static(
                b"upstream connect error or disconnect/reset before headers",
            )))
            .expect("response"),
        Fault::WrappedUnavailable => json_answer(
            StatusCode::BAD_REQUEST,
            &json!({"statusCode": "503", "code": "DatabaseReadOnly", "error": "DatabaseReadOnly",
                    "message": "The database is currently in read-only mode. Please try again later."}),
        ),
        Fault::BadRequest => json_answer(
            StatusCode::BAD_REQUEST,
            &json!({"statusCode": "400", "code": "InvalidRequest", "error": "InvalidRequest",
                    "message": "Invalid request"}),
        ),
        Fault::DatabaseTimeout => json_answer(
            StatusCode::from_u16(544).expect("544 is a valid status"),
            &json!({"statusCode": "544", "code": "DatabaseTimeout", "error": "DatabaseTimeout",
                    "message": "Database query timeout"}),
        ),
        Fault::Stall(_) => unreachable!("stalls answer normally"),
    }
}

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

/// Storage's error rendering: the status as a string in the body, HTTP 400
/// unless it is 500 (or a not-found in "real 404" mode).
fn storage_error(real_404: bool, status: u16, code: &str, error: &str, message: &str) -> Answer {
    let http = match status {
        500 => StatusCode::INTERNAL_SERVER_ERROR,
        404 if real_404 => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    json_answer(
        http,
        &json!({"statusCode": status.to_string(), "code": code, "error": error, "message": message}),
    )
}

fn no_such_key(real_404: bool) -> Answer {
    storage_error(real_404, 404, "NoSuchKey", "not_found", "Object not found")
}

fn no_such_bucket(real_404: bool) -> Answer {
    storage_error(
        real_404,
        404,
        "NoSuchBucket",
        "Bucket not found",
        "Bucket not found",
    )
}

fn gateway_401(message: &str, hint: &str) -> Answer {
    json_answer(
        StatusCode::UNAUTHORIZED,
        &json!({"message": message, "hint": hint}),
    )
}

/// The web framework's answer for a route that does not exist.
fn route_not_found(method: &Method, path: &str) -> Answer {
    json_answer(
        StatusCode::NOT_FOUND,
        &json!({"message": format!("Route {method}:{path} not found"), "error": "Not Found", "statusCode": 404}),
    )
}

/// Who a request acts as.
enum Caller {
    ServiceRole,
    /// A valid token that Row Level Security hides the objects from
    /// (`authenticated`, `anon`, no role).
    Restricted,
    /// No `Authorization` header.
    NoToken,
    /// An invalid token (what Storage says about it).
    Invalid(&'static str),
    /// Stopped by the gateway, with its answer.
    Refused(Answer),
}

/// The gateway's checks, then the token.
fn caller(keys: &Keys, demoted: bool, headers: &HeaderMap) -> Caller {
    let Some(apikey) = headers.get("apikey").and_then(|v| v.to_str().ok()) else {
        return Caller::Refused(gateway_401(
            "No API key found in request",
            "No `apikey` request header or url param was found.",
        ));
    };
    if ![&keys.service_role, &keys.secret, &keys.publishable]
        .iter()
        .any(|k| k.as_str() == apikey)
    {
        return Caller::Refused(gateway_401(
            "Invalid API key",
            "Double check your Supabase `anon` or `service_role` API key.",
        ));
    }
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        return Caller::NoToken;
    };
    let bearer = authorization
        .to_str()
        .ok()
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| v[7..].trim())
        })
        .unwrap_or("");
    if bearer.starts_with("sb_") && bearer != apikey {
        return Caller::Refused(gateway_401(
            "Invalid API key",
            "An sb_ key in the Authorization header must equal the apikey header.",
        ));
    }
    if bearer.is_empty() {
        return Caller::Invalid("jwt must be provided");
    }
    let service = |is_service: bool| {
        if is_service && !demoted {
            Caller::ServiceRole
        } else {
            Caller::Restricted
        }
    };
    if bearer == keys.secret || bearer == keys.publishable {
        return service(bearer == keys.secret);
    }
    let Some(claims) = keys.verify(bearer) else {
        return Caller::Invalid("invalid signature");
    };
    let now = chrono::Utc::now().timestamp();
    if claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_some_and(|exp| exp <= now)
    {
        return Caller::Invalid("\"exp\" claim timestamp check failed");
    }
    service(claims.get("role").and_then(Value::as_str) == Some("service_role"))
}

/// Which route, with its decoded bucket and key.
enum Route {
    Bucket(String),
    Upload(String, String),
    Download {
        bucket: String,
        key: String,
        lenient: bool,
    },
    Info {
        bucket: String,
        key: String,
        lenient: bool,
    },
    Delete(String, String),
    DeleteMany(String),
}

fn decode(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_route(method: &Method, path: &str) -> Option<Route> {
    let rest = path.strip_prefix(API)?;
    if let Some(id) = rest.strip_prefix("/bucket/") {
        return (*method == Method::GET && !id.is_empty() && !id.contains('/'))
            .then(|| Route::Bucket(decode(id)));
    }
    let rest = rest.strip_prefix("/object/")?;
    let split = |rest: &str| -> Option<(String, String)> {
        let (bucket, key) = rest.split_once('/')?;
        (!bucket.is_empty() && !key.is_empty()).then(|| (decode(bucket), decode(key)))
    };
    match *method {
        Method::GET => {
            if let Some(r) = rest.strip_prefix("info/authenticated/") {
                let (bucket, key) = split(r)?;
                Some(Route::Info {
                    bucket,
                    key,
                    lenient: false,
                })
            } else if let Some(r) = rest.strip_prefix("info/") {
                let (bucket, key) = split(r)?;
                Some(Route::Info {
                    bucket,
                    key,
                    lenient: true,
                })
            } else if let Some(r) = rest.strip_prefix("authenticated/") {
                let (bucket, key) = split(r)?;
                Some(Route::Download {
                    bucket,
                    key,
                    lenient: false,
                })
            } else {
                let (bucket, key) = split(rest)?;
                Some(Route::Download {
                    bucket,
                    key,
                    lenient: true,
                })
            }
        }
        Method::POST => split(rest).map(|(b, k)| Route::Upload(b, k)),
        Method::DELETE => match split(rest) {
            Some((bucket, key)) => Some(Route::Delete(bucket, key)),
            None => {
                (!rest.is_empty() && !rest.contains('/')).then(|| Route::DeleteMany(decode(rest)))
            }
        },
        _ => None,
    }
}

/// Storage's allowed key characters (`isValidKey` in `src/storage/limits.ts`).
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_/!-.*'() &$@=;:+,?".contains(c))
}

fn stored(
    body: Bytes,
    content_type: String,
    cache_control: String,
    user_metadata: Option<Value>,
) -> Stored {
    Stored {
        id: uuid::Uuid::new_v4().to_string(),
        etag: format!("\"{}\"", hex::encode(Md5::digest(&body))),
        body,
        content_type,
        cache_control,
        user_metadata,
        at: chrono::Utc::now().to_rfc3339(),
    }
}

fn route(
    state: &Mutex<State>,
    keys: &Keys,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Answer {
    let path = parts.uri.path();
    let Some(route) = parse_route(&parts.method, path) else {
        return route_not_found(&parts.method, path);
    };
    let mut state = lock(state);
    let real_404 = state.real_404;
    let caller = caller(keys, state.demoted, &parts.headers);
    let lenient = matches!(
        route,
        Route::Download { lenient: true, .. } | Route::Info { lenient: true, .. }
    );
    match caller {
        Caller::ServiceRole => {}
        Caller::Refused(answer) => return answer,
        Caller::NoToken => {
            return storage_error(
                real_404,
                400,
                "InvalidRequest",
                "InvalidRequest",
                "headers must have required property 'authorization'",
            );
        }
        Caller::Restricted => return hidden_by_rls(&route, real_404),
        // The lenient routes carry on as the public, who see no private bucket.
        Caller::Invalid(_) if lenient => return no_such_bucket(real_404),
        Caller::Invalid(why) => {
            return storage_error(real_404, 403, "AccessDenied", "Unauthorized", why);
        }
    }
    match route {
        Route::Bucket(id) => match state.buckets.get(&id) {
            Some(_) => json_answer(
                StatusCode::OK,
                &json!({"id": id, "name": id, "owner": "", "public": false, "type": "STANDARD",
                        "file_size_limit": null, "allowed_mime_types": null,
                        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}),
            ),
            None => no_such_bucket(real_404),
        },
        Route::Upload(bucket, key) => {
            if !valid_key(&key) {
                return invalid_key(&key);
            }
            let headers = &parts.headers;
            let text = |name: header::HeaderName| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let upsert = headers.get("x-upsert").is_some_and(|v| v == "true");
            let user_metadata = headers
                .get("x-metadata")
                .and_then(|v| {
                    base64::engine::general_purpose::STANDARD
                        .decode(v.as_bytes())
                        .ok()
                })
                .and_then(|json| serde_json::from_slice::<Value>(&json).ok());
            let Some(objects) = state.buckets.get_mut(&bucket) else {
                return no_such_bucket(real_404);
            };
            if objects.contains_key(&key) && !upsert {
                return storage_error(
                    real_404,
                    409,
                    "KeyAlreadyExists",
                    "Duplicate",
                    "The resource already exists",
                );
            }
            let object = stored(
                body,
                text(header::CONTENT_TYPE).unwrap_or_else(|| DEFAULT_TYPE.into()),
                text(header::CACHE_CONTROL).unwrap_or_else(|| "no-cache".into()),
                user_metadata,
            );
            let id = object.id.clone();
            objects.insert(key.clone(), object);
            json_answer(
                StatusCode::OK,
                &json!({"Key": format!("{bucket}/{key}"), "Id": id}),
            )
        }
        Route::Download { bucket, key, .. } => {
            let Some(objects) = state.buckets.get(&bucket) else {
                return no_such_bucket(real_404);
            };
            let Some(object) = objects.get(&key) else {
                return no_such_key(real_404);
            };
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, object.content_type.as_str())
                .header(header::CACHE_CONTROL, object.cache_control.as_str())
                .header(header::ETAG, object.etag.as_str())
                .header(header::CONTENT_LENGTH, object.body.len())
                .body(Full::new(object.body.clone()))
                .expect("response")
        }
        Route::Info { bucket, key, .. } => {
            let Some(objects) = state.buckets.get(&bucket) else {
                return no_such_bucket(real_404);
            };
            let Some(object) = objects.get(&key) else {
                return no_such_key(real_404);
            };
            let mut answer = json_answer(
                StatusCode::OK,
                &json!({
                    "id": object.id, "name": key, "version": object.id, "bucket_id": bucket,
                    "size": object.body.len(), "content_type": object.content_type,
                    "cache_control": object.cache_control, "etag": object.etag,
                    "metadata": object.user_metadata, "last_modified": object.at,
                    "created_at": object.at,
                }),
            );
            if let Ok(etag) = HeaderValue::from_str(&object.etag) {
                answer.headers_mut().insert(header::ETAG, etag);
            }
            answer
        }
        Route::Delete(bucket, key) => {
            let present = state
                .buckets
                .get(&bucket)
                .is_some_and(|b| b.contains_key(&key));
            if present && state.undeletable.contains(&(bucket.clone(), key.clone())) {
                return storage_error(
                    real_404,
                    403,
                    "AccessDenied",
                    "Unauthorized",
                    "Access denied",
                );
            }
            match state.buckets.get_mut(&bucket).and_then(|b| b.remove(&key)) {
                Some(_) => json_answer(StatusCode::OK, &json!({"message": "Successfully deleted"})),
                None => no_such_key(real_404),
            }
        }
        Route::DeleteMany(bucket) => {
            let prefixes = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("prefixes").cloned())
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok());
            let Some(prefixes) = prefixes.filter(|p| !p.is_empty()) else {
                return json_answer(
                    StatusCode::BAD_REQUEST,
                    &json!({"statusCode": 400, "code": "FST_ERR_VALIDATION", "error": "Bad Request",
                            "message": "body must have required property 'prefixes' with at least 1 item"}),
                );
            };
            if prefixes.len() > MAX_DELETE_BATCH {
                return storage_error(
                    real_404,
                    400,
                    "InvalidRequest",
                    "InvalidRequest",
                    &format!(
                        "Bulk object requests are limited to {MAX_DELETE_BATCH} objects per request."
                    ),
                );
            }
            let State {
                buckets,
                undeletable,
                ..
            } = &mut *state;
            let mut deleted = Vec::new();
            if let Some(objects) = buckets.get_mut(&bucket) {
                for name in prefixes {
                    if undeletable.contains(&(bucket.clone(), name.clone())) {
                        continue;
                    }
                    if let Some(object) = objects.remove(&name) {
                        deleted.push(json!({"name": name, "bucket_id": bucket, "id": object.id}));
                    }
                }
            }
            json_answer(StatusCode::OK, &Value::Array(deleted))
        }
    }
}

/// What a token without the service role gets: Row Level Security (no
/// policies) hides every bucket and object, so reads look like "missing"
/// and writes are refused, except the batch delete, which deletes nothing.
fn hidden_by_rls(route: &Route, real_404: bool) -> Answer {
    match route {
        Route::Bucket(_) => no_such_bucket(real_404),
        Route::Download { .. } | Route::Info { .. } => no_such_key(real_404),
        Route::Upload(..) => storage_error(
            real_404,
            403,
            "AccessDenied",
            "Unauthorized",
            "new row violates row-level security policy",
        ),
        Route::Delete(..) => storage_error(
            real_404,
            403,
            "AccessDenied",
            "Unauthorized",
            "Access denied",
        ),
        Route::DeleteMany(_) => json_answer(StatusCode::OK, &json!([])),
    }
}

fn invalid_key(key: &str) -> Answer {
    storage_error(
        false,
        400,
        "InvalidKey",
        "InvalidKey",
        &format!("Invalid key: {key}"),
    )
}
