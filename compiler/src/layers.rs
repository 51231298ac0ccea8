//! The layer table: every layer of the language, its arguments and defaults, and how its
//! arguments become a typed [`Layer`]. Both front ends (text and `network!`) resolve
//! layers through this table, and `docs/LANGUAGE.md` documents exactly this table.

use crate::ast::{Arg, Ident, Value, ValueKind};
use crate::diag::{suggest, Diagnostic};
use crate::span::Span;
use std::fmt;

/// An activation function (elementwise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Sigmoid,
    Tanh,
    /// relu′(0) = 0.
    Relu,
    /// x > 0 ? x : slope·x; derivative at 0 is `slope`.
    LeakyRelu {
        slope: f64,
    },
    /// x > 0 ? x : α(eˣ−1) (with expm1); derivative at 0 is α.
    Elu {
        alpha: f64,
    },
}

impl Activation {
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::LeakyRelu { slope } => write!(f, "leaky_relu(slope: {slope})"),
            Activation::Elu { alpha } => write!(f, "elu(alpha: {alpha})"),
            a => f.write_str(a.name()),
        }
    }
}

/// Convolution padding as written: explicit (rows, columns) on each side, or `same`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Explicit([usize; 2]),
    /// (k−1)/2 on each side, output ⌈in/stride⌉ (odd kernels only).
    Same,
}

/// A resolved layer with typed arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    Dense {
        units: usize,
        bias: bool,
    },
    Conv2d {
        filters: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        dilation: [usize; 2],
        groups: usize,
        bias: bool,
    },
    /// The gradient of a convolution with respect to its input, as a layer: PyTorch's
    /// `ConvTranspose2d` (weight [in, filters/groups, kh, kw]).
    ConvTranspose2d {
        filters: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        output_padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
        bias: bool,
    },
    MaxPool {
        size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    AvgPool {
        size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
    },
    BatchNorm {
        eps: f64,
        momentum: f64,
    },
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    Dropout {
        p: f64,
    },
    /// The previous output plus each named one, left to right.
    Add {
        others: Vec<Ident>,
    },
    /// Upsampling by integer factors, nearest-neighbour or bilinear.
    Upsample {
        factor: [usize; 2],
        bilinear: bool,
    },
    /// The previous output followed by each named one, along channels (features).
    Concat {
        others: Vec<Ident>,
    },
    Softmax,
    Activation(Activation),
    Maxout {
        units: usize,
        pieces: usize,
    },
}

/// The largest size, count or padding an argument may have (2^24); it keeps every shape
/// computation far from overflow.
pub const MAX_SIZE: i64 = 1 << 24;

/// The type an argument takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    /// An integer ≥ 1.
    Count,
    /// An integer ≥ 1 or a list of two: `5` or `[3, 5]`.
    Size2,
    /// `p`, `[ph, pw]` (integers ≥ 0), `valid` or `same`.
    Padding,
    /// A number (integers are accepted).
    Float,
    Bool,
    /// The name of an earlier statement.
    Name,
    /// One of a few words (a mode).
    Word,
    /// One or more names (the last argument only: it takes the remaining positional ones).
    Names,
}

impl ArgType {
    pub fn describe(self) -> &'static str {
        match self {
            ArgType::Count => "a positive integer",
            ArgType::Size2 => "a positive integer or a list of two, like `3` or `[3, 5]`",
            ArgType::Padding => "a padding: an integer, `[rows, cols]`, `valid` or `same`",
            ArgType::Float => "a number",
            ArgType::Bool => "`true` or `false`",
            ArgType::Name => "the name of an earlier statement",
            ArgType::Word => "a word",
            ArgType::Names => "the names of earlier statements",
        }
    }
}

/// An argument's default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgDefault {
    /// The argument must be given.
    Required,
    Int(i64),
    Float(f64),
    Bool(bool),
    Word(&'static str),
    /// The value of another argument (`stride` defaults to `size`).
    SameAs(&'static str),
}

impl fmt::Display for ArgDefault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgDefault::Required => f.write_str("required"),
            ArgDefault::Int(i) => write!(f, "{i}"),
            ArgDefault::Float(x) if *x != 0.0 && x.abs() < 1e-3 => write!(f, "{x:e}"),
            ArgDefault::Float(x) => f.write_str(&crate::ast::format_float(*x)),
            ArgDefault::Bool(b) => write!(f, "{b}"),
            ArgDefault::Word(w) => f.write_str(w),
            ArgDefault::SameAs(a) => write!(f, "= {a}"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ArgSpec {
    pub name: &'static str,
    pub ty: ArgType,
    pub default: ArgDefault,
    pub doc: &'static str,
}

/// One row of the layer table.
pub struct LayerDef {
    pub name: &'static str,
    pub args: &'static [ArgSpec],
    pub doc: &'static str,
    build: fn(&Args) -> Result<Layer, Diagnostic>,
}

const fn arg(name: &'static str, ty: ArgType, default: ArgDefault, doc: &'static str) -> ArgSpec {
    ArgSpec { name, ty, default, doc }
}

use ArgDefault as D;
use ArgType as T;

/// Every layer of the language.
pub static LAYERS: &[LayerDef] = &[
    LayerDef {
        name: "dense",
        doc: "fully connected: y = x·Wᵀ + b on a flat input",
        args: &[
            arg("units", T::Count, D::Required, "output features"),
            arg("bias", T::Bool, D::Bool(true), "add a learned bias"),
        ],
        build: |a| Ok(Layer::Dense { units: a.count("units")?, bias: a.bool("bias")? }),
    },
    LayerDef {
        name: "conv2d",
        doc: "2-D cross-correlation, NCHW",
        args: &[
            arg("filters", T::Count, D::Required, "output channels"),
            arg("kernel", T::Size2, D::Required, "kernel size k or [kh, kw]"),
            arg("stride", T::Size2, D::Int(1), "stride s or [sh, sw]"),
            arg("padding", T::Padding, D::Int(0), "zeros on each side: p, [ph, pw], valid (=0) or same"),
            arg("dilation", T::Size2, D::Int(1), "spacing of the kernel's taps d or [dh, dw]"),
            arg("groups", T::Count, D::Int(1), "split channels and filters into this many groups"),
            arg("bias", T::Bool, D::Bool(true), "add a learned bias per filter"),
        ],
        build: |a| {
            Ok(Layer::Conv2d {
                filters: a.count("filters")?,
                kernel: a.size2("kernel")?,
                stride: a.size2("stride")?,
                padding: a.padding("padding")?,
                dilation: a.size2("dilation")?,
                groups: a.count("groups")?,
                bias: a.bool("bias")?,
            })
        },
    },
    LayerDef {
        name: "conv_transpose2d",
        doc: "transposed convolution (the input gradient of conv2d), NCHW, as ConvTranspose2d",
        args: &[
            arg("filters", T::Count, D::Required, "output channels"),
            arg("kernel", T::Size2, D::Required, "kernel size k or [kh, kw]"),
            arg("stride", T::Size2, D::Int(1), "stride s or [sh, sw]"),
            arg("padding", T::Padding, D::Int(0), "rows and columns removed on each side: p or [ph, pw]"),
            arg("output_padding", T::Padding, D::Int(0), "rows and columns added at the bottom and right"),
            arg("dilation", T::Size2, D::Int(1), "spacing of the kernel's taps d or [dh, dw]"),
            arg("groups", T::Count, D::Int(1), "split channels and filters into this many groups"),
            arg("bias", T::Bool, D::Bool(true), "add a learned bias per filter"),
        ],
        build: |a| {
            Ok(Layer::ConvTranspose2d {
                filters: a.count("filters")?,
                kernel: a.size2("kernel")?,
                stride: a.size2("stride")?,
                padding: a.explicit_padding("padding")?,
                output_padding: a.explicit_padding("output_padding")?,
                dilation: a.size2("dilation")?,
                groups: a.count("groups")?,
                bias: a.bool("bias")?,
            })
        },
    },
    LayerDef {
        name: "maxpool",
        doc: "max over windows (floor mode); the first maximum wins, NaN wins",
        args: &[
            arg("size", T::Size2, D::Required, "window size"),
            arg("stride", T::Size2, D::SameAs("size"), "window step"),
            arg("padding", T::Padding, D::Int(0), "−∞ on each side: p or [ph, pw], at most half the window"),
        ],
        build: |a| {
            Ok(Layer::MaxPool {
                size: a.size2("size")?,
                stride: a.size2("stride")?,
                padding: a.explicit_padding("padding")?,
            })
        },
    },
    LayerDef {
        name: "avgpool",
        doc: "mean over windows (floor mode)",
        args: &[
            arg("size", T::Size2, D::Required, "window size"),
            arg("stride", T::Size2, D::SameAs("size"), "window step"),
            arg("padding", T::Padding, D::Int(0), "zeros on each side: p or [ph, pw], at most half the window"),
            arg("count_include_pad", T::Bool, D::Bool(true), "divide by the whole window, padding included"),
        ],
        build: |a| {
            Ok(Layer::AvgPool {
                size: a.size2("size")?,
                stride: a.size2("stride")?,
                padding: a.explicit_padding("padding")?,
                count_include_pad: a.bool("count_include_pad")?,
            })
        },
    },
    LayerDef {
        name: "batchnorm",
        doc: "batch normalization per feature (flat input) or per channel (image input)",
        args: &[
            arg("eps", T::Float, D::Float(1e-5), "added to the variance"),
            arg("momentum", T::Float, D::Float(0.1), "running statistics: r ← (1−m)·r + m·stat"),
        ],
        build: |a| {
            let eps = a.float("eps")?;
            if eps <= 0.0 {
                return Err(a.bad_value("eps", "a number greater than 0"));
            }
            let momentum = a.float("momentum")?;
            if !(0.0..=1.0).contains(&momentum) {
                return Err(a.bad_value("momentum", "a number from 0 to 1"));
            }
            Ok(Layer::BatchNorm { eps, momentum })
        },
    },
    LayerDef {
        name: "flatten", doc: "[C, H, W] → [C·H·W], in C,H,W order", args: &[], build: |_| Ok(Layer::Flatten)
    },
    LayerDef {
        name: "upsample",
        doc: "[C, H, W] → [C, H·fh, W·fw], nearest neighbour (each value repeated over its block) or \
              bilinear (align_corners=False), as `nn.Upsample(scale_factor=f, mode=...)`",
        args: &[
            arg("factor", T::Size2, D::Required, "the integer factor f or [fh, fw]"),
            arg("mode", T::Word, D::Word("nearest"), "nearest or bilinear"),
        ],
        build: |a| {
            let bilinear = a.word("mode", &["nearest", "bilinear"])? == "bilinear";
            Ok(Layer::Upsample { factor: a.size2("factor")?, bilinear })
        },
    },
    LayerDef {
        name: "global_avgpool",
        doc: "[C, H, W] → [C], the mean of each channel",
        args: &[],
        build: |_| Ok(Layer::GlobalAvgPool),
    },
    LayerDef {
        name: "global_maxpool",
        doc: "[C, H, W] → [C], the maximum of each channel; the first maximum wins, NaN wins",
        args: &[],
        build: |_| Ok(Layer::GlobalMaxPool),
    },
    LayerDef {
        name: "dropout",
        doc: "inverted dropout in training (kept values scaled by 1/(1−p)), identity otherwise",
        args: &[arg("p", T::Float, D::Float(0.5), "probability of dropping a value")],
        build: |a| {
            let p = a.float("p")?;
            if !(0.0..1.0).contains(&p) {
                return Err(a.bad_value("p", "a probability from 0 up to (not including) 1"));
            }
            Ok(Layer::Dropout { p })
        },
    },
    LayerDef {
        name: "add",
        doc: "the previous output plus the named earlier statements' outputs, left to right (equal shapes)",
        args: &[arg("names", T::Names, D::Required, "the statements to add, one or more")],
        build: |a| Ok(Layer::Add { others: a.names("names")? }),
    },
    LayerDef {
        name: "concat",
        doc: "the previous output followed by the named earlier statements' outputs, along channels \
              (images: equal height and width; flat: features), as `torch.cat([prev, a, ...], dim=1)`",
        args: &[arg("names", T::Names, D::Required, "the statements to append, one or more")],
        build: |a| Ok(Layer::Concat { others: a.names("names")? }),
    },
    LayerDef {
        name: "softmax",
        doc: "softmax over features; for inference outputs only",
        args: &[],
        build: |_| Ok(Layer::Softmax),
    },
    LayerDef { name: "sigmoid", doc: "1/(1+e⁻ˣ)", args: &[], build: |_| Ok(Layer::Activation(Activation::Sigmoid)) },
    LayerDef { name: "tanh", doc: "hyperbolic tangent", args: &[], build: |_| Ok(Layer::Activation(Activation::Tanh)) },
    LayerDef {
        name: "relu",
        doc: "max(0, x); relu′(0) = 0",
        args: &[],
        build: |_| Ok(Layer::Activation(Activation::Relu)),
    },
    LayerDef {
        name: "leaky_relu",
        doc: "x > 0 ? x : slope·x (the course's max(0.1x, x)); derivative at 0 is slope",
        args: &[arg("slope", T::Float, D::Float(0.1), "slope for x ≤ 0 (PyTorch's default is 0.01)")],
        build: |a| Ok(Layer::Activation(Activation::LeakyRelu { slope: a.float("slope")? })),
    },
    LayerDef {
        name: "elu",
        doc: "x > 0 ? x : α(eˣ−1); derivative at 0 is α",
        args: &[arg("alpha", T::Float, D::Float(1.0), "α")],
        build: |a| Ok(Layer::Activation(Activation::Elu { alpha: a.float("alpha")? })),
    },
    LayerDef {
        name: "maxout",
        doc: "max of `pieces` affine maps of a flat input",
        args: &[
            arg("units", T::Count, D::Required, "output features"),
            arg("pieces", T::Count, D::Int(2), "affine pieces per output"),
        ],
        build: |a| Ok(Layer::Maxout { units: a.count("units")?, pieces: a.count("pieces")? }),
    },
];

/// The losses of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    SoftmaxCrossEntropy,
    BinaryCrossEntropy,
    Mse,
}

impl Loss {
    pub const ALL: [Loss; 3] = [Loss::SoftmaxCrossEntropy, Loss::BinaryCrossEntropy, Loss::Mse];

    pub fn name(self) -> &'static str {
        match self {
            Loss::SoftmaxCrossEntropy => "softmax_cross_entropy",
            Loss::BinaryCrossEntropy => "binary_cross_entropy",
            Loss::Mse => "mse",
        }
    }

    pub fn from_name(name: &str) -> Option<Loss> {
        Loss::ALL.into_iter().find(|l| l.name() == name)
    }
}

pub fn layer_def(name: &str) -> Option<&'static LayerDef> {
    LAYERS.iter().find(|d| d.name == name)
}

/// Resolve a layer call against the table: check names, counts and types of the arguments.
/// Gives the typed layer and its name in the table.
pub fn resolve_layer(name: &Ident, args: &[Arg], call_span: Span) -> Result<(Layer, &'static str), Diagnostic> {
    let Some(def) = layer_def(&name.name) else {
        let mut d = Diagnostic::new(name.span, format!("unknown layer `{}`", name.name)).with_label("unknown layer");
        let known = LAYERS.iter().map(|l| l.name);
        d = match (name.name.as_str(), suggest(&name.name, known)) {
            ("model", _) => d.with_help("a file holds one model; `model` cannot appear inside it"),
            (_, Some(s)) => d.with_help(format!("did you mean `{s}`?")),
            (w, None) if Loss::from_name(w).is_some() => d.with_help(format!("a loss is written `loss {w}`")),
            _ => {
                d.with_help(format!("the layers are: {}", LAYERS.iter().map(|l| l.name).collect::<Vec<_>>().join(", ")))
            }
        };
        return Err(d);
    };
    let args = Args::bind(def, args, call_span)?;
    Ok(((def.build)(&args)?, def.name))
}

/// Arguments bound to a layer's parameters by position or keyword.
pub struct Args<'a> {
    def: &'static LayerDef,
    values: Vec<Option<&'a Value>>,
    /// Positional values past the last argument, when that one takes `Names`.
    rest: Vec<&'a Value>,
    call_span: Span,
}

impl<'a> Args<'a> {
    fn bind(def: &'static LayerDef, args: &'a [Arg], call_span: Span) -> Result<Args<'a>, Diagnostic> {
        let mut values: Vec<Option<&Value>> = vec![None; def.args.len()];
        let mut rest = vec![];
        let variadic = def.args.last().is_some_and(|a| a.ty == ArgType::Names);
        let mut seen_keyword = false;
        for (i, a) in args.iter().enumerate() {
            let slot = match &a.key {
                None => {
                    if seen_keyword {
                        return Err(Diagnostic::new(a.span(), "a positional argument after a named one")
                            .with_label("positional argument")
                            .with_help("put positional arguments first"));
                    }
                    if i >= def.args.len() && variadic {
                        rest.push(&a.value);
                        continue;
                    }
                    if i >= def.args.len() {
                        return Err(Diagnostic::new(
                            a.span(),
                            format!(
                                "`{}` takes {} argument{}, found more",
                                def.name,
                                def.args.len(),
                                plural(def.args.len())
                            ),
                        )
                        .with_label("extra argument")
                        .with_help(signature(def)));
                    }
                    i
                }
                Some(k) => {
                    seen_keyword = true;
                    match def.args.iter().position(|s| s.name == k.name) {
                        Some(j) => j,
                        None => {
                            let mut d = Diagnostic::new(k.span, format!("`{}` has no argument `{}`", def.name, k.name))
                                .with_label("unknown argument");
                            d = match suggest(&k.name, def.args.iter().map(|s| s.name)) {
                                Some(s) => d.with_help(format!("did you mean `{s}`? ({})", signature(def))),
                                None => d.with_help(signature(def)),
                            };
                            return Err(d);
                        }
                    }
                }
            };
            if values[slot].is_some() {
                return Err(Diagnostic::new(a.span(), format!("argument `{}` is given twice", def.args[slot].name))
                    .with_label("given again here"));
            }
            values[slot] = Some(&a.value);
        }
        for (spec, v) in def.args.iter().zip(&values) {
            if v.is_none() && spec.default == ArgDefault::Required {
                return Err(Diagnostic::new(call_span, format!("`{}` needs the argument `{}`", def.name, spec.name))
                    .with_label(format!("missing `{}`", spec.name))
                    .with_help(signature(def)));
            }
        }
        Ok(Args { def, values, rest, call_span })
    }

    fn slot(&self, name: &str) -> (usize, &ArgSpec) {
        let i = self.def.args.iter().position(|s| s.name == name).expect("argument in table");
        (i, &self.def.args[i])
    }

    /// The value given for `name`, or its default, as a `ValueKind`.
    fn get(&self, name: &str) -> (ValueKind, Span) {
        let (i, spec) = self.slot(name);
        match self.values[i] {
            Some(v) => (v.kind.clone(), v.span),
            None => match spec.default {
                ArgDefault::Int(x) => (ValueKind::Int(x), self.call_span),
                ArgDefault::Float(x) => (ValueKind::Float(x), self.call_span),
                ArgDefault::Bool(x) => (ValueKind::Bool(x), self.call_span),
                ArgDefault::Word(w) => (ValueKind::Name(w.into()), self.call_span),
                ArgDefault::SameAs(other) => self.get(other),
                ArgDefault::Required => unreachable!("checked in bind"),
            },
        }
    }

    fn type_error(&self, name: &str, found: &ValueKind, span: Span) -> Diagnostic {
        let (_, spec) = self.slot(name);
        Diagnostic::new(
            span,
            format!(
                "`{}`'s argument `{}` expects {}, found {}",
                self.def.name,
                name,
                spec.ty.describe(),
                found.describe()
            ),
        )
        .with_label(format!("expected {}", spec.ty.describe()))
    }

    fn bad_value(&self, name: &str, expected: &str) -> Diagnostic {
        let (found, span) = self.get(name);
        Diagnostic::new(
            span,
            format!("`{}`'s argument `{}` must be {}, found {}", self.def.name, name, expected, found.describe()),
        )
        .with_label(format!("expected {expected}"))
    }

    fn count(&self, name: &str) -> Result<usize, Diagnostic> {
        let (v, span) = self.get(name);
        match v {
            ValueKind::Int(i) if i > MAX_SIZE => Err(self.bad_value(name, &format!("at most {MAX_SIZE}"))),
            ValueKind::Int(i) if i >= 1 => Ok(i as usize),
            ValueKind::Int(_) => Err(self.bad_value(name, "at least 1")),
            other => Err(self.type_error(name, &other, span)),
        }
    }

    fn size2(&self, name: &str) -> Result<[usize; 2], Diagnostic> {
        let (v, span) = self.get(name);
        let one = |v: &Value| match v.kind {
            ValueKind::Int(i) if i > MAX_SIZE => Err(Diagnostic::new(
                v.span,
                format!(
                    "`{}`'s argument `{}` must be at most {MAX_SIZE}, found {}",
                    self.def.name,
                    name,
                    v.kind.describe()
                ),
            )
            .with_label("too large")),
            ValueKind::Int(i) if i >= 1 => Ok(i as usize),
            ValueKind::Int(_) => Err(Diagnostic::new(
                v.span,
                format!("`{}`'s argument `{}` must be at least 1, found {}", self.def.name, name, v.kind.describe()),
            )
            .with_label("expected at least 1")),
            ref other => Err(self.type_error(name, other, v.span)),
        };
        match &v {
            ValueKind::Int(_) => {
                let x = one(&Value { kind: v.clone(), span })?;
                Ok([x, x])
            }
            ValueKind::List(items) if items.len() == 2 => Ok([one(&items[0])?, one(&items[1])?]),
            other => Err(self.type_error(name, other, span)),
        }
    }

    fn padding(&self, name: &str) -> Result<Padding, Diagnostic> {
        let (v, span) = self.get(name);
        let one = |v: &Value| match v.kind {
            ValueKind::Int(i) if i > MAX_SIZE => Err(Diagnostic::new(
                v.span,
                format!("`{}`'s padding must be at most {MAX_SIZE}, found {}", self.def.name, v.kind.describe()),
            )
            .with_label("too large")),
            ValueKind::Int(i) if i >= 0 => Ok(i as usize),
            ValueKind::Int(_) => Err(Diagnostic::new(
                v.span,
                format!("`{}`'s padding must not be negative, found {}", self.def.name, v.kind.describe()),
            )
            .with_label("expected 0 or more")),
            ref other => Err(self.type_error(name, other, v.span)),
        };
        match &v {
            ValueKind::Int(_) => {
                let p = one(&Value { kind: v.clone(), span })?;
                Ok(Padding::Explicit([p, p]))
            }
            ValueKind::List(items) if items.len() == 2 => Ok(Padding::Explicit([one(&items[0])?, one(&items[1])?])),
            ValueKind::Name(w) if w == "valid" => Ok(Padding::Explicit([0, 0])),
            ValueKind::Name(w) if w == "same" => Ok(Padding::Same),
            ValueKind::Name(w) => {
                let mut d = self.type_error(name, &v, span);
                if let Some(s) = suggest(w, ["same", "valid"]) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                Err(d)
            }
            other => Err(self.type_error(name, other, span)),
        }
    }

    /// A padding given as numbers (`same` has no meaning for the layer).
    fn explicit_padding(&self, name: &str) -> Result<[usize; 2], Diagnostic> {
        match self.padding(name)? {
            Padding::Explicit(p) => Ok(p),
            Padding::Same => Err(self.bad_value(name, "an integer or `[rows, cols]`")),
        }
    }

    fn float(&self, name: &str) -> Result<f64, Diagnostic> {
        let (v, span) = self.get(name);
        match v {
            ValueKind::Int(i) => Ok(i as f64),
            ValueKind::Float(x) => Ok(x),
            other => Err(self.type_error(name, &other, span)),
        }
    }

    /// One of `choices` (the first is not implied: a default comes from the table).
    fn word(&self, name: &str, choices: &[&'static str]) -> Result<&'static str, Diagnostic> {
        let (v, span) = self.get(name);
        let ValueKind::Name(w) = &v else { return Err(self.type_error(name, &v, span)) };
        if let Some(c) = choices.iter().find(|c| **c == w.as_str()) {
            return Ok(c);
        }
        let d = Diagnostic::new(
            span,
            format!("`{}`'s argument `{name}` must be one of {}, found `{w}`", self.def.name, choices.join(", ")),
        )
        .with_label(format!("expected {}", choices.join(" or ")));
        Err(match suggest(w, choices.iter().copied()) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d,
        })
    }

    fn bool(&self, name: &str) -> Result<bool, Diagnostic> {
        let (v, span) = self.get(name);
        match v {
            ValueKind::Bool(b) => Ok(b),
            other => Err(self.type_error(name, &other, span)),
        }
    }

    /// One or more names: the argument's value and every positional value after it.
    fn names(&self, name: &str) -> Result<Vec<Ident>, Diagnostic> {
        let (first, span) = self.get(name);
        let rest = self.rest.iter().map(|v| (v.kind.clone(), v.span));
        std::iter::once((first, span))
            .chain(rest)
            .map(|(v, span)| match v {
                ValueKind::Name(n) => Ok(Ident { name: n, span }),
                other => Err(self.type_error(name, &other, span)),
            })
            .collect()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `conv2d(filters, kernel, stride: 1, padding: 0, bias: true)`: a layer's signature.
pub fn signature(def: &LayerDef) -> String {
    let args: Vec<String> = def
        .args
        .iter()
        .map(|a| match a.default {
            ArgDefault::Required => a.name.to_string(),
            d => format!("{}: {}", a.name, d),
        })
        .collect();
    if args.is_empty() {
        format!("`{}` takes no arguments", def.name)
    } else {
        format!("usage: `{}({})`", def.name, args.join(", "))
    }
}
