//! The sweep loop and the per-blob pipeline.

/// Archiver.
pub struct Archiver;
/// Report.
pub struct SweepReport;
