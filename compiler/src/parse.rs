//! `.nn` text → AST: the nom lexer, then the shared grammar.

use crate::ast::Model;
use crate::diag::Diagnostic;
use crate::span::{SourceFile, Span};

pub fn parse(src: &SourceFile) -> Result<Model, Diagnostic> {
    let tokens = crate::lex::lex(&src.text)?;
    let end = src.text.len();
    crate::grammar::parse_model(&tokens, Span::new(end, end))
}

/// Parse and check `.nn` text in one go.
pub fn parse_and_check(src: &SourceFile) -> Result<crate::spec::ModelSpec, Diagnostic> {
    crate::check::check(&parse(src)?)
}
