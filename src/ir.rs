//! The compiled program: typed, versioned, content-hashed, serde. The engine only sees this.
pub mod types;
pub use types::Ty;
