//! ONNX → Percept, one stage: an ONNX graph in, an [`ast::Model`] and its weights out.
//! One pass over the graph's nodes (ONNX keeps them in topological order) turns each
//! layer-like node into a statement, folds what depends only on constants
//! ([`super::fold`]), folds patterns into the layer they express (a Pad into the
//! convolution's padding, MatMul + Add into a dense layer, Gemm + Reshape + ReduceMax or a
//! Max of Gemms into maxout, ReduceMean over the image into global pooling) and collects
//! the weights under Percept's parameter names.
//!
//! Exact or refused: a node is imported only when Percept computes the same function
//! (same padding, same pooling divisor, same sampling, same slopes); anything else is
//! refused with the reason, and unsupported op types are all listed in one error before
//! anything is written.

use super::fold::{self, axis, fold, Const, BATCH};
use super::proto::{self, AttributeProto, ModelProto, NodeProto};
use percept_compiler::ast::{self, Arg, Ident, StatementKind, Value, ValueKind};
use percept_compiler::Span;
use percept_runtime::tensorfile::{NamedTensor, TensorFile};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

/// An imported model: its statements and its weights (Percept's names).
pub struct Imported {
    /// The source file and opset, as a comment for the top of the text.
    pub comment: String,
    pub model: ast::Model,
    pub weights: TensorFile,
}

impl Imported {
    /// The `.nn` text: the comment and the model's canonical text.
    pub fn text(&self) -> String {
        format!("{}{}", self.comment, self.model)
    }
}

/// Why an import failed: one line (unsupported op types are listed together).
#[derive(Debug)]
pub struct ImportError(pub String);

type R<T> = Result<T, ImportError>;

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(ImportError(msg.into()))
}

/// The op types the importer reads on the data (some only in the patterns above).
pub const LAYERS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Relu",
    "LeakyRelu",
    "Elu",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "ReduceMean",
    "ReduceMax",
    "Max",
    "BatchNormalization",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Dropout",
    "Identity",
    "Add",
    "Concat",
    "Pad",
    "Resize",
    "Upsample",
    "Shape",
];

/// The op types folded when their inputs are constants ([`fold`]); the ones not in
/// [`LAYERS`] are unsupported on the data.
pub const FOLDED: &[&str] = &[
    "Constant",
    "Identity",
    "Dropout",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Reshape",
    "Flatten",
    "Transpose",
    "Cast",
    "ConstantOfShape",
    "Slice",
    "Add",
    "Sub",
    "Mul",
    "Div",
];

/// The nodes the importer cannot read: op types it does not know, or that it only folds
/// but which here depend on the data (ops in ONNX's default domain only).
fn unsupported(graph: &proto::GraphProto, initializers: &HashMap<String, Val>) -> Vec<String> {
    let mut data: std::collections::HashSet<&str> =
        graph.input.iter().map(|i| i.name()).filter(|i| !initializers.contains_key(*i)).collect();
    let mut out = vec![];
    for n in &graph.node {
        let on_data = n.input.iter().any(|i| data.contains(i.as_str()));
        let default_domain = n.domain().is_empty() || n.domain() == "ai.onnx";
        let known = if on_data { LAYERS.contains(&n.op_type()) } else { FOLDED.contains(&n.op_type()) };
        if !known || !default_domain {
            out.push(format!("{} (node `{}`)", n.op_type(), n.name()));
        }
        // A shape of the data is folded (its batch is all that is read).
        if on_data && n.op_type() != "Shape" {
            data.extend(n.output.iter().map(String::as_str));
        }
    }
    out
}

/// What an ONNX value name stands for.
#[derive(Clone, Debug)]
enum Val {
    /// The output of statement `stmt` (`None`: the model's input), `rank` dimensions on
    /// the ONNX side with the batch; `squeezed`: ONNX keeps [N, C, 1, 1] where Percept has
    /// [C] (after a global pooling).
    Data {
        stmt: Option<usize>,
        rank: usize,
        squeezed: bool,
    },
    Const(Const),
    /// The shape of a data value, whose batch size is all that is folded (`Shape` →
    /// `Gather(0)` chains that exporters emit for flattening).
    ShapeOf,
    /// A zero Pad of an image ([top, left, bottom, right]), waiting for the convolution
    /// or average pooling that reads it.
    Padded {
        stmt: Option<usize>,
        pads: [i64; 4],
    },
    /// A dense layer's output reshaped to [N, units, pieces], waiting for the ReduceMax
    /// that makes it a maxout.
    Grouped {
        stmt: usize,
        units: usize,
        pieces: usize,
    },
}

/// One statement being built.
struct Layer {
    name: &'static str,
    /// Its arguments after the references (keyword `None`: positional).
    args: Vec<(Option<&'static str>, ValueKind)>,
    /// The statement it reads (`None`: the input).
    src: Option<usize>,
    /// Statements referenced by name (`add`, `concat`).
    refs: Vec<Option<usize>>,
    /// The parameters' suffixes and tensors (`weight`, `bias`, …).
    params: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
    /// A label from the ONNX names (`stem` for the initializer `stem.weight`), when it is
    /// an identifier of the language.
    hint: Option<String>,
}

impl Layer {
    fn new(name: &'static str, src: Option<usize>) -> Layer {
        Layer { name, args: vec![], src, refs: vec![], params: vec![], hint: None }
    }

    fn arg(mut self, key: &'static str, v: ValueKind) -> Layer {
        self.args.push((Some(key), v));
        self
    }

    fn pos(mut self, v: ValueKind) -> Layer {
        self.args.push((None, v));
        self
    }

    /// `key: v` unless every entry of `v` is `default`.
    fn opt(self, key: &'static str, v: &[i64], default: i64) -> Layer {
        if v.iter().all(|&x| x == default) {
            self
        } else {
            self.arg(key, pair(v))
        }
    }

    fn param(mut self, suffix: &'static str, dims: Vec<usize>, data: Vec<f32>) -> Layer {
        self.params.push((suffix, dims, data));
        self
    }

    fn has_bias(&self) -> bool {
        self.params.iter().any(|p| p.0 == "bias")
    }
}

/// Import `bytes` (an ONNX `ModelProto`); `source` names the file in messages and in the
/// comment at the top of the text; initializers kept in external files are read from
/// `dir` (the model file's directory). With `loss`, the model ends in `loss
/// softmax_cross_entropy` (a final softmax or log-softmax dropped: the loss takes logits).
pub fn import(bytes: &[u8], source: &str, model_name: &str, dir: &Path, loss: bool) -> R<Imported> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| ImportError(format!("{source} is not an ONNX model (or is truncated): {e}")))?;
    let graph = model.graph.as_ref().ok_or_else(|| ImportError(format!("{source}: the model has no graph")))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx"))
        .and_then(|o| o.version)
        .unwrap_or(0);
    let mut vals: HashMap<String, Val> = HashMap::new();
    for t in &graph.initializer {
        let t = fold::with_external_data(t, source, dir)?;
        vals.insert(t.name().to_string(), Val::Const(fold::tensor(&t, source)?));
    }
    let unsupported = unsupported(graph, &vals);
    if !unsupported.is_empty() {
        return err(format!("{source} (opset {opset}) uses ops Percept cannot import: {}", unsupported.join(", ")));
    }
    let inputs: Vec<&proto::ValueInfoProto> = graph.input.iter().filter(|i| !vals.contains_key(i.name())).collect();
    let [input] = inputs[..] else {
        return err(format!("{source}: the graph has {} data inputs; Percept models have one", inputs.len()));
    };
    let in_shape = value_shape(input, source)?;
    if in_shape.len() != 2 && in_shape.len() != 4 {
        return err(format!(
            "{source}: the input `{}` has {} dimensions; Percept takes [N, features] or [N, C, H, W]",
            input.name(),
            in_shape.len()
        ));
    }
    vals.insert(input.name().to_string(), Val::Data { stmt: None, rank: in_shape.len(), squeezed: false });
    let mut uses: HashMap<String, usize> = HashMap::new();
    let read = graph.node.iter().flat_map(|n| n.input.iter().map(String::as_str));
    for name in read.chain(graph.output.iter().map(|o| o.name())) {
        *uses.entry(name.to_string()).or_default() += 1;
    }
    let mut b = Builder {
        stmts: vec![],
        source: source.to_string(),
        batch: in_shape[0],
        opset,
        uses,
        hint: None,
        budget: bytes.len() + fold::MAX_FOLDED,
    };
    for node in &graph.node {
        b.node(node, &mut vals)?;
    }
    let [output] = &graph.output[..] else {
        return err(format!("{source}: the graph has {} outputs; Percept models have one", graph.output.len()));
    };
    let flat = match vals.get(output.name()) {
        Some(Val::Data { stmt: Some(s), rank, squeezed }) if *s + 1 == b.stmts.len() => *rank == 2 || *squeezed,
        Some(Val::Data { .. }) => {
            return err(format!("{source}: the output `{}` is not the last layer's", output.name()))
        }
        Some(Val::Const(_) | Val::ShapeOf) => {
            return err(format!("{source}: the output `{}` is a constant", output.name()))
        }
        _ => return err(format!("{source}: the output `{}` is not a layer's output", output.name())),
    };
    b.finish(input.name(), &in_shape[1..], model_name, loss.then_some(flat))
}

fn value_shape(v: &proto::ValueInfoProto, source: &str) -> R<Vec<i64>> {
    use proto::tensor_shape_proto::dimension::Value as D;
    use proto::type_proto::Value;
    let Some(Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return err(format!("{source}: the input `{}` is not a tensor", v.name()));
    };
    if t.elem_type() != proto::tensor_proto::DataType::Float as i32 {
        return err(format!("{source}: the input `{}` is not float32", v.name()));
    }
    let dims = t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or_default();
    dims.iter()
        .enumerate()
        .map(|(i, d)| match &d.value {
            Some(D::DimValue(n)) if *n > 0 => Ok(*n),
            _ if i == 0 => Ok(BATCH),
            _ => err(format!("{source}: the input `{}` has a dynamic dimension {i}; Percept needs its size", v.name())),
        })
        .collect()
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name() == name)
}

fn ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

fn int(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

fn float(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}

fn string<'a>(n: &'a NodeProto, name: &str, default: &'a str) -> &'a str {
    attr(n, name).and_then(|a| a.s.as_deref()).and_then(|s| std::str::from_utf8(s).ok()).unwrap_or(default)
}

/// `v` as one integer when both entries agree, else `[a, b]`.
fn pair(v: &[i64]) -> ValueKind {
    if v.iter().all(|&x| x == v[0]) {
        ValueKind::Int(v[0])
    } else {
        ValueKind::List(v.iter().map(|&x| value(ValueKind::Int(x))).collect())
    }
}

fn value(kind: ValueKind) -> Value {
    Value { kind, span: Span::default() }
}

fn ident(name: &str) -> Ident {
    Ident { name: name.to_string(), span: Span::default() }
}

/// A float argument that prints as the f32's shortest text (0.01, not 0.009999999776…)
/// and reads back as the same f32.
fn num(x: f32) -> ValueKind {
    ValueKind::Float(format!("{x:?}").parse().expect("a float's own text"))
}

/// Percept's batch norm momentum (the weight of the batch, PyTorch's) for ONNX's (the
/// weight of the running statistics: running·m + batch·(1 − m)): the shortest decimal whose
/// complement is the file's f32, so PyTorch's 0.1, exported as 0.9f32, comes back as 0.1.
fn batch_momentum(onnx: f32) -> f64 {
    (1..=17)
        .filter_map(|digits| format!("{:.*}", digits, 1.0 - f64::from(onnx)).parse::<f64>().ok())
        .find(|m| (1.0 - m) as f32 == onnx)
        .unwrap_or(1.0 - f64::from(onnx))
}

/// ONNX's `pads` [top, left, bottom, right] of a 2-D window as Percept's per-side padding.
fn symmetric(pads: [i64; 4]) -> Option<[i64; 2]> {
    (pads[0] == pads[2] && pads[1] == pads[3] && pads.iter().all(|&p| p >= 0)).then_some([pads[0], pads[1]])
}

fn pads4(v: &[i64]) -> Option<[i64; 4]> {
    v.try_into().ok()
}

struct Builder {
    stmts: Vec<Layer>,
    source: String,
    /// The input's batch size when the model was exported with a fixed one, else BATCH.
    batch: i64,
    opset: i64,
    /// How many nodes (and graph outputs) read each value.
    uses: HashMap<String, usize>,
    /// The label hint of the node being read, for the statement it makes.
    hint: Option<String>,
    /// How many more values constant folding may make (see `fold::MAX_FOLDED`).
    budget: usize,
}

impl Builder {
    fn what(&self, n: &NodeProto) -> String {
        format!("{}: {} node `{}`", self.source, n.op_type(), n.name())
    }

    fn refuse<T>(&self, n: &NodeProto, why: impl std::fmt::Display) -> R<T> {
        err(format!("{}: {why}", self.what(n)))
    }

    fn get<'a>(&self, vals: &'a HashMap<String, Val>, n: &NodeProto, i: usize) -> R<&'a Val> {
        let name = n.input.get(i).map(String::as_str).unwrap_or("");
        vals.get(name).ok_or_else(|| ImportError(format!("{}: input `{name}` is not defined before it", self.what(n))))
    }

    /// Input `i` when given (an empty name means "left out").
    fn has(&self, n: &NodeProto, i: usize) -> bool {
        n.input.get(i).is_some_and(|s| !s.is_empty())
    }

    fn konst<'a>(&self, vals: &'a HashMap<String, Val>, n: &NodeProto, i: usize) -> R<&'a Const> {
        match self.get(vals, n, i)? {
            Val::Const(c) => Ok(c),
            _ => self.refuse(n, format!("input {i} must be a constant (an initializer)")),
        }
    }

    fn floats<'a>(&self, vals: &'a HashMap<String, Val>, n: &NodeProto, i: usize) -> R<&'a Const> {
        let c = self.konst(vals, n, i)?;
        match c.f32() {
            Some(_) => Ok(c),
            None => self.refuse(n, format!("input {i} is an int64 tensor where float32 weights belong")),
        }
    }

    /// The ints of attribute `name`, or of constant input `i` (the later opsets' form).
    fn ints_or_input(&self, vals: &HashMap<String, Val>, n: &NodeProto, name: &str, i: usize) -> R<Option<Vec<i64>>> {
        fold::ints_attr_or_input(n, name, i, self.konst(vals, n, i).ok())
            .map_err(|e| ImportError(format!("{}: {}", self.what(n), e.0)))
    }

    /// Input `i` as data: (the statement, its rank, squeezed).
    fn data(&self, vals: &HashMap<String, Val>, n: &NodeProto, i: usize) -> R<(Option<usize>, usize, bool)> {
        match self.get(vals, n, i)? {
            Val::Data { stmt, rank, squeezed } => Ok((*stmt, *rank, *squeezed)),
            Val::Padded { .. } => {
                self.refuse(n, "reads a Pad, which is imported only when a convolution or an average pooling reads it")
            }
            Val::Grouped { .. } => {
                self.refuse(n, "reads a [N, units, pieces] reshape that only a maxout's ReduceMax may read")
            }
            _ => self.refuse(n, format!("input {i} is a constant where Percept needs the data")),
        }
    }

    /// Input `i` as an image and the zero padding a Pad before it adds.
    fn image(&self, vals: &HashMap<String, Val>, n: &NodeProto, i: usize) -> R<(Option<usize>, [i64; 4])> {
        if let Val::Padded { stmt, pads } = self.get(vals, n, i)? {
            return Ok((*stmt, *pads));
        }
        match self.data(vals, n, i)? {
            (src, 4, false) => Ok((src, [0; 4])),
            _ => self.refuse(n, "the input is not an [N, C, H, W] image"),
        }
    }

    /// Append a statement (with the node's label hint); returns its index.
    fn push(&mut self, mut layer: Layer) -> usize {
        layer.hint = self.hint.take();
        self.stmts.push(layer);
        self.stmts.len() - 1
    }

    /// The last statement, when value `name` is its output and nothing else reads it
    /// (so a following node may still change it: a bias, a maxout).
    fn last_only_read_by_one(&self, v: &Val, name: &str) -> Option<usize> {
        match v {
            Val::Data { stmt: Some(s), .. } if *s + 1 == self.stmts.len() && self.uses.get(name) == Some(&1) => {
                Some(*s)
            }
            _ => None,
        }
    }

    fn node(&mut self, n: &NodeProto, vals: &mut HashMap<String, Val>) -> R<()> {
        let Some(out) = n.output.first().filter(|o| !o.is_empty()).cloned() else {
            return self.refuse(n, "has no output");
        };
        if n.output.iter().skip(1).any(|o| !o.is_empty() && self.uses.contains_key(o)) {
            return self.refuse(n, "a second output (indices, masks, statistics) is read");
        }
        let op = n.op_type();
        // PyTorch names a module's weights `<module>.weight`: the module's name, if an
        // identifier, labels the statement (so the weights keep PyTorch's names).
        let from_weights = n.input.iter().skip(1).find_map(|i| {
            let (module, _) = i.rsplit_once('.')?;
            matches!(vals.get(i), Some(Val::Const(_))).then(|| percept_ident(module)).flatten()
        });
        // (Node names are not used: the exporters generate them, `/stem/Conv`, `node_Conv_135`.)
        self.hint = from_weights;
        // A node of constants only is folded (weight transforms, shape arithmetic).
        // (Trailing optional inputs may be left out; the folded ops take them by position.)
        let given = n.input.iter().rposition(|i| !i.is_empty()).map_or(0, |last| last + 1);
        if op != "Constant" && given > 0 {
            let consts: Option<Vec<&Const>> = n.input[..given]
                .iter()
                .map(|i| match vals.get(i) {
                    Some(Val::Const(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if let Some(consts) = consts {
                let folded =
                    fold(n, &consts, self.budget).map_err(|e| ImportError(format!("{}: {}", self.source, e.0)))?;
                match folded {
                    Some(c) if c.len() > self.budget => {
                        return self.refuse(n, "folding makes more values than the model file holds")
                    }
                    Some(c) => {
                        self.budget -= c.len();
                        vals.insert(out, Val::Const(c));
                        return Ok(());
                    }
                    None => return self.refuse(n, "is not folded when all its inputs are constants"),
                }
            }
        }
        let v = match op {
            "Constant" => {
                let t = attr(n, "value").and_then(|a| a.t.as_ref());
                let t = t.ok_or_else(|| ImportError(format!("{}: only `value` tensors are read", self.what(n))))?;
                Val::Const(fold::tensor(t, &self.source)?)
            }
            "Identity" => self.get(vals, n, 0)?.clone(),
            "Dropout" => {
                let training =
                    self.has(n, 2) && self.konst(vals, n, 2)?.i64().is_none_or(|t| t.iter().any(|&t| t != 0));
                if training {
                    return self.refuse(n, "dropout in training mode (export in evaluation mode)");
                }
                self.get(vals, n, 0)?.clone()
            }
            "Shape" => {
                self.data(vals, n, 0)?;
                if int(n, "start", 0) != 0 || attr(n, "end").is_some() {
                    return self.refuse(n, "only a whole shape is folded");
                }
                Val::ShapeOf
            }
            "Gather" => {
                let idx = self.konst(vals, n, 1)?.i64().unwrap_or_default().to_vec();
                match (self.get(vals, n, 0)?, idx.as_slice()) {
                    (Val::ShapeOf, [0]) => Val::Const(Const { dims: vec![], data: fold::Data::I64(vec![BATCH]) }),
                    _ => return self.refuse(n, "only the batch size (index 0 of a shape) is folded"),
                }
            }
            "Concat" => {
                let mut parts = vec![];
                for i in 0..n.input.len() {
                    parts.push(self.data(vals, n, i)?);
                }
                let (first, rank, squeezed) = parts[0];
                if axis(int(n, "axis", 1), rank) != Some(1) || parts.iter().any(|p| (p.1, p.2) != (rank, squeezed)) {
                    return self.refuse(n, "only concatenation of layers' outputs along channels (axis 1) is imported");
                }
                let s =
                    self.push(Layer { refs: parts[1..].iter().map(|p| p.0).collect(), ..Layer::new("concat", first) });
                Val::Data { stmt: Some(s), rank, squeezed }
            }
            "Add" => return self.add(n, vals),
            "Relu" | "Sigmoid" | "Tanh" | "LeakyRelu" | "Elu" | "Softmax" | "LogSoftmax" => {
                let (src, rank, squeezed) = self.data(vals, n, 0)?;
                let layer = match op {
                    "Relu" => Layer::new("relu", src),
                    "Sigmoid" => Layer::new("sigmoid", src),
                    "Tanh" => Layer::new("tanh", src),
                    // ONNX's default slope is 0.01; written out, as Percept's is 0.1.
                    "LeakyRelu" => Layer::new("leaky_relu", src).arg("slope", num(float(n, "alpha", 0.01))),
                    "Elu" => Layer::new("elu", src).arg("alpha", num(float(n, "alpha", 1.0))),
                    _ => {
                        // Before opset 13 the axis defaults to 1 (and flattens the rest).
                        let default = if self.opset < 13 { 1 } else { -1 };
                        if rank != 2 || axis(int(n, "axis", default), 2) != Some(1) {
                            return self.refuse(n, "softmax is imported over the features of a flat output");
                        }
                        // A log-softmax is only kept as the loss (Percept has no such layer).
                        Layer::new(if op == "Softmax" { "softmax" } else { "log_softmax" }, src)
                    }
                };
                let s = self.push(layer);
                Val::Data { stmt: Some(s), rank, squeezed }
            }
            "Flatten" | "Reshape" | "Squeeze" => return self.reshape(n, vals),
            "Gemm" | "MatMul" => {
                let (src, rank, _) = self.data(vals, n, 0)?;
                if rank != 2 {
                    return self.refuse(n, "the input is not flat ([N, features])");
                }
                if op == "Gemm" && int(n, "transA", 0) != 0 {
                    return self.refuse(n, "Gemm with transA (the input as columns) is not a dense layer");
                }
                // α·(x·B) + β·C = x·(α·B) + (β·C): the scales belong to the weights.
                let (alpha, beta) =
                    if op == "Gemm" { (float(n, "alpha", 1.0), float(n, "beta", 1.0)) } else { (1.0, 1.0) };
                let w = self.floats(vals, n, 1)?;
                let [rows, cols] = w.dims[..] else {
                    return self.refuse(n, format!("the weight has shape {:?}, not 2-D", w.dims));
                };
                let wf: Vec<f32> = w.f32().unwrap().iter().map(|&v| if alpha == 1.0 { v } else { alpha * v }).collect();
                let (units, weight) = if op == "Gemm" && int(n, "transB", 0) == 1 {
                    (rows, wf)
                } else {
                    (cols, (0..cols).flat_map(|o| (0..rows).map(|i| wf[i * cols + o]).collect::<Vec<_>>()).collect())
                };
                let fan_in = (rows * cols).checked_div(units).unwrap_or(0);
                let mut layer = Layer::new("dense", src).pos(ValueKind::Int(units as i64)).param(
                    "weight",
                    vec![units, fan_in],
                    weight,
                );
                if op == "Gemm" && self.has(n, 2) {
                    let c = self.floats(vals, n, 2)?;
                    let values = c.f32().unwrap();
                    // Per output ([units], [1, units]) or one value for all ([], [1], [1, 1]).
                    let bias: Vec<f32> = match &c.dims[..] {
                        [u] | [1, u] if *u == units => values.to_vec(),
                        [] | [1] | [1, 1] => vec![values[0]; units],
                        _ => {
                            return self.refuse(
                                n,
                                format!(
                                    "the bias has shape {:?}; only a per-output bias [{units}] is a dense layer's",
                                    c.dims
                                ),
                            )
                        }
                    };
                    let bias = bias.into_iter().map(|b| if beta == 1.0 { b } else { beta * b }).collect();
                    layer = layer.param("bias", vec![units], bias);
                } else {
                    layer = layer.arg("bias", ValueKind::Bool(false));
                }
                let s = self.push(layer);
                Val::Data { stmt: Some(s), rank: 2, squeezed: false }
            }
            "Conv" | "ConvTranspose" => return self.conv(n, vals),
            "MaxPool" | "AveragePool" => return self.pool(n, vals),
            "Pad" => {
                let (src, rank, squeezed) = self.data(vals, n, 0)?;
                if rank != 4 || squeezed {
                    return self.refuse(n, "only the padding of an [N, C, H, W] image is imported");
                }
                if string(n, "mode", "constant") != "constant" {
                    return self.refuse(n, format!("mode `{}` (Percept pads with zeros)", string(n, "mode", "")));
                }
                let pads = if self.opset < 11 { ints(n, "pads") } else { self.ints_or_input(vals, n, "pads", 1)? };
                let value = if self.opset < 11 {
                    float(n, "value", 0.0)
                } else if self.has(n, 2) {
                    match self.konst(vals, n, 2)?.f32() {
                        Some([v]) => *v,
                        _ => return self.refuse(n, "the constant value must be one float"),
                    }
                } else {
                    0.0
                };
                if value != 0.0 {
                    return self.refuse(n, format!("padding with {value} (Percept pads with zeros)"));
                }
                let pads = pads.unwrap_or_default();
                // Opset 18's `axes` input names the axes the pads are for.
                let axes: Vec<usize> = if self.has(n, 3) {
                    let a = self.konst(vals, n, 3)?.i64().unwrap_or_default();
                    a.iter().map(|&a| axis(a, 4).unwrap_or(usize::MAX)).collect()
                } else {
                    (0..4).collect()
                };
                if pads.len() != 2 * axes.len() || axes.iter().any(|&a| a > 3) {
                    return self.refuse(n, format!("pads {pads:?} for axes {axes:?}"));
                }
                let mut full = [0i64; 8];
                for (k, &a) in axes.iter().enumerate() {
                    full[a] = pads[k];
                    full[4 + a] = pads[axes.len() + k];
                }
                if full[0] != 0 || full[1] != 0 || full[4] != 0 || full[5] != 0 || full.iter().any(|&p| p < 0) {
                    return self.refuse(n, format!("pads {pads:?}: only non-negative padding of rows and columns"));
                }
                Val::Padded { stmt: src, pads: [full[2], full[3], full[6], full[7]] }
            }
            "Resize" | "Upsample" => return self.resize(n, vals),
            "ReduceMean" | "ReduceMax" => return self.reduce(n, vals),
            "Max" => return self.max(n, vals),
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let (src, rank, squeezed) = self.data(vals, n, 0)?;
                if rank != 4 || squeezed {
                    return self.refuse(n, "the input is not an image");
                }
                let name = if op == "GlobalAveragePool" { "global_avgpool" } else { "global_maxpool" };
                let s = self.push(Layer::new(name, src));
                Val::Data { stmt: Some(s), rank: 4, squeezed: true }
            }
            "BatchNormalization" => {
                let (src, rank, squeezed) = self.data(vals, n, 0)?;
                if squeezed || (rank != 2 && rank != 4) {
                    return self.refuse(n, "batch norm of other than [N, features] or [N, C, H, W]");
                }
                if int(n, "training_mode", 0) != 0 || self.opset < 7 && int(n, "is_test", 0) == 0 {
                    return self.refuse(n, "the training form (export in evaluation mode)");
                }
                if self.opset < 9 && int(n, "spatial", 1) != 1 {
                    return self.refuse(n, "spatial = 0 (statistics per position)");
                }
                let eps = float(n, "epsilon", 1e-5);
                let momentum = batch_momentum(float(n, "momentum", 0.9));
                let channels = self.floats(vals, n, 1)?.dims.iter().product::<usize>();
                let mut layer =
                    Layer::new("batchnorm", src).arg("eps", num(eps)).arg("momentum", ValueKind::Float(momentum));
                for (i, name) in [(1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")] {
                    let c = self.floats(vals, n, i)?;
                    if c.dims != [channels] {
                        return self.refuse(n, format!("input {i} has shape {:?}, not [{channels}]", c.dims));
                    }
                    layer = layer.param(name, vec![channels], c.f32().unwrap().to_vec());
                }
                let s = self.push(layer);
                Val::Data { stmt: Some(s), rank, squeezed: false }
            }
            _ if FOLDED.contains(&op) => {
                return self.refuse(n, "is imported only on constants (weights, shapes), not on the data")
            }
            other => return self.refuse(n, format!("{other} is not imported")),
        };
        vals.insert(out, v);
        Ok(())
    }

    /// Add: of two layers' outputs (`add`), or of a constant — the bias of the dense layer
    /// or convolution before it (MatMul + Add, Conv without bias + Add).
    fn add(&mut self, n: &NodeProto, vals: &mut HashMap<String, Val>) -> R<()> {
        let out = n.output[0].clone();
        let (a, b) = (self.get(vals, n, 0)?.clone(), self.get(vals, n, 1)?.clone());
        let v = match (&a, &b) {
            (Val::Data { stmt: x, rank, squeezed }, Val::Data { stmt: y, rank: r2, squeezed: s2 }) => {
                if (rank, squeezed) != (r2, s2) {
                    return self.refuse(n, "the two operands differ in shape (no broadcasting)");
                }
                // The previous statement as the first operand when it is one of them.
                let previous = self.stmts.len().checked_sub(1);
                let (first, other) = if *y == previous { (*y, *x) } else { (*x, *y) };
                let s = self.push(Layer { refs: vec![other], ..Layer::new("add", first) });
                Val::Data { stmt: Some(s), rank: *rank, squeezed: *squeezed }
            }
            (d @ Val::Data { .. }, Val::Const(c)) | (Val::Const(c), d @ Val::Data { .. }) => {
                let name = if matches!(a, Val::Data { .. }) { &n.input[0] } else { &n.input[1] };
                let Some(s) = self.last_only_read_by_one(d, name) else {
                    return self.refuse(n, "an Add of a constant is imported only as the bias of the layer before it");
                };
                let layer = &self.stmts[s];
                let units = match layer.args.first() {
                    Some((None, ValueKind::Int(u))) => *u as usize,
                    _ => 0,
                };
                let shape_ok = match layer.name {
                    "dense" => c.dims == [units] || c.dims == [1, units],
                    "conv2d" | "conv_transpose2d" => c.dims == [units, 1, 1] || c.dims == [1, units, 1, 1],
                    _ => false,
                };
                if layer.has_bias() || !shape_ok || c.f32().is_none() {
                    return self.refuse(
                        n,
                        format!(
                            "a constant of shape {:?} is not the bias of the {} before it (per output, and it has none)",
                            c.dims, layer.name
                        ),
                    );
                }
                let layer = &mut self.stmts[s];
                layer.args.retain(|(k, _)| *k != Some("bias"));
                layer.params.push(("bias", vec![units], c.f32().unwrap().to_vec()));
                d.clone()
            }
            _ => return self.refuse(n, "only the sum of two layers' outputs, or a layer's bias, is imported"),
        };
        vals.insert(out, v);
        Ok(())
    }

    /// Flatten, Reshape and Squeeze of data: flattening (to [batch, features]), squeezing
    /// a global pooling's [N, C, 1, 1], or a dense layer's output as [N, units, pieces]
    /// (maxout, with the ReduceMax after it).
    fn reshape(&mut self, n: &NodeProto, vals: &mut HashMap<String, Val>) -> R<()> {
        let op = n.op_type();
        let out = n.output[0].clone();
        let (src, rank, squeezed) = self.data(vals, n, 0)?;
        match op {
            "Flatten" => {
                if fold::flatten_axis(int(n, "axis", 1), rank) != Some(1) {
                    return self.refuse(
                        n,
                        format!("Flatten with axis {} (Percept flattens after the batch axis, 1)", int(n, "axis", 1)),
                    );
                }
            }
            "Squeeze" => {
                let axes = self.ints_or_input(vals, n, "axes", 1)?;
                let mut axes: Vec<Option<usize>> = axes.unwrap_or_default().iter().map(|&a| axis(a, rank)).collect();
                axes.sort_unstable();
                if !squeezed || axes != [Some(2), Some(3)] {
                    return self
                        .refuse(n, "only the squeeze of a global pooling's [N, C, 1, 1] (axes 2, 3) is imported");
                }
            }
            _ => {
                let shape = self.konst(vals, n, 1)?.i64().unwrap_or_default().to_vec();
                // The batch: dynamic, kept (0), inferred (-1), or the exported static size.
                let batch_first =
                    matches!(shape.first(), Some(&BATCH) | Some(&0) | Some(&-1)) || shape.first() == Some(&self.batch);
                if let (true, &[_, u, p]) = (batch_first && rank == 2, &shape[..]) {
                    let dense = self.last_only_read_by_one(self.get(vals, n, 0)?, &n.input[0]);
                    match dense.filter(|&s| self.stmts[s].name == "dense") {
                        Some(s)
                            if u > 0
                                && p > 0
                                && Some(&self.stmts[s].args[0].1) == u.checked_mul(p).map(ValueKind::Int).as_ref() =>
                        {
                            let g = Val::Grouped { stmt: s, units: u as usize, pieces: p as usize };
                            vals.insert(out, g);
                            return Ok(());
                        }
                        _ => {
                            return self
                                .refuse(n, "a reshape to [N, units, pieces] of other than a dense layer's output")
                        }
                    }
                }
                if shape.len() != 2 || !batch_first || (shape[1] != -1 && shape[0] == -1) {
                    return self.refuse(
                        n,
                        format!("only reshapes to [batch, features] (flattening) are imported, not {shape:?}"),
                    );
                }
            }
        }
        let v = if rank == 2 || squeezed {
            // Already flat on Percept's side.
            Val::Data { stmt: src, rank: 2, squeezed: false }
        } else {
            let s = self.push(Layer::new("flatten", src));
            Val::Data { stmt: Some(s), rank: 2, squeezed: false }
        };
        vals.insert(out, v);
        Ok(())
    }

    /// A window's own padding: its `pads` (auto_pad NOTSET) or none (VALID); `None` for
    /// SAME_UPPER and SAME_LOWER, whose padding depends on the input's size.
    fn own_pads(&self, n: &NodeProto) -> R<Option<[i64; 4]>> {
        match string(n, "auto_pad", "NOTSET") {
            "NOTSET" => match pads4(&ints(n, "pads").unwrap_or(vec![0; 4])) {
                Some(p) => Ok(Some(p)),
                None => self.refuse(n, "pads must be [top, left, bottom, right]"),
            },
            "VALID" => Ok(Some([0; 4])),
            _ => Ok(None),
        }
    }

    fn conv(&mut self, n: &NodeProto, vals: &mut HashMap<String, Val>) -> R<()> {
        let op = n.op_type();
        let transposed = op == "ConvTranspose";
        let (src, extra) = self.image(vals, n, 0)?;
        if transposed && extra != [0; 4] {
            return self.refuse(n, "a Pad before a transposed convolution (its padding removes rows)");
        }
        let w = self.floats(vals, n, 1)?.clone();
        if w.dims.len() != 4 {
            return self.refuse(n, format!("the weight has shape {:?}; only 2-D convolutions are imported", w.dims));
        }
        let kernel = [w.dims[2] as i64, w.dims[3] as i64];
        let strides = ints(n, "strides").unwrap_or(vec![1, 1]);
        let dilations = ints(n, "dilations").unwrap_or(vec![1, 1]);
        if strides.len() != 2 || dilations.len() != 2 || strides.iter().chain(&dilations).any(|&x| x < 1) {
            return self.refuse(n, "strides and dilations must be two positive integers");
        }
        let own = match (self.own_pads(n)?, string(n, "auto_pad", "NOTSET")) {
            (Some(p), _) => Some(p),
            // With stride 1, SAME pads (k−1)·d/2 on each side whatever the input size.
            (None, "SAME_UPPER" | "SAME_LOWER") if !transposed && strides == [1, 1] => {
                let extent = |k: usize| (kernel[k] - 1).saturating_mul(dilations[k]);
                (extent(0) % 2 == 0 && extent(1) % 2 == 0)
                    .then(|| [extent(0) / 2, extent(1) / 2, extent(0) / 2, extent(1) / 2])
            }
            _ => None,
        };
        let Some(own) = own else {
            return self.refuse(n, format!("auto_pad {} with these strides is not folded", string(n, "auto_pad", "")));
        };
        let total: [i64; 4] = std::array::from_fn(|k| own[k].saturating_add(extra[k]));
        let Some(pad) = symmetric(total) else {
            return self.refuse(n, format!("asymmetric padding {total:?} (Percept pads each side alike)"));
        };
        let groups = int(n, "group", 1);
        if groups < 1 {
            return self.refuse(n, format!("group {groups}"));
        }
        let filters = if transposed { w.dims[1].saturating_mul(groups as usize) } else { w.dims[0] };
        let name = if transposed { "conv_transpose2d" } else { "conv2d" };
        let mut layer = Layer::new(name, src)
            .pos(ValueKind::Int(filters as i64))
            .arg("kernel", pair(&kernel))
            .opt("stride", &strides, 1)
            .opt("padding", &pad, 0);
        if transposed {
            if attr(n, "output_shape").is_some() {
                return self.refuse(n, "output_shape is not folded; export with output_padding");
            }
            layer = layer.opt("output_padding", &ints(n, "output_padding").unwrap_or(vec![0, 0]), 0);
        }
        layer = layer.opt("dilation", &dilations, 1);
        if groups != 1 {
            layer = layer.arg("groups", ValueKind::Int(groups));
        }
        layer = layer.param("weight", w.dims.clone(), w.f32().unwrap().to_vec());
        if self.has(n, 2) {
            let b = self.floats(vals, n, 2)?;
            if b.dims != [filters] {
                return self.refuse(n, format!("the bias has shape {:?}, not [{filters}]", b.dims));
            }
            layer = layer.param("bias", vec![filters], b.f32().unwrap().to_vec());
        } else {
            layer = layer.arg("bias", ValueKind::Bool(false));
        }
        let s = self.push(layer);
        vals.insert(n.output[0].clone(), Val::Data { stmt: Some(s), rank: 4, squeezed: false });
        Ok(())
    }

    fn pool(&mut self, n: &NodeProto, vals: &mut HashMap<String, Val>) -> R<()> {
        let max = n.op_type() == "MaxPool";
        let (src, extra) = self.image(vals, n, 0)?;
        let k = ints(n, "kernel_shape").unwrap_or_default();
        if k.len() != 2 {
            return self.refuse(n, "only 2-D pooling is imported");
        }
        if int(n, "ceil_mode", 0) != 0 {
            return self.refuse(n, "ceil_mode (Percept pools in floor mode)");
        }
        if ints(n, "dilations").is_some_and(|d| d.iter().any(|&x| x != 1)) {
            return self.refuse(n, "dilated pooling");
        }
        if int(n, "storage_order", 0) != 0 {
            return self.refuse(n, "storage_order 1");
        }
        let Some(own) = self.own_pads(n)? else {
            return self.refuse(n, format!("auto_pad {} is not folded", string(n, "auto_pad", "")));
        };
        // A zero Pad before the pooling: the zeros are values, which an average counts
        // (count_include_pad) and a max does not ignore.
        let include_pad = int(n, "count_include_pad", 0) != 0;
        if extra != [0; 4] && (max || own != [0; 4] && !include_pad) {
            return self.refuse(
                n,
                if max {
                    "a zero Pad before MaxPool (Percept's maxpool pads with −∞)"
                } else {
                    "a zero Pad before an AveragePool that excludes its own padding from the divisor"
                },
            );
        }
        let total: [i64; 4] = std::array::from_fn(|k| own[k].saturating_add(extra[k]));
        let Some(pad) = symmetric(total) else {
            return self.refuse(n, format!("asymmetric padding {total:?}"));
        };
        if pad[0] > k[0] / 2 || pad[1] > k[1] / 2 {
            return self.refuse(n, format!("padding {pad:?} of more than half the window {k:?}"));
        }
        let strides = ints(n, "strides").unwrap_or(vec![1, 1]);
        if strides.len() != 2 || strides.iter().any(|&s| s < 1) || k.iter().any(|&k| k < 1) {
            return self.refuse(n, "kernel_shape and strides must be two positive integers");
        }
        let mut layer = Layer::new(if max { "maxpool" } else { "avgpool" }, src).pos(pair(&k));
        if strides != k {
            layer = layer.arg("stride", pair(&strides));
        }
        layer = layer.opt("padding", &pad, 0);
        // ONNX's default excludes the padding from the divisor; Percept's (PyTorch's) includes it.
        if !max && pad != [0, 0] && !include_pad && extra == [0; 4] {
            layer = layer.arg("count_include_pad", ValueKind::Bool(false));
        }
        let s = self.push(layer);
        vals.insert(n.output[0].clone(), Val::Data { stmt: Some(s), rank: 4, squeezed: false });
        Ok(())
    }

    /// Resize (opsets 10–19) and Upsample (7–9) by integer factors: nearest where the
    /// source row of output row i is ⌊i/f⌋, bilinear where the sampling is half-pixel
    /// (PyTorch's align_corners=False).
    fn resize(&mut self, n: &NodeProto, vals: &mut HashMap<String, Val>) -> R<()> {
        let (src, rank, squeezed) = self.data(vals, n, 0)?;
        if rank != 4 || squeezed {
            return self.refuse(n, "the input is not an [N, C, H, W] image");
        }
        let resize = n.op_type() == "Resize";
        let scales_input = if resize && self.opset > 10 { 2 } else { 1 };
        if resize && self.has(n, 3) {
            return self.refuse(n, "a resize to fixed sizes (export with scale_factor)");
        }
        let scales: Vec<f32> = if let Some(a) = attr(n, "scales") {
            a.floats.clone()
        } else if self.has(n, scales_input) {
            self.floats(vals, n, scales_input)?.f32().unwrap().to_vec()
        } else {
            return self.refuse(n, "no scales");
        };
        let scales = match (ints(n, "axes"), scales.len()) {
            (None, 4) => scales,
            (Some(a), 2) if a.iter().map(|&a| axis(a, 4)).collect::<Vec<_>>() == [Some(2), Some(3)] => {
                vec![1.0, 1.0, scales[0], scales[1]]
            }
            _ => return self.refuse(n, format!("scales {scales:?} (for each of N, C, H, W)")),
        };
        let factor = |s: f32| (s >= 1.0 && s.fract() == 0.0 && s <= 1024.0).then_some(s as i64);
        let (Some(fh), Some(fw)) = (factor(scales[2]), factor(scales[3])) else {
            return self.refuse(n, format!("scales {scales:?}: Percept upsamples rows and columns by integer factors"));
        };
        if scales[0] != 1.0 || scales[1] != 1.0 {
            return self.refuse(n, format!("scales {scales:?} resize the batch or the channels"));
        }
        let mode = string(n, "mode", "nearest");
        let transform = if resize && self.opset > 10 {
            string(n, "coordinate_transformation_mode", "half_pixel")
        } else {
            "asymmetric"
        };
        let nearest = string(n, "nearest_mode", if resize && self.opset > 10 { "round_prefer_floor" } else { "floor" });
        // For an integer factor f, output i = q·f + r samples (r + ½)/f − ½ ∈ (−½, ½) past
        // q under half_pixel, r/f ∈ [0, 1) under asymmetric: both pick row q = ⌊i/f⌋
        // with these rounding rules.
        let bilinear = match (mode, transform, nearest) {
            ("nearest", "asymmetric", "floor")
            | ("nearest", "half_pixel" | "pytorch_half_pixel", "round_prefer_floor" | "round_prefer_ceil")
            | ("nearest", "tf_half_pixel_for_nn", "floor") => false,
            ("linear" | "bilinear", "half_pixel" | "pytorch_half_pixel", _) if int(n, "exclude_outside", 0) == 0 => {
                true
            }
            _ => {
                return self.refuse(
                    n,
                    format!(
                    "mode {mode} with {transform} coordinates (and nearest_mode {nearest}) is not Percept's upsampling"
                ),
                )
            }
        };
        let mut layer = Layer::new("upsample", src).pos(pair(&[fh, fw]));
        if bilinear {
            layer = layer.arg("mode", ValueKind::Name("bilinear".into()));
        }
        let s = self.push(layer);
        vals.insert(n.output[0].clone(), Val::Data { stmt: Some(s), rank: 4, squeezed: false });
        Ok(())
    }

    /// ReduceMean / ReduceMax over the rows and columns of an image (global pooling, as
    /// `x.mean((2, 3))` exports), or over the pieces of a reshaped dense layer (maxout).
    fn reduce(&mut self, n: &NodeProto, vals: &mut HashMap<String, Val>) -> R<()> {
        let max = n.op_type() == "ReduceMax";
        let axes = self.ints_or_input(vals, n, "axes", 1)?;
        let keep = int(n, "keepdims", 1) != 0;
        if let (Val::Grouped { stmt, units, pieces }, true) = (self.get(vals, n, 0)?.clone(), max) {
            if axes.as_ref().map(|a| a.iter().map(|&a| axis(a, 3)).collect::<Vec<_>>()) != Some(vec![Some(2)]) || keep {
                return self.refuse(n, "a maxout reduces over the pieces (axis 2, keepdims 0)");
            }
            let layer = &mut self.stmts[stmt];
            layer.name = "maxout";
            layer.args = vec![(None, ValueKind::Int(units as i64)), (Some("pieces"), ValueKind::Int(pieces as i64))];
            if !layer.has_bias() {
                layer.params.push(("bias", vec![units * pieces], vec![0.0; units * pieces]));
            }
            vals.insert(n.output[0].clone(), Val::Data { stmt: Some(stmt), rank: 2, squeezed: false });
            return Ok(());
        }
        let (src, rank, squeezed) = self.data(vals, n, 0)?;
        let mut axes: Vec<Option<usize>> = axes.unwrap_or_default().iter().map(|&a| axis(a, rank)).collect();
        axes.sort_unstable();
        if rank != 4 || squeezed || axes != [Some(2), Some(3)] {
            return self.refuse(n, "only a reduction over the rows and columns (axes 2, 3) of an image is imported");
        }
        let s = self.push(Layer::new(if max { "global_maxpool" } else { "global_avgpool" }, src));
        vals.insert(n.output[0].clone(), Val::Data { stmt: Some(s), rank: if keep { 4 } else { 2 }, squeezed: keep });
        Ok(())
    }

    /// Max of k dense layers of one input, each read only here: maxout(units, pieces: k),
    /// its rows interleaved (row j·k + p is layer p's row j).
    fn max(&mut self, n: &NodeProto, vals: &mut HashMap<String, Val>) -> R<()> {
        let k = n.input.len();
        if k == 1 {
            let v = self.get(vals, n, 0)?.clone();
            vals.insert(n.output[0].clone(), v);
            return Ok(());
        }
        if k == 0 || self.stmts.len() < k {
            return self.refuse(n, "only the max of dense layers of one input (maxout) is imported");
        }
        let first = self.stmts.len() - k;
        let mut layers = vec![];
        for i in 0..k {
            let v = self.get(vals, n, i)?;
            match self.last_in(v, &n.input[i], first) {
                Some(s) => layers.push(s),
                None => return self.refuse(n, "only the max of dense layers of one input (maxout) is imported"),
            }
        }
        layers.sort_unstable();
        layers.dedup();
        // All dense (last_in), so each has its weight first.
        let (src, units) = (self.stmts[first].src, self.stmts[first].params.first().map_or(0, |w| w.1[0]));
        if layers != (first..first + k).collect::<Vec<_>>()
            || layers.iter().any(|&s| self.stmts[s].src != src || self.stmts[s].params[0].1[0] != units)
        {
            return self.refuse(n, "only the max of dense layers of one input, of the same size (maxout), is imported");
        }
        // In the order of the Max's inputs: piece p is input p.
        let order: Vec<usize> =
            (0..k).map(|i| self.last_in(self.get(vals, n, i).unwrap(), &n.input[i], first).unwrap()).collect();
        let fan_in = self.stmts[first].params[0].1[1];
        let (mut weight, mut bias) = (vec![], vec![]);
        for j in 0..units {
            for &s in &order {
                let l = &self.stmts[s];
                weight.extend_from_slice(&l.params[0].2[j * fan_in..(j + 1) * fan_in]);
                bias.push(l.params.get(1).map_or(0.0, |b| b.2[j]));
            }
        }
        self.stmts.truncate(first);
        let layer = Layer::new("maxout", src)
            .pos(ValueKind::Int(units as i64))
            .arg("pieces", ValueKind::Int(k as i64))
            .param("weight", vec![units * k, fan_in], weight)
            .param("bias", vec![units * k], bias);
        let s = self.push(layer);
        vals.insert(n.output[0].clone(), Val::Data { stmt: Some(s), rank: 2, squeezed: false });
        Ok(())
    }

    /// The statement (from `first` on) a dense layer's output `v` named `name` comes from,
    /// when only one node reads it.
    fn last_in(&self, v: &Val, name: &str, first: usize) -> Option<usize> {
        match v {
            Val::Data { stmt: Some(s), rank: 2, .. }
                if *s >= first && self.stmts[*s].name == "dense" && self.uses.get(name) == Some(&1) =>
            {
                Some(*s)
            }
            _ => None,
        }
    }

    /// The model and its weights: labels where a statement is referred to by name. With
    /// `loss` (`Some(the output is flat)`), the model ends in softmax cross-entropy: a final
    /// softmax or log-softmax is dropped (the loss takes logits), class scores are kept.
    fn finish(mut self, input_name: &str, input_shape: &[i64], model_name: &str, loss: Option<bool>) -> R<Imported> {
        let source = self.source.clone();
        let last = self.stmts.last().map(|l| l.name).unwrap_or("input");
        match (loss, last) {
            (None, _) => {}
            (Some(_), "softmax" | "log_softmax") => {
                self.stmts.pop();
            }
            (Some(true), "dense" | "maxout" | "global_avgpool" | "global_maxpool" | "add" | "concat") => {}
            (Some(_), last) => {
                return err(format!(
                "--loss: {source} ends in `{last}`, not in class scores or a softmax over them; add the loss by hand"
            ))
            }
        }
        if self.stmts.iter().any(|l| l.name == "log_softmax") {
            return err(format!(
                "{source}: a LogSoftmax is imported only at the output with --loss (Percept has no log-softmax layer)"
            ));
        }
        let input_label = percept_ident(input_name).unwrap_or_else(|| "x".into());
        // Labels: the ONNX names' (each once), then `t<index>` where a statement is
        // referred to by name; never two alike, never the input's.
        let mut taken: std::collections::HashSet<String> = [input_label.clone()].into();
        let mut labels: Vec<Option<String>> =
            self.stmts.iter().map(|s| s.hint.clone().filter(|h| taken.insert(h.clone()))).collect();
        for i in 0..self.stmts.len() {
            let s = &self.stmts[i];
            let from = (s.src != i.checked_sub(1)).then_some(s.src);
            for r in from.into_iter().chain(s.refs.iter().copied()).flatten() {
                if labels[r].is_none() {
                    let mut label = format!("t{r}");
                    while !taken.insert(label.clone()) {
                        label.push('_');
                    }
                    labels[r] = Some(label);
                }
            }
        }
        let name_of = |r: Option<usize>| match r {
            None => input_label.clone(),
            Some(i) => labels[i].clone().expect("labelled above"),
        };
        let shape = input_shape.iter().map(|&d| value(ValueKind::Int(d))).collect();
        let mut statements = vec![ast::Statement {
            label: None,
            kind: StatementKind::Input { name: Some(ident(&input_label)), shape: value(ValueKind::List(shape)) },
            span: Span::default(),
        }];
        let mut tensors = vec![];
        for (i, s) in self.stmts.iter().enumerate() {
            let mut args: Vec<Arg> =
                s.refs.iter().map(|&r| Arg { key: None, value: value(ValueKind::Name(name_of(r))) }).collect();
            args.extend(s.args.iter().map(|(k, v)| Arg { key: k.map(ident), value: value(v.clone()) }));
            if s.src != i.checked_sub(1) {
                args.push(Arg { key: Some(ident("from")), value: value(ValueKind::Name(name_of(s.src))) });
            }
            statements.push(ast::Statement {
                label: labels[i].as_deref().map(ident),
                kind: StatementKind::Layer { name: ident(s.name), args },
                span: Span::default(),
            });
            // Percept's parameter prefix: the label, else the statement's index.
            let prefix = labels[i].clone().unwrap_or_else(|| i.to_string());
            for (suffix, dims, data) in &s.params {
                tensors.push(NamedTensor::f32(format!("{prefix}.{suffix}"), dims, data.clone()));
            }
            if s.name == "batchnorm" {
                tensors.push(NamedTensor {
                    name: format!("{prefix}.num_batches_tracked"),
                    shape: vec![],
                    data: percept_runtime::tensorfile::Data::I64(vec![0]),
                });
            }
        }
        if loss.is_some() {
            statements.push(ast::Statement {
                label: None,
                kind: StatementKind::Loss { name: ident("softmax_cross_entropy") },
                span: Span::default(),
            });
        }
        Ok(Imported {
            comment: format!("# Imported by `percept import` from {source} (ONNX opset {}).\n", self.opset),
            model: ast::Model { name: ident(model_name), statements, span: Span::default() },
            weights: TensorFile { tensors, metadata: HashMap::new() },
        })
    }
}

/// `name` if it is a valid identifier of the language (not a keyword), else `None`.
fn percept_ident(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first = chars.next()?;
    let ok = (first.is_ascii_alphabetic() || first == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ok && !["model", "input", "loss", "from"].contains(&name)).then(|| name.to_string())
}
