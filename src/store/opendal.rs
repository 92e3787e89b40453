//! Shared adapter from an OpenDAL [`Operator`] to the operations of
//! [`Store`](super::Store), and the one place where an OpenDAL error gets an
//! [`ErrorKind`].
//!
//! Backends decide which operator serves a bucket and which path names an
//! object in it; everything else (options, metadata, retries, error kinds) is here.
//!
//! User-metadata values are percent-encoded on the way in and decoded on the
//! way out: every byte outside visible ASCII (`!`..`~`), and `%` itself,
//! becomes `%XX`. A header value must be visible ASCII for the request
//! signer (a raw `t-ü` made it refuse the request, and the row was retried
//! forever), and OpenDAL drops such values when it reads headers back. A
//! value that does not decode to UTF-8 is returned as stored. Keys are
//! passed as they are (coldsweep's own are plain ASCII, see
//! [`meta`](super::meta)).
//!
//! Retries are a loop here rather than OpenDAL's `RetryLayer`: that layer
//! marks every error it returns `Persistent`, a 400 as much as a 503 that
//! outlived its retries, which erases the temporary/permanent status that
//! [`kind_of`] needs.

use std::fmt;
use std::future::Future;

use ::opendal::options::WriteOptions;
use ::opendal::{Buffer, ErrorKind as OdKind, Metadata, Operator};
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

pub(super) use super::retry::Retry;
use super::s3_answer::{Refusal, S3Answer, answer_of};
use super::{ByteStream, ObjectMeta, PutOptions, PutResult};
use crate::error::{Error, ErrorKind, Result};

/// One OpenDAL operator, spoken to in the terms of the store seam.
///
/// `what` arguments only name the object in error messages (`r2:bucket/key`).
#[derive(Clone, Debug)]
pub(super) struct Adapter {
    op: Operator,
    retry: Retry,
    /// Writes streamed uploads when `op` cannot (OpenDAL refuses a
    /// multipart upload on an operator that sends Content-MD5), and the
    /// exact part size it uploads in; `None`: `op` writes them in one piece.
    stream_op: Option<(Operator, usize)>,
}

impl Adapter {
    pub(super) fn new(op: Operator, retry: Retry) -> Self {
        Self {
            op,
            retry,
            stream_op: None,
        }
    }

    /// Streamed uploads go through `op` in parts of exactly `part_size` bytes.
    pub(super) fn with_stream_op(mut self, op: Operator, part_size: usize) -> Self {
        self.stream_op = Some((op, part_size));
        self
    }

    /// Run `attempt` until it succeeds, fails for good, or retries run out;
    /// the last error keeps OpenDAL's status.
    async fn retrying<T, F, Fut>(&self, doing: &str, attempt: F) -> ::opendal::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ::opendal::Result<T>>,
    {
        self.retry
            .run(doing, ::opendal::Error::is_temporary, attempt)
            .await
    }

    /// Write `body` at `path`, replacing what is there.
    pub(super) async fn put(
        &self,
        path: &str,
        body: Bytes,
        options: &PutOptions,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<PutResult> {
        let opts = write_options(&self.op, options);
        let body = Buffer::from(body);
        self.retrying("put", || {
            self.op.write_options(path, body.clone(), opts.clone())
        })
        .await
        .map(|meta| PutResult {
            etag: meta.etag().map(clean_etag),
        })
        .map_err(|e| classify(e, format_args!("put {what}")))
    }

    /// Write `body` at `path` piece by piece; the object is committed only
    /// when `body` ends without an error, else the upload is aborted.
    ///
    /// Not retried request by request: the body is gone once sent, so a
    /// failed part fails the upload and the caller starts over.
    pub(super) async fn put_stream(
        &self,
        path: &str,
        mut body: ByteStream,
        options: &PutOptions,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<PutResult> {
        let (op, chunk) = match &self.stream_op {
            Some((op, part_size)) => (op, Some(*part_size)),
            None => (&self.op, None),
        };
        let mut opts = write_options(op, options);
        opts.chunk = chunk;
        let mut writer = op
            .writer_options(path, opts)
            .await
            .map_err(|e| classify(e, format_args!("put {what}")))?;
        let failed = loop {
            match body.next().await {
                Some(Ok(piece)) => {
                    if let Err(e) = writer.write(piece).await {
                        break classify(e, format_args!("put {what}"));
                    }
                }
                Some(Err(e)) => break e,
                None => match writer.close().await {
                    Ok(meta) => {
                        return Ok(PutResult {
                            etag: meta.etag().map(clean_etag),
                        });
                    }
                    Err(e) => break classify(e, format_args!("put {what}")),
                },
            }
        };
        // Parts already sent are dropped rather than left to be billed; a
        // failed abort leaves nothing visible (the object was never committed).
        if let Err(e) = writer.abort().await {
            tracing::debug!(error = %e, "aborting a streamed upload failed");
        }
        Err(failed)
    }

    /// Open the object at `path` for reading: its size from the read's
    /// answer, and its bytes as they arrive. Opening is retried like any
    /// request; a body that breaks off fails the stream.
    pub(super) async fn get_stream(
        &self,
        path: &str,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<(u64, ByteStream)> {
        let (size, stream) = self
            .retrying("get", || async {
                let mut stream = self.op.reader(path).await?.into_stream(..).await?;
                // Opens the request; its answer carries the size.
                let size = match stream.metadata().await {
                    Ok(meta) => Some(meta.content_length()),
                    Err(e) if e.kind() == OdKind::Unsupported => None,
                    Err(e) => return Err(e),
                };
                Ok((size, stream))
            })
            .await
            .map_err(|e| classify(e, format_args!("get {what}")))?;
        let size = match size {
            Some(size) => size,
            // Only for services whose read answer has no size (a local file: cheap).
            None => self.head(path, what).await?.size,
        };
        let doing = format!("get {what}");
        let body = stream
            .map_ok(|buffer| futures::stream::iter(Iterator::map(buffer, Ok)))
            .try_flatten()
            .map_err(move |e| classify(e, &doing))
            .boxed();
        Ok((size, body))
    }

    /// Read the whole object at `path`.
    /// Read the whole object at `path`.
    pub(super) async fn get(&self, path: &str, what: &(dyn fmt::Display + Sync)) -> Result<Bytes> {
        self.retrying("get", || self.op.read(path))
            .await
            .map(|buf| buf.to_bytes())
            .map_err(|e| classify(e, format_args!("get {what}")))
    }

    /// Describe the object at `path`; anything but a file is "not found".
    pub(super) async fn head(
        &self,
        path: &str,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<ObjectMeta> {
        let meta = self
            .retrying("head", || self.op.stat(path))
            .await
            .map_err(|e| classify(e, format_args!("head {what}")))?;
        if !meta.is_file() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("head {what}: not an object (a folder is there)"),
            ));
        }
        Ok(object_meta(&meta))
    }

    /// Remove the object at `path`; absent is fine.
    pub(super) async fn delete(&self, path: &str, what: &(dyn fmt::Display + Sync)) -> Result<()> {
        match self.retrying("delete", || self.op.delete(path)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == OdKind::NotFound => Ok(()),
            Err(e) => Err(classify(e, format_args!("delete {what}"))),
        }
    }

    /// Remove every object at `paths` (at most the service's batch size)
    /// with one batch delete: S3 `DeleteObjects`, which OpenDAL sends with
    /// its Content-MD5. `Ok` only when every path is gone; an error says
    /// nothing about which ones are (OpenDAL reports the first key the
    /// answer refused, not all of them), so the caller asks again per key.
    /// Whole-request failures are retried like any other request, which is
    /// safe because deleting is idempotent.
    pub(super) async fn delete_batch(&self, paths: &[&str]) -> ::opendal::Result<()> {
        async fn once(op: &Operator, paths: &[&str]) -> ::opendal::Result<()> {
            let mut deleter = op.deleter().await?;
            for path in paths {
                deleter.delete(*path).await?;
            }
            deleter.close().await
        }
        self.retrying("delete", || once(&self.op, paths)).await
    }

    /// List one entry of the operator's root: proves the bucket answers to
    /// these credentials (S3 `ListObjectsV2`).
    pub(super) async fn check(&self, what: &(dyn fmt::Display + Sync)) -> Result<()> {
        self.retrying("ping", || self.op.check())
            .await
            .map_err(|e| classify(e, format_args!("ping {what}")))
    }

    /// Stat a folder-like path (`bucket/`); `Ok(false)` when it is absent or
    /// not a folder.
    pub(super) async fn is_dir(
        &self,
        path: &str,
        what: &(dyn fmt::Display + Sync),
    ) -> Result<bool> {
        match self.retrying("ping", || self.op.stat(path)).await {
            Ok(meta) => Ok(meta.is_dir()),
            Err(e) if e.kind() == OdKind::NotFound => Ok(false),
            Err(e) => Err(classify(e, format_args!("ping {what}"))),
        }
    }
}

/// The options of an upload to `op`: only what the service keeps is asked
/// for; the rest is documented per backend.
fn write_options(op: &Operator, options: &PutOptions) -> WriteOptions {
    let cap = op.info().capability();
    let mut opts = WriteOptions::default();
    if cap.write_with_content_type {
        opts.content_type = options.content_type.clone();
    }
    if cap.write_with_content_encoding {
        opts.content_encoding = options.content_encoding.clone();
    }
    if cap.write_with_user_metadata && !options.metadata.is_empty() {
        opts.user_metadata = Some(
            options
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), encode_value(v)))
                .collect(),
        );
    }
    opts
}

/// Refuse a bucket name that is not one plain path segment.
///
/// Buckets name folders (fs) and the first path segment of a path-style URL
/// (S3), so `a/b`, `..` or `%2F` could reach another bucket or leave the
/// root. Allowed: ASCII letters, digits, `.`, `-`, `_`, starting with a
/// letter or digit (which also keeps `.`-names free for the fs store's own use).
pub(super) fn check_bucket(bucket: &str) -> Result<()> {
    let ok = !bucket.is_empty()
        && bucket.len() <= 255
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "bucket name {bucket:?} rejected: expected 1-255 ASCII letters, digits, \
                 '.', '-' or '_', starting with a letter or digit"
            ),
        ))
    }
}

/// Bytes a metadata value may not carry as they are: besides the controls
/// (and every non-ASCII byte, which `utf8_percent_encode` always encodes),
/// space, which servers trim, and `%`, so decoding is exact.
const METADATA_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

/// A user-metadata value as sent: visible ASCII only (see the module docs).
fn encode_value(value: &str) -> String {
    utf8_percent_encode(value, METADATA_VALUE).to_string()
}

/// A user-metadata value as read back; one that does not decode to UTF-8
/// (written by something else) is kept as stored.
fn decode_value(value: &str) -> String {
    percent_decode_str(value)
        .decode_utf8()
        .map_or_else(|_| value.to_owned(), |v| v.into_owned())
}

/// An ETag without quotes or weak prefix.
fn clean_etag(etag: &str) -> String {
    etag.trim_start_matches("W/").trim_matches('"').to_owned()
}

/// Map OpenDAL's metadata to ours: ETag without quotes or weak prefix,
/// metadata values decoded.
fn object_meta(meta: &Metadata) -> ObjectMeta {
    ObjectMeta {
        size: meta.content_length(),
        etag: meta.etag().map(clean_etag),
        content_type: meta.content_type().map(str::to_owned),
        content_encoding: meta.content_encoding().map(str::to_owned),
        metadata: meta
            .user_metadata()
            .map(|m| {
                m.into_iter()
                    .map(|(k, v)| (k.to_owned(), decode_value(v)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The kind of an OpenDAL error: by the S3 answer behind it when the HTTP
/// layer kept one ([`s3_answer`](super::s3_answer)), else by OpenDAL's kind
/// and status.
///
/// - A wrong signing region is `InvalidInput`: a setting to change.
/// - A refused `Content-MD5` (`BadDigest`) is `Integrity`; [`classify`]
///   marks it retryable, since a new upload may arrive intact.
/// - `SignatureDoesNotMatch` is `PermissionDenied`.
/// - A missing bucket (`NoSuchBucket`, which OpenDAL reports as
///   `ConfigInvalid`) is `BucketNotFound`, never `NotFound`: it says nothing
///   about the object. S3 `HEAD` cannot tell a missing bucket from a missing
///   key (bare 404), which is why the archiver proves the bucket with
///   [`Store::ping`](super::Store::ping) before it believes any "not found".
/// - A temporary error that outlived its retries stays `Transient`: the next
///   sweep may succeed. (`Persistent` is not read: OpenDAL's `RetryLayer`
///   stamps it on permanent errors too, see the module docs.)
pub(super) fn kind_of(err: &::opendal::Error) -> ErrorKind {
    if let Some(refusal) = refusal_of(err) {
        return match refusal.1 {
            Refusal::WrongRegion => ErrorKind::InvalidInput,
            Refusal::BadDigest => ErrorKind::Integrity,
            Refusal::SignatureMismatch => ErrorKind::PermissionDenied,
        };
    }
    match err.kind() {
        OdKind::NotFound | OdKind::IsADirectory | OdKind::NotADirectory => ErrorKind::NotFound,
        OdKind::ConfigInvalid => ErrorKind::BucketNotFound,
        OdKind::PermissionDenied => ErrorKind::PermissionDenied,
        OdKind::RateLimited => ErrorKind::Transient,
        _ if err.is_temporary() => ErrorKind::Transient,
        _ => ErrorKind::Unexpected,
    }
}

fn refusal_of(err: &::opendal::Error) -> Option<(&S3Answer, Refusal)> {
    let answer = answer_of(err)?;
    Some((answer, answer.refusal()?))
}

/// Our error for an OpenDAL error, keeping it as the source; the message
/// says what to do where the cause is known.
pub(super) fn classify(err: ::opendal::Error, doing: impl fmt::Display) -> Error {
    let kind = kind_of(&err);
    let refusal = refusal_of(&err);
    let message = match refusal {
        Some((answer, Refusal::WrongRegion)) => {
            format!("{doing}: wrong signing region: {}", answer.region_advice())
        }
        Some((_, Refusal::BadDigest)) => format!(
            "{doing}: the store refused the upload's Content-MD5 (BadDigest): the body \
             changed on the way; a new upload may arrive intact"
        ),
        Some((_, Refusal::SignatureMismatch)) => format!(
            "{doing}: the request signature did not match: check the secret key, and that \
             no proxy between coldsweep and the store changes or drops request headers"
        ),
        None if err.kind() == OdKind::ConfigInvalid => {
            format!("{doing}: bucket missing or misconfigured")
        }
        None => doing.to_string(),
    };
    let retryable = matches!(refusal, Some((_, Refusal::BadDigest)));
    let error = Error::new(kind, message).with_verbose_source(err);
    if retryable {
        error.set_retryable()
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_opendal_kind_and_status() {
        let cases = [
            (
                ::opendal::Error::new(OdKind::NotFound, "x"),
                ErrorKind::NotFound,
            ),
            (
                ::opendal::Error::new(OdKind::ConfigInvalid, "NoSuchBucket"),
                ErrorKind::BucketNotFound,
            ),
            (
                ::opendal::Error::new(OdKind::PermissionDenied, "x"),
                ErrorKind::PermissionDenied,
            ),
            (
                ::opendal::Error::new(OdKind::RateLimited, "x"),
                ErrorKind::Transient,
            ),
            (
                ::opendal::Error::new(OdKind::Unexpected, "503").set_temporary(),
                ErrorKind::Transient,
            ),
            (
                ::opendal::Error::new(OdKind::Unexpected, "400"),
                ErrorKind::Unexpected,
            ),
            (
                ::opendal::Error::new(OdKind::Unexpected, "400").set_persistent(),
                ErrorKind::Unexpected,
            ),
            (
                ::opendal::Error::new(OdKind::Unsupported, "x"),
                ErrorKind::Unexpected,
            ),
        ];
        for (err, want) in cases {
            let shown = err.to_string();
            let ours = classify(err, "get b/k");
            assert_eq!(ours.kind(), want, "{shown}");
            assert!(
                !ours.is_retryable() || want == ErrorKind::Transient,
                "{shown}"
            );
            assert!(std::error::Error::source(&ours).is_some());
        }
    }

    #[test]
    fn s3_answers_decide_kind_retry_and_advice() {
        use super::super::s3_answer::refused;
        let answer = |status, code: &str, region: Option<&str>| S3Answer {
            status,
            code: Some(code.to_owned()),
            region: region.map(str::to_owned),
            signed_region: "auto".to_owned(),
            region_variable: Some("HOT_S3_REGION".to_owned()),
        };
        // (answer, kind, retryable, words the message must carry)
        let cases = [
            (
                answer(400, "AuthorizationHeaderMalformed", Some("eu-west-1")),
                ErrorKind::InvalidInput,
                false,
                "the store expects region eu-west-1: set HOT_S3_REGION=eu-west-1",
            ),
            (
                answer(400, "IllegalLocationConstraintException", None),
                ErrorKind::InvalidInput,
                false,
                "set HOT_S3_REGION to the bucket's region",
            ),
            (
                answer(301, "PermanentRedirect", Some("us-west-2")),
                ErrorKind::InvalidInput,
                false,
                "set HOT_S3_REGION=us-west-2",
            ),
            (
                answer(400, "BadDigest", None),
                ErrorKind::Integrity,
                true,
                "Content-MD5",
            ),
            (
                answer(403, "SignatureDoesNotMatch", None),
                ErrorKind::PermissionDenied,
                false,
                "no proxy between coldsweep and the store changes or drops request headers",
            ),
        ];
        for (answer, kind, retryable, says) in cases {
            let shown = answer.to_string();
            let ours = classify(refused(answer).with_operation("write"), "put b/k");
            assert_eq!(ours.kind(), kind, "{shown}");
            assert_eq!(ours.is_retryable(), retryable, "{shown}");
            assert!(ours.message().contains(says), "{shown}: {ours}");
            assert!(ours.message().starts_with("put b/k: "), "{ours}");
        }
        // Codes without a refusal of their own keep OpenDAL's judgement.
        let other = refused(answer(403, "AccessDenied", None));
        assert_eq!(classify(other, "x").kind(), ErrorKind::Unexpected);
    }

    #[test]
    fn bucket_names_are_single_plain_segments() {
        for good in ["cold", "my-bucket.2024", "b_1", "A1"] {
            check_bucket(good).unwrap();
        }
        for bad in [
            "", ".", "..", ".tmp", "a/b", "/", "a\\b", "nul\0", "-x", "a b", "a%2Fb", "ü",
        ] {
            let err = check_bucket(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn temporary_errors_are_retried_permanent_ones_are_not() {
        use std::time::Duration;

        let op = Operator::new(::opendal::services::Memory::default()).unwrap();
        let adapter = Adapter::new(
            op,
            Retry {
                times: 2,
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
            },
        );
        let mut calls = 0;
        let err = adapter
            .retrying("t", || {
                calls += 1;
                async {
                    Err::<(), _>(::opendal::Error::new(OdKind::Unexpected, "503").set_temporary())
                }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 3);
        assert_eq!(kind_of(&err), ErrorKind::Transient);
        let mut calls = 0;
        let err = adapter
            .retrying("t", || {
                calls += 1;
                async { Err::<(), _>(::opendal::Error::new(OdKind::Unexpected, "400")) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(kind_of(&err), ErrorKind::Unexpected);
    }

    #[test]
    fn metadata_values_travel_as_visible_ascii_and_come_back_equal() {
        for value in [
            "t-1",
            "t-ü",
            "j-日本",
            "a_b",
            "50%",
            "%41",
            "two words",
            "tab\there",
            "",
        ] {
            let sent = encode_value(value);
            assert!(
                sent.bytes().all(|b| b.is_ascii_graphic()),
                "{value:?} sent as {sent:?}"
            );
            assert_eq!(decode_value(&sent), value);
        }
        assert_eq!(encode_value("t-ü"), "t-%C3%BC");
        // Not UTF-8 once decoded: kept as stored rather than mangled.
        assert_eq!(decode_value("%FF"), "%FF");
    }

    #[test]
    fn etag_loses_quotes_and_weak_prefix() {
        let mut b = ::opendal::MetadataBuilder::file(3);
        b.etag("W/\"0123abcd\"");
        let meta = object_meta(&b.build());
        assert_eq!(meta.etag.as_deref(), Some("0123abcd"));
        assert_eq!(meta.size, 3);
    }
}
