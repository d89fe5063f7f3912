//! syntax (in progress)
