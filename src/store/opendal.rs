//! Shared adapter from an OpenDAL operator to [`Store`](super::Store).
