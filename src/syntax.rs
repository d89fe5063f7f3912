//! Syntax: the pest grammar (`grammar/aftercart.pest`), the AST with spans, and the formatter.
//! The only module that knows pest.

pub mod ast;
pub mod parser;

pub use parser::parse;

