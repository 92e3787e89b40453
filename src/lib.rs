//! # coldsweep
//!
//! Moves aged blobs from a **hot** object store to a **cold** S3-compatible
//! store, with the application's database (the **catalog**) as the single
//! source of truth for where every blob lives.
//!
//! - [`model`]: the plain data every layer shares ([`ArchiveCandidate`], a
//!   claim, its lease and fence, a blob's state).
//! - [`catalog`]: Postgres or SQLite; finds candidates, claims them with a lease.
//! - [`rules`]: which finished jobs a sweep moves (retention, quota, minimum
//!   age) and why the rest stays: one pure function for the sweep and `plan`.
//! - [`source`]: kinds of archivable data ([`TaskHtmlSource`] is the first);
//!   [`source::spec`] reads and checks sources declared in a config file.
//! - [`store`]: the one [`Store`] seam for hot and cold (S3-compatible, Supabase
//!   Storage's REST API, local folder).
//! - [`archiver`]: the sweep loop and the per-blob pipeline:
//!   read hot → check against the catalog → put cold → verify cold →
//!   switch the catalog → delete hot → clear the hot reference.
//! - [`config`]: [`Config`] and store settings, parsed from the environment.
//! - [`keys`]: the object key layout and the validated [`ObjectKey`].
//! - [`scrub`]: read archived blobs back from cold storage and check them
//!   against the catalog (`coldsweep verify`); read-only.
//! - [`restore`]: copy archived blobs back to the hot store, verified, and
//!   point the catalog at them again (`coldsweep restore`).
//! - [`get`]: one task's page from wherever the catalog says it lives,
//!   checked against the catalog (`coldsweep get`); read-only.
//! - [`metrics`]: Prometheus metrics, one table of them (no-ops until a recorder is installed).
//! - [`progress`]: counters a sweep ([`Archiver::with_progress`]), a scrub
//!   ([`scrub::scrub_with_progress`]) or a restore adds to, for a progress
//!   bar to read at its own pace.
//!
//! Every step is idempotent: a crash anywhere is finished by the next sweep.
//!
//! # Embedding
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use coldsweep::Archiver;
//! use coldsweep::config::{ColdConfig, Config};
//! use coldsweep::store::{FsStore, Store};
//!
//! # async fn example() -> coldsweep::Result<()> {
//! let catalog = coldsweep::catalog::connect("postgres://app@127.0.0.1/app").await?;
//! catalog.check_migrations().await?;
//!
//! // ARCHIVE_PROVIDER, ARCHIVE_BUCKET, ARCHIVE_ENDPOINT, … from the environment.
//! let Some(config) = Config::from_env()? else {
//!     return Ok(()); // archiving is off
//! };
//! let cold = coldsweep::store::cold_store(config.provider, &ColdConfig::from_env(config.provider)?)?;
//! let hot: Arc<dyn Store> = Arc::new(FsStore::open_existing("/var/lib/app/blobs")?);
//! // Prove the bucket takes uploads, not just that it answers: write, read back,
//! // verify and delete a probe object under ARCHIVE_PROBE_PREFIX.
//! let prefix = config.probe_key_prefix()?;
//! coldsweep::store::probe::probe(cold.as_ref(), &config.bucket, &prefix)
//!     .await
//!     .into_result()?;
//!
//! // Task HTML from the catalog; `Archiver::new` takes any set of sources.
//! let archiver = Archiver::task_html(config, catalog, hot, cold);
//!
//! // One pass …
//! let report = archiver.sweep().await;
//! println!("{report}");
//! // … or sweep every interval until Ctrl-C.
//! archiver
//!     .run(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await;
//! # Ok(())
//! # }
//! ```

pub mod archiver;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod error;
pub mod get;
pub(crate) mod integrity;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod progress;
pub mod restore;
pub mod rules;
pub mod scrub;
pub mod source;
pub mod store;

pub use archiver::{Archiver, LastSweep, SweepReport};
pub use catalog::Catalog;
pub use config::{Config, Provider};
pub use error::{Chain, Error, ErrorKind, Result};
pub use keys::{KeyPrefix, ObjectKey, cold_key, task_html_object_path};
pub use model::ArchiveCandidate;
pub use source::{ArchiveSource, TaskHtmlSource};
pub use store::{Location, Store};
