//! The checker: AST → [`ModelSpec`], the statement-level shape stage.
//!
//! It resolves every statement against the layer table, follows names, infers the output
//! shape of each statement per sample (batch dimension implicit) and lists the parameters
//! with their PyTorch names. Every mismatch is a [`Diagnostic`] that points at the
//! statement, says what was expected and what was found. This stage is what `percept
//! check` prints, and what the `network!` macro runs at expansion time. Its shapes agree
//! with the ops' shape rules (`ops::OpRule::infer`) on the graphs built from them: a test
//! (`compiler/tests/shapes.rs`) asserts it for every example and for random models.

use crate::ast::{self, Arg, Ident, StatementKind, ValueKind};
use crate::diag::{suggest, Diagnostic};
use crate::layers::{resolve_layer, Activation, Layer, Loss, Padding};
use crate::shape::{conv_padding, dilated, transposed_out, window_out, MAX_ELEMENTS};
use crate::span::Span;
use crate::spec::{InputSpec, LayerSpec, LossSpec, ModelSpec, ParamRole, ParamSpec, Ref};
use crate::text::fmt_shape;
use std::collections::HashMap;

/// Check a parsed model: resolve layers and names, infer shapes, list parameters.
pub fn check(model: &ast::Model) -> Result<ModelSpec, Diagnostic> {
    let mut stmts = model.statements.iter().peekable();
    // The input comes first.
    let input = match stmts.peek().map(|s| (&s.kind, s.span)) {
        Some((StatementKind::Input { name, shape }, span)) => {
            stmts.next();
            InputSpec { name: name.as_ref().map(|n| n.name.clone()), shape: input_shape(shape)?, span }
        }
        _ => {
            let at = model.statements.iter().find(|s| matches!(s.kind, StatementKind::Input { .. }));
            return Err(match at {
                Some(s) => Diagnostic::new(s.span, "`input` must be the first statement")
                    .with_label("input declared here")
                    .with_help("move it to the top of the model"),
                None => Diagnostic::new(
                    model.name.span,
                    format!("the model `{}` has no `input` statement", model.name.name),
                )
                .with_label("no input")
                .with_help("start the model with its per-sample input shape, like `input [1, 28, 28]`"),
            });
        }
    };

    let mut names: HashMap<String, (Ref, Span)> = HashMap::new();
    if let Some(n) = &input.name {
        names.insert(n.clone(), (Ref::Input, input.span));
    }
    let mut layers: Vec<LayerSpec> = Vec::new();
    let mut loss: Option<LossSpec> = None;

    for s in stmts {
        if let Some(l) = &loss {
            return Err(Diagnostic::new(s.span, "nothing may follow the `loss` statement")
                .with_label("after the loss")
                .with_help(format!(
                    "the loss at position {} ends the model; move this statement above it",
                    l.span.start
                )));
        }
        match &s.kind {
            StatementKind::Input { .. } => {
                return Err(Diagnostic::new(s.span, "a model has exactly one `input`, and it comes first")
                    .with_label("second input"));
            }
            StatementKind::Loss { name } => {
                if let Some(l) = &s.label {
                    return Err(Diagnostic::new(l.span, "a loss cannot be named").with_label("remove this name"));
                }
                loss = Some(check_loss(name, s.span, &input, &layers)?);
            }
            StatementKind::Layer { name, args } => {
                let (from, args) = split_from(args)?;
                let (layer, kind) = resolve_layer(name, &args, s.span)?;
                let index = layers.len();
                let input_src = match &from {
                    Some(n) => lookup(&names, n, &layers, &input)?,
                    None if index == 0 => Ref::Input,
                    None => Ref::Layer(index - 1),
                };
                let in_shape = match input_src {
                    Ref::Input => input.shape.clone(),
                    Ref::Layer(i) => layers[i].out_shape.clone(),
                };
                let others = match &layer {
                    Layer::Add { others } | Layer::Concat { others } => {
                        others.iter().map(|o| lookup(&names, o, &layers, &input)).collect::<Result<Vec<_>, _>>()?
                    }
                    _ => vec![],
                };
                let other_shapes: Vec<Vec<usize>> = others
                    .iter()
                    .map(|o| match o {
                        Ref::Input => input.shape.clone(),
                        Ref::Layer(i) => layers[*i].out_shape.clone(),
                    })
                    .collect();
                let ctx = ShapeCtx { span: s.span, name: &name.name, others: &other_shapes };
                let out_shape = infer_shape(&layer, &in_shape, &ctx)?;
                check_size(&out_shape, s.span, "output")?;
                let prefix = s.label.as_ref().map_or_else(|| index.to_string(), |l| l.name.clone());
                if let Some(l) = &s.label {
                    if names.contains_key(&l.name) {
                        return Err(Diagnostic::new(
                            l.span,
                            format!("the name `{}` is already used by an earlier statement", l.name),
                        )
                        .with_label("used again here")
                        .with_help("names must be unique: rename one of them"));
                    }
                    if l.name.chars().all(|c| c.is_ascii_digit()) {
                        return Err(Diagnostic::new(l.span, "a name cannot be a number")
                            .with_label("numbers are reserved for unnamed statements"));
                    }
                    names.insert(l.name.clone(), (Ref::Layer(index), l.span));
                }
                let params = layer_params(&layer, &in_shape, &prefix);
                for p in &params {
                    check_size(&p.shape, s.span, "parameter")?;
                }
                let text = {
                    let mut st = s.clone();
                    st.label = None;
                    st.to_string()
                };
                layers.push(LayerSpec {
                    index,
                    kind,
                    label: s.label.as_ref().map(|l| l.name.clone()),
                    prefix,
                    layer,
                    input: input_src,
                    others,
                    in_shape,
                    out_shape,
                    params,
                    span: s.span,
                    text,
                });
            }
        }
    }
    if layers.is_empty() {
        return Err(Diagnostic::new(model.name.span, format!("the model `{}` has no layers", model.name.name))
            .with_label("empty model")
            .with_help("add layers after the `input` statement, like `dense(10)`"));
    }
    check_all_used(&layers)?;
    Ok(ModelSpec { name: model.name.name.clone(), input, layers, loss, canonical: model.to_string(), span: model.span })
}

fn check_size(shape: &[usize], span: Span, what: &str) -> Result<(), Diagnostic> {
    let n: u128 = shape.iter().map(|&d| d as u128).product();
    if n > MAX_ELEMENTS {
        return Err(Diagnostic::new(
            span,
            format!("this statement's {what} {} has {n} elements, more than {MAX_ELEMENTS}", fmt_shape(shape)),
        )
        .with_label("too large"));
    }
    Ok(())
}

fn input_shape(v: &ast::Value) -> Result<Vec<usize>, Diagnostic> {
    let ValueKind::List(items) = &v.kind else {
        return Err(Diagnostic::new(
            v.span,
            format!("expected the input shape as a list, found {}", v.kind.describe()),
        )
        .with_label("expected a list like `[1, 28, 28]`"));
    };
    if items.is_empty() {
        return Err(Diagnostic::new(v.span, "the input shape is empty")
            .with_label("expected at least one dimension")
            .with_help("write `[features]` for flat inputs or `[channels, height, width]` for images"));
    }
    let shape = items
        .iter()
        .map(|d| match d.kind {
            ValueKind::Int(i) if (1..=crate::layers::MAX_SIZE).contains(&i) => Ok(i as usize),
            _ => Err(Diagnostic::new(
                d.span,
                format!(
                    "an input dimension must be an integer from 1 to {}, found {}",
                    crate::layers::MAX_SIZE,
                    d.kind.describe()
                ),
            )
            .with_label("expected a positive integer")),
        })
        .collect::<Result<Vec<usize>, Diagnostic>>()?;
    check_size(&shape, v.span, "input")?;
    Ok(shape)
}

/// With `from:` a statement's output can go unread; that is an error here (it would
/// otherwise be a parameter that no gradient reaches). The last statement is the output.
fn check_all_used(layers: &[LayerSpec]) -> Result<(), Diagnostic> {
    let mut used = vec![false; layers.len()];
    for l in layers {
        for r in std::iter::once(&l.input).chain(&l.others) {
            if let Ref::Layer(i) = r {
                used[*i] = true;
            }
        }
    }
    match layers.iter().zip(&used).take(layers.len() - 1).find(|(_, u)| !**u) {
        Some((l, _)) => Err(Diagnostic::new(l.span, "the output of this statement is never used")
            .with_label("nothing reads this")
            .with_help(match &l.label {
                Some(n) => format!("read it with `from: {n}` or `add({n})`, or remove the statement"),
                None => "name it (`NAME: ...`) and read it with `from: NAME` or `add(NAME)`, or remove it".into(),
            })),
        None => Ok(()),
    }
}

/// `from: NAME`, which any layer statement may carry (its input is then that statement's
/// output, or the named input, instead of the previous statement's), and the other
/// arguments, which the layer table binds.
fn split_from(args: &[Arg]) -> Result<(Option<Ident>, Vec<Arg>), Diagnostic> {
    let mut from = None;
    let mut rest = vec![];
    for a in args {
        match &a.key {
            Some(k) if k.name == "from" => {
                if from.is_some() {
                    return Err(Diagnostic::new(a.span(), "`from` is given twice").with_label("second `from`"));
                }
                match &a.value.kind {
                    ValueKind::Name(n) => from = Some(Ident { name: n.clone(), span: a.value.span }),
                    other => {
                        return Err(Diagnostic::new(
                            a.value.span,
                            format!("`from` takes the name of an earlier statement, found `{other}`"),
                        )
                        .with_label("not a statement name")
                        .with_help("write `from: NAME`, where `NAME:` labels an earlier statement or the input"))
                    }
                }
            }
            _ => rest.push(a.clone()),
        }
    }
    Ok((from, rest))
}

fn lookup(
    names: &HashMap<String, (Ref, Span)>,
    name: &Ident,
    layers: &[LayerSpec],
    input: &InputSpec,
) -> Result<Ref, Diagnostic> {
    if let Some((src, _)) = names.get(&name.name) {
        return Ok(*src);
    }
    let mut d =
        Diagnostic::new(name.span, format!("no earlier statement is named `{}`", name.name)).with_label("unknown name");
    let known: Vec<&str> = layers.iter().filter_map(|l| l.label.as_deref()).chain(input.name.as_deref()).collect();
    d = match suggest(&name.name, known.iter().copied()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None if known.is_empty() => {
            d.with_help("name a statement by writing `NAME:` before it, like `stem: conv2d(16, kernel: 3)`")
        }
        None => d.with_help(format!("the names defined so far are: {}", known.join(", "))),
    };
    Err(d)
}

struct ShapeCtx<'a> {
    span: Span,
    name: &'a str,
    /// The shapes of `add`'s other operands.
    others: &'a [Vec<usize>],
}

impl ShapeCtx<'_> {
    fn err(&self, message: String) -> Diagnostic {
        Diagnostic::new(self.span, message).with_label(format!("this `{}`", self.name))
    }

    fn expect_flat(&self, x: &[usize]) -> Result<usize, Diagnostic> {
        if x.len() == 1 {
            return Ok(x[0]);
        }
        Err(self
            .err(format!("{} expects a flat input [features], found {}", self.name, fmt_shape(x)))
            .with_help("add `flatten` before it"))
    }

    /// Input channels and filters must both split into the groups.
    fn check_groups(&self, channels: usize, filters: usize, groups: usize) -> Result<(), Diagnostic> {
        for (what, n) in [("input channels", channels), ("filters", filters)] {
            if !n.is_multiple_of(groups) {
                return Err(self
                    .err(format!("{}'s {n} {what} do not split into {groups} groups", self.name))
                    .with_help("groups must divide both the input channels and the filters"));
            }
        }
        Ok(())
    }

    fn expect_image(&self, x: &[usize]) -> Result<[usize; 3], Diagnostic> {
        if let [c, h, w] = *x {
            return Ok([c, h, w]);
        }
        Err(self
            .err(format!("{} expects an image input [channels, height, width], found {}", self.name, fmt_shape(x)))
            .with_help("declare an image input such as `input [1, 28, 28]`"))
    }
}

fn infer_shape(layer: &Layer, x: &[usize], ctx: &ShapeCtx) -> Result<Vec<usize>, Diagnostic> {
    Ok(match layer {
        Layer::Dense { units, .. } => {
            ctx.expect_flat(x)?;
            vec![*units]
        }
        Layer::Maxout { units, .. } => {
            ctx.expect_flat(x)?;
            vec![*units]
        }
        Layer::Conv2d { filters, kernel, stride, padding, dilation, groups, .. } => {
            let [c, h, w] = ctx.expect_image(x)?;
            ctx.check_groups(c, *filters, *groups)?;
            let span = [dilated(kernel[0], dilation[0]), dilated(kernel[1], dilation[1])];
            if *padding == Padding::Same && (span[0].is_multiple_of(2) || span[1].is_multiple_of(2)) {
                let what = if *dilation == [1, 1] {
                    "an odd kernel".to_string()
                } else {
                    "an odd dilated kernel extent ((kernel − 1)·dilation + 1)".to_string()
                };
                return Err(ctx
                    .err(format!("`padding: same` needs {what}, found kernel {}", fmt_shape(kernel)))
                    .with_help("use an odd kernel size, or give the padding explicitly (`padding: 1`)"));
            }
            let p = conv_padding(*padding, *kernel, *dilation);
            match (window_out(h, 2 * p[0], span[0], stride[0]), window_out(w, 2 * p[1], span[1], stride[1])) {
                (Some(ho), Some(wo)) => vec![*filters, ho, wo],
                _ => {
                    let dilated_note =
                        if *dilation == [1, 1] { String::new() } else { format!(" (dilated to {})", fmt_shape(&span)) };
                    return Err(ctx
                        .err(format!(
                            "conv2d's kernel {}{dilated_note} is larger than its padded input {} (input {} with padding {})",
                            fmt_shape(kernel),
                            fmt_shape(&[h + 2 * p[0], w + 2 * p[1]]),
                            fmt_shape(&[h, w]),
                            fmt_shape(&p)
                        ))
                        .with_help("use a smaller kernel, more padding, or fewer pooling layers before it"));
                }
            }
        }
        Layer::ConvTranspose2d { filters, kernel, stride, padding, output_padding, dilation, groups, .. } => {
            let [c, h, w] = ctx.expect_image(x)?;
            ctx.check_groups(c, *filters, *groups)?;
            // PyTorch also allows output_padding < dilation with a smaller stride; those
            // extra rows get no input at all, and Percept refuses them.
            if (0..2).any(|a| output_padding[a] >= stride[a]) {
                return Err(ctx
                    .err(format!(
                        "conv_transpose2d's output_padding {} must be smaller than its stride {}",
                        fmt_shape(output_padding),
                        fmt_shape(stride)
                    ))
                    .with_help(
                        "output_padding picks one of the output sizes a stride allows, so it is below the stride",
                    ));
            }
            let out = |a: usize, n: usize| {
                transposed_out(n, kernel[a], stride[a], padding[a], output_padding[a], dilation[a])
            };
            match (out(0, h), out(1, w)) {
                (Some(ho), Some(wo)) => vec![*filters, ho, wo],
                _ => {
                    return Err(ctx
                        .err(format!(
                            "conv_transpose2d's padding {} removes its whole output (input {}, kernel {}, stride {})",
                            fmt_shape(padding),
                            fmt_shape(&[h, w]),
                            fmt_shape(kernel),
                            fmt_shape(stride)
                        ))
                        .with_help("use less padding or a larger kernel"))
                }
            }
        }
        Layer::MaxPool { size, stride, padding } | Layer::AvgPool { size, stride, padding, .. } => {
            let [c, h, w] = ctx.expect_image(x)?;
            if (0..2).any(|a| padding[a] > size[a] / 2) {
                return Err(ctx
                    .err(format!(
                        "{}'s padding {} is more than half its window {}",
                        ctx.name,
                        fmt_shape(padding),
                        fmt_shape(size)
                    ))
                    .with_help("every window must keep at least one input position: use padding ≤ size / 2"));
            }
            match (window_out(h, 2 * padding[0], size[0], stride[0]), window_out(w, 2 * padding[1], size[1], stride[1]))
            {
                (Some(ho), Some(wo)) => vec![c, ho, wo],
                _ => {
                    let padded =
                        if *padding == [0, 0] { String::new() } else { format!(" (padding {})", fmt_shape(padding)) };
                    return Err(ctx
                        .err(format!(
                            "{}'s window {} is larger than its input {}{padded}",
                            ctx.name,
                            fmt_shape(size),
                            fmt_shape(&[h, w])
                        ))
                        .with_help("use a smaller window or remove a pooling layer"));
                }
            }
        }
        Layer::BatchNorm { .. } => {
            if x.len() != 1 && x.len() != 3 {
                return Err(ctx.err(format!(
                    "batchnorm expects [features] or [channels, height, width], found {}",
                    fmt_shape(x)
                )));
            }
            x.to_vec()
        }
        Layer::Flatten => vec![x.iter().product()],
        Layer::GlobalAvgPool | Layer::GlobalMaxPool => vec![ctx.expect_image(x)?[0]],
        Layer::Upsample { factor, .. } => {
            let s = ctx.expect_image(x)?;
            vec![s[0], s[1] * factor[0], s[2] * factor[1]]
        }
        Layer::Dropout { .. } | Layer::Activation(_) => x.to_vec(),
        Layer::Softmax => {
            ctx.expect_flat(x)?;
            x.to_vec()
        }
        Layer::Add { others } => {
            for (other, o) in others.iter().zip(ctx.others) {
                if o != x {
                    return Err(ctx
                        .err(format!(
                            "add needs equal shapes: the previous output is {} but `{}` gives {}",
                            fmt_shape(x),
                            other.name,
                            fmt_shape(o)
                        ))
                        .with_help("shapes must match exactly; there is no broadcasting"));
                }
            }
            x.to_vec()
        }
        Layer::Concat { others } => {
            let mut out = x.to_vec();
            for (other, o) in others.iter().zip(ctx.others) {
                if o.len() != x.len() || o[1..] != x[1..] {
                    let what = if x.len() == 1 { "flat outputs" } else { "equal height and width" };
                    return Err(ctx
                        .err(format!(
                            "concat needs {what}: the previous output is {} but `{}` gives {}",
                            fmt_shape(x),
                            other.name,
                            fmt_shape(o)
                        ))
                        .with_help("outputs are joined along channels (features); the other dimensions must match"));
                }
                out[0] += o[0];
            }
            out
        }
    })
}

fn layer_params(layer: &Layer, x: &[usize], prefix: &str) -> Vec<ParamSpec> {
    let p = |suffix: &str, shape: Vec<usize>, role| ParamSpec { name: format!("{prefix}.{suffix}"), shape, role };
    match layer {
        Layer::Dense { units, bias } => {
            let fan_in = x[0];
            let mut v = vec![p("weight", vec![*units, fan_in], ParamRole::Weight { fan_in, fan_out: *units })];
            if *bias {
                v.push(p("bias", vec![*units], ParamRole::Bias { fan_in }));
            }
            v
        }
        Layer::Maxout { units, pieces } => {
            let fan_in = x[0];
            let rows = units * pieces;
            vec![
                p("weight", vec![rows, fan_in], ParamRole::Weight { fan_in, fan_out: rows }),
                p("bias", vec![rows], ParamRole::Bias { fan_in }),
            ]
        }
        // PyTorch's fans: the weight's second dimension and its first, times the kernel.
        Layer::Conv2d { filters, kernel, bias, groups, .. } => {
            let shape = vec![*filters, x[0] / groups, kernel[0], kernel[1]];
            let (fan_in, fan_out) = (shape[1] * kernel[0] * kernel[1], shape[0] * kernel[0] * kernel[1]);
            let mut v = vec![p("weight", shape, ParamRole::Weight { fan_in, fan_out })];
            if *bias {
                v.push(p("bias", vec![*filters], ParamRole::Bias { fan_in }));
            }
            v
        }
        Layer::ConvTranspose2d { filters, kernel, bias, groups, .. } => {
            let shape = vec![x[0], filters / groups, kernel[0], kernel[1]];
            let (fan_in, fan_out) = (shape[1] * kernel[0] * kernel[1], shape[0] * kernel[0] * kernel[1]);
            let mut v = vec![p("weight", shape, ParamRole::Weight { fan_in, fan_out })];
            if *bias {
                v.push(p("bias", vec![*filters], ParamRole::Bias { fan_in }));
            }
            v
        }
        Layer::BatchNorm { .. } => {
            let c = x[0];
            vec![
                p("weight", vec![c], ParamRole::Scale),
                p("bias", vec![c], ParamRole::Shift),
                p("running_mean", vec![c], ParamRole::RunningMean),
                p("running_var", vec![c], ParamRole::RunningVar),
                p("num_batches_tracked", vec![], ParamRole::BatchesTracked),
            ]
        }
        Layer::MaxPool { .. }
        | Layer::AvgPool { .. }
        | Layer::Flatten
        | Layer::GlobalAvgPool
        | Layer::GlobalMaxPool
        | Layer::Dropout { .. }
        | Layer::Add { .. }
        | Layer::Concat { .. }
        | Layer::Upsample { .. }
        | Layer::Softmax
        | Layer::Activation(_) => vec![],
    }
}

fn check_loss(name: &Ident, span: Span, input: &InputSpec, layers: &[LayerSpec]) -> Result<LossSpec, Diagnostic> {
    let Some(loss) = Loss::from_name(&name.name) else {
        let mut d = Diagnostic::new(name.span, format!("unknown loss `{}`", name.name)).with_label("unknown loss");
        d = match suggest(&name.name, Loss::ALL.iter().map(|l| l.name())) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d.with_help("the losses are: softmax_cross_entropy, binary_cross_entropy, mse"),
        };
        return Err(d);
    };
    let last = layers.last();
    let out = last.map_or(&input.shape[..], |l| &l.out_shape[..]);
    let err = |m: String| Diagnostic::new(span, m).with_label(format!("this `loss {}`", loss.name()));
    match loss {
        Loss::SoftmaxCrossEntropy => {
            if let Some(l) = last.filter(|l| l.layer == Layer::Softmax) {
                return Err(Diagnostic::new(
                    l.span,
                    "`softmax` right before `softmax_cross_entropy` applies softmax twice",
                )
                .with_label("remove this `softmax`")
                .with_help("softmax_cross_entropy takes logits; it computes the softmax itself (log-sum-exp)"));
            }
            if out.len() != 1 || out[0] < 2 {
                return Err(err(format!(
                    "softmax_cross_entropy expects logits [classes] with at least 2 classes, found {}",
                    fmt_shape(out)
                ))
                .with_help("end the model with `dense(classes)`"));
            }
        }
        Loss::BinaryCrossEntropy => {
            if last.map(|l| &l.layer) != Some(&Layer::Activation(Activation::Sigmoid)) {
                return Err(err("binary_cross_entropy needs a final `sigmoid` statement".into())
                    .with_help("add `sigmoid` before the loss; it is compiled as the stable with-logits form"));
            }
            if out.len() != 1 {
                return Err(err(format!("binary_cross_entropy expects a flat output [k], found {}", fmt_shape(out)))
                    .with_help("add `flatten` and a `dense` layer before the final `sigmoid`"));
            }
        }
        // Any shape: an image output is compared value by value (a reconstruction).
        Loss::Mse => {}
    }
    Ok(LossSpec { loss, span })
}
