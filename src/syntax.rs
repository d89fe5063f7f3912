//! Syntax: the pest grammar (`grammar/aftercart.pest`), the AST with spans, and the formatter.
//! The only module that knows pest.

pub mod ast;
pub mod parser;

pub use parser::parse;

/// Temporary until the formatter lands.
pub fn format_source(text: &str) -> Result<String, Vec<crate::diagnostic::Diagnostic>> {
    Ok(text.to_string())
}
