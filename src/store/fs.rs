//! Local folder store: each bucket is a sub-folder of the root.

/// A local folder store.
#[derive(Debug)]
pub struct FsStore;
