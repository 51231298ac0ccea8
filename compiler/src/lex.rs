//! The lexer of `.nn` text (nom): text → [`Token`]s with byte spans.
//!
//! The grammar ([`crate::grammar`]) works on tokens, not text, so that the `network!`
//! macro, which receives Rust tokens, feeds the very same grammar: there is one
//! definition of the language, and two small lexers.

use crate::diag::Diagnostic;
use crate::span::Span;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_till};
use nom::character::complete::{alpha1, alphanumeric1, char, digit1, one_of};
use nom::combinator::{opt, recognize};
use nom::multi::many0_count;
use nom::sequence::{pair, tuple};
use nom::IResult;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    Ident(String),
    Int(i64),
    Float(f64),
    /// One of `( ) [ ] { } , : ; - +`.
    Punct(char),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Ident(s) => write!(f, "`{s}`"),
            TokenKind::Int(i) => write!(f, "`{i}`"),
            TokenKind::Float(x) => write!(f, "`{x}`"),
            TokenKind::Punct(c) => write!(f, "`{c}`"),
        }
    }
}

/// Whitespace and comments (`#` and `//` to the end of the line).
fn trivia(input: &str) -> &str {
    let mut rest = input.trim_start();
    loop {
        let comment: IResult<&str, &str> = recognize(pair(alt((tag("#"), tag("//"))), take_till(|c| c == '\n')))(rest);
        match comment {
            Ok((after, _)) => rest = after.trim_start(),
            Err(_) => return rest,
        }
    }
}

fn ident(input: &str) -> IResult<&str, &str> {
    recognize(pair(alt((alpha1, tag("_"))), many0_count(alt((alphanumeric1, tag("_"))))))(input)
}

fn number(input: &str) -> IResult<&str, &str> {
    recognize(tuple((digit1, opt(pair(char('.'), digit1)), opt(tuple((one_of("eE"), opt(one_of("+-")), digit1))))))(
        input,
    )
}

fn punct(input: &str) -> IResult<&str, char> {
    one_of("()[]{},:;-+")(input)
}

/// Split `.nn` text into tokens; the only errors are characters outside the language and
/// numbers too large to represent.
pub fn lex(text: &str) -> Result<Vec<Token>, Diagnostic> {
    let mut tokens = Vec::new();
    let mut rest = trivia(text);
    while !rest.is_empty() {
        let start = text.len() - rest.len();
        let (after, kind) = if let Ok((after, word)) = ident(rest) {
            (after, TokenKind::Ident(word.to_string()))
        } else if let Ok((after, digits)) = number(rest) {
            let span = Span::new(start, start + digits.len());
            (after, number_token(digits, span)?)
        } else if let Ok((after, c)) = punct(rest) {
            (after, TokenKind::Punct(c))
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            let span = Span::new(start, start + c.len_utf8());
            return Err(Diagnostic::new(span, format!("unexpected character `{}`", c.escape_debug()))
                .with_label("not part of the model language")
                .with_help("comments start with `#` or `//`"));
        };
        let end = text.len() - after.len();
        // A number glued to a name (`3x3`) is a mistake, not two tokens.
        if let (TokenKind::Int(_) | TokenKind::Float(_), Ok((_, _))) = (&kind, ident(after)) {
            let word_len = ident(after).map(|(a, w)| (w.len(), a)).unwrap().0;
            let span = Span::new(start, end + word_len);
            return Err(Diagnostic::new(span, "a number cannot be followed directly by a name")
                .with_label("expected a number")
                .with_help("write kernel sizes as `kernel: 3` or `kernel: [3, 5]`"));
        }
        tokens.push(Token { kind, span: Span::new(start, end) });
        rest = trivia(after);
    }
    Ok(tokens)
}

fn number_token(digits: &str, span: Span) -> Result<TokenKind, Diagnostic> {
    if digits.contains(['.', 'e', 'E']) {
        match digits.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(TokenKind::Float(x)),
            _ => Err(Diagnostic::new(span, format!("the number `{digits}` is out of range")).with_label("too large")),
        }
    } else {
        digits
            .parse::<i64>()
            .map(TokenKind::Int)
            .map_err(|_| Diagnostic::new(span, format!("the number `{digits}` is too large")).with_label("too large"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        lex(text).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn lexes_numbers_names_and_comments() {
        assert_eq!(
            kinds("conv2d(6, kernel: 5) # c\n// d\n elu(alpha: 1e-5) x: -0.5"),
            vec![
                TokenKind::Ident("conv2d".into()),
                TokenKind::Punct('('),
                TokenKind::Int(6),
                TokenKind::Punct(','),
                TokenKind::Ident("kernel".into()),
                TokenKind::Punct(':'),
                TokenKind::Int(5),
                TokenKind::Punct(')'),
                TokenKind::Ident("elu".into()),
                TokenKind::Punct('('),
                TokenKind::Ident("alpha".into()),
                TokenKind::Punct(':'),
                TokenKind::Float(1e-5),
                TokenKind::Punct(')'),
                TokenKind::Ident("x".into()),
                TokenKind::Punct(':'),
                TokenKind::Punct('-'),
                TokenKind::Float(0.5),
            ]
        );
    }

    #[test]
    fn spans_are_byte_offsets() {
        let toks = lex("  relu ; x").unwrap();
        assert_eq!(toks[0].span, Span::new(2, 6));
        assert_eq!(toks[1].span, Span::new(7, 8));
        assert_eq!(toks[2].span, Span::new(9, 10));
    }

    #[test]
    fn rejects_stray_characters_and_glued_numbers() {
        let e = lex("relu @").unwrap_err();
        assert_eq!(e.span, Span::new(5, 6));
        assert!(e.message.contains("unexpected character `@`"));
        let e = lex("kernel: 3x3").unwrap_err();
        assert_eq!(e.span, Span::new(8, 11));
        assert!(lex("99999999999999999999").is_err());
    }
}
