//! Postgres catalog.

/// Postgres catalog.
#[derive(Debug)]
pub struct PgCatalog;
