//! What an S3 server said when it refused a request, read at the HTTP layer.
//!
//! OpenDAL parses S3's XML error answer but keeps its `<Code>` only inside
//! the message text, which nothing here may read. [`AnswerReader`] sits
//! between OpenDAL and its HTTP transport: for an answer that is not a
//! success it reads `<Code>` and `<Region>` from the XML body and the
//! `x-amz-bucket-region` header. When that is a [`Refusal`] this crate
//! tells apart (wrong signing region, refused checksum, signature
//! mismatch), the request fails with the [`S3Answer`] as the error's
//! source, for `store::opendal::classify`; every other answer goes on to
//! OpenDAL unchanged (body included), which judges it as before.

use std::fmt;

use ::opendal::{
    Buffer, Error as OdError, ErrorKind as OdKind, HttpBody, HttpTransport, HttpTransporter,
};
use http::{Request, Response, StatusCode};
use serde::Deserialize;

/// An S3 refusal, as the server stated it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct S3Answer {
    /// HTTP status.
    pub(super) status: u16,
    /// The XML `<Code>` (`BadDigest`, …); `None` for a bodiless answer (HEAD).
    pub(super) code: Option<String>,
    /// The region the store says it is in: `<Region>`, else `x-amz-bucket-region`.
    pub(super) region: Option<String>,
    /// The region the request was signed for.
    pub(super) signed_region: String,
    /// The setting that names the signing region (`ARCHIVE_REGION`), for messages.
    pub(super) region_variable: Option<String>,
}

/// The refusals that get a kind (and advice) of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The request was signed for another region than the bucket's.
    WrongRegion,
    /// The body did not match its `Content-MD5` (`BadDigest`): damaged on the way.
    BadDigest,
    /// `SignatureDoesNotMatch`: a wrong secret, or headers changed on the way.
    SignatureMismatch,
}

impl S3Answer {
    /// What kind of refusal this is, if one of ours.
    pub(super) fn refusal(&self) -> Option<Refusal> {
        let other_region = self
            .region
            .as_deref()
            .is_some_and(|r| !r.eq_ignore_ascii_case(&self.signed_region));
        match self.code.as_deref() {
            // Also sent for other header faults; when the store names its
            // region and it is the one signed for, the region is not it.
            Some("AuthorizationHeaderMalformed") if self.region.is_none() || other_region => {
                Some(Refusal::WrongRegion)
            }
            Some("IllegalLocationConstraintException" | "PermanentRedirect") => {
                Some(Refusal::WrongRegion)
            }
            Some("BadDigest") => Some(Refusal::BadDigest),
            Some("SignatureDoesNotMatch") => Some(Refusal::SignatureMismatch),
            // A HEAD answer has no body: AWS sends 301 (or 400) and the header.
            None if matches!(self.status, 301 | 400) && other_region => Some(Refusal::WrongRegion),
            _ => None,
        }
    }

    /// What to do about a wrong region, in words: which region to set where.
    pub(super) fn region_advice(&self) -> String {
        let variable = self.region_variable.as_deref();
        match (self.region.as_deref(), variable) {
            (Some(region), Some(var)) => {
                format!("the store expects region {region}: set {var}={region}")
            }
            (Some(region), None) => {
                format!("the store expects region {region}: set the signing region to {region}")
            }
            (None, Some(var)) => format!(
                "the store refused signing region {:?}: set {var} to the bucket's region",
                self.signed_region
            ),
            (None, None) => format!(
                "the store refused signing region {:?}: set the bucket's region",
                self.signed_region
            ),
        }
    }

    /// Read the answer `parts` and `body` make up.
    fn read(parts: &http::response::Parts, body: &[u8], reader: &AnswerReader) -> S3Answer {
        // Unknown elements are ignored; a body that is not S3's XML gives neither field.
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase")]
        struct ErrorBody {
            code: Option<String>,
            region: Option<String>,
        }
        let xml: ErrorBody = std::str::from_utf8(body)
            .ok()
            .and_then(|text| quick_xml::de::from_str(text).ok())
            .unwrap_or_default();
        let nonempty = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let header_region = parts
            .headers
            .get("x-amz-bucket-region")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        S3Answer {
            status: parts.status.as_u16(),
            code: nonempty(xml.code),
            region: nonempty(xml.region).or(nonempty(header_region)),
            signed_region: reader.signed_region.clone(),
            region_variable: reader.region_variable.clone(),
        }
    }
}

impl fmt::Display for S3Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(region) = &self.region {
            write!(f, " (store region {region})")?;
        }
        Ok(())
    }
}

impl std::error::Error for S3Answer {}

/// OpenDAL's HTTP transport, with the refusals of [`S3Answer::refusal`]
/// turned into errors that carry the answer; see the module docs.
pub(super) struct AnswerReader {
    inner: HttpTransporter,
    signed_region: String,
    region_variable: Option<String>,
}

impl AnswerReader {
    /// Wrap `inner` for a store signing for `signed_region`, set by `region_variable`.
    pub(super) fn new(
        inner: HttpTransporter,
        signed_region: &str,
        region_variable: Option<String>,
    ) -> Self {
        Self {
            inner,
            signed_region: signed_region.to_owned(),
            region_variable,
        }
    }
}

impl HttpTransport for AnswerReader {
    async fn fetch(&self, req: Request<Buffer>) -> ::opendal::Result<Response<HttpBody>> {
        let asked = is_delete_objects(&req).then(|| req.body().clone());
        let response = self.inner.fetch(req).await?;
        if let Some(asked) = asked
            && response.status().is_success()
        {
            return check_delete_answer(&asked, response).await;
        }
        // Successes stream on untouched (object bodies can be large).
        if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let (parts, mut body) = response.into_parts();
        let buffer = body.to_buffer().await?;
        let answer = S3Answer::read(&parts, &buffer.to_bytes(), self);
        let Some(refusal) = answer.refusal() else {
            let size = buffer.len() as u64;
            let once = futures::stream::iter((!buffer.is_empty()).then_some(Ok(buffer)));
            return Ok(Response::from_parts(parts, HttpBody::new(once, Some(size))));
        };
        // OpenDAL's own kind for it, in case anything reads that first;
        // classification goes by the answer.
        let kind = match refusal {
            Refusal::WrongRegion => OdKind::ConfigInvalid,
            Refusal::SignatureMismatch => OdKind::PermissionDenied,
            Refusal::BadDigest => OdKind::Unexpected,
        };
        Err(OdError::new(kind, "S3 refused the request").set_source(answer))
    }
}

/// Whether `req` is an S3 `DeleteObjects` (`POST /{bucket}?delete`).
fn is_delete_objects(req: &Request<Buffer>) -> bool {
    req.method() == http::Method::POST
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "delete" || p == "delete="))
}

/// Pass on a `DeleteObjects` answer only when each key it refuses is one
/// that `asked` (the request body) named, without a version. OpenDAL
/// counts every key the answer does not refuse as deleted, so a refusal
/// it could not match (another spelling of the key, a version id) would
/// read as a deletion; failing the request instead leaves all its keys
/// undecided. An answer that is not S3's XML goes on to OpenDAL, which
/// refuses it.
async fn check_delete_answer(
    asked: &Buffer,
    response: Response<HttpBody>,
) -> ::opendal::Result<Response<HttpBody>> {
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct Named {
        key: String,
        version_id: Option<String>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct Delete {
        object: Vec<Named>,
    }
    #[derive(Deserialize, Default)]
    #[serde(default, rename_all = "PascalCase")]
    struct DeleteResult {
        error: Vec<Named>,
    }
    let (parts, mut body) = response.into_parts();
    let buffer = body.to_buffer().await?;
    fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
        quick_xml::de::from_str(std::str::from_utf8(bytes).ok()?).ok()
    }
    let request: Option<Delete> = parse(&asked.to_bytes());
    let answer: Option<DeleteResult> = parse(&buffer.to_bytes());
    if let (Some(request), Some(answer)) = (request, answer) {
        let keys: std::collections::HashSet<&str> =
            request.object.iter().map(|o| o.key.as_str()).collect();
        let unmatched = answer
            .error
            .iter()
            .any(|e| e.version_id.is_some() || !keys.contains(e.key.as_str()));
        if unmatched {
            return Err(OdError::new(
                OdKind::Unexpected,
                "the DeleteObjects answer refuses a key that was not asked about",
            ));
        }
    }
    let size = buffer.len() as u64;
    let once = futures::stream::iter((!buffer.is_empty()).then_some(Ok(buffer)));
    Ok(Response::from_parts(parts, HttpBody::new(once, Some(size))))
}

/// The [`S3Answer`] behind an OpenDAL error, if the transport put one there.
pub(super) fn answer_of(err: &OdError) -> Option<&S3Answer> {
    let mut cause = std::error::Error::source(err);
    while let Some(e) = cause {
        if let Some(answer) = e.downcast_ref::<S3Answer>() {
            return Some(answer);
        }
        cause = e.source();
    }
    None
}

/// Build a transport-made error around `answer`, as [`AnswerReader`] does.
#[cfg(test)]
pub(super) fn refused(answer: S3Answer) -> OdError {
    OdError::new(OdKind::Unexpected, "S3 refused the request").set_source(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn reader() -> AnswerReader {
        AnswerReader::new(
            HttpTransporter::default(),
            "auto",
            Some("ARCHIVE_REGION".into()),
        )
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> S3Answer {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        S3Answer::read(&parts, body.as_bytes(), &reader())
    }

    #[test]
    fn code_and_region_come_from_the_xml_body_or_the_header() {
        let wrong = answer(
            400,
            &[],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>\
             <Message>the region 'auto' is wrong; expecting 'eu-west-1'</Message>\
             <Region>eu-west-1</Region><RequestId>1</RequestId></Error>",
        );
        assert_eq!(wrong.code.as_deref(), Some("AuthorizationHeaderMalformed"));
        assert_eq!(wrong.region.as_deref(), Some("eu-west-1"));
        assert_eq!(wrong.refusal(), Some(Refusal::WrongRegion));
        assert_eq!(
            wrong.region_advice(),
            "the store expects region eu-west-1: set ARCHIVE_REGION=eu-west-1"
        );

        let head = answer(301, &[("x-amz-bucket-region", "us-west-2")], "");
        assert_eq!(
            (head.code.as_deref(), head.region.as_deref()),
            (None, Some("us-west-2"))
        );
        assert_eq!(head.refusal(), Some(Refusal::WrongRegion));

        let not_xml = answer(400, &[], "<html>Bad Request</html>");
        assert_eq!((not_xml.code, not_xml.region), (None, None));
        let empty = answer(400, &[], "");
        assert_eq!(empty.refusal(), None);
    }

    #[test]
    fn refusal_table() {
        let with = |status: u16, code: Option<&str>, region: Option<&str>| S3Answer {
            status,
            code: code.map(str::to_owned),
            region: region.map(str::to_owned),
            signed_region: "auto".into(),
            region_variable: None,
        };
        let cases = [
            (
                with(400, Some("AuthorizationHeaderMalformed"), Some("eu-west-1")),
                Some(Refusal::WrongRegion),
            ),
            (
                with(400, Some("AuthorizationHeaderMalformed"), None),
                Some(Refusal::WrongRegion),
            ),
            // The store's region is the one signed for: another header fault.
            (
                with(400, Some("AuthorizationHeaderMalformed"), Some("AUTO")),
                None,
            ),
            (
                with(400, Some("IllegalLocationConstraintException"), None),
                Some(Refusal::WrongRegion),
            ),
            (
                with(301, Some("PermanentRedirect"), Some("eu-west-1")),
                Some(Refusal::WrongRegion),
            ),
            (
                with(301, None, Some("eu-west-1")),
                Some(Refusal::WrongRegion),
            ),
            (with(301, None, None), None),
            (with(400, None, Some("auto")), None),
            (with(400, Some("BadDigest"), None), Some(Refusal::BadDigest)),
            (
                with(403, Some("SignatureDoesNotMatch"), None),
                Some(Refusal::SignatureMismatch),
            ),
            (with(403, Some("AccessDenied"), None), None),
            (with(404, Some("NoSuchBucket"), None), None),
            (with(404, Some("NoSuchKey"), None), None),
            (with(503, Some("SlowDown"), None), None),
        ];
        for (answer, want) in cases {
            assert_eq!(answer.refusal(), want, "{answer}");
        }
    }

    #[test]
    fn the_answer_is_found_behind_opendal_context() {
        let answer = with_code("BadDigest");
        let err = refused(answer.clone())
            .with_operation("write")
            .with_context("path", "k");
        assert_eq!(answer_of(&err), Some(&answer));
        assert_eq!(answer_of(&OdError::new(OdKind::Unexpected, "400")), None);
    }

    /// `check_delete_answer` on a DeleteObjects request for `keys` and a 200 `answer`.
    async fn delete_answer(keys: &[&str], answer: &str) -> ::opendal::Result<Bytes> {
        let objects: String = keys
            .iter()
            .map(|k| format!("<Object><Key>{k}</Key></Object>"))
            .collect();
        let asked = Buffer::from(format!("<Delete><Quiet>true</Quiet>{objects}</Delete>"));
        let body = Buffer::from(answer.to_owned());
        let size = body.len() as u64;
        let body = HttpBody::new(futures::stream::iter([Ok(body)]), Some(size));
        let response = Response::builder().status(200).body(body).unwrap();
        let mut body = check_delete_answer(&asked, response).await?.into_body();
        Ok(body.to_buffer().await?.to_bytes())
    }

    #[tokio::test]
    async fn a_delete_answer_must_refuse_only_keys_asked_about() {
        let refusing = |key: &str, version: &str| {
            format!(
                "<DeleteResult><Deleted><Key>a</Key></Deleted><Error><Key>{key}</Key>\
                 {version}<Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>"
            )
        };
        // Refusals of keys asked about (or none) pass on, body intact.
        for answer in [
            refusing("b&amp;c", ""),
            "<DeleteResult><Deleted><Key>a</Key></Deleted></DeleteResult>".to_owned(),
            String::new(),
            "not xml".to_owned(),
        ] {
            let body = delete_answer(&["a", "b&amp;c"], &answer).await.unwrap();
            assert_eq!(body, answer.as_bytes(), "{answer}");
        }
        // Another spelling of the key, or a version never asked for: OpenDAL
        // would count the refused key as deleted.
        for answer in [
            refusing("b%26c", ""),
            refusing("", ""),
            refusing("b&amp;c", "<VersionId>null</VersionId>"),
        ] {
            let err = delete_answer(&["a", "b&amp;c"], &answer).await.unwrap_err();
            assert_eq!(err.kind(), OdKind::Unexpected, "{answer}");
        }
    }

    fn with_code(code: &str) -> S3Answer {
        S3Answer {
            status: 400,
            code: Some(code.into()),
            region: None,
            signed_region: "auto".into(),
            region_variable: None,
        }
    }
}
