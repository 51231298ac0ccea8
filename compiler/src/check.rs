//! The checker: AST → [`ModelSpec`], the statement-level shape stage.
//!
//! It resolves every statement against the layer table, follows names, infers the output
//! shape of each statement per sample (batch dimension implicit) and lists the parameters
//! with their PyTorch names. Every mismatch is a [`Diagnostic`] that points at the
//! statement, says what was expected and what was found. This stage is what `percept
//! check` prints, and what the `network!` macro runs at expansion time.

use crate::ast::{self, Ident, StatementKind, ValueKind};
use crate::diag::{suggest, Diagnostic};
use crate::layers::{resolve_layer, Activation, Layer, Loss, Padding};
use crate::span::Span;
use std::collections::HashMap;
use std::fmt::Write;

/// Where a statement's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Input,
    Layer(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub name: Option<String>,
    pub shape: Vec<usize>,
    pub span: Span,
}

/// What a parameter is, which decides its initialization and whether it trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    Weight {
        fan_in: usize,
        fan_out: usize,
    },
    Bias {
        fan_in: usize,
    },
    /// Batch-norm scale γ (initialized to 1).
    Scale,
    /// Batch-norm shift β (initialized to 0).
    Shift,
    RunningMean,
    RunningVar,
    /// `num_batches_tracked` (an I64 scalar in PyTorch's files).
    BatchesTracked,
}

impl ParamRole {
    pub fn trainable(self) -> bool {
        matches!(self, ParamRole::Weight { .. } | ParamRole::Bias { .. } | ParamRole::Scale | ParamRole::Shift)
    }

    /// Running statistics: float state updated in training, not by the optimizer.
    pub fn running(self) -> bool {
        matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// The PyTorch-compatible key: `0.weight`, `stem.running_mean`.
    pub name: String,
    pub shape: Vec<usize>,
    pub role: ParamRole,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// 0-based index among the model's layer statements (not counting `input`, `loss`).
    pub index: usize,
    pub label: Option<String>,
    /// The parameter prefix: the label, or else the index.
    pub prefix: String,
    pub layer: Layer,
    pub input: Source,
    /// The second operand of `add`.
    pub other: Option<Source>,
    pub in_shape: Vec<usize>,
    pub out_shape: Vec<usize>,
    pub params: Vec<ParamSpec>,
    pub span: Span,
    /// The statement's canonical text.
    pub text: String,
}

impl LayerSpec {
    /// `conv2d_0`, `stem`: a short tag naming the statement in kernel names.
    pub fn tag(&self) -> String {
        match &self.label {
            Some(l) => l.clone(),
            None => format!("{}_{}", self.kind_name(), self.index),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        layer_kind_name(&self.layer)
    }

    pub fn param(&self, suffix: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name.rsplit('.').next() == Some(suffix))
    }
}

pub fn layer_kind_name(layer: &Layer) -> &'static str {
    match layer {
        Layer::Dense { .. } => "dense",
        Layer::Conv2d { .. } => "conv2d",
        Layer::MaxPool { .. } => "maxpool",
        Layer::AvgPool { .. } => "avgpool",
        Layer::BatchNorm { .. } => "batchnorm",
        Layer::Flatten => "flatten",
        Layer::GlobalAvgPool => "global_avgpool",
        Layer::Dropout { .. } => "dropout",
        Layer::Add { .. } => "add",
        Layer::Softmax => "softmax",
        Layer::Activation(a) => a.name(),
        Layer::Maxout { .. } => "maxout",
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossSpec {
    pub loss: Loss,
    pub span: Span,
}

/// A checked model: every statement resolved, every shape known.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub input: InputSpec,
    pub layers: Vec<LayerSpec>,
    pub loss: Option<LossSpec>,
    /// The canonical text of the model (no comments, normalized spacing); its hash
    /// identifies the model in weights files.
    pub canonical: String,
    pub span: Span,
}

impl ModelSpec {
    pub fn output_shape(&self) -> &[usize] {
        self.layers.last().map_or(&self.input.shape, |l| &l.out_shape)
    }

    pub fn params(&self) -> impl Iterator<Item = &ParamSpec> {
        self.layers.iter().flat_map(|l| &l.params)
    }

    pub fn trainable_count(&self) -> usize {
        self.params().filter(|p| p.role.trainable()).map(|p| p.numel()).sum()
    }

    pub fn running_count(&self) -> usize {
        self.params().filter(|p| p.role.running()).map(|p| p.numel()).sum()
    }

    /// The statement whose output a source names.
    pub fn shape_of(&self, s: Source) -> &[usize] {
        match s {
            Source::Input => &self.input.shape,
            Source::Layer(i) => &self.layers[i].out_shape,
        }
    }

    /// Find a layer by its label or its index (as a string).
    pub fn find_layer(&self, name: &str) -> Option<&LayerSpec> {
        self.layers.iter().find(|l| l.prefix == name || l.label.as_deref() == Some(name) || l.tag() == name)
    }

    /// `0 (conv2d_0), 1 (relu_1), stem, ...`: how statements can be named, for messages.
    pub fn layer_names(&self) -> String {
        let names: Vec<String> = self
            .layers
            .iter()
            .map(|l| if l.label.is_some() { l.prefix.clone() } else { format!("{} ({})", l.prefix, l.tag()) })
            .collect();
        names.join(", ")
    }

    /// FNV-1a of the canonical text, as 16 hex digits.
    pub fn text_hash(&self) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.canonical.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        format!("{h:016x}")
    }

    /// The Keras-like summary `percept check` prints.
    pub fn summary(&self) -> String {
        let mut rows: Vec<[String; 4]> = vec![["name".into(), "layer".into(), "output shape".into(), "params".into()]];
        let input_name = self.input.name.clone().unwrap_or_else(|| "input".into());
        rows.push([input_name, "input".into(), fmt_shape(&self.input.shape), "0".into()]);
        for l in &self.layers {
            let count: usize = l.params.iter().filter(|p| p.role.trainable()).map(|p| p.numel()).sum();
            rows.push([l.prefix.clone(), l.text.clone(), fmt_shape(&l.out_shape), group_digits(count)]);
        }
        let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        let _ = writeln!(out, "model {}", self.name);
        let total: usize = widths.iter().sum::<usize>() + 6;
        for (i, r) in rows.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            );
            if i == 0 {
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
        }
        let _ = writeln!(out, "{}", "-".repeat(total));
        let _ = writeln!(out, "trainable parameters: {}", group_digits(self.trainable_count()));
        let _ = writeln!(out, "running statistics:   {}", group_digits(self.running_count()));
        match &self.loss {
            Some(l) => {
                let _ = writeln!(out, "loss: {}", l.loss.name());
            }
            None => {
                let _ = writeln!(out, "loss: none (forward only; `train` needs a `loss` statement)");
            }
        }
        out
    }
}

pub fn fmt_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// 421834 → `421,834`.
pub fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

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

    let mut names: HashMap<String, (Source, Span)> = HashMap::new();
    if let Some(n) = &input.name {
        names.insert(n.clone(), (Source::Input, input.span));
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
                let layer = resolve_layer(name, args, s.span)?;
                let index = layers.len();
                let input_src = if index == 0 { Source::Input } else { Source::Layer(index - 1) };
                let in_shape = match input_src {
                    Source::Input => input.shape.clone(),
                    Source::Layer(i) => layers[i].out_shape.clone(),
                };
                let other = match &layer {
                    Layer::Add { other } => Some(lookup(&names, other, &layers, &input)?),
                    _ => None,
                };
                let other_shape = other.map(|o| match o {
                    Source::Input => input.shape.clone(),
                    Source::Layer(i) => layers[i].out_shape.clone(),
                });
                let ctx = ShapeCtx { span: s.span, name: &name.name, other: other_shape.as_deref() };
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
                    names.insert(l.name.clone(), (Source::Layer(index), l.span));
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
                    label: s.label.as_ref().map(|l| l.name.clone()),
                    prefix,
                    layer,
                    input: input_src,
                    other,
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
    Ok(ModelSpec { name: model.name.name.clone(), input, layers, loss, canonical: model.to_string(), span: model.span })
}

/// The most elements one sample's tensor or one parameter may have (2^31).
pub const MAX_ELEMENTS: u128 = 1 << 31;

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

fn lookup(
    names: &HashMap<String, (Source, Span)>,
    name: &Ident,
    layers: &[LayerSpec],
    input: &InputSpec,
) -> Result<Source, Diagnostic> {
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
    other: Option<&'a [usize]>,
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

    fn expect_image(&self, x: &[usize]) -> Result<[usize; 3], Diagnostic> {
        if let [c, h, w] = *x {
            return Ok([c, h, w]);
        }
        Err(self
            .err(format!("{} expects an image input [channels, height, width], found {}", self.name, fmt_shape(x)))
            .with_help("declare an image input such as `input [1, 28, 28]`"))
    }
}

/// Output size of a sliding window: ⌊(n + pad − k)/s⌋ + 1, or `None` if it does not fit.
pub fn window_out(n: usize, pad_total: usize, k: usize, s: usize) -> Option<usize> {
    (n + pad_total).checked_sub(k).map(|r| r / s + 1)
}

/// The padding a `conv2d` uses on each side (rows, cols), `same` resolved.
pub fn conv_padding(padding: Padding, kernel: [usize; 2]) -> [usize; 2] {
    match padding {
        Padding::Explicit(p) => p,
        Padding::Same => [(kernel[0] - 1) / 2, (kernel[1] - 1) / 2],
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
        Layer::Conv2d { filters, kernel, stride, padding, .. } => {
            let [_, h, w] = ctx.expect_image(x)?;
            if *padding == Padding::Same && (kernel[0] % 2 == 0 || kernel[1] % 2 == 0) {
                return Err(ctx
                    .err(format!("`padding: same` needs an odd kernel, found kernel {}", fmt_shape(kernel)))
                    .with_help("use an odd kernel size, or give the padding explicitly (`padding: 1`)"));
            }
            let p = conv_padding(*padding, *kernel);
            match (window_out(h, 2 * p[0], kernel[0], stride[0]), window_out(w, 2 * p[1], kernel[1], stride[1])) {
                (Some(ho), Some(wo)) => vec![*filters, ho, wo],
                _ => {
                    return Err(ctx
                        .err(format!(
                            "conv2d's kernel {} is larger than its padded input {} (input {} with padding {})",
                            fmt_shape(kernel),
                            fmt_shape(&[h + 2 * p[0], w + 2 * p[1]]),
                            fmt_shape(&[h, w]),
                            fmt_shape(&p)
                        ))
                        .with_help("use a smaller kernel, more padding, or fewer pooling layers before it"))
                }
            }
        }
        Layer::MaxPool { size, stride } | Layer::AvgPool { size, stride } => {
            let [c, h, w] = ctx.expect_image(x)?;
            match (window_out(h, 0, size[0], stride[0]), window_out(w, 0, size[1], stride[1])) {
                (Some(ho), Some(wo)) => vec![c, ho, wo],
                _ => {
                    return Err(ctx
                        .err(format!(
                            "{}'s window {} is larger than its input {}",
                            ctx.name,
                            fmt_shape(size),
                            fmt_shape(&[h, w])
                        ))
                        .with_help("use a smaller window or remove a pooling layer"))
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
        Layer::GlobalAvgPool => vec![ctx.expect_image(x)?[0]],
        Layer::Dropout { .. } | Layer::Activation(_) => x.to_vec(),
        Layer::Softmax => {
            ctx.expect_flat(x)?;
            x.to_vec()
        }
        Layer::Add { other } => {
            let o = ctx.other.expect("add's operand resolved");
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
            x.to_vec()
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
        Layer::Conv2d { filters, kernel, bias, .. } => {
            let c = x[0];
            let fan_in = c * kernel[0] * kernel[1];
            let fan_out = filters * kernel[0] * kernel[1];
            let mut v =
                vec![p("weight", vec![*filters, c, kernel[0], kernel[1]], ParamRole::Weight { fan_in, fan_out })];
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
        _ => vec![],
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
        Loss::Mse => {
            if out.len() != 1 {
                return Err(err(format!("mse expects a flat output [k], found {}", fmt_shape(out)))
                    .with_help("add `flatten` before the loss"));
            }
        }
    }
    Ok(LossSpec { loss, span })
}
