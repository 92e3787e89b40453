//! SQLite catalog.

/// SQLite catalog.
#[derive(Debug)]
pub struct SqliteCatalog;
