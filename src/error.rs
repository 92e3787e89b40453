//! One error type for the whole library, with a [`ErrorKind`] callers match on.
//!
//! Backends classify their failures into a kind exactly once, at the boundary
//! (see `store::opendal` and `catalog`); everything above decides by `kind()`,
//! never by message text.

use std::fmt;

/// What went wrong, as far as a caller needs to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object or row does not exist.
    NotFound,
    /// The bucket (or, for a folder store, its root or bucket folder) does
    /// not exist: a setting is wrong, and nothing can be concluded about
    /// the objects that should be in it.
    BucketNotFound,
    /// Credentials were refused or lack a permission.
    PermissionDenied,
    /// Bytes do not match what the catalog or the upload promised.
    Integrity,
    /// A network, throttling or server-side hiccup; worth retrying.
    Transient,
    /// A value (configuration, key, catalog row) is malformed.
    InvalidInput,
    /// A fenced catalog write found that this worker no longer holds the
    /// row's lease (it expired or another worker claimed the row): nothing
    /// was written, and the blob must not be touched again by this worker.
    LeaseLost,
    /// Anything the backend could not classify.
    Unexpected,
}

impl ErrorKind {
    /// Short, stable name used in logs, reports and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::BucketNotFound => "bucket_not_found",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Transient => "transient",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::LeaseLost => "lease_lost",
            ErrorKind::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The library's error: a kind, a human message and an optional cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    retryable: bool,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            retryable: kind == ErrorKind::Transient,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefix the message with where it happened, keeping kind and cause.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Mark the error worth retrying whatever its kind (a checksum the
    /// store refused is an integrity error that a new upload may cure).
    pub fn set_retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// Whether trying the same operation again may succeed: every
    /// [`ErrorKind::Transient`] error, and others marked with
    /// [`set_retryable`](Error::set_retryable).
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message without the cause chain.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
