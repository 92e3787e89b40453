//! Start-up probe: prove a store does what the archiver will ask of it.
//!
//! A bucket that answers a bucket-level request can still refuse every
//! upload: the original system's start-up check (`HeadBucket`) passed against
//! R2 while every upload failed. [`probe`] does what a real move does, to a
//! small object of its own under a reserved prefix
//! ([`DEFAULT_PROBE_PREFIX`](crate::config::DEFAULT_PROBE_PREFIX), never
//! inside the archive's `jobs/` layout): reach the bucket, upload gzip bytes
//! with a content type, a content encoding and user metadata, read them back,
//! verify them as the archiver would (bytes, the size and ETag the store
//! reports), delete the object and make sure it is gone.
//!
//! Each step keeps its own outcome, with the [`ErrorKind`] of a failure, so a
//! report can tell "credentials refused" from "bucket missing" from "write
//! not allowed" ([`StepReport::reason`]). Steps after a failure that depend
//! on it are [skipped](StepOutcome::Skipped); once the probe object may
//! exist, the probe always tries to delete it.
//!
//! [`probe_read_only`] is the version for a store coldsweep only reads and
//! deletes from (hot): reach the bucket, find one object the catalog
//! references, and delete a fresh name under the probe prefix that cannot
//! exist, which proves the key may delete there without touching a real
//! object. Nothing is written.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::meta;
use super::{Location, ObjectMeta, PutOptions, Store, exists};
use crate::error::{Error, ErrorKind, Result};
use crate::integrity::Digest;
use crate::keys::ObjectKey;

/// `Content-Type` of the probe object.
pub const PROBE_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// One step of a probe, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeStep {
    /// The bucket answers to these credentials ([`Store::ping`]).
    Reach,
    /// An upload like a real one is accepted.
    Write,
    /// The object can be downloaded.
    Read,
    /// What was read back, and what the store reports, match what was written.
    Verify,
    /// The object can be deleted.
    Delete,
    /// After the delete, the object is gone.
    Gone,
    /// An existing object (one the catalog references) is found (read-only probe).
    Find,
    /// A delete in the bucket is allowed, tried on a name that cannot exist
    /// (read-only probe).
    DeleteAbsent,
}

impl ProbeStep {
    /// What the step proves when it passes, for one report line.
    pub fn title(self) -> &'static str {
        match self {
            ProbeStep::Reach => "bucket reachable with these credentials",
            ProbeStep::Write => "write allowed",
            ProbeStep::Read => "read allowed",
            ProbeStep::Verify => "read back identical",
            ProbeStep::Delete => "delete allowed",
            ProbeStep::Gone => "probe object gone after delete",
            ProbeStep::Find => "object the catalog references found",
            ProbeStep::DeleteAbsent => "delete allowed (tried on a name that does not exist)",
        }
    }

    /// Why a failure of `kind` at this step matters, in plain words.
    pub fn reason(self, kind: ErrorKind) -> &'static str {
        use ErrorKind as K;
        use ProbeStep as S;
        match (self, kind) {
            (S::Reach, K::PermissionDenied) => {
                "credentials refused: check the access key id and secret, and that they may \
                 list this bucket (if the detail says the signature did not match, also that \
                 no proxy changes or drops request headers)"
            }
            (S::Reach, K::NotFound | K::BucketNotFound) => {
                "bucket not found: check the bucket name and the endpoint"
            }
            (S::Write, K::PermissionDenied) => {
                "write not allowed: these credentials reach the bucket but may not upload to \
                 it, or the upload's signature did not match because something between \
                 coldsweep and the store (a proxy) changed or dropped its headers; see the detail"
            }
            (S::Write, K::NotFound | K::BucketNotFound) => "bucket not found when uploading",
            (S::Write, K::Integrity) => {
                "the store refused the upload's checksum (Content-MD5): the body changed on \
                 the way (a proxy or a damaged connection); the archiver uploads such blobs \
                 again, but a proxy that rewrites bodies fails every time"
            }
            (S::Write, K::Unexpected) => {
                "upload refused: the store rejected the request as sent; its answer is in \
                 the detail"
            }
            (S::Read, K::PermissionDenied) => {
                "read not allowed: these credentials may upload but not download"
            }
            (S::Read, K::NotFound) => {
                "the object just uploaded cannot be read back: the store accepted it but does \
                 not serve it"
            }
            (S::Verify, K::Integrity) => {
                "what was read back differs from what was written: archived copies could not \
                 be proven"
            }
            (S::Verify, K::NotFound) => "the object just uploaded is not found by HEAD",
            (S::Delete, K::PermissionDenied) => {
                "delete not allowed: the probe object stays behind (coldsweep never deletes \
                 archived blobs, but its start-up check removes its own probe object; allow \
                 deletes under the probe prefix)"
            }
            (S::Gone, _) => "the probe object is still there after a delete that succeeded",
            (S::Find, K::NotFound) => {
                "the catalog references an object this store does not have: check that the \
                 store settings point at the right place"
            }
            (S::Find, K::PermissionDenied) => {
                "read not allowed: these credentials may not read objects"
            }
            (S::DeleteAbsent, K::PermissionDenied) => {
                "delete not allowed: these credentials may read but not delete in this bucket, \
                 so archived blobs could never leave it"
            }
            (_, K::PermissionDenied) => "permission denied",
            (_, K::NotFound) => "not found",
            (_, K::BucketNotFound) => "bucket not found: check the bucket name and the endpoint",
            (_, K::Transient) => {
                "the store did not answer in time or was unavailable (network, throttling or a \
                 server error); try again"
            }
            (_, K::InvalidInput) => {
                "a setting was rejected: a name coldsweep refuses, or a signing region the \
                 store does not accept (the detail names the region to set)"
            }
            (_, K::Integrity) => "the bytes do not match",
            _ => "the store refused the request (see the detail)",
        }
    }
}

impl fmt::Display for ProbeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

/// How one step went.
#[derive(Debug)]
#[non_exhaustive]
pub enum StepOutcome {
    /// It worked; what was learnt along the way (may be empty).
    Passed(String),
    /// It failed with this error.
    Failed(Error),
    /// Not tried, because of an earlier failure (the reason).
    Skipped(&'static str),
}

/// One step and how it went.
#[derive(Debug)]
pub struct StepReport {
    /// Which step.
    pub step: ProbeStep,
    /// How it went.
    pub outcome: StepOutcome,
}

impl StepReport {
    /// Whether the step ran and worked.
    pub fn passed(&self) -> bool {
        matches!(self.outcome, StepOutcome::Passed(_))
    }

    /// The error, when the step failed.
    pub fn error(&self) -> Option<&Error> {
        match &self.outcome {
            StepOutcome::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Why the step failed, in plain words; `None` unless it failed.
    pub fn reason(&self) -> Option<&'static str> {
        self.error().map(|e| self.step.reason(e.kind()))
    }
}

/// What a probe found, step by step.
#[derive(Debug)]
#[non_exhaustive]
pub struct ProbeReport {
    /// The store's provider name (`r2`, `fs`, …).
    pub provider: String,
    /// The probe object (for [`probe_read_only`]: the object looked for).
    pub location: Location,
    /// Every step of this kind of probe, in order.
    pub steps: Vec<StepReport>,
    /// Whether the store's ETag turned out to be the MD5 of the bytes, which
    /// lets `ARCHIVE_VERIFY=auto` skip reading each copy back on a store that
    /// [relies on it](Store::etag_proves_md5); `None` when the probe did not
    /// get that far (or for [`probe_read_only`]).
    pub etag_is_md5: Option<bool>,
}

impl ProbeReport {
    fn new(store: &dyn Store, location: Location) -> Self {
        Self {
            provider: store.provider().to_owned(),
            location,
            steps: Vec::new(),
            etag_is_md5: None,
        }
    }

    fn push(&mut self, step: ProbeStep, outcome: StepOutcome) {
        self.steps.push(StepReport { step, outcome });
    }

    /// Record `result` for `step`; whether it passed.
    fn record(&mut self, step: ProbeStep, result: Result<String>) -> bool {
        let passed = result.is_ok();
        let outcome = match result {
            Ok(detail) => StepOutcome::Passed(detail),
            Err(e) => StepOutcome::Failed(e),
        };
        self.push(step, outcome);
        passed
    }

    fn skip(&mut self, steps: &[ProbeStep], why: &'static str) {
        for step in steps {
            self.push(*step, StepOutcome::Skipped(why));
        }
    }

    /// Whether every step passed.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(StepReport::passed)
    }

    /// The first step that failed.
    pub fn failure(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.error().is_some())
    }

    /// The probe object, when it was written and may not have been removed.
    pub fn left_behind(&self) -> Option<&Location> {
        let status = |step| self.steps.iter().find(|s| s.step == step);
        let written = status(ProbeStep::Write).is_some_and(StepReport::passed);
        let gone = status(ProbeStep::Gone).is_some_and(StepReport::passed);
        (written && !gone).then_some(&self.location)
    }

    /// `Ok(self)` when every step passed; else an error of the first failed
    /// step's kind, saying which step failed and why, with the store's error
    /// as its cause.
    pub fn into_result(mut self) -> Result<ProbeReport> {
        let Some(index) = self.steps.iter().position(|s| s.error().is_some()) else {
            return Ok(self);
        };
        let failed = self.steps.swap_remove(index);
        let StepOutcome::Failed(cause) = failed.outcome else {
            unreachable!("position() found a failed step");
        };
        let mut message = format!(
            "{}:{} failed the probe at \"{}\": {}",
            self.provider,
            self.location.bucket,
            failed.step.title(),
            failed.step.reason(cause.kind()),
        );
        if let Some(left) = self.left_behind() {
            message.push_str(&format!(" (probe object left at {left})"));
        }
        Err(Error::new(cause.kind(), message).with_source(cause))
    }
}

/// Run every step against `store` with a fresh probe object under `prefix`
/// in `bucket`; see the [module docs](self).
///
/// Never fails as a whole: each step's outcome is in the report. On success
/// nothing is left behind; after a partial failure the probe object is
/// deleted if it can be ([`ProbeReport::left_behind`] says if not).
pub async fn probe(store: &dyn Store, bucket: &str, prefix: &ObjectKey) -> ProbeReport {
    use ProbeStep::*;

    let name = uuid::Uuid::new_v4().simple().to_string();
    let key = prefix.join(&name);
    let location = Location::new(bucket, key.as_ref().unwrap_or(prefix).clone());
    let mut report = ProbeReport::new(store, location.clone());

    if !report.record(Reach, store.ping(bucket).await.map(|()| String::new())) {
        report.skip(
            &[Write, Read, Verify, Delete, Gone],
            "the bucket is not reachable",
        );
        return report;
    }

    let (body, options) = probe_object(&name);
    let digest = Digest::of(&body);
    let written = match key {
        Ok(_) => store.put(&location, body, &options).await,
        Err(e) => Err(e.context("probe object key")),
    };
    let written = written.map(|_| {
        format!(
            "{} bytes of gzip with a content type, a content encoding and {} user metadata values",
            digest.size,
            options.metadata.len()
        )
    });
    if !report.record(Write, written) {
        // An upload that timed out may still have landed.
        if let Err(e) = store.delete(&location).await {
            tracing::debug!(error = %e.chain(), %location, "could not remove a possibly written probe object");
        }
        report.skip(&[Read, Verify, Delete, Gone], "nothing was written");
        return report;
    }

    match store.get(&location).await {
        Ok(stored) => {
            report.record(Read, Ok(format!("{} bytes", stored.len())));
            let verified = verify(store, &location, &digest, &options, &stored).await;
            if let Ok((_, etag_is_md5)) = &verified {
                report.etag_is_md5 = Some(*etag_is_md5);
            }
            report.record(Verify, verified.map(|(detail, _)| detail));
        }
        Err(e) => {
            report.record(Read, Err(e));
            report.skip(&[Verify], "nothing was read back");
        }
    }

    if !report.record(
        Delete,
        store.delete(&location).await.map(|()| String::new()),
    ) {
        report.skip(&[Gone], "the delete failed");
        return report;
    }
    let gone = match exists(store, &location).await {
        Ok(false) => Ok(String::new()),
        Ok(true) => Err(Error::new(
            ErrorKind::Unexpected,
            format!("{location} is still there after a delete that succeeded"),
        )),
        Err(e) => Err(e),
    };
    report.record(Gone, gone);
    report
}

/// Reach `location`'s bucket, find the object there, and delete a fresh
/// name under `prefix` in that bucket (see the [module docs](self)).
/// Writes nothing.
pub async fn probe_read_only(
    store: &dyn Store,
    location: &Location,
    prefix: &ObjectKey,
) -> ProbeReport {
    use ProbeStep::*;

    let mut report = ProbeReport::new(store, location.clone());
    let reached = store.ping(&location.bucket).await.map(|()| String::new());
    if !report.record(Reach, reached) {
        report.skip(&[Find, DeleteAbsent], "the bucket is not reachable");
        return report;
    }
    let found = store
        .head(location)
        .await
        .map(|meta| format!("{} ({} bytes)", location.key, meta.size));
    report.record(Find, found);

    // A uuid under the probe prefix: no real object can have this name.
    let absent = prefix
        .join(&format!("absent-{}", uuid::Uuid::new_v4().simple()))
        .map(|key| Location::new(location.bucket.as_str(), key));
    let deleted = match absent {
        // "Not found" is as good as success: the key was let through.
        Ok(absent) => match store.delete(&absent).await {
            Ok(()) => Ok(format!("{absent}: the store accepted the delete")),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Ok(format!("{absent}: the store answered not found"))
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e.context("probe key")),
    };
    report.record(DeleteAbsent, deleted);
    report
}

/// The probe object's bytes and upload options: gzip with the same kinds of
/// headers and metadata a real upload carries (the keys of [`meta`]), so a
/// provider (or proxy) that refuses any of them refuses the probe too.
fn probe_object(name: &str) -> (Bytes, PutOptions) {
    let text = format!(
        "coldsweep start-up probe {name}\n\
         Written, read back and deleted by `coldsweep check` and `coldsweep run`; safe to delete.\n"
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes())
        .expect("writing to a Vec cannot fail");
    let body = Bytes::from(gz.finish().expect("writing to a Vec cannot fail"));
    let metadata = BTreeMap::from([
        (meta::TASK_ID.to_owned(), format!("probe-{name}")),
        (meta::JOB_ID.to_owned(), "coldsweep-probe".to_owned()),
        (
            meta::SHA256.to_owned(),
            hex::encode(Sha256::digest(text.as_bytes())),
        ),
        (
            meta::STORED_SHA256.to_owned(),
            Digest::of(&body).sha256_hex(),
        ),
    ]);
    let options = PutOptions {
        content_type: Some(PROBE_CONTENT_TYPE.to_owned()),
        content_encoding: Some("gzip".to_owned()),
        metadata,
    };
    (body, options)
}

/// Check what was read back and what the store reports against what was
/// written, as the archiver's verification does. Returns a description and
/// whether the ETag is the MD5 of the bytes.
async fn verify(
    store: &dyn Store,
    location: &Location,
    written: &Digest,
    options: &PutOptions,
    stored: &[u8],
) -> Result<(String, bool)> {
    let read = Digest::of(stored);
    if read != *written {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "{location}: read back {} bytes with SHA-256 {}, wrote {} bytes with SHA-256 {}",
                read.size,
                read.sha256_hex(),
                written.size,
                written.sha256_hex()
            ),
        ));
    }
    let meta = store.head(location).await?;
    if meta.size != written.size {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "{location}: the store reports {} bytes, {} were written",
                meta.size, written.size
            ),
        ));
    }
    if let Some(sha) = meta.stored_sha256()
        && !sha.eq_ignore_ascii_case(&written.sha256_hex())
    {
        return Err(Error::new(
            ErrorKind::Integrity,
            format!(
                "{location}: the store returns {} {sha}, not the one uploaded",
                super::meta::STORED_SHA256
            ),
        ));
    }
    let etag_is_md5 = meta.etag_md5() == Some(written.md5);
    let etag = match (&meta.etag, etag_is_md5, store.etag_proves_md5()) {
        (_, true, true) => "the ETag is their MD5, so verification needs no second download",
        (_, true, false) => {
            "the ETag is their MD5, but this provider's ETags are not relied on, so \
             verification downloads every copy once more"
        }
        (Some(_), false, _) => {
            "the ETag is not their MD5, so verification downloads every copy once more"
        }
        (None, false, _) => "no ETag, so verification downloads every copy once more",
    };
    Ok((
        format!(
            "bytes, size and SHA-256 match; {etag}; {}",
            kept(&meta, options)
        ),
        etag_is_md5,
    ))
}

/// Which of the upload's headers the store kept, in words.
fn kept(meta: &ObjectMeta, options: &PutOptions) -> String {
    let parts = [
        ("content type", meta.content_type == options.content_type),
        (
            "content encoding",
            meta.content_encoding == options.content_encoding,
        ),
        (
            "user metadata",
            options
                .metadata
                .iter()
                .all(|(k, v)| meta.metadata.get(k) == Some(v)),
        ),
    ];
    let list = |keep: bool| -> Vec<&str> {
        parts
            .iter()
            .filter(|(_, k)| *k == keep)
            .map(|(name, _)| *name)
            .collect()
    };
    match (list(true), list(false)) {
        (_, not) if not.is_empty() => {
            "content type, content encoding and user metadata kept".into()
        }
        (yes, not) if yes.is_empty() => format!("{} not kept by this store", not.join(", ")),
        (yes, not) => format!(
            "{} kept; {} not kept by this store",
            yes.join(", "),
            not.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_plain_words() {
        let steps = [
            ProbeStep::Reach,
            ProbeStep::Write,
            ProbeStep::Read,
            ProbeStep::Verify,
            ProbeStep::Delete,
            ProbeStep::Gone,
            ProbeStep::Find,
            ProbeStep::DeleteAbsent,
        ];
        let kinds = [
            ErrorKind::NotFound,
            ErrorKind::BucketNotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::Integrity,
            ErrorKind::Transient,
            ErrorKind::InvalidInput,
            ErrorKind::Unexpected,
        ];
        for step in steps {
            assert!(!step.title().is_empty());
            for kind in kinds {
                assert!(!step.reason(kind).is_empty(), "{step:?} {kind:?}");
            }
        }
        assert!(
            ProbeStep::Reach
                .reason(ErrorKind::PermissionDenied)
                .starts_with("credentials refused")
        );
        assert!(
            ProbeStep::Reach
                .reason(ErrorKind::NotFound)
                .starts_with("bucket not found")
        );
        let write = |kind| ProbeStep::Write.reason(kind);
        assert!(write(ErrorKind::PermissionDenied).contains("signature did not match"));
        assert!(write(ErrorKind::PermissionDenied).contains("proxy"));
        assert!(write(ErrorKind::Integrity).contains("checksum"));
        assert!(write(ErrorKind::InvalidInput).contains("region"));
        assert!(
            ProbeStep::Reach
                .reason(ErrorKind::InvalidInput)
                .contains("region")
        );
        // No guess about providers the detail does not name.
        assert!(!write(ErrorKind::Unexpected).contains("R2"));
    }

    #[test]
    fn probe_object_looks_like_a_real_upload() {
        let (body, options) = probe_object("abc");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
            .expect("the probe body is gzip");
        assert!(text.contains("abc"));
        assert_eq!(options.content_encoding.as_deref(), Some("gzip"));
        for key in [
            meta::TASK_ID,
            meta::JOB_ID,
            meta::SHA256,
            meta::STORED_SHA256,
        ] {
            assert!(options.metadata.contains_key(key), "{key}");
            assert!(!key.contains('_'), "{key}: proxies drop headers with `_`");
        }
        assert_eq!(
            options.metadata[meta::SHA256],
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        assert_eq!(
            options.metadata[meta::STORED_SHA256],
            Digest::of(&body).sha256_hex()
        );
    }

    #[test]
    fn kept_headers_are_named() {
        let (_, options) = probe_object("x");
        let all = ObjectMeta {
            content_type: options.content_type.clone(),
            content_encoding: options.content_encoding.clone(),
            metadata: options.metadata.clone(),
            ..ObjectMeta::default()
        };
        assert_eq!(
            kept(&all, &options),
            "content type, content encoding and user metadata kept"
        );
        let fs_like = ObjectMeta {
            metadata: options.metadata.clone(),
            ..ObjectMeta::default()
        };
        assert_eq!(
            kept(&fs_like, &options),
            "user metadata kept; content type, content encoding not kept by this store"
        );
        assert_eq!(
            kept(&ObjectMeta::default(), &options),
            "content type, content encoding, user metadata not kept by this store"
        );
    }
}
