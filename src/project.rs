//! project (in progress)
