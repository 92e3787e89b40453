//! The catalog conformance suite.
