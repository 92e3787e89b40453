//! # coldsweep
//!
//! Moves aged blobs from a **hot** object store to a **cold** S3-compatible
//! store, with the application's database (the **catalog**) as the single
//! source of truth for where every blob lives.
//!
//! - [`catalog`]: Postgres or SQLite; finds candidates, claims them with a lease.
//! - [`source`]: kinds of archivable data ([`TaskHtmlSource`] is the first).
//! - [`store`]: the one [`Store`] seam for hot and cold (S3-compatible, local folder).
//! - [`archiver`]: the sweep loop and the per-blob pipeline:
//!   read hot → check against the catalog → put cold → verify cold →
//!   switch the catalog → delete hot → clear the hot reference.
//! - [`config`]: [`Config`] and store settings, parsed from the environment.
//! - [`keys`]: the object key layout and the validated [`ObjectKey`].
//!
//! Every step is idempotent: a crash anywhere is finished by the next sweep.

pub mod archiver;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod error;
pub mod keys;
pub mod source;
pub mod store;

pub use archiver::{Archiver, SweepReport};
pub use catalog::Catalog;
pub use config::{Config, Provider};
pub use error::{Error, ErrorKind, Result};
pub use keys::{KeyPrefix, ObjectKey, cold_key, task_html_object_path};
pub use source::{ArchiveCandidate, ArchiveSource, TaskHtmlSource};
pub use store::{Location, Store};
