//! The abstract syntax tree of the model language.
//!
//! Built by [`crate::grammar`] from tokens, whether they came from `.nn` text or from a
//! `network!` macro invocation; it depends on neither `nom` nor `syn`. Every node carries
//! its [`Span`] so later stages can point at it.

use crate::span::Span;
use std::fmt::{self, Write};

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: Ident,
    pub statements: Vec<Statement>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// `name:` before the statement.
    pub label: Option<Ident>,
    pub kind: StatementKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StatementKind {
    /// `input [1, 28, 28]` or `input x: [1, 28, 28]`.
    Input { name: Option<Ident>, shape: Value },
    /// `relu`, `dense(10)`, `conv2d(6, kernel: 5)`.
    Layer { name: Ident, args: Vec<Arg> },
    /// `loss softmax_cross_entropy`.
    Loss { name: Ident },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// `kernel` in `kernel: 5`; `None` for a positional argument.
    pub key: Option<Ident>,
    pub value: Value,
}

impl Arg {
    pub fn span(&self) -> Span {
        match &self.key {
            Some(k) => k.span.to(self.value.span),
            None => self.value.span,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A bare word: `same`, `valid`, a statement name in `add(stem)`.
    Name(String),
    List(Vec<Value>),
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::Int(i) => write!(f, "{i}"),
            ValueKind::Float(x) => write!(f, "{}", format_float(*x)),
            ValueKind::Bool(b) => write!(f, "{b}"),
            ValueKind::Name(s) => f.write_str(s),
            ValueKind::List(items) => {
                f.write_char('[')?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", v.kind)?;
                }
                f.write_char(']')
            }
        }
    }
}

/// Floats always print with a decimal point or exponent, so they re-lex as floats.
pub fn format_float(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains(['.', 'e', 'E', 'N', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

impl ValueKind {
    /// What kind of value this is, for "expected ..., found ..." messages.
    pub fn describe(&self) -> String {
        match self {
            ValueKind::Int(i) => format!("the integer {i}"),
            ValueKind::Float(x) => format!("the number {}", format_float(*x)),
            ValueKind::Bool(b) => format!("`{b}`"),
            ValueKind::Name(s) => format!("the name `{s}`"),
            ValueKind::List(_) => format!("the list {self}"),
        }
    }
}

impl Statement {
    /// The keyword or layer name of the statement (`input`, `dense`, `loss`).
    pub fn keyword(&self) -> &str {
        match &self.kind {
            StatementKind::Input { .. } => "input",
            StatementKind::Layer { name, .. } => &name.name,
            StatementKind::Loss { .. } => "loss",
        }
    }
}

impl fmt::Display for Statement {
    /// The canonical one-line text of a statement (no comments, normalized spacing).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.label {
            write!(f, "{}: ", l.name)?;
        }
        match &self.kind {
            StatementKind::Input { name, shape } => {
                f.write_str("input ")?;
                if let Some(n) = name {
                    write!(f, "{}: ", n.name)?;
                }
                write!(f, "{}", shape.kind)
            }
            StatementKind::Layer { name, args } => {
                f.write_str(&name.name)?;
                if !args.is_empty() {
                    f.write_char('(')?;
                    for (i, a) in args.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        if let Some(k) = &a.key {
                            write!(f, "{}: ", k.name)?;
                        }
                        write!(f, "{}", a.value.kind)?;
                    }
                    f.write_char(')')?;
                }
                Ok(())
            }
            StatementKind::Loss { name } => write!(f, "loss {}", name.name),
        }
    }
}

impl fmt::Display for Model {
    /// The canonical text of the model: what `.nn` text it means, without comments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model {} {{", self.name.name)?;
        for s in &self.statements {
            writeln!(f, "    {s}")?;
        }
        f.write_str("}\n")
    }
}

impl Model {
    /// A tree dump of the AST with each node's position, as `percept inspect --emit ast`
    /// prints it. `pos` turns a span into text (e.g. `3:5` for `.nn` files).
    pub fn dump(&self, pos: &dyn Fn(Span) -> String) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Model `{}` @{}", self.name.name, pos(self.span));
        for s in &self.statements {
            let label = s.label.as_ref().map(|l| format!(" label=`{}`", l.name)).unwrap_or_default();
            match &s.kind {
                StatementKind::Input { name, shape } => {
                    let name = name.as_ref().map(|n| format!(" name=`{}`", n.name)).unwrap_or_default();
                    let _ = writeln!(out, "  Input{label}{name} shape={} @{}", shape.kind, pos(s.span));
                }
                StatementKind::Layer { name, args } => {
                    let _ = writeln!(out, "  Layer `{}`{label} @{}", name.name, pos(s.span));
                    for (i, a) in args.iter().enumerate() {
                        let key = a.key.as_ref().map_or_else(|| format!("#{i}"), |k| k.name.clone());
                        let _ = writeln!(out, "    Arg {key} = {} @{}", a.value.kind, pos(a.span()));
                    }
                }
                StatementKind::Loss { name } => {
                    let _ = writeln!(out, "  Loss `{}`{label} @{}", name.name, pos(s.span));
                }
            }
        }
        out
    }
}
