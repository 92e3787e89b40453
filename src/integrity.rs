//! Integrity: a blob's digests, and its bytes checked against what the
//! catalog says of them (size, `html_sha256` of the decoded content).
//! Pure functions over bytes and a candidate, shared by the archiver (hot
//! bytes before a move), the scrub (cold bytes after one) and the store
//! probe (its own round trip).

use std::io::Read;

use md5::Md5;
use sha2::{Digest as _, Sha256};

use crate::model::{ArchiveCandidate, DigestAlgorithm, DigestOf};

/// Size and digests of a blob's stored bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Digest {
    pub(crate) size: u64,
    pub(crate) sha256: [u8; 32],
    pub(crate) md5: [u8; 16],
}

impl Digest {
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self {
            size: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
            md5: Md5::digest(bytes).into(),
        }
    }

    pub(crate) fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Why a blob's bytes disagree with its catalog row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mismatch(pub(crate) String);

/// Check stored bytes against what the catalog says of them: the compressed
/// size, and the SHA-256 of the decoded content (`html_sha256`).
pub(crate) fn check_against_catalog(
    candidate: &ArchiveCandidate,
    bytes: &[u8],
) -> std::result::Result<(), Mismatch> {
    check_size(candidate, bytes.len() as u64)?;
    check_content(candidate, bytes)
}

/// The catalog's compressed size (when it has one) against `size`.
pub(crate) fn check_size(
    candidate: &ArchiveCandidate,
    size: u64,
) -> std::result::Result<(), Mismatch> {
    if let Some(expected) = candidate.compressed_size_bytes
        && u64::try_from(expected).ok() != Some(size)
    {
        return Err(Mismatch(format!(
            "size mismatch: catalog says {expected} bytes, store holds {size}"
        )));
    }
    Ok(())
}

/// The catalog's digest (the built-in's `html_sha256` of the decoded
/// content, or a declared source's digest of the stored or decoded bytes)
/// and decoded size, when it has them, against the content `stored` holds;
/// `stored` is read only as far as needed.
pub(crate) fn check_content(
    candidate: &ArchiveCandidate,
    stored: impl Read,
) -> std::result::Result<(), Mismatch> {
    let (algorithm, of, expected, column) = match (&candidate.digest, &candidate.sha256) {
        (Some(d), _) => (d.algorithm, d.of, d.hex.as_str(), "the catalog digest"),
        (None, Some(sha)) => (
            DigestAlgorithm::Sha256,
            DigestOf::Decoded,
            sha.as_str(),
            "catalog html_sha256",
        ),
        (None, None) => return Ok(()),
    };
    let expected = expected.trim().to_ascii_lowercase();
    let hex_len = match algorithm {
        DigestAlgorithm::Sha256 => 64,
        DigestAlgorithm::Md5 => 32,
    };
    if expected.len() != hex_len || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Mismatch(format!(
            "{column} {expected:?} is not a hex {}",
            match algorithm {
                DigestAlgorithm::Sha256 => "SHA-256",
                DigestAlgorithm::Md5 => "MD5",
            }
        )));
    }
    let (encoding, decoded_size) = match of {
        DigestOf::Stored => (None, None),
        DigestOf::Decoded => (
            candidate.content_encoding.as_deref(),
            match candidate.size_bytes {
                Some(n) => Some(u64::try_from(n).map_err(|_| {
                    Mismatch(format!("the catalog's decoded size {n} is not a size"))
                })?),
                None => None,
            },
        ),
    };
    let actual = hex::encode(content_digest(algorithm, encoding, stored, decoded_size)?);
    if actual != expected {
        let bytes = match of {
            DigestOf::Stored => "stored",
            DigestOf::Decoded => "decoded",
        };
        return Err(Mismatch(format!(
            "content digest mismatch: {column} {expected}, {bytes} bytes hash to {actual}"
        )));
    }
    Ok(())
}

/// A running digest of one algorithm.
enum Hasher {
    Sha256(Sha256),
    Md5(Md5),
}

impl Hasher {
    fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            DigestAlgorithm::Md5 => Hasher::Md5(Md5::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Md5(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        }
    }
}

/// The `algorithm` digest of what `stored` decodes to under `encoding`
/// (`None`: the bytes as they are), stopping early once the content
/// outgrows `expected_size` (a gzip bomb is not inflated in full).
fn content_digest(
    algorithm: DigestAlgorithm,
    encoding: Option<&str>,
    mut stored: impl Read,
    expected_size: Option<u64>,
) -> std::result::Result<Vec<u8>, Mismatch> {
    let mut hasher = Hasher::new(algorithm);
    let mut decoded = 0u64;
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stored.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        hasher.update(&buf[..n]);
                        decoded += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Mismatch(format!("the bytes could not be read: {e}"))),
                }
            }
        }
        Some("gzip") | Some("x-gzip") => {
            let mut decoder = flate2::read::MultiGzDecoder::new(stored);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match decoder.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        hasher.update(&buf[..n]);
                        decoded += n as u64;
                        if expected_size.is_some_and(|size| decoded > size) {
                            break;
                        }
                    }
                    Err(e) => {
                        return Err(Mismatch(format!(
                            "content-encoding is gzip but the bytes are not valid gzip: {e}"
                        )));
                    }
                }
            }
        }
        Some(other) => {
            return Err(Mismatch(format!(
                "unknown content-encoding {other:?}: cannot check the decoded digest"
            )));
        }
    }
    if let Some(size) = expected_size
        && decoded != size
    {
        return Err(Mismatch(format!(
            "decoded size mismatch: catalog says {size} decoded bytes, content decodes to {}{} bytes",
            if decoded > size { "more than " } else { "" },
            if decoded > size { size } else { decoded }
        )));
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn candidate(bytes: &[u8], html: &[u8]) -> ArchiveCandidate {
        ArchiveCandidate {
            task_id: "t".into(),
            job_id: "j".into(),
            storage_bucket: "b".into(),
            storage_path: "p".into(),
            sha256: Some(hex::encode(Sha256::digest(html))),
            compressed_size_bytes: Some(bytes.len() as i64),
            size_bytes: Some(html.len() as i64),
            content_type: Some("text/html".into()),
            content_encoding: Some("gzip".into()),
            archived_at: None,
            attempts: 0,
            claims: 1,
            missing_since: None,
            digest: None,
            cold_name: None,
        }
    }

    #[test]
    fn a_bomb_is_stopped_once_it_outgrows_the_catalog_size() {
        let html = vec![0u8; 8 * 1024 * 1024];
        let stored = gzip(&html);
        let mut c = candidate(&stored, b"<html>small page</html>");
        c.size_bytes = Some(23);
        let Err(Mismatch(reason)) = check_against_catalog(&c, &stored) else {
            panic!("a bomb passed");
        };
        assert!(reason.contains("more than 23"), "{reason}");
    }

    #[test]
    fn matching_gzip_passes_and_every_disagreement_is_caught() {
        let html = b"<html>hello</html>";
        let stored = gzip(html);
        let good = candidate(&stored, html);
        assert_eq!(check_against_catalog(&good, &stored), Ok(()));

        let mut wrong_digest = good.clone();
        wrong_digest.sha256 = Some(hex::encode(Sha256::digest(b"other")));
        assert!(check_against_catalog(&wrong_digest, &stored).is_err());

        let mut wrong_size = good.clone();
        wrong_size.compressed_size_bytes = Some(1);
        assert!(check_against_catalog(&wrong_size, &stored).is_err());

        let not_gzip = b"plain bytes".to_vec();
        let mut c = candidate(&not_gzip, html);
        c.compressed_size_bytes = None;
        assert!(check_against_catalog(&c, &not_gzip).is_err());

        let mut unknown = good.clone();
        unknown.content_encoding = Some("br".into());
        assert!(check_against_catalog(&unknown, &stored).is_err());

        let mut wrong_decoded_size = good.clone();
        wrong_decoded_size.size_bytes = Some(html.len() as i64 - 1);
        assert!(check_against_catalog(&wrong_decoded_size, &stored).is_err());
        wrong_decoded_size.size_bytes = Some(html.len() as i64 + 1);
        assert!(check_against_catalog(&wrong_decoded_size, &stored).is_err());
        wrong_decoded_size.size_bytes = Some(-1);
        assert!(check_against_catalog(&wrong_decoded_size, &stored).is_err());

        let mut malformed = good.clone();
        malformed.sha256 = Some("zz".into());
        assert!(check_against_catalog(&malformed, &stored).is_err());

        // No digest, no size: nothing to hold the bytes against.
        let mut bare = good;
        bare.sha256 = None;
        bare.compressed_size_bytes = None;
        assert_eq!(check_against_catalog(&bare, b"anything"), Ok(()));
    }
}
