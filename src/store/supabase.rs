//! Supabase Storage through its REST API: the hot store of the system
//! coldsweep comes from.
//!
//! A thin reqwest client for `{SUPABASE_URL}/storage/v1` (neither OpenDAL nor
//! `object_store` speaks this API). What each operation sends:
//!
//! | operation | request |
//! |---|---|
//! | [`get`](Store::get) | `GET /object/authenticated/{bucket}/{key}` |
//! | [`head`](Store::head) | `GET /object/info/authenticated/{bucket}/{key}` → JSON `size`, `content_type`, `etag`, `metadata` |
//! | [`put`](Store::put) | `POST /object/{bucket}/{key}`, `x-upsert: true`, `content-type`, `x-metadata` (base64 of the JSON user metadata) |
//! | [`delete`](Store::delete) | `DELETE /object/{bucket}/{key}` |
//! | [`delete_many`](Store::delete_many) | `DELETE /object/{bucket}` with `{"prefixes": [keys…]}`, at most [`MAX_DELETE_BATCH`] a request; a key not in the answer then by a single `DELETE` |
//! | [`ping`](Store::ping) | `GET /bucket/{bucket}` |
//!
//! Reads use the `authenticated` routes on purpose: the plain
//! `GET /object/{bucket}/{key}` and `/object/info/{bucket}/{key}` accept an
//! invalid token and carry on as the anonymous role, so a wrong key would
//! read as "Bucket not found" — and to the archiver a missing hot object
//! can mean a lost blob. The `authenticated` routes refuse the key instead.
//!
//! Every request carries `apikey` and `Authorization: Bearer <secret key>`.
//! `apikey` is the publishable (or legacy `anon`) key when one is configured,
//! else the secret key; with a new-style `sb_secret_…` key it is always the
//! secret key, because Supabase accepts such a key as a bearer only when it
//! equals the `apikey` header. Any other key in the secret's place (a
//! publishable or `anon` key, a user's `authenticated` token, a JWT without
//! a role, an opaque string) is refused at construction: Storage hides
//! objects from such a key by Row Level Security and answers `NoSuchKey`
//! and `NoSuchBucket`, so every blob would read as missing.
//!
//! Errors are classified in one place, `kind_of`: Supabase Storage answers
//! most failures with HTTP 400 and the real status as a *string* in the JSON
//! body (`{"statusCode":"404","code":"NoSuchKey","error":"not_found",…}`),
//! newer versions sometimes with the real status; gateways in front of it
//! answer with plain statuses. Temporary failures (5xx, 429, database
//! timeouts, connection errors and timeouts) are retried with jittered backoff.
//!
//! What it keeps: the bytes, their size, `Content-Type` and user metadata.
//! It keeps **no** `Content-Encoding` (the upload API has no field for it, so
//! the header is not sent and `head` reports `None`), and its ETag is
//! whatever Supabase reports (an MD5 for small uploads, not promised).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::opendal::check_bucket;
use super::retry::Retry;
use super::settings::Secret;
use super::{ByteStream, Location, ObjectMeta, PutOptions, PutResult, Store};
use crate::error::{Error, ErrorKind, Result};

mod settings;

pub(crate) use settings::URL_EXPECTED;
pub use settings::{SupabaseConfig, SupabaseNames, SupabaseSettings};

/// Provider name recorded in the catalog and shown in messages.
pub const PROVIDER: &str = "supabase";

/// Most keys one batch-delete request carries (Supabase's own limit).
pub const MAX_DELETE_BATCH: usize = 1000;

/// Limit for establishing a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next piece of a response: notices a stalled connection.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for one whole request, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Temporary failures are retried with jittered backoff, like the S3 store.
const RETRY: Retry = Retry {
    times: 4,
    min_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(5),
};
/// What Supabase itself assumes when an upload names no type.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Longest piece of a server's message kept in ours.
const MAX_SERVER_TEXT: usize = 200;

/// Characters left as they are in a path segment: RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A Supabase Storage project, serving any of its buckets.
pub struct SupabaseStore {
    /// `{SUPABASE_URL}/storage/v1`.
    storage_url: String,
    apikey: HeaderValue,
    authorization: HeaderValue,
    /// The key values, only to scrub them from server messages.
    secrets: Vec<String>,
    client: reqwest::Client,
    retry: Retry,
    request_timeout: Duration,
}

impl SupabaseStore {
    /// A store for the project `config` describes: [`SupabaseConfig::build`]
    /// and [`SupabaseStore::with_settings`].
    ///
    /// Fails with [`ErrorKind::InvalidInput`] when a value is unusable (see
    /// [`SupabaseConfig::build`]). No request is made.
    pub fn new(config: &SupabaseConfig) -> Result<SupabaseStore> {
        SupabaseStore::with_settings(&config.build(&SupabaseNames::PLAIN)?)
    }

    /// A store for the project checked `settings` describe. No request is made.
    pub fn with_settings(settings: &SupabaseSettings) -> Result<SupabaseStore> {
        let invalid =
            |why: String| Error::new(ErrorKind::InvalidInput, format!("{PROVIDER}: {why}"));
        let storage_url = format!("{}/storage/v1", settings.url);
        let secret = settings.secret_key.expose();
        let secret_kind = key_kind(secret);
        let publishable = settings.publishable_key.as_ref().map(Secret::expose);
        let apikey = match publishable {
            // Supabase takes an `sb_` key as a bearer only when it equals `apikey`.
            Some(_) if matches!(secret_kind, KeyKind::Secret) => {
                tracing::warn!(
                    "the publishable key is not used: with an sb_secret_ key Supabase needs \
                     the apikey header to carry the secret key itself"
                );
                secret
            }
            Some(publishable) => publishable,
            None => secret,
        };
        let header = |value: &str, what: &str| {
            let mut header = HeaderValue::from_str(value).map_err(|_| {
                invalid(format!(
                    "the {what} contains characters not allowed in an HTTP header (value not shown)"
                ))
            })?;
            header.set_sensitive(true);
            Ok::<_, Error>(header)
        };
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(IO_TIMEOUT)
            // Never follow a redirect: `apikey` would travel to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            // The stored bytes, never a decoded body.
            .no_gzip()
            .user_agent(concat!("coldsweep/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!("{PROVIDER}: HTTP client setup failed"),
                )
                .with_source(e)
            })?;
        Ok(SupabaseStore {
            storage_url,
            apikey: header(
                apikey,
                if apikey == secret {
                    "secret key"
                } else {
                    "publishable key"
                },
            )?,
            authorization: header(&format!("Bearer {secret}"), "secret key")?,
            secrets: [Some(secret), publishable]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect(),
            client,
            retry: RETRY,
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// Give every request at most `timeout` (default two minutes), body included.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Retry a temporary failure `times` times, waiting from about
    /// `min_delay` (doubling, with jitter) up to `max_delay` between tries.
    /// The default is 4 times, 200 ms to 5 s.
    pub fn with_retries(mut self, times: u32, min_delay: Duration, max_delay: Duration) -> Self {
        self.retry = Retry {
            times,
            min_delay,
            max_delay,
        };
        self
    }

    /// One batch delete of `keys` (at most [`MAX_DELETE_BATCH`]) from
    /// `bucket`: the names Storage reports deleted. A key refused by Row
    /// Level Security or already absent is simply not among them; a missing
    /// bucket deletes nothing. `None` when the answer is not Storage's list.
    async fn delete_batch(&self, bucket: &str, keys: &[&str]) -> Result<Option<HashSet<String>>> {
        #[derive(serde::Serialize)]
        struct Prefixes<'a> {
            /// Exact object names, despite the field's name.
            prefixes: &'a [&'a str],
        }
        #[derive(Deserialize)]
        struct Deleted {
            name: String,
        }
        let url = format!("{}/object/{}", self.storage_url, encode(bucket));
        let what = format!("{PROVIDER}:{bucket}");
        let body = Bytes::from(
            serde_json::to_vec(&Prefixes { prefixes: keys }).map_err(|e| {
                Error::new(ErrorKind::Unexpected, format!("delete from {what}")).with_source(e)
            })?,
        );
        let answer = self
            .call("delete", &what, || {
                self.client
                    .delete(&url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await;
        match answer {
            Ok(answer) => Ok(serde_json::from_slice::<Vec<Deleted>>(&answer)
                .ok()
                .map(|gone| gone.into_iter().map(|d| d.name).collect())),
            // Older servers answer a missing bucket so.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Some(HashSet::new())),
            Err(e) => Err(e),
        }
    }

    /// `{storage}/object/{infix}{bucket}/{key}`, once the bucket is proven a plain name.
    fn object_url(&self, infix: &str, location: &Location) -> Result<String> {
        check_bucket(&location.bucket)?;
        let key = location
            .key
            .as_str()
            .split('/')
            .map(encode)
            .collect::<Vec<_>>()
            .join("/");
        Ok(format!(
            "{}/object/{infix}{}/{key}",
            self.storage_url,
            encode(&location.bucket)
        ))
    }

    /// Send the request `build` makes until it succeeds, fails for good or
    /// the retries run out; a success's whole body.
    async fn call(
        &self,
        doing: &str,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Bytes> {
        let build = &build;
        self.retry
            .run(doing, Error::is_retryable, || async move {
                let request = build().timeout(self.request_timeout);
                self.respond(request, doing, what)
                    .await?
                    .bytes()
                    .await
                    .map_err(|e| transport_error(e, doing, what))
            })
            .await
    }

    /// Send `request` once, with the keys: a success's response, its body
    /// not yet read, or the error the answer makes.
    async fn respond(
        &self,
        request: reqwest::RequestBuilder,
        doing: &str,
        what: &str,
    ) -> Result<reqwest::Response> {
        let response = request
            .header("apikey", self.apikey.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .send()
            .await
            .map_err(|e| transport_error(e, doing, what))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(e, doing, what))?;
        Err(classify(
            status,
            &body,
            &format!("{doing} {what}"),
            &self.secrets,
        ))
    }
}

impl fmt::Debug for SupabaseStore {
    // By hand: both keys stay out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupabaseStore")
            .field("storage_url", &self.storage_url)
            .field("apikey", &format_args!("***"))
            .field("authorization", &format_args!("Bearer ***"))
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for SupabaseStore {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn namespace(&self) -> Option<String> {
        Some(format!("supabase:{}", self.storage_url))
    }

    async fn ping(&self, bucket: &str) -> Result<()> {
        check_bucket(bucket)?;
        let url = format!("{}/bucket/{}", self.storage_url, encode(bucket));
        self.call("ping", &format!("{PROVIDER}:{bucket}"), || {
            self.client.get(&url)
        })
        .await
        .map(|_| ())
    }

    async fn put(
        &self,
        location: &Location,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutResult> {
        let url = self.object_url("", location)?;
        let what = format!("{PROVIDER}:{location}");
        let bad_header = |field: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("put {what}: the {field} is not a valid HTTP header value"),
            )
        };
        let content_type = options
            .content_type
            .as_deref()
            .unwrap_or(DEFAULT_CONTENT_TYPE);
        let content_type =
            HeaderValue::from_str(content_type).map_err(|_| bad_header("content type"))?;
        let metadata = if options.metadata.is_empty() {
            None
        } else {
            let json = serde_json::to_vec(&options.metadata).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("put {what}: user metadata"),
                )
                .with_source(e)
            })?;
            Some(
                HeaderValue::from_str(&BASE64.encode(json))
                    .map_err(|_| bad_header("user metadata"))?,
            )
        };
        self.call("put", &what, || {
            let request = self
                .client
                .post(&url)
                .header("x-upsert", "true")
                .header(CONTENT_TYPE, content_type.clone())
                .body(body.clone());
            match &metadata {
                Some(metadata) => request.header("x-metadata", metadata.clone()),
                None => request,
            }
        })
        .await
        // Storage's answer names the object, not its digest: no ETag to keep.
        .map(|_| PutResult::default())
    }

    async fn get(&self, location: &Location) -> Result<Bytes> {
        let url = self.object_url("authenticated/", location)?;
        self.call("get", &format!("{PROVIDER}:{location}"), || {
            self.client.get(&url)
        })
        .await
    }

    /// One GET, as [`get`](Store::get); the answer is retried until its
    /// status, the body then streams with no limit on the whole (a large
    /// blob takes its time) but one on each read (`IO_TIMEOUT`).
    async fn get_stream(&self, location: &Location) -> Result<(u64, ByteStream)> {
        let url = self.object_url("authenticated/", location)?;
        let what = format!("{PROVIDER}:{location}");
        let response = self
            .retry
            .run("get", Error::is_retryable, || {
                self.respond(self.client.get(&url), "get", &what)
            })
            .await?;
        let size = match response.content_length() {
            Some(size) => size,
            // A chunked answer: its size from the object's info.
            None => self.head(location).await?.size,
        };
        let body = response
            .bytes_stream()
            .map_err(move |e| transport_error(e, "get", &what))
            .boxed();
        Ok((size, body))
    }

    async fn head(&self, location: &Location) -> Result<ObjectMeta> {
        let url = self.object_url("info/authenticated/", location)?;
        let what = format!("{PROVIDER}:{location}");
        let answer = self.call("head", &what, || self.client.get(&url)).await?;
        object_meta(&answer).map_err(|why| {
            Error::new(
                ErrorKind::Unexpected,
                format!("head {what}: unexpected object info ({why})"),
            )
        })
    }

    async fn delete(&self, location: &Location) -> Result<()> {
        let url = self.object_url("", location)?;
        match self
            .call("delete", &format!("{PROVIDER}:{location}"), || {
                self.client.delete(&url)
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Batch deletes per bucket, [`MAX_DELETE_BATCH`] keys a request. Keys
    /// in Storage's answer are deleted. A key missing from it was absent
    /// or refused by Row Level Security, which the answer does not tell
    /// apart; one single `DELETE` decides: Storage finds the object as
    /// superuser and answers `NoSuchKey` when it is gone (`Ok`) or
    /// `AccessDenied` when the key may not delete it (`PermissionDenied`,
    /// naming the object). A `HEAD` could not decide: for a key that Row
    /// Level Security hides, it answers `NoSuchKey` for an object still there.
    /// A batch request that fails gives its error to each of its keys: the
    /// server deletes a batch in one transaction.
    async fn delete_many(&self, locations: &[Location]) -> Vec<Result<()>> {
        let mut results: Vec<Option<Result<()>>> = locations.iter().map(|_| None).collect();
        let mut by_bucket: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, location) in locations.iter().enumerate() {
            by_bucket.entry(&location.bucket).or_default().push(i);
        }
        let mut undecided = Vec::new();
        for (bucket, indexes) in by_bucket {
            if check_bucket(bucket).is_err() {
                // Refused again, per key, by the single delete.
                undecided.extend(indexes);
                continue;
            }
            for chunk in indexes.chunks(MAX_DELETE_BATCH) {
                let keys: Vec<&str> = chunk.iter().map(|&i| locations[i].key.as_str()).collect();
                match self.delete_batch(bucket, &keys).await {
                    Ok(Some(gone)) => {
                        for &i in chunk {
                            if gone.contains(locations[i].key.as_str()) {
                                results[i] = Some(Ok(()));
                            } else {
                                undecided.push(i);
                            }
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(
                            bucket,
                            keys = chunk.len(),
                            "batch delete answer is not a list of objects; deleting one by one"
                        );
                        undecided.extend_from_slice(chunk);
                    }
                    Err(e) => {
                        for &i in chunk {
                            let mut error = Error::new(
                                e.kind(),
                                format!("{} (in a batch): {}", locations[i], e.message()),
                            );
                            if e.is_retryable() {
                                error = error.set_retryable();
                            }
                            results[i] = Some(Err(error));
                        }
                    }
                }
            }
        }
        let singles: Vec<Location> = undecided.iter().map(|&i| locations[i].clone()).collect();
        let decided = super::delete_each(self, &singles).await;
        for (i, result) in undecided.into_iter().zip(decided) {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every location is decided"))
            .collect()
    }
}

/// One path segment, percent-encoded.
fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// The object info answer, as the store seam describes an object.
fn object_meta(answer: &[u8]) -> std::result::Result<ObjectMeta, String> {
    #[derive(Deserialize)]
    struct Info {
        size: Option<u64>,
        content_type: Option<String>,
        etag: Option<String>,
        metadata: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let info: Info = serde_json::from_slice(answer).map_err(|e| e.to_string())?;
    let size = info.size.ok_or("no size")?;
    Ok(ObjectMeta {
        size,
        etag: info
            .etag
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_owned())
            .filter(|e| !e.is_empty()),
        content_type: info.content_type,
        content_encoding: None,
        metadata: info
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect::<BTreeMap<_, _>>(),
    })
}

/// The parts of an error answer that decide its kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    /// `statusCode` as Supabase Storage writes it: a string. A number there
    /// comes from the web framework or a gateway (a route that does not
    /// exist, say), not from Storage.
    pub(crate) storage_status: Option<u16>,
    /// `code` (`NoSuchKey`, `AccessDenied`, …).
    pub(crate) code: Option<String>,
    /// `error`: the older code field (`not_found`, `Duplicate`, …).
    pub(crate) error: Option<String>,
    /// `message`: for people; never decides anything.
    pub(crate) message: Option<String>,
}

impl ErrorBody {
    pub(crate) fn parse(body: &[u8]) -> ErrorBody {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) else {
            return ErrorBody::default();
        };
        let text = |name: &str| map.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        ErrorBody {
            storage_status: map
                .get("statusCode")
                .and_then(|v| v.as_str())
                .and_then(|s| s.trim().parse::<u16>().ok())
                .filter(|s| (100..=599).contains(s)),
            code: text("code"),
            error: text("error"),
            message: text("message").or_else(|| text("msg")),
        }
    }
}

/// The kind of a failed request: the one place that decides it, from the
/// HTTP status, Storage's `statusCode` and its `code`/`error` fields, never
/// from message text.
///
/// - Storage's codes first: `NoSuchKey` and `not_found` are `NotFound`;
///   `NoSuchBucket` and (older servers) `Bucket not found` are
///   `BucketNotFound`, which says nothing about the objects; `AccessDenied`,
///   `InvalidJWT`, `Unauthorized` are `PermissionDenied`; database
///   timeouts, lock waits and `SlowDown` are `Transient`.
/// - Then Storage's own `statusCode` over the HTTP status it is wrapped in
///   (HTTP 400 with `"statusCode":"404"` is a 404). A database timeout comes
///   unwrapped as HTTP 544, which the 5xx rule makes `Transient` too.
/// - A 404 that does not come from Storage (a wrong `SUPABASE_URL`, a
///   proxy) is `Unexpected`, never `NotFound`: it proves nothing about the object.
pub(crate) fn kind_of(http: StatusCode, body: &ErrorBody) -> ErrorKind {
    let by_code = [body.code.as_deref(), body.error.as_deref()]
        .into_iter()
        .flatten()
        .find_map(|code| match code {
            "NoSuchBucket" | "Bucket not found" => Some(ErrorKind::BucketNotFound),
            "NoSuchKey" | "not_found" => Some(ErrorKind::NotFound),
            "AccessDenied" | "InvalidJWT" | "Unauthorized" => Some(ErrorKind::PermissionDenied),
            "SlowDown"
            | "too_many_connections"
            | "DatabaseTimeout"
            | "DatabaseConnectionLimit"
            | "LockTimeout"
            | "acquiring_lock_timeout"
            | "ResourceLocked" => Some(ErrorKind::Transient),
            _ => None,
        });
    if let Some(kind) = by_code {
        return kind;
    }
    match body.storage_status.unwrap_or(http.as_u16()) {
        404 if body.storage_status.is_some() => ErrorKind::NotFound,
        401 | 403 => ErrorKind::PermissionDenied,
        408 | 423 | 425 | 429 | 500..=599 => ErrorKind::Transient,
        400 | 411 | 413 | 414 | 415 | 422 | 431 => ErrorKind::InvalidInput,
        _ => ErrorKind::Unexpected,
    }
}

/// Our error for a failed answer: its kind from [`kind_of`], a message with
/// the status, Storage's code and (shortened) message, any key scrubbed out.
pub(crate) fn classify(http: StatusCode, body: &[u8], doing: &str, secrets: &[String]) -> Error {
    let parsed = ErrorBody::parse(body);
    let kind = kind_of(http, &parsed);
    let mut message = format!("{doing}: HTTP {}", http.as_u16());
    if let Some(status) = parsed.storage_status {
        message.push_str(&format!(", statusCode {status}"));
    }
    for code in [&parsed.code, &parsed.error].into_iter().flatten() {
        if !message.ends_with(&format!(" {code}")) {
            message.push_str(&format!(" {}", server_text(code, secrets)));
        }
    }
    if let Some(text) = &parsed.message {
        message.push_str(&format!(": {}", server_text(text, secrets)));
    }
    if http == StatusCode::NOT_FOUND
        && !matches!(kind, ErrorKind::NotFound | ErrorKind::BucketNotFound)
    {
        message.push_str(" (not an answer from Supabase Storage; check SUPABASE_URL)");
    } else if http.is_redirection() {
        message.push_str(" (redirects are not followed; check SUPABASE_URL)");
    }
    Error::new(kind, message)
}

/// A server's text for our message: one line, shortened, keys replaced by `***`.
fn server_text(text: &str, secrets: &[String]) -> String {
    let mut text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret.as_str(), "***");
    }
    if text.chars().count() > MAX_SERVER_TEXT {
        text = text.chars().take(MAX_SERVER_TEXT).collect::<String>() + "…";
    }
    text
}

/// Our error for a request that got no complete answer.
fn transport_error(err: reqwest::Error, doing: &str, what: &str) -> Error {
    let (kind, why) = if err.is_builder() {
        (ErrorKind::InvalidInput, "the request could not be built")
    } else if err.is_timeout() {
        (ErrorKind::Transient, "timed out")
    } else if err.is_connect() {
        (ErrorKind::Transient, "could not connect")
    } else if err.is_redirect() {
        (ErrorKind::Unexpected, "redirected")
    } else {
        (ErrorKind::Transient, "the connection failed")
    };
    Error::new(kind, format!("{doing} {what}: {why}")).with_source(err)
}

/// What a Supabase API key is, by its documented format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// `sb_publishable_…`.
    Publishable,
    /// `sb_secret_…`.
    Secret,
    /// A JWT (legacy keys, user tokens) with its `role` claim, if any.
    Jwt(Option<String>),
    /// Neither a JWT nor an `sb_` key.
    Opaque,
}

impl KeyKind {
    /// A key Storage runs as `service_role`, past Row Level Security.
    /// Every other key sees only what the policies show it, and Storage
    /// answers "not found" for the rest, so a blob would look missing.
    pub(crate) fn is_service(&self) -> bool {
        match self {
            KeyKind::Secret => true,
            KeyKind::Jwt(role) => role.as_deref() == Some("service_role"),
            KeyKind::Publishable | KeyKind::Opaque => false,
        }
    }

    /// What the key is, for a message: its kind and role, never its value.
    pub(crate) fn describe(&self) -> String {
        match self {
            KeyKind::Publishable => "a publishable key (sb_publishable_…, role anon)".into(),
            KeyKind::Secret => "a secret key (sb_secret_…)".into(),
            KeyKind::Jwt(None) => "a JWT with no role claim".into(),
            // A role is a short identifier; anything else is not echoed.
            KeyKind::Jwt(Some(role))
                if role.len() <= 40
                    && role
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                format!("a JWT with role {role:?}")
            }
            KeyKind::Jwt(Some(_)) => "a JWT with an unusual role claim (not shown)".into(),
            KeyKind::Opaque => "neither a JWT nor an sb_secret_ key".into(),
        }
    }
}

/// What is wrong with `key` as the key coldsweep acts with, or `None`
/// when it is a `service_role` JWT or an `sb_secret_…` key. Names the
/// setting and the role found, never the key.
pub(crate) fn refuse_unless_service(key: &str) -> Option<String> {
    let kind = key_kind(key);
    (!kind.is_service()).then(|| {
        format!(
            "expected the service_role key (a JWT with role \"service_role\") or a secret key \
             (sb_secret_…) in SUPABASE_SERVICE_ROLE_KEY, got {} (value not shown); Row Level \
             Security hides objects and buckets from any other key, so every blob would look \
             missing",
            kind.describe()
        )
    })
}

/// The kind of `key`; a JWT's claims are read, not verified.
pub(crate) fn key_kind(key: &str) -> KeyKind {
    if key.starts_with("sb_publishable_") {
        return KeyKind::Publishable;
    }
    if key.starts_with("sb_secret_") {
        return KeyKind::Secret;
    }
    let mut parts = key.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return KeyKind::Opaque;
    };
    let Some(claims) = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .filter(serde_json::Value::is_object)
    else {
        return KeyKind::Opaque;
    };
    let role = match claims.get("role") {
        Some(serde_json::Value::String(role)) => Some(role.clone()),
        None | Some(serde_json::Value::Null) => None,
        Some(other) => Some(other.to_string()),
    };
    KeyKind::Jwt(role)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ObjectKey;

    fn jwt(role: &str) -> String {
        jwt_claims(&format!(r#"{{"iss":"supabase","role":"{role}"}}"#))
    }

    fn jwt_claims(claims: &str) -> String {
        let part = |json: &str| URL_SAFE_NO_PAD.encode(json);
        format!(
            "{}.{}.c2lnbmF0dXJl",
            part(r#"{"alg":"HS256","typ":"JWT"}"#),
            part(claims)
        )
    }

    fn config(secret: &str, publishable: Option<&str>) -> SupabaseConfig {
        SupabaseConfig {
            url: "https://abcd.supabase.co/".into(),
            secret_key: Secret::new(secret),
            publishable_key: publishable.map(Secret::new),
        }
    }

    #[test]
    fn kinds_follow_status_storage_status_and_codes() {
        let cases: &[(u16, &str, ErrorKind)] = &[
            // The 400-for-missing quirk, old and new shapes, and the real 404.
            (
                400,
                r#"{"statusCode":"404","error":"not_found","message":"Object not found"}"#,
                ErrorKind::NotFound,
            ),
            (
                400,
                r#"{"statusCode":"404","code":"NoSuchKey","error":"not_found","message":"Object not found"}"#,
                ErrorKind::NotFound,
            ),
            (
                404,
                r#"{"statusCode":"404","code":"NoSuchKey","error":"not_found","message":"Object not found"}"#,
                ErrorKind::NotFound,
            ),
            (
                400,
                r#"{"statusCode":"404","error":"Bucket not found","message":"Bucket not found"}"#,
                ErrorKind::BucketNotFound,
            ),
            (
                400,
                r#"{"statusCode":"404","code":"NoSuchBucket","error":"Bucket not found","message":"Bucket not found"}"#,
                ErrorKind::BucketNotFound,
            ),
            (
                404,
                r#"{"statusCode":"404","code":"NoSuchBucket","error":"Bucket not found","message":"Bucket not found"}"#,
                ErrorKind::BucketNotFound,
            ),
            // Any other 404: a route that does not exist, a proxy page.
            (
                404,
                r#"{"message":"Route GET:/x not found","error":"Not Found","statusCode":404}"#,
                ErrorKind::Unexpected,
            ),
            (404, "<html>nope</html>", ErrorKind::Unexpected),
            // Keys refused: by the gateway, by Storage (wrapped or not).
            (
                401,
                r#"{"message":"Invalid API key","hint":"Double check your Supabase `anon` or `service_role` API key."}"#,
                ErrorKind::PermissionDenied,
            ),
            (
                400,
                r#"{"statusCode":"403","code":"AccessDenied","error":"Unauthorized","message":"invalid signature"}"#,
                ErrorKind::PermissionDenied,
            ),
            (
                400,
                r#"{"statusCode":"400","code":"InvalidJWT","error":"InvalidJWT","message":"jwt expired"}"#,
                ErrorKind::PermissionDenied,
            ),
            (
                400,
                r#"{"statusCode":"401","error":"Unauthorized","message":"x"}"#,
                ErrorKind::PermissionDenied,
            ),
            (403, "", ErrorKind::PermissionDenied),
            // Temporary: throttling, server trouble, wrapped or not.
            (
                429,
                r#"{"statusCode":"429","error":"too_many_connections","code":"SlowDown","message":"Too many connections issued to the database"}"#,
                ErrorKind::Transient,
            ),
            (429, "", ErrorKind::Transient),
            (503, "upstream connect error", ErrorKind::Transient),
            (502, "<html>bad gateway</html>", ErrorKind::Transient),
            (
                500,
                r#"{"statusCode":"500","code":"InternalError","error":"internal","message":"x"}"#,
                ErrorKind::Transient,
            ),
            (
                400,
                r#"{"statusCode":"503","code":"DatabaseReadOnly","error":"DatabaseReadOnly","message":"x"}"#,
                ErrorKind::Transient,
            ),
            (
                400,
                r#"{"statusCode":"544","code":"DatabaseTimeout","error":"DatabaseTimeout","message":"x"}"#,
                ErrorKind::Transient,
            ),
            // A database timeout is the one error Storage does not wrap in a 400.
            (
                544,
                r#"{"statusCode":"544","code":"DatabaseTimeout","error":"DatabaseTimeout","message":"x"}"#,
                ErrorKind::Transient,
            ),
            (544, "", ErrorKind::Transient),
            (
                400,
                r#"{"statusCode":"423","code":"ResourceLocked","error":"ResourceLocked","message":"x"}"#,
                ErrorKind::Transient,
            ),
            // Bad requests and everything else.
            (
                400,
                r#"{"statusCode":"400","code":"InvalidKey","error":"InvalidKey","message":"Invalid key: a#b"}"#,
                ErrorKind::InvalidInput,
            ),
            (
                400,
                r#"{"statusCode":"413","code":"EntityTooLarge","error":"Payload too large","message":"x"}"#,
                ErrorKind::InvalidInput,
            ),
            (
                400,
                r#"{"statusCode":400,"error":"Bad Request","message":"body must have required property 'prefixes'"}"#,
                ErrorKind::InvalidInput,
            ),
            (400, "", ErrorKind::InvalidInput),
            (
                400,
                r#"{"statusCode":"409","code":"KeyAlreadyExists","error":"Duplicate","message":"The resource already exists"}"#,
                ErrorKind::Unexpected,
            ),
            (301, "", ErrorKind::Unexpected),
            (405, "", ErrorKind::Unexpected),
        ];
        for &(http, body, want) in cases {
            let http = StatusCode::from_u16(http).unwrap();
            let err = classify(http, body.as_bytes(), "get supabase:b/k", &[]);
            assert_eq!(err.kind(), want, "{http} {body}: {err}");
            assert!(
                err.message().starts_with("get supabase:b/k: HTTP "),
                "{err}"
            );
        }
    }

    #[test]
    fn messages_name_the_status_and_code_and_never_a_key() {
        let secret = "sb_secret_AbCdEf0123456789".to_owned();
        let body = format!(
            r#"{{"statusCode":"403","code":"AccessDenied","error":"Unauthorized","message":"bad token {secret}"}}"#
        );
        let err = classify(
            StatusCode::BAD_REQUEST,
            body.as_bytes(),
            "get supabase:b/k",
            std::slice::from_ref(&secret),
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&secret), "{shown}");
        assert!(
            shown.contains("HTTP 400, statusCode 403 AccessDenied Unauthorized: bad token ***"),
            "{shown}"
        );
        let err = classify(StatusCode::NOT_FOUND, b"", "get supabase:b/k", &[]);
        assert!(err.message().contains("check SUPABASE_URL"), "{err}");
        // Storage's own 404s are not blamed on the URL.
        let bucket = br#"{"statusCode":"404","code":"NoSuchBucket","message":"Bucket not found"}"#;
        let err = classify(StatusCode::NOT_FOUND, bucket, "ping supabase:b", &[]);
        assert_eq!(err.kind(), ErrorKind::BucketNotFound);
        assert!(!err.message().contains("SUPABASE_URL"), "{err}");
        let long = format!(r#"{{"statusCode":"400","message":"{}"}}"#, "x".repeat(5000));
        let err = classify(StatusCode::BAD_REQUEST, long.as_bytes(), "put", &[]);
        assert!(err.message().len() < 400, "{}", err.message().len());
    }

    #[test]
    fn key_kinds_by_documented_format() {
        assert_eq!(key_kind("sb_publishable_abc"), KeyKind::Publishable);
        assert_eq!(key_kind("sb_secret_abc"), KeyKind::Secret);
        let role = |r: &str| KeyKind::Jwt(Some(r.to_owned()));
        assert_eq!(key_kind(&jwt("anon")), role("anon"));
        assert_eq!(key_kind(&jwt("service_role")), role("service_role"));
        assert_eq!(key_kind(&jwt("authenticated")), role("authenticated"));
        assert_eq!(key_kind(&jwt_claims(r#"{"sub":"u"}"#)), KeyKind::Jwt(None));
        assert_eq!(
            key_kind(&jwt_claims(r#"{"role":null}"#)),
            KeyKind::Jwt(None)
        );
        for other in ["", "plain", "a.b", "a.!!!.c", "a.b.c.d", "x.WzFd.y"] {
            assert_eq!(key_kind(other), KeyKind::Opaque, "{other:?}");
        }
        let service: Vec<_> = [
            "sb_secret_abc".to_owned(),
            jwt("service_role"),
            jwt("anon"),
            jwt("authenticated"),
            jwt_claims("{}"),
            "sb_publishable_abc".to_owned(),
            "plain".to_owned(),
        ]
        .iter()
        .map(|k| key_kind(k).is_service())
        .collect();
        assert_eq!(service, [true, true, false, false, false, false, false]);
    }

    #[test]
    fn only_service_keys_are_accepted_and_the_refusal_names_the_role() {
        let role_like = "svc-reader";
        let cases = [
            (jwt("authenticated"), r#"a JWT with role "authenticated""#),
            (jwt("anon"), r#"a JWT with role "anon""#),
            (jwt(role_like), r#"a JWT with role "svc-reader""#),
            (
                jwt_claims(r#"{"iss":"supabase"}"#),
                "a JWT with no role claim",
            ),
            (
                jwt("not a role, maybe sb_secret_0123"),
                "a JWT with an unusual role claim (not shown)",
            ),
            ("sb_publishable_abc0123".to_owned(), "a publishable key"),
            (
                "opaque-0123456789".to_owned(),
                "neither a JWT nor an sb_secret_ key",
            ),
        ];
        for (key, found) in cases {
            let err = SupabaseStore::new(&config(&key, None)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("SUPABASE_SERVICE_ROLE_KEY"), "{shown}");
            assert!(shown.contains(found), "{found:?} not in {shown}");
            assert!(!shown.contains(&key), "key in {shown}");
            assert!(!shown.contains("0123"), "part of the key in {shown}");
        }
        for key in [jwt("service_role"), "sb_secret_abc".to_owned()] {
            SupabaseStore::new(&config(&key, None)).unwrap();
            assert_eq!(refuse_unless_service(&key), None);
        }
    }

    #[test]
    fn apikey_is_the_publishable_key_unless_the_secret_is_an_sb_key() {
        let service = jwt("service_role");
        let cases = [
            (
                service.as_str(),
                Some("sb_publishable_p"),
                "sb_publishable_p",
            ),
            (service.as_str(), None, service.as_str()),
            ("sb_secret_s", Some("sb_publishable_p"), "sb_secret_s"),
            ("sb_secret_s", None, "sb_secret_s"),
        ];
        for (secret, publishable, want) in cases {
            let store = SupabaseStore::new(&config(secret, publishable)).unwrap();
            assert_eq!(
                store.apikey.to_str().unwrap(),
                want,
                "{secret} {publishable:?}"
            );
            assert_eq!(
                store.authorization.to_str().unwrap(),
                format!("Bearer {secret}")
            );
            assert!(store.apikey.is_sensitive() && store.authorization.is_sensitive());
        }
    }

    #[test]
    fn unusable_settings_are_invalid_input_without_the_key() {
        let anon = jwt("anon");
        let bad = [
            config("sb_publishable_p", None),
            config(&anon, None),
            config(" ", None),
            config("line\nbreak-secret", None),
            SupabaseConfig {
                url: "ftp://x".into(),
                ..config("sb_secret_s", None)
            },
            SupabaseConfig {
                url: "https://user:pw-secret@x.supabase.co".into(),
                ..config("sb_secret_s", None)
            },
            SupabaseConfig {
                url: "https://x.supabase.co/?a=b".into(),
                ..config("sb_secret_s", None)
            },
        ];
        for cfg in bad {
            let err = SupabaseStore::new(&cfg).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            let shown = format!("{err:?}");
            assert!(
                !shown.contains(&anon)
                    && !shown.contains("pw-secret")
                    && !shown.contains("break-secret"),
                "{shown}"
            );
        }
    }

    #[test]
    fn urls_are_built_from_encoded_segments() {
        let store = SupabaseStore::new(&config("sb_secret_s", None)).unwrap();
        assert_eq!(store.storage_url, "https://abcd.supabase.co/storage/v1");
        let at = Location::new(
            "task-html",
            ObjectKey::new("jobs/j 1/ü?#%&+/page.html.gz").unwrap(),
        );
        assert_eq!(
            store.object_url("authenticated/", &at).unwrap(),
            "https://abcd.supabase.co/storage/v1/object/authenticated/task-html/\
             jobs/j%201/%C3%BC%3F%23%25%26%2B/page.html.gz"
        );
        for hostile in ["..", "a/b", "", "a?b"] {
            let at = Location::new(hostile, ObjectKey::new("k").unwrap());
            let err = store.object_url("", &at).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{hostile:?}");
        }
        let with_api_path = SupabaseConfig {
            url: "http://127.0.0.1:54321/storage/v1/".into(),
            ..config("sb_secret_s", None)
        };
        assert_eq!(
            with_api_path.build(&SupabaseNames::PLAIN).unwrap().url(),
            "http://127.0.0.1:54321"
        );
    }

    #[test]
    fn debug_hides_both_keys() {
        let service = jwt("service_role");
        let store = SupabaseStore::new(&config(&service, Some("sb_publishable_zzzz"))).unwrap();
        let shown = format!("{store:?} {store:#?}");
        assert!(
            !shown.contains(&service) && !shown.contains("zzzz"),
            "{shown}"
        );
        assert!(shown.contains("abcd.supabase.co"), "{shown}");
    }

    #[test]
    fn object_info_becomes_object_meta() {
        let meta = object_meta(
            br#"{"id":"1","name":"k","version":"v","bucket_id":"b","size":42,
                "content_type":"text/html","cache_control":"no-cache",
                "etag":"\"0123abcd\"","metadata":{"task-id":"t1","n":3},
                "last_modified":"2026-01-01T00:00:00Z","created_at":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(meta.size, 42);
        assert_eq!(meta.etag.as_deref(), Some("0123abcd"));
        assert_eq!(meta.content_type.as_deref(), Some("text/html"));
        assert_eq!(meta.content_encoding, None);
        assert_eq!(meta.metadata.get("task-id").map(String::as_str), Some("t1"));
        assert_eq!(meta.metadata.get("n").map(String::as_str), Some("3"));
        let bare = object_meta(br#"{"size":0,"metadata":null,"etag":null}"#).unwrap();
        assert!(bare.metadata.is_empty() && bare.etag.is_none());
        assert!(object_meta(br#"{"size":null}"#).is_err());
        assert!(object_meta(b"not json").is_err());
    }
}
