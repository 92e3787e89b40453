//! Cold-copy checks: whether the cold store holds the bytes the archiver
//! put (the byte checks against the catalog are [`crate::integrity`]'s).

use futures::StreamExt as _;

use crate::config::VerifyMode;
use crate::error::{Error, ErrorKind, Result};
use crate::integrity::{Digest, Mismatch, check_size};
use crate::model::ArchiveCandidate;
use crate::store::{Location, PutResult, Store};

/// Whether the answer to our own upload proves the copy: on a store whose
/// ETag is proof ([`Store::etag_proves_md5`]: the upload carried
/// Content-MD5, which the store checked on the way in, and its ETag is the
/// MD5 of what it stored), the PUT's ETag equal to the MD5 of the bytes.
/// No second request.
pub(crate) fn put_proves(
    cold: &dyn Store,
    put: &PutResult,
    digest: &Digest,
    mode: VerifyMode,
) -> bool {
    mode == VerifyMode::Auto && cold.etag_proves_md5() && put.etag_md5() == Some(digest.md5)
}

/// Whether the cold store holds exactly `digest`'s bytes at `location`.
///
/// Cheap path, only on a store whose ETag is proof (see [`put_proves`]):
/// size equal, the MD5 ETag equal to the MD5 of the bytes, and our
/// `stored-sha256` metadata present and equal. A copy without that
/// metadata (left by something else, by a store that drops it, or by a
/// streamed upload, which cannot know it when it starts) is read back,
/// never assumed good; so is every copy on a store whose profile
/// cannot prove the digest, with no, a multipart or an opaque ETag, or with
/// [`VerifyMode::ReadBack`]: verification never depends on a feature a
/// provider lacks.
pub(crate) async fn cold_holds(
    cold: &dyn Store,
    location: &Location,
    digest: &Digest,
    mode: VerifyMode,
) -> Result<bool> {
    let meta = match cold.head(location).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if meta.size != digest.size {
        return Ok(false);
    }
    let metadata_agrees = meta
        .stored_sha256()
        .is_some_and(|sha| sha.eq_ignore_ascii_case(&digest.sha256_hex()));
    if mode == VerifyMode::Auto
        && cold.etag_proves_md5()
        && metadata_agrees
        && meta.etag_md5() == Some(digest.md5)
    {
        return Ok(true);
    }
    // Streamed and hashed off the executor: a large copy is never held.
    let body = match cold.get_stream(location).await {
        Ok((_, body)) => body,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(super::stream::tally(body).await?.digest == *digest)
}

/// Check a cold object that must stand alone (its hot copy is gone),
/// streamed: returns `None` if absent, else whether it agrees with the
/// catalog and with the `stored-sha256` recorded at upload (when there is one).
pub(crate) async fn cold_copy_alone(
    cold: &dyn Store,
    location: &Location,
    candidate: &ArchiveCandidate,
) -> Result<Option<std::result::Result<(), Mismatch>>> {
    let (size, mut body) = match cold.get_stream(location).await {
        Ok(read) => read,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Err(mismatch) = check_size(candidate, size) {
        return Ok(Some(Err(mismatch)));
    }
    let mut tally = super::stream::Tally::start(Some(candidate.clone()));
    while let Some(piece) = body.next().await {
        if !tally.feed(piece?).await {
            break;
        }
    }
    let tallied = match tally.finish().await? {
        Ok(tallied) => tallied,
        Err(mismatch) => return Ok(Some(Err(mismatch))),
    };
    if tallied.digest.size != size {
        return Err(Error::new(
            ErrorKind::Transient,
            format!(
                "read {location}: ended after {} of {size} bytes",
                tallied.digest.size
            ),
        ));
    }
    let meta = cold.head(location).await?;
    if let Some(sha) = meta.stored_sha256()
        && !sha.eq_ignore_ascii_case(&tallied.digest.sha256_hex())
    {
        return Ok(Some(Err(Mismatch(format!(
            "cold copy does not match the sha256 recorded at upload ({sha})"
        )))));
    }
    Ok(Some(Ok(())))
}
