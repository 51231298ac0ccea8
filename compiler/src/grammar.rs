//! The grammar of the model language: tokens → [`ast::Model`].
//!
//! A recursive-descent parser over [`Token`]s. Both front ends use it: `.nn` text is
//! tokenized by [`crate::lex`] (nom), `network!` input by the macro crate. Statements are
//! self-delimiting (a name, optionally a parenthesized argument list), so newlines and `;`
//! are only optional separators.

use crate::ast::{Arg, Ident, Model, Statement, StatementKind, Value, ValueKind};
use crate::diag::Diagnostic;
use crate::lex::{Token, TokenKind};
use crate::span::Span;

/// Parse a whole model. `eof` is where "end of input" errors point.
pub fn parse_model(tokens: &[Token], eof: Span) -> Result<Model, Diagnostic> {
    let mut p = Parser { tokens, pos: 0, eof };
    let model = p.model()?;
    if let Some(t) = p.peek() {
        return Err(Diagnostic::new(t.span, format!("unexpected {} after the end of the model", t.kind))
            .with_label("the model ended at the `}` before this")
            .with_help("a file holds one `model NAME { ... }`"));
    }
    Ok(model)
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    eof: Span,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> Option<&'t Token> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&'t Token> {
        self.tokens.get(self.pos + n)
    }

    fn next(&mut self) -> Option<&'t Token> {
        let t = self.tokens.get(self.pos);
        self.pos += t.is_some() as usize;
        t
    }

    fn is_punct(&self, c: char) -> bool {
        matches!(self.peek(), Some(Token { kind: TokenKind::Punct(p), .. }) if *p == c)
    }

    fn found(&self) -> (Span, String) {
        match self.peek() {
            Some(t) => (t.span, format!("found {}", t.kind)),
            None => (self.eof, "found the end of the input".to_string()),
        }
    }

    fn expected(&self, what: &str) -> Diagnostic {
        let (span, found) = self.found();
        Diagnostic::new(span, format!("expected {what}, {found}")).with_label(format!("expected {what}"))
    }

    fn punct(&mut self, c: char, what: &str) -> Result<Span, Diagnostic> {
        if self.is_punct(c) {
            Ok(self.next().unwrap().span)
        } else {
            Err(self.expected(what))
        }
    }

    fn ident(&mut self, what: &str) -> Result<Ident, Diagnostic> {
        match self.peek() {
            Some(Token { kind: TokenKind::Ident(name), span }) => {
                self.pos += 1;
                Ok(Ident { name: name.clone(), span: *span })
            }
            _ => Err(self.expected(what)),
        }
    }

    fn model(&mut self) -> Result<Model, Diagnostic> {
        let kw = match self.peek() {
            Some(Token { kind: TokenKind::Ident(k), span }) if k == "model" => {
                self.pos += 1;
                *span
            }
            _ => {
                return Err(self
                    .expected("`model`")
                    .with_help("a model file starts with `model NAME {`, then one layer per statement"))
            }
        };
        let name = self.ident("the model's name")?;
        self.punct('{', "`{` to open the model's body")?;
        let mut statements = Vec::new();
        loop {
            while self.is_punct(';') {
                self.pos += 1;
            }
            if self.is_punct('}') {
                let close = self.next().unwrap().span;
                return Ok(Model { name, statements, span: kw.to(close) });
            }
            if self.peek().is_none() {
                return Err(self
                    .expected("`}` to close the model")
                    .with_help(format!("the model `{}` opened with `{{` was never closed", name.name)));
            }
            statements.push(self.statement()?);
        }
    }

    fn statement(&mut self) -> Result<Statement, Diagnostic> {
        let label = match (self.peek(), self.peek_at(1)) {
            (Some(Token { kind: TokenKind::Ident(_), .. }), Some(Token { kind: TokenKind::Punct(':'), .. })) => {
                let l = self.ident("a name")?;
                self.pos += 1;
                Some(l)
            }
            _ => None,
        };
        let head = match self.peek() {
            Some(Token { kind: TokenKind::Ident(_), .. }) => self.ident("a statement")?,
            _ => {
                let what = if label.is_some() {
                    "a layer after the name"
                } else {
                    "a statement (a layer name, `input` or `loss`)"
                };
                return Err(self.expected(what));
            }
        };
        let start = label.as_ref().map_or(head.span, |l| l.span);
        match head.name.as_str() {
            "input" => {
                if let Some(l) = &label {
                    return Err(Diagnostic::new(l.span, "the input is named after the keyword")
                        .with_label("name here")
                        .with_help(format!("write `input {}: [...]`", l.name)));
                }
                let name = match (self.peek(), self.peek_at(1)) {
                    (
                        Some(Token { kind: TokenKind::Ident(_), .. }),
                        Some(Token { kind: TokenKind::Punct(':'), .. }),
                    ) => {
                        let n = self.ident("the input's name")?;
                        self.pos += 1;
                        Some(n)
                    }
                    _ => None,
                };
                if !self.is_punct('[') {
                    return Err(self
                        .expected("the input shape, like `[1, 28, 28]`")
                        .with_help("shapes are per sample, channels first; the batch dimension is implicit"));
                }
                let shape = self.value()?;
                Ok(Statement { span: start.to(shape.span), label, kind: StatementKind::Input { name, shape } })
            }
            "loss" => {
                let name = self.ident("the loss's name, like `softmax_cross_entropy`")?;
                Ok(Statement { span: start.to(name.span), label, kind: StatementKind::Loss { name } })
            }
            _ => {
                let mut args = Vec::new();
                let mut end = head.span;
                if self.is_punct('(') {
                    self.pos += 1;
                    loop {
                        if self.is_punct(')') {
                            break;
                        }
                        args.push(self.arg()?);
                        if self.is_punct(',') {
                            self.pos += 1;
                        } else if !self.is_punct(')') {
                            return Err(self.expected("`,` or `)` in the argument list"));
                        }
                    }
                    end = self.next().unwrap().span;
                }
                Ok(Statement { span: start.to(end), label, kind: StatementKind::Layer { name: head, args } })
            }
        }
    }

    fn arg(&mut self) -> Result<Arg, Diagnostic> {
        let key = match (self.peek(), self.peek_at(1)) {
            (Some(Token { kind: TokenKind::Ident(_), .. }), Some(Token { kind: TokenKind::Punct(':'), .. })) => {
                let k = self.ident("an argument name")?;
                self.pos += 1;
                Some(k)
            }
            _ => None,
        };
        Ok(Arg { key, value: self.value()? })
    }

    fn value(&mut self) -> Result<Value, Diagnostic> {
        let Some(t) = self.peek() else {
            return Err(self.expected("a value"));
        };
        let span = t.span;
        match &t.kind {
            TokenKind::Int(i) => {
                self.pos += 1;
                Ok(Value { kind: ValueKind::Int(*i), span })
            }
            TokenKind::Float(x) => {
                self.pos += 1;
                Ok(Value { kind: ValueKind::Float(*x), span })
            }
            TokenKind::Ident(w) => {
                self.pos += 1;
                let kind = match w.as_str() {
                    "true" => ValueKind::Bool(true),
                    "false" => ValueKind::Bool(false),
                    _ => ValueKind::Name(w.clone()),
                };
                Ok(Value { kind, span })
            }
            TokenKind::Punct(sign @ ('-' | '+')) => {
                let negate = *sign == '-';
                self.pos += 1;
                let v = match self.peek() {
                    Some(Token { kind: TokenKind::Int(_) | TokenKind::Float(_), .. }) => self.value()?,
                    _ => return Err(self.expected(&format!("a number after `{sign}`"))),
                };
                let kind = match v.kind {
                    ValueKind::Int(i) if negate => ValueKind::Int(-i),
                    ValueKind::Float(x) if negate => ValueKind::Float(-x),
                    k => k,
                };
                Ok(Value { kind, span: span.to(v.span) })
            }
            TokenKind::Punct('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.is_punct(']') {
                        break;
                    }
                    items.push(self.value()?);
                    if self.is_punct(',') {
                        self.pos += 1;
                    } else if !self.is_punct(']') {
                        return Err(self.expected("`,` or `]` in the list"));
                    }
                }
                let end = self.next().unwrap().span;
                Ok(Value { kind: ValueKind::List(items), span: span.to(end) })
            }
            _ => Err(self.expected("a value (a number, a name, `true`/`false` or a list `[...]`)")),
        }
    }
}
