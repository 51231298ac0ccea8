//! Diagnostics: what went wrong, where, and what to do about it.
//!
//! Every stage of the front end reports a [`Diagnostic`] with a [`Span`]; the `.nn` front
//! end renders it against the source text (a `file:line:col: error: ...` line, then the
//! source line with a caret, drawn by `annotate-snippets`, rustc's own renderer), while the
//! `network!` macro turns the same diagnostic into a `syn::Error` at the token's span.

use crate::span::{SourceFile, Span};
use annotate_snippets::{Level, Renderer, Snippet};
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// One sentence: what is wrong.
    pub message: String,
    pub span: Span,
    /// A short label under the caret (may be empty).
    pub label: String,
    /// What the user can do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { message: message.into(), span, label: String::new(), help: None }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// The message and, if any, the help, as one line (what the macro reports).
    pub fn summary(&self) -> String {
        match &self.help {
            Some(h) => format!("{}; {}", self.message, h),
            None => self.message.clone(),
        }
    }

    /// Render against the source: `name:line:col: error: message`, then the annotated line.
    pub fn render(&self, src: &SourceFile) -> String {
        let (line, col) = src.line_col(self.span.start);
        let mut range = self.span.range();
        range.end = range.end.min(src.text.len());
        range.start = range.start.min(range.end);
        if range.is_empty() && range.start < src.text.len() {
            range.end = range.start + 1;
            while !src.text.is_char_boundary(range.end) {
                range.end += 1;
            }
        }
        let title = format!("{}:{}:{}: error: {}", src.name, line, col, self.message);
        let mut message = Level::Error.title(&title).snippet(
            Snippet::source(&src.text)
                .line_start(1)
                .origin(&src.name)
                .fold(true)
                .annotation(Level::Error.span(range).label(&self.label)),
        );
        if let Some(help) = &self.help {
            message = message.footer(Level::Help.title(help));
        }
        let rendered = Renderer::plain().render(message).to_string();
        // annotate-snippets starts with its own "error: " level; our title already has the
        // compiler-style `file:line:col: error:` prefix editors recognise, so drop the first.
        rendered.strip_prefix("error: ").unwrap_or(&rendered).to_string()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

impl std::error::Error for Diagnostic {}

/// The closest known name to a misspelled one, if it is close enough to be a likely typo.
pub fn suggest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(wrong, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3) && *d < k.len().max(wrong.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
