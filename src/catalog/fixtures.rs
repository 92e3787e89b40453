//! Seed rows for demos and tests; not part of a sweep.
//!
//! A sweep never creates a job or a task: the application owns those rows,
//! and the [`Catalog`] trait only finds, claims and records what is already
//! there. The demo (`coldsweep demo`, [`crate::demo::seed`]) and the test
//! suites need rows to work on, so they write them through [`Fixtures`],
//! which every backend implements beside its `Catalog` impl. Embedders have
//! no use for it.
//!
//! ```no_run
//! # async fn example() -> coldsweep::Result<()> {
//! use coldsweep::catalog::fixtures::Fixtures;
//! use coldsweep::catalog::{Catalog, JobRow, SqliteCatalog};
//!
//! let catalog = SqliteCatalog::connect("sqlite:demo.db").await?;
//! catalog.migrate().await?;
//! catalog
//!     .insert_job(&JobRow {
//!         id: "job-1".into(),
//!         domain_id: 1,
//!         organisation_id: None,
//!         status: "completed".into(),
//!         created_at: chrono::Utc::now(),
//!         completed_at: None,
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```

use async_trait::async_trait;

use super::{Catalog, JobRow, TaskRow};
use crate::error::Result;

/// Writes rows into a catalog as an application would: for demos and
/// tests, never called by a sweep. A catalog that implements it is still
/// every bit a [`Catalog`], so a test holding a `dyn Fixtures` hands it to
/// anything that takes one.
#[async_trait]
pub trait Fixtures: Catalog {
    /// Insert a job.
    async fn insert_job(&self, job: &JobRow) -> Result<()>;

    /// Insert a task, every [`TaskRow`] column as given.
    async fn insert_task(&self, task: &TaskRow) -> Result<()>;
}
