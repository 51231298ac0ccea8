//! Rust tokens → the compiler's tokens. A token's span in the compiler is its index in
//! the table of Rust spans, so a diagnostic maps back to the exact Rust token.

use percept_compiler::lex::{Token, TokenKind};
use percept_compiler::{Diagnostic, Span};
use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

pub struct Table {
    pub tokens: Vec<Token>,
    pub spans: Vec<proc_macro2::Span>,
    /// The type name as written (`Lenet5`), and the model's name (`lenet5`).
    pub type_name: syn::Ident,
}

impl Table {
    fn push(&mut self, kind: TokenKind, span: proc_macro2::Span) {
        let i = self.spans.len();
        self.spans.push(span);
        self.tokens.push(Token { kind, span: Span::new(i, i + 1) });
    }

    /// Where "end of input" errors point: the model's closing brace.
    pub fn eof(&self) -> Span {
        let last = self.spans.len().saturating_sub(1);
        Span::new(last, last + 1)
    }

    /// A diagnostic as a compile error spanning its tokens.
    pub fn error(&self, d: &Diagnostic) -> syn::Error {
        let n = self.spans.len();
        let first = (d.span.start as usize).min(n.saturating_sub(1));
        let last = (d.span.end as usize).saturating_sub(1).clamp(first, n.saturating_sub(1));
        let (a, b) = (self.spans[first], self.spans[last]);
        // `new_spanned` marks the range from the first to the last token on stable Rust.
        let mut range = TokenStream::new();
        range.extend([TokenTree::Ident(proc_macro2::Ident::new("x", a))]);
        if last != first {
            range.extend([TokenTree::Ident(proc_macro2::Ident::new("x", b))]);
        }
        syn::Error::new_spanned(range, d.summary())
    }
}

/// CamelCase → snake_case: `Lenet5` → `lenet5`, `CnnBn` → `cnn_bn`.
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn literal(lit: &proc_macro2::Literal) -> syn::Result<TokenKind> {
    let text = lit.to_string().replace('_', "");
    let bad = || syn::Error::new(lit.span(), format!("`{lit}` is not a number of the model language"));
    if text.starts_with('"') || text.starts_with('\'') || text.starts_with('b') {
        return Err(bad());
    }
    let (num, suffix) = match text.find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        Some(i) => text.split_at(i),
        None => (text.as_str(), ""),
    };
    if !suffix.is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("remove the suffix `{suffix}`: numbers in a model have no type"),
        ));
    }
    if num.contains(['.', 'e', 'E']) {
        num.parse::<f64>().map(TokenKind::Float).map_err(|_| bad())
    } else {
        num.parse::<i64>().map(TokenKind::Int).map_err(|_| bad())
    }
}

fn walk(table: &mut Table, ts: TokenStream) -> syn::Result<()> {
    for tt in ts {
        match tt {
            TokenTree::Ident(i) => {
                let name = i.to_string();
                table.push(TokenKind::Ident(name.trim_start_matches("r#").to_string()), i.span());
            }
            TokenTree::Punct(p) => {
                let c = p.as_char();
                if !"()[]{},:;-+".contains(c) || (c == ':' && p.spacing() == Spacing::Joint) {
                    return Err(syn::Error::new(p.span(), format!("unexpected `{c}` in a model")));
                }
                table.push(TokenKind::Punct(c), p.span());
            }
            TokenTree::Literal(l) => {
                let kind = literal(&l)?;
                table.push(kind, l.span());
            }
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ('(', ')'),
                    Delimiter::Bracket => ('[', ']'),
                    Delimiter::Brace => ('{', '}'),
                    Delimiter::None => {
                        walk(table, g.stream())?;
                        continue;
                    }
                };
                table.push(TokenKind::Punct(open), g.span_open());
                walk(table, g.stream())?;
                table.push(TokenKind::Punct(close), g.span_close());
            }
        }
    }
    Ok(())
}

/// `[vis] model Name { ... }` → the visibility and the token table of `model name { ... }`.
pub fn read(input: TokenStream) -> syn::Result<(syn::Visibility, Table)> {
    let (vis, rest) = syn::parse::Parser::parse2(
        |s: syn::parse::ParseStream| {
            let vis: syn::Visibility = s.parse()?;
            let rest: TokenStream = s.parse()?;
            Ok((vis, rest))
        },
        input,
    )?;
    let mut iter = rest.into_iter();
    let first = iter.next();
    let name = iter.next();
    let type_name = match (&first, &name) {
        (Some(TokenTree::Ident(m)), Some(TokenTree::Ident(n))) if m == "model" => n.clone(),
        (Some(TokenTree::Ident(m)), _) if m == "model" => {
            return Err(syn::Error::new(
                m.span(),
                "expected the model's name after `model`, like `model Lenet5 { ... }`",
            ))
        }
        _ => {
            let span = first.as_ref().map_or_else(proc_macro2::Span::call_site, |t| t.span());
            return Err(syn::Error::new(span, "expected `model NAME { ... }`"));
        }
    };
    let mut table = Table { tokens: vec![], spans: vec![], type_name: type_name.clone() };
    table.push(TokenKind::Ident("model".into()), first.expect("checked").span());
    table.push(TokenKind::Ident(snake(&type_name.to_string())), type_name.span());
    let body: TokenStream = iter.collect();
    walk(&mut table, body)?;
    Ok((vis, table))
}
