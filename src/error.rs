//! One error type for the whole library, with a [`ErrorKind`] callers match on.
//!
//! Backends classify their failures into a kind exactly once, at the boundary
//! (see `store::opendal` and `catalog`); everything above decides by `kind()`,
//! never by message text.
//!
//! `Display` says one level: the message and the kind, never the cause;
//! `source()` returns the cause. [`Chain`] prints the whole chain once, for
//! people.

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

    /// Attach a cause whose `Display` already prints its own cause (OpenDAL's
    /// and sqlx's errors do): the chain then skips that cause's cause, so a
    /// [`Chain`] shows each text once.
    pub(crate) fn with_verbose_source(
        self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.with_source(Verbose(source))
    }

    /// This error and its causes, for people: see [`Chain`].
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
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
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An error and each of its causes, `: `-separated on one line, each
/// level's own `Display` once (walking `source()`).
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A cause whose `Display` includes its own cause: shown as is, with the
/// chain going on below the cause it already printed.
#[derive(Debug)]
struct Verbose<E>(E);

impl<E: fmt::Display> fmt::Display for Verbose<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error> std::error::Error for Verbose<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source().and_then(std::error::Error::source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_level_and_the_chain_shows_each_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let inner = Error::new(ErrorKind::Transient, "write x").with_source(io);
        let outer = Error::new(ErrorKind::Transient, "sweep").with_source(inner);
        assert_eq!(outer.to_string(), "sweep (transient)");
        assert_eq!(
            outer.chain().to_string(),
            "sweep (transient): write x (transient): disk on fire"
        );
    }

    #[derive(Debug)]
    struct SaysItsCause(std::io::Error);

    impl fmt::Display for SaysItsCause {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "request failed: {}", self.0)
        }
    }

    impl std::error::Error for SaysItsCause {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_verbose_cause_is_not_repeated() {
        let err = Error::new(ErrorKind::Unexpected, "catalog")
            .with_verbose_source(SaysItsCause(std::io::Error::other("refused")));
        assert_eq!(
            err.chain().to_string(),
            "catalog (unexpected): request failed: refused"
        );
    }
}
