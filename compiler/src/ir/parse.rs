//! The graph IR's text form, read back: `parse(&graph.to_string())` is the same graph, and
//! printing it again gives the same text. File tests (`compiler/tests/filetests/`) hold
//! graphs in this form.
//!
//! Each node line is checked as it is read: its op must exist and print its attributes
//! back exactly as written, its inputs must be defined earlier, and the shapes written
//! after ` : ` must be those the op's shape rule infers.

use super::{Graph, Mode, Origin, OutputRole, Phase, ValueId};
use crate::ops::{Op, TextOp};
use crate::Error;
use std::collections::HashMap;

fn fail<T>(line: usize, msg: impl std::fmt::Display) -> Result<T, Error> {
    Err(Error::Ir(format!("line {line}: {msg}")))
}

/// `[2, 3], [4]` → the shapes.
fn shapes(text: &str) -> Result<Vec<Vec<usize>>, String> {
    let mut out = vec![];
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('[') else { return Err(format!("expected a shape at `{rest}`")) };
        let (body, after) = inner.split_once(']').ok_or("a shape without `]`")?;
        let dims = if body.trim().is_empty() {
            vec![]
        } else {
            body.split(',')
                .map(|d| d.trim().parse::<usize>().map_err(|_| format!("`{d}` is not a size")))
                .collect::<Result<_, _>>()?
        };
        if crate::shape::elements(&dims).is_none() {
            return Err(format!("the shape [{body}] has more than 2^40 elements"));
        }
        out.push(dims);
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

/// Attribute tokens: separated by spaces outside brackets and quotes.
fn tokens(text: &str) -> Result<Vec<&str>, String> {
    let mut out = vec![];
    let (mut depth, mut quoted, mut start) = (0i32, false, None::<usize>);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ' ' if !quoted && depth == 0 => {
                if let Some(s) = start.take() {
                    out.push(&text[s..i]);
                }
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some(i);
        }
    }
    if quoted || depth != 0 {
        return Err(format!("unbalanced quotes or brackets in `{text}`"));
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    Ok(out)
}

fn quoted_name(tok: &str) -> Option<String> {
    tok.strip_prefix('"').and_then(|t| t.strip_suffix('"')).map(str::to_string)
}

fn value_name(v: &str) -> Option<&str> {
    v.trim().strip_prefix('%').filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

fn role(text: &str) -> Option<OutputRole> {
    let (kind, name) = match text.split_once(' ') {
        Some((k, n)) => (k, quoted_name(n.trim())),
        None => (text, None),
    };
    Some(match (kind, name) {
        ("loss", None) => OutputRole::Loss,
        ("prediction", None) => OutputRole::Prediction,
        ("input_grad", None) => OutputRole::InputGrad,
        ("grad", Some(n)) => OutputRole::Grad(n),
        ("state", Some(n)) => OutputRole::State(n),
        ("param", Some(n)) => OutputRole::Param(n),
        ("activation", Some(n)) => OutputRole::Activation(n),
        ("exchange", Some(n)) => OutputRole::Exchange(n),
        _ => return None,
    })
}

fn phase(title: &str) -> Option<Phase> {
    Some(match title {
        "forward" => Phase::Forward,
        "loss" => Phase::Loss,
        "backward" => Phase::Backward,
        "update" => Phase::Update,
        _ => return None,
    })
}

/// A graph from its text form.
pub fn parse(text: &str) -> Result<Graph, Error> {
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
    let Some(&(first, header)) = lines.first() else {
        return fail(1, "empty text: expected `graph NAME MODE batch=N {`");
    };
    let words: Vec<&str> = header.split_whitespace().collect();
    let (name, mode, batch) = match words.as_slice() {
        ["graph", name, mode, batch, "{"] => {
            let mode = match *mode {
                "train" => Mode::Train,
                "eval" => Mode::Eval,
                m => return fail(first, format!("mode `{m}` is neither train nor eval")),
            };
            let Some(Ok(batch)) = batch.strip_prefix("batch=").map(str::parse::<usize>) else {
                return fail(first, format!("expected batch=N, found `{batch}`"));
            };
            (*name, mode, batch)
        }
        _ => return fail(first, "expected `graph NAME MODE batch=N {`"),
    };
    let mut g = Graph::new(name, batch, mode);
    let mut names: HashMap<&str, ValueId> = HashMap::new();
    let mut phase_now: Option<Phase> = None;
    // Sources before the first section header take that section's phase.
    let mut pending_sources: Vec<usize> = vec![];
    let mut closed = false;
    for &(ln, line) in &lines[1..] {
        if closed {
            return fail(ln, "text after the closing `}`");
        }
        if line == "}" {
            closed = true;
            continue;
        }
        if let Some(title) = line.strip_prefix("// ") {
            let Some(p) = phase(title.trim()) else { return fail(ln, format!("unknown section `{title}`")) };
            for n in pending_sources.drain(..) {
                g.nodes[n].origin.phase = p;
            }
            phase_now = Some(p);
            continue;
        }
        if let Some(rest) = line.strip_prefix("output ") {
            let Some((r, v)) = rest.rsplit_once(" = ") else { return fail(ln, "expected `output ROLE = %N`") };
            let Some(r) = role(r.trim()) else { return fail(ln, format!("unknown output role `{r}`")) };
            let Some(&id) = value_name(v).and_then(|n| names.get(n)) else {
                return fail(ln, format!("`{}` is not a defined value", v.trim()));
            };
            g.outputs.push((r, id));
            continue;
        }
        // %a, %b = op(%x, %y) attrs : [shape], [shape]  # tag
        let (body, tag) = match line.rsplit_once("  # ") {
            Some((b, t)) => (b, t.trim()),
            None => (line, ""),
        };
        let Some((lhs, rhs)) = body.split_once(" = ") else { return fail(ln, format!("cannot read `{line}`")) };
        let Some((call, declared)) = rhs.rsplit_once(" : ") else {
            return fail(ln, "expected ` : ` and the output shapes");
        };
        let declared = shapes(declared).or_else(|e| fail(ln, e))?;
        let outs: Vec<&str> = lhs.split(',').map(str::trim).collect();
        let op_end = call.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(call.len());
        let (op_name, mut rest) = call.split_at(op_end);
        let mut inputs = vec![];
        if let Some(args) = rest.strip_prefix('(') {
            let Some((args, after)) = args.split_once(')') else { return fail(ln, "inputs without `)`") };
            for a in args.split(',') {
                match value_name(a).and_then(|n| names.get(n)) {
                    Some(&v) => inputs.push(v),
                    None => return fail(ln, format!("input `{}` is not defined before this line", a.trim())),
                }
            }
            rest = after;
        }
        let attrs = rest.trim();
        let mut t = TextOp { name: op_name, shapes: declared.clone(), ..TextOp::default() };
        for tok in tokens(attrs).or_else(|e| fail(ln, e))? {
            if let Some(q) = quoted_name(tok) {
                t.quoted = Some(q);
            } else if let Some((k, v)) = tok.split_once('=') {
                t.values.push((k, v));
            } else {
                t.flags.push(tok);
            }
        }
        let op = Op::from_text(&t).or_else(|e| fail(ln, e))?;
        if op.attrs() != attrs {
            return fail(ln, format!("`{op_name}` writes its attributes as `{}`, not `{attrs}`", op.attrs()));
        }
        let is_source = matches!(op, Op::Source(_));
        let origin = Origin { tag: tag.to_string(), phase: phase_now.unwrap_or(Phase::Forward) };
        let ids = g.push(op, &inputs, origin).map_err(|e| Error::Ir(format!("line {ln}: {e}")))?;
        let inferred: Vec<Vec<usize>> = ids.iter().map(|&v| g.shape(v).to_vec()).collect();
        if inferred != declared {
            return fail(ln, format!("`{op_name}` gives shapes {inferred:?}, the text says {declared:?}"));
        }
        if outs.len() != ids.len() {
            return fail(ln, format!("`{op_name}` has {} outputs, the text names {}", ids.len(), outs.len()));
        }
        for (o, id) in outs.iter().zip(ids) {
            let Some(n) = value_name(o) else { return fail(ln, format!("`{o}` is not a value name (%N)")) };
            if names.insert(n, id).is_some() {
                return fail(ln, format!("%{n} is defined twice"));
            }
        }
        if is_source && phase_now.is_none() {
            pending_sources.push(g.nodes.len() - 1);
        }
    }
    if !closed {
        return fail(lines.last().map_or(1, |l| l.0), "the graph is not closed with `}`");
    }
    Ok(g)
}
