//! Large blobs, streamed: hot → cold without ever holding the blob.
//!
//! A blob above `ARCHIVE_STREAM_THRESHOLD` is read from hot as a stream and
//! fed, piece by piece, to the cold upload ([`Store::put_stream`]: S3
//! multipart in parts of [`STREAM_PART_SIZE`], the folder store's atomic
//! write). On the way a blocking thread (a [`Tally`]) hashes every piece —
//! size, SHA-256, MD5, and the MD5 of each part — and checks the content
//! against the catalog as the in-memory path does (compressed size, the
//! SHA-256 of the gunzipped content), so no hashing or decoding runs on the
//! async executor. Bytes that disagree with the catalog end the body with an
//! error, which aborts the upload before it is committed; the blob is then
//! quarantined as any other.
//!
//! The copy is proven before the caller may delete hot: by the upload's ETag
//! on a store whose profile trusts it ([`Store::etag_proves_md5`]), either a
//! single-part MD5 or a multipart `md5(part md5s)-N` computed here; else by
//! [`verify::cold_holds`], which reads it back as a stream. A streamed copy
//! carries no `stored-sha256` metadata (unknown when the upload starts), so
//! a later reuse of it is always read back, never assumed good.
//!
//! Memory: at most [`STREAMS_IN_FLIGHT`] blobs stream at once in a process,
//! whatever the concurrency; others wait for a turn before their hot read
//! opens. Each holds about three parts in the upload (the part being filled,
//! one cached, one being sent: 24 MiB at 8 MiB parts) plus
//! [`PIECES_IN_FLIGHT`] read pieces queued for hashing, so streamed blobs
//! hold at most about 50 MiB together, whatever their size.

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::{Buf as _, Bytes, BytesMut};
use futures::StreamExt as _;
use md5::Md5;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit, mpsc};

use super::verify;
use crate::config::VerifyMode;
use crate::error::{Error, ErrorKind, Result};
use crate::integrity::{self, Digest, Mismatch};
use crate::model::ArchiveCandidate;
use crate::store::{ByteStream, Location, PutOptions, PutResult, STREAM_PART_SIZE, Store};

/// Blobs streamed at once in this process.
pub(crate) const STREAMS_IN_FLIGHT: usize = 2;

/// Read pieces queued for the hashing thread of one stream.
pub(crate) const PIECES_IN_FLIGHT: usize = 16;

static STREAMS: Semaphore = Semaphore::const_new(STREAMS_IN_FLIGHT);

/// A hot object read either whole (small) or as a stream (large).
pub(crate) enum HotRead {
    /// Small enough to hold.
    Whole(Bytes),
    /// Above the threshold: streamed, holding a turn.
    Streamed(HotStream),
}

/// An open hot read with its turn among the streams in flight.
pub(crate) struct HotStream {
    size: u64,
    body: ByteStream,
    _turn: SemaphorePermit<'static>,
}

/// Read the hot object: whole when it is at most `threshold` bytes, else as
/// a stream; one GET either way. A catalog size above the threshold streams
/// at once; otherwise the read's answer decides, so a catalog that
/// understates an object's size (or has none) never makes us buffer a large
/// object whole: it streams, and the size check finds the disagreement.
pub(crate) async fn read_hot(
    hot: &dyn Store,
    location: &Location,
    candidate: &ArchiveCandidate,
    threshold: u64,
) -> Result<HotRead> {
    let catalog_size = candidate
        .compressed_size_bytes
        .and_then(|n| u64::try_from(n).ok());
    if catalog_size.is_some_and(|size| size > threshold) {
        // The turn comes first: a read opened and left waiting could time out.
        let turn = turn().await?;
        let (size, body) = hot.get_stream(location).await?;
        return Ok(HotRead::Streamed(HotStream {
            size,
            body,
            _turn: turn,
        }));
    }
    let (size, mut body) = hot.get_stream(location).await?;
    if size > threshold {
        return Ok(HotRead::Streamed(HotStream {
            size,
            body,
            _turn: turn().await?,
        }));
    }
    let mut all = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(piece) = body.next().await {
        all.extend_from_slice(&piece?);
        if all.len() as u64 > size {
            // More than announced: the stream, not the blob, is wrong.
            return Err(Error::new(
                ErrorKind::Transient,
                format!("the hot read went past the {size} bytes it announced"),
            ));
        }
    }
    if (all.len() as u64) < size {
        return Err(short_read(all.len() as u64, size));
    }
    Ok(HotRead::Whole(all.freeze()))
}

async fn turn() -> Result<SemaphorePermit<'static>> {
    STREAMS
        .acquire()
        .await
        .map_err(|e| Error::new(ErrorKind::Unexpected, "stream turns closed").with_source(e))
}

/// How a streamed copy ended.
#[derive(Debug)]
pub(crate) enum Copied {
    /// The cold copy holds exactly these bytes, proven.
    Proven(Digest),
    /// The hot bytes disagree with the catalog; nothing was committed in cold.
    Mismatch(Mismatch),
}

/// Stream `hot` to `cold_location`, checking it against `candidate`'s
/// catalog row on the way, and prove the copy. Never touches the catalog or
/// the hot object: the caller switches and deletes once this returns
/// [`Copied::Proven`].
pub(crate) async fn copy(
    hot: HotStream,
    cold: &dyn Store,
    cold_location: &Location,
    candidate: &ArchiveCandidate,
    options: &PutOptions,
    mode: VerifyMode,
) -> Result<Copied> {
    let HotStream {
        size,
        body,
        _turn: turn,
    } = hot;
    if let Err(mismatch) = integrity::check_size(candidate, size) {
        return Ok(Copied::Mismatch(mismatch));
    }
    let outcome = Arc::new(Mutex::new(None));
    let checked = checked_body(
        body,
        size,
        Tally::start(Some(candidate.clone())),
        outcome.clone(),
    );
    let put = cold.put_stream(cold_location, size, checked, options).await;
    let tallied = outcome
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    drop(turn);
    let (put, tallied) = match (put, tallied) {
        // Our own error ended the body: the upload was aborted.
        (_, Some(Err(mismatch))) => return Ok(Copied::Mismatch(mismatch)),
        (Err(e), _) => return Err(e.context(format!("put cold {cold_location}"))),
        (Ok(put), Some(Ok(tallied))) => (put, tallied),
        (Ok(_), None) => {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!("put cold {cold_location}: the store committed before the body ended"),
            ));
        }
    };
    if etag_proves(cold, &put, &tallied, mode)
        || verify::cold_holds(cold, cold_location, &tallied.digest, mode).await?
    {
        Ok(Copied::Proven(tallied.digest))
    } else {
        Err(Error::new(
            ErrorKind::Integrity,
            format!("cold copy {cold_location} does not match the hot bytes after upload"),
        ))
    }
}

/// Whether the upload's ETag proves the copy: on a store whose profile
/// trusts its ETag, the MD5 of the bytes (one part) or the multipart ETag of
/// parts of [`STREAM_PART_SIZE`]. Either is computed by the store from what
/// it stored; a store that forms multipart ETags otherwise is read back.
fn etag_proves(cold: &dyn Store, put: &PutResult, tallied: &Tallied, mode: VerifyMode) -> bool {
    if mode != VerifyMode::Auto || !cold.etag_proves_md5() {
        return false;
    }
    put.etag_md5() == Some(tallied.digest.md5)
        || put
            .etag
            .as_deref()
            .is_some_and(|etag| etag.eq_ignore_ascii_case(&tallied.multipart_etag))
}

/// `body` as it goes to the upload: every piece also goes to `tally`; the
/// body ends with an error (aborting the upload) when the tally finds the
/// bytes disagree with the catalog or the body is not `size` bytes long,
/// and the tally's result is left in `outcome`.
fn checked_body(
    body: ByteStream,
    size: u64,
    tally: Tally,
    outcome: Arc<Mutex<Option<std::result::Result<Tallied, Mismatch>>>>,
) -> ByteStream {
    struct State {
        body: ByteStream,
        tally: Option<Tally>,
        /// Bytes the body has delivered.
        fed: u64,
    }
    let state = State {
        body,
        tally: Some(tally),
        fed: 0,
    };
    futures::stream::unfold(state, move |mut state| {
        let outcome = outcome.clone();
        async move {
            let tally = state.tally.as_mut()?;
            // Whether the body ended; else the tally stopped early (on a mismatch).
            let ended = match state.body.next().await {
                Some(Ok(piece)) => {
                    state.fed += piece.len() as u64;
                    if tally.feed(piece.clone()).await {
                        return Some((Ok(piece), state));
                    }
                    false
                }
                Some(Err(e)) => {
                    state.tally = None;
                    return Some((Err(e), state));
                }
                None => true,
            };
            let tally = state.tally.take()?;
            if ended && state.fed < size {
                // A read cut short says nothing about the blob: try again,
                // never a verdict on bytes that did not arrive.
                return Some((Err(short_read(state.fed, size)), state));
            }
            let result = match tally.finish().await {
                Ok(result) => result,
                Err(e) => return Some((Err(e), state)),
            };
            let failed = match &result {
                Ok(tallied) if ended && tallied.digest.size == size => None,
                Ok(tallied) => Some(short_read(tallied.digest.size, size)),
                Err(_) => Some(Error::new(
                    ErrorKind::Integrity,
                    "the hot bytes disagree with the catalog: upload abandoned",
                )),
            };
            if failed.is_none() || result.is_err() {
                *outcome
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(result);
            }
            failed.map(|e| (Err(e), state))
        }
    })
    .boxed()
}

/// The hot read ended before the `size` bytes its answer announced.
fn short_read(got: u64, size: u64) -> Error {
    Error::new(
        ErrorKind::Transient,
        format!("the hot read ended after {got} of {size} bytes"),
    )
}

/// Size and digests of a stream, and its multipart ETag.
#[derive(Debug)]
pub(crate) struct Tallied {
    pub(crate) digest: Digest,
    /// `hex(md5(part md5s))-N` for parts of [`STREAM_PART_SIZE`].
    pub(crate) multipart_etag: String,
}

/// Hashes a stream's pieces on a blocking thread, fed through a bounded
/// channel; with a catalog row, also checks the content against it and
/// stops at the first disagreement.
pub(crate) struct Tally {
    pieces: Option<mpsc::Sender<Bytes>>,
    task: tokio::task::JoinHandle<std::result::Result<Tallied, Mismatch>>,
}

impl Tally {
    /// Start a tally; `candidate`'s row is what the content is checked against.
    pub(crate) fn start(candidate: Option<ArchiveCandidate>) -> Tally {
        let (pieces, received) = mpsc::channel(PIECES_IN_FLIGHT);
        let task = tokio::task::spawn_blocking(move || {
            let mut stream = Hashing::new(received);
            if let Some(candidate) = &candidate {
                integrity::check_content(candidate, &mut stream)?;
            }
            // Whatever the check did not need is still hashed.
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
            Ok(stream.finish())
        });
        Tally {
            pieces: Some(pieces),
            task,
        }
    }

    /// Hand over one piece; `false` once the tally has stopped (a mismatch).
    pub(crate) async fn feed(&mut self, piece: Bytes) -> bool {
        match &self.pieces {
            Some(pieces) => pieces.send(piece).await.is_ok(),
            None => false,
        }
    }

    /// The result once every piece is hashed.
    pub(crate) async fn finish(mut self) -> Result<std::result::Result<Tallied, Mismatch>> {
        self.pieces = None;
        (&mut self.task)
            .await
            .map_err(|e| Error::new(ErrorKind::Unexpected, "hashing task failed").with_source(e))
    }
}

/// Hash the whole of `body` off the executor.
pub(crate) async fn tally(mut body: ByteStream) -> Result<Tallied> {
    let mut tally = Tally::start(None);
    while let Some(piece) = body.next().await {
        tally.feed(piece?).await;
    }
    tally
        .finish()
        .await?
        .map_err(|mismatch| Error::new(ErrorKind::Unexpected, mismatch.0))
}

/// The pieces from the channel as one `Read`, hashed as they are read.
struct Hashing {
    received: mpsc::Receiver<Bytes>,
    piece: Bytes,
    size: u64,
    sha256: Sha256,
    md5: Md5,
    part: Md5,
    part_filled: usize,
    part_md5s: Md5,
    parts: u64,
}

impl Hashing {
    fn new(received: mpsc::Receiver<Bytes>) -> Self {
        Self {
            received,
            piece: Bytes::new(),
            size: 0,
            sha256: Sha256::new(),
            md5: Md5::new(),
            part: Md5::new(),
            part_filled: 0,
            part_md5s: Md5::new(),
            parts: 0,
        }
    }

    fn hash(&mut self, mut bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.sha256.update(bytes);
        self.md5.update(bytes);
        while !bytes.is_empty() {
            let n = bytes.len().min(STREAM_PART_SIZE - self.part_filled);
            self.part.update(&bytes[..n]);
            self.part_filled += n;
            bytes = &bytes[n..];
            if self.part_filled == STREAM_PART_SIZE {
                self.end_part();
            }
        }
    }

    fn end_part(&mut self) {
        let part = std::mem::replace(&mut self.part, Md5::new());
        self.part_md5s.update(part.finalize());
        self.part_filled = 0;
        self.parts += 1;
    }

    fn finish(mut self) -> Tallied {
        if self.part_filled > 0 || self.parts == 0 {
            self.end_part();
        }
        Tallied {
            digest: Digest {
                size: self.size,
                sha256: self.sha256.finalize().into(),
                md5: self.md5.finalize().into(),
            },
            multipart_etag: format!("{}-{}", hex::encode(self.part_md5s.finalize()), self.parts),
        }
    }
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.piece.is_empty() {
            match self.received.blocking_recv() {
                Some(piece) => self.piece = piece,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len());
        buf[..n].copy_from_slice(&self.piece[..n]);
        self.piece.advance(n);
        self.hash(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(data: &[u8], size: usize) -> ByteStream {
        let pieces: Vec<Result<Bytes>> = data
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(pieces).boxed()
    }

    #[tokio::test]
    async fn the_tally_equals_the_in_memory_digest_and_the_s3_multipart_etag() {
        let data: Vec<u8> = (0..STREAM_PART_SIZE * 2 + 12_345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let tallied = tally(pieces(&data, 70_000)).await.unwrap();
        assert_eq!(tallied.digest, Digest::of(&data));
        let mut md5s = Vec::new();
        for part in data.chunks(STREAM_PART_SIZE) {
            md5s.extend_from_slice(&Md5::digest(part));
        }
        assert_eq!(
            tallied.multipart_etag,
            format!("{}-3", hex::encode(Md5::digest(&md5s)))
        );
        let empty = tally(pieces(b"", 1)).await.unwrap();
        assert_eq!(empty.digest, Digest::of(b""));
    }
}
