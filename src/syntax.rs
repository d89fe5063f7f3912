//! Syntax: the pest grammar (`grammar/aftercart.pest`), the AST with spans, and the formatter.
//! The only module that knows pest.

pub mod ast;
mod fast;
pub mod format;
pub mod parser;

pub use format::format_source;
pub use parser::parse;
