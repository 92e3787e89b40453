//! The life of one blob: read hot → check → put cold → verify → switch the
//! catalog → delete hot → clear the hot reference.
//!
//! Each step is idempotent and the order keeps the invariants: the hot copy
//! is deleted only after a verified cold copy is recorded in the catalog, and
//! the hot reference is cleared only after the delete. The resume point
//! comes from the catalog row: a fresh row goes straight to the upload;
//! a row switched earlier, or tried before, first looks for a copy to reuse.
//! On a first try the last three steps are left to the archiver, which
//! does them for many blobs at once ([`Ran::Verified`]).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::Clock;
use super::stream::{self, Copied, HotRead};
use super::verify;
use crate::config::VerifyMode;
use crate::error::{Error, ErrorKind, Result};
use crate::integrity::{self, Digest};
use crate::keys::{KeyPrefix, ObjectKey};
use crate::model::{ArchiveCandidate, Fence};
use crate::source::ArchiveSource;
use crate::store::{Location, PutOptions, Store};

/// How one blob's move ended (errors are reported separately).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Copied to cold, verified, catalog switched, hot deleted.
    Archived {
        /// Stored bytes moved.
        bytes: u64,
    },
    /// The hot copy was already gone and cold held a good copy: bookkeeping finished.
    Completed,
    /// The hot bytes disagree with the catalog; left hot.
    Quarantined {
        /// Why.
        reason: String,
    },
    /// Neither store holds a good copy. Nothing is recorded yet: the sweep
    /// decides, once it has proven both stores healthy and seen how many
    /// blobs look missing, whether this is a first suspicion or a verdict.
    Missing {
        /// Why.
        reason: String,
    },
}

/// What a run of the pipeline leaves to its caller.
#[derive(Debug)]
pub(crate) enum Ran {
    /// The blob's move ended.
    Finished(Outcome),
    /// The cold copy is proven; switching, deleting hot and clearing are
    /// left to the caller's batch.
    Verified(Verified),
}

/// A blob whose cold copy is proven and not yet recorded.
#[derive(Clone, Debug)]
pub(crate) struct Verified {
    pub(crate) hot: Location,
    pub(crate) cold: Location,
    /// Stored bytes.
    pub(crate) bytes: u64,
}

/// Where a blob's move starts after the hot read, derived from its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// A row no claim or attempt touched before: no copy can exist in
    /// cold, so it goes straight to the upload.
    Upload,
    /// A row with a recorded cold location, an earlier attempt or claim
    /// (a crash, a hand-back, a lost lease) or a retry within this sweep:
    /// an earlier upload may be there, and is reused once proven.
    Reuse,
}

impl Start {
    pub(crate) fn of(candidate: &ArchiveCandidate, first_try: bool) -> Start {
        let fresh = first_try
            && candidate.claims <= 1
            && candidate.attempts == 0
            && candidate.archived_at.is_none()
            && candidate.missing_since.is_none();
        if fresh { Start::Upload } else { Start::Reuse }
    }
}

pub(crate) struct Pipeline<'a> {
    pub(crate) hot: &'a dyn Store,
    pub(crate) cold: &'a dyn Store,
    pub(crate) cold_bucket: &'a str,
    pub(crate) prefix: &'a KeyPrefix,
    pub(crate) verify: VerifyMode,
    /// Blobs larger than this many bytes stream (`ARCHIVE_STREAM_THRESHOLD`).
    pub(crate) stream_threshold: u64,
    pub(crate) source: &'a dyn ArchiveSource,
    /// This worker (the lease owner) and its clock, for fenced writes.
    pub(crate) owner: &'a str,
    pub(crate) clock: &'a Clock,
}

impl Pipeline<'_> {
    fn fence(&self) -> Fence<'_> {
        Fence {
            owner: self.owner,
            now: (self.clock)(),
        }
    }

    /// Move `candidate`; `first_try` is false when the archiver starts the
    /// blob over after an error within this sweep. With `batched`, a blob
    /// whose copy is proven comes back [`Ran::Verified`]; without, the
    /// pipeline finishes it alone.
    pub(crate) async fn run(
        &self,
        candidate: &ArchiveCandidate,
        first_try: bool,
        batched: bool,
    ) -> Result<Ran> {
        let done = |outcome: Result<Outcome>| outcome.map(Ran::Finished);
        let hot_location = match ObjectKey::new(candidate.storage_path.as_str()) {
            Ok(key) => Location::new(candidate.storage_bucket.as_str(), key),
            Err(e) => return done(self.quarantine(candidate, e.message().to_owned()).await),
        };
        let cold_location = match self.cold_location(candidate) {
            Ok(location) => location,
            Err(e) if e.kind() == ErrorKind::InvalidInput => {
                return done(self.quarantine(candidate, e.message().to_owned()).await);
            }
            Err(e) => return Err(e),
        };

        if hot_location == cold_location
            && self.hot.namespace().is_some()
            && self.hot.namespace() == self.cold.namespace()
        {
            let reason = format!(
                "hot and cold are the same object ({hot_location} in {}): moving it would delete the only copy",
                self.hot.namespace().unwrap_or_default()
            );
            return done(self.quarantine(candidate, reason).await);
        }

        match stream::read_hot(self.hot, &hot_location, candidate, self.stream_threshold).await {
            Ok(read) => {
                self.found(candidate).await?;
                let start = Start::of(candidate, first_try);
                let copied = match read {
                    HotRead::Whole(bytes) => {
                        self.copy(candidate, &hot_location, &cold_location, bytes, start)
                            .await?
                    }
                    // Never reused: its digest is known only once it is read.
                    HotRead::Streamed(hot) => {
                        let options = self.put_options(candidate, None);
                        let copied = stream::copy(
                            hot,
                            self.cold,
                            &cold_location,
                            candidate,
                            &options,
                            self.verify,
                        )
                        .await?;
                        match copied {
                            Copied::Proven(digest) => Ran::Verified(Verified {
                                hot: hot_location.clone(),
                                cold: cold_location.clone(),
                                bytes: digest.size,
                            }),
                            Copied::Mismatch(mismatch) => {
                                Ran::Finished(self.quarantine(candidate, mismatch.0).await?)
                            }
                        }
                    }
                };
                match copied {
                    Ran::Verified(verified) if !batched => {
                        self.finish(candidate, &verified).await.map(Ran::Finished)
                    }
                    ran => Ok(ran),
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                done(self.finish_without_hot(candidate, &cold_location).await)
            }
            // The store refused the row's location (say, a bucket named
            // `../x`): the row is bad, and retrying it would fail forever.
            Err(e) if e.kind() == ErrorKind::InvalidInput => done(
                self.quarantine(candidate, format!("hot location refused: {}", e.message()))
                    .await,
            ),
            Err(e) => Err(e.context(format!("read hot {hot_location}"))),
        }
    }

    /// Where the cold copy goes: the location an earlier sweep recorded, or
    /// the source's layout under the configured prefix.
    fn cold_location(&self, candidate: &ArchiveCandidate) -> Result<Location> {
        if let Some(at) = &candidate.archived_at {
            if at.provider != self.cold.provider() || at.bucket != self.cold_bucket {
                // Never delete a hot copy on the strength of a store we cannot see.
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "row was switched to {}:{} but this worker archives to {}:{}",
                        at.provider,
                        at.bucket,
                        self.cold.provider(),
                        self.cold_bucket
                    ),
                ));
            }
            return Ok(Location::new(
                at.bucket.as_str(),
                ObjectKey::new(at.key.as_str())?,
            ));
        }
        Ok(Location::new(
            self.cold_bucket,
            self.source.cold_key(candidate, self.prefix)?,
        ))
    }

    /// Check the hot bytes, then upload and prove the cold copy (or prove
    /// one left by an earlier attempt).
    async fn copy(
        &self,
        candidate: &ArchiveCandidate,
        hot_location: &Location,
        cold_location: &Location,
        bytes: Bytes,
        start: Start,
    ) -> Result<Ran> {
        let checked = bytes.clone();
        let candidate_copy = candidate.clone();
        let checks = tokio::task::spawn_blocking(move || {
            integrity::check_against_catalog(&candidate_copy, &checked)
                .map(|()| Digest::of(&checked))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, "digest task failed").with_source(e))?;
        let digest = match checks {
            Ok(digest) => digest,
            Err(mismatch) => {
                return self
                    .quarantine(candidate, mismatch.0)
                    .await
                    .map(Ran::Finished);
            }
        };

        // A copy left by an interrupted attempt is reused once proven identical.
        let reused = start == Start::Reuse
            && verify::cold_holds(self.cold, cold_location, &digest, self.verify).await?;
        if !reused {
            let put = self
                .cold
                .put(
                    cold_location,
                    bytes,
                    &self.put_options(candidate, Some(&digest)),
                )
                .await
                .map_err(|e| e.context(format!("put cold {cold_location}")))?;
            // The PUT's own answer proves the copy where the store's ETag is
            // proof; elsewhere it is looked at (or read back) once more.
            if !verify::put_proves(self.cold, &put, &digest, self.verify)
                && !verify::cold_holds(self.cold, cold_location, &digest, self.verify).await?
            {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!("cold copy {cold_location} does not match the hot bytes after upload"),
                ));
            }
        }

        Ok(Ran::Verified(Verified {
            hot: hot_location.clone(),
            cold: cold_location.clone(),
            bytes: digest.size,
        }))
    }

    /// Switch, delete hot and clear for one blob whose copy is proven.
    async fn finish(&self, candidate: &ArchiveCandidate, verified: &Verified) -> Result<Outcome> {
        self.switch_to_cold(candidate, &verified.cold).await?;
        self.hot
            .delete(&verified.hot)
            .await
            .map_err(|e| e.context(format!("delete hot {}", verified.hot)))?;
        self.source.clear_hot(candidate, self.fence()).await?;
        Ok(Outcome::Archived {
            bytes: verified.bytes,
        })
    }

    async fn finish_without_hot(
        &self,
        candidate: &ArchiveCandidate,
        cold_location: &Location,
    ) -> Result<Outcome> {
        match verify::cold_copy_alone(self.cold, cold_location, candidate).await? {
            Some(Ok(_)) => {
                self.found(candidate).await?;
                self.switch_to_cold(candidate, cold_location).await?;
                self.source.clear_hot(candidate, self.fence()).await?;
                Ok(Outcome::Completed)
            }
            Some(Err(mismatch)) => {
                let reason = format!(
                    "hot copy missing and cold copy {cold_location} is bad: {}",
                    mismatch.0
                );
                Ok(Outcome::Missing { reason })
            }
            None => {
                let reason = format!(
                    "missing from hot ({}/{}) and cold ({cold_location})",
                    candidate.storage_bucket, candidate.storage_path
                );
                Ok(Outcome::Missing { reason })
            }
        }
    }

    /// The blob exists after all: an earlier suspicion that it was missing is dropped.
    async fn found(&self, candidate: &ArchiveCandidate) -> Result<()> {
        if candidate.missing_since.is_some() {
            self.source.clear_missing(candidate, self.fence()).await?;
        }
        Ok(())
    }

    /// Also for a row already switched: the fenced write is what proves
    /// the lease is still held before the hot delete that follows.
    async fn switch_to_cold(&self, candidate: &ArchiveCandidate, cold: &Location) -> Result<()> {
        self.source
            .record_archived(
                candidate,
                self.fence(),
                self.cold.provider(),
                &cold.bucket,
                cold.key.as_str(),
            )
            .await
    }

    async fn quarantine(&self, candidate: &ArchiveCandidate, reason: String) -> Result<Outcome> {
        self.source
            .mark_quarantined(candidate, self.fence(), &reason)
            .await?;
        Ok(Outcome::Quarantined { reason })
    }

    /// `stored` is `None` for a streamed upload, whose digest is known only
    /// at its end: such a copy, if ever reused, is read back.
    fn put_options(&self, candidate: &ArchiveCandidate, stored: Option<&Digest>) -> PutOptions {
        use crate::store::meta;
        // `sha256` keeps the seed's meaning (digest of the decoded content, as
        // in the catalog); `stored-sha256` is of the bytes as stored.
        let mut metadata = BTreeMap::from([
            (meta::TASK_ID.to_owned(), candidate.task_id.clone()),
            (meta::JOB_ID.to_owned(), candidate.job_id.clone()),
        ]);
        if let Some(digest) = stored {
            metadata.insert(meta::STORED_SHA256.to_owned(), digest.sha256_hex());
        }
        if let Some(sha) = &candidate.sha256 {
            metadata.insert(meta::SHA256.to_owned(), sha.trim().to_ascii_lowercase());
        }
        PutOptions {
            content_type: candidate.content_type.clone(),
            content_encoding: candidate.content_encoding.clone(),
            metadata,
        }
    }
}
