//! aftercart: post-purchase SMS flows as code. The pipeline reads off the module list:
//! `syntax` (parse) -> `check` (diagnostics) -> `ir` (lowered, hashed) -> `engine` (pure steps).
//! Only `cli` prints.

pub mod alloc;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod compliance;
pub mod diagnostic;
pub mod engine;
pub mod flowtest;
pub mod host;
pub mod ir;
pub mod par;
pub mod plugins;
pub mod project;
pub mod runtime;
pub mod schema;
pub mod sim;
pub mod sms;
pub mod store;
pub mod syntax;
