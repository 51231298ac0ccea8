//! ONNX → Percept: one pass over the graph's nodes (ONNX keeps them in topological order)
//! that turns each layer-like node into a statement of the language, folds what feeds
//! only on constants, and collects the weights under Percept's parameter names.
//!
//! Exact or refused: a node is imported only when Percept computes the same function
//! (same padding, same pooling divisor, same slopes); anything else is refused with the
//! reason, and unsupported op types are all listed in one error before anything is
//! written.

use super::proto::{self, AttributeProto, ModelProto, NodeProto, TensorProto};
use percept_runtime::tensorfile::{NamedTensor, TensorFile};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

/// An imported model: its canonical text and its weights (Percept's names).
pub struct Imported {
    pub text: String,
    pub weights: TensorFile,
}

/// A constant tensor: an initializer, a `Constant`, or a folded shape computation.
#[derive(Clone, Debug)]
struct Const {
    dims: Vec<usize>,
    f32: Vec<f32>,
    i64: Vec<i64>,
}

/// The batch dimension in a folded shape (ONNX's dynamic `N`).
const BATCH: i64 = i64::MIN;

/// What an ONNX value name stands for.
#[derive(Clone, Debug)]
enum Val {
    /// The output of statement `stmt` (`None`: the model's input), `rank` dimensions on
    /// the ONNX side with the batch; `squeezed`: ONNX keeps [N, C, 1, 1] where Percept has
    /// [C] (after a global pooling).
    Stmt {
        stmt: Option<usize>,
        rank: usize,
        squeezed: bool,
    },
    Const(Const),
    /// The shape of a data value, whose batch size is all that is folded (`Shape` →
    /// `Gather(0)` chains that exporters emit for flattening).
    ShapeOf,
}

struct Statement {
    label: Option<String>,
    call: String,
    /// The statement it reads, when not the previous one (`None`: the input).
    from: Option<Option<usize>>,
    /// The parameters' suffixes and tensors (`weight`, `bias`, …).
    params: Vec<(&'static str, Vec<usize>, Vec<f32>)>,
    /// Statements referenced by name (`add`, `concat`).
    refs: Vec<Option<usize>>,
}

/// Why an import failed: one line (unsupported op types are listed together).
#[derive(Debug)]
pub struct ImportError(pub String);

type R<T> = Result<T, ImportError>;

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(ImportError(msg.into()))
}

/// The op types the importer knows.
const SUPPORTED: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "Gemm",
    "Relu",
    "LeakyRelu",
    "Elu",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "BatchNormalization",
    "Flatten",
    "Reshape",
    "Dropout",
    "Identity",
    "Add",
    "Concat",
    "Constant",
    "Shape",
    "Gather",
    "Unsqueeze",
];

/// Import `bytes` (an ONNX `ModelProto`); `source` names the file in messages and in the
/// comment at the top of the text; initializers kept in external files are read from
/// `dir` (the model file's directory).
pub fn import(bytes: &[u8], source: &str, model_name: &str, dir: &Path) -> R<Imported> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| ImportError(format!("{source} is not an ONNX model (or is truncated): {e}")))?;
    let graph = model.graph.as_ref().ok_or_else(|| ImportError(format!("{source}: the model has no graph")))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx"))
        .and_then(|o| o.version)
        .unwrap_or(0);
    let unsupported: Vec<String> = graph
        .node
        .iter()
        .filter(|n| !SUPPORTED.contains(&n.op_type()) || !n.domain().is_empty() && n.domain() != "ai.onnx")
        .map(|n| format!("{} (node `{}`)", n.op_type(), n.name()))
        .collect();
    if !unsupported.is_empty() {
        return err(format!("{source} (opset {opset}) uses ops Percept cannot import: {}", unsupported.join(", ")));
    }
    let mut vals: HashMap<String, Val> = HashMap::new();
    for t in &graph.initializer {
        let t = with_external_data(t, source, dir)?;
        vals.insert(t.name().to_string(), Val::Const(tensor(&t, source)?));
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
    vals.insert(input.name().to_string(), Val::Stmt { stmt: None, rank: in_shape.len(), squeezed: false });
    let mut b = Builder { stmts: vec![], source: source.to_string(), batch: in_shape[0] };
    for node in &graph.node {
        b.node(node, &mut vals)?;
    }
    let [output] = &graph.output[..] else {
        return err(format!("{source}: the graph has {} outputs; Percept models have one", graph.output.len()));
    };
    match vals.get(output.name()) {
        Some(Val::Stmt { stmt: Some(s), .. }) if *s + 1 == b.stmts.len() => {}
        Some(Val::Stmt { .. }) => {
            return err(format!("{source}: the output `{}` is not the last layer's", output.name()))
        }
        _ => return err(format!("{source}: the output `{}` is a constant", output.name())),
    }
    b.finish(input.name(), &in_shape[1..], model_name, opset)
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

/// An initializer whose data lives in a file beside the model (`location`, `offset`,
/// `length`, as the exporters write large models), with that data read in as raw bytes.
fn with_external_data(t: &TensorProto, source: &str, dir: &Path) -> R<TensorProto> {
    if t.external_data.is_empty() {
        return Ok(t.clone());
    }
    let key = |k: &str| t.external_data.iter().find(|e| e.key() == k).map(|e| e.value().to_string());
    let location = key("location").ok_or_else(|| {
        ImportError(format!("{source}: the initializer `{}` has external data but no location", t.name()))
    })?;
    if Path::new(&location).is_absolute() || location.split(['/', '\\']).any(|p| p == "..") {
        return err(format!(
            "{source}: the initializer `{}` points outside the model's directory: {location}",
            t.name()
        ));
    }
    let path = dir.join(&location);
    let bytes = std::fs::read(&path).map_err(|e| {
        ImportError(format!(
            "{source}: the initializer `{}` is in {}, which cannot be read: {e}",
            t.name(),
            path.display()
        ))
    })?;
    let number = |k: &str| {
        key(k)
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| ImportError(format!("{source}: the initializer `{}` has {k} `{v}`", t.name())))
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?.unwrap_or(bytes.len().saturating_sub(offset));
    let data = offset.checked_add(length).and_then(|end| bytes.get(offset..end)).ok_or_else(|| {
        ImportError(format!("{source}: the initializer `{}` lies past the end of {}", t.name(), path.display()))
    })?;
    Ok(TensorProto { raw_data: Some(data.to_vec()), external_data: vec![], data_location: None, ..t.clone() })
}

/// A TensorProto's values (float32 or int64, inline or raw).
fn tensor(t: &TensorProto, source: &str) -> R<Const> {
    use proto::tensor_proto::DataType;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let n: usize = dims.iter().product();
    let raw = t.raw_data.as_deref();
    let (f32, i64) = match t.data_type() {
        x if x == DataType::Float as i32 => match raw {
            Some(r) => (r.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), vec![]),
            None => (t.float_data.clone(), vec![]),
        },
        x if x == DataType::Int64 as i32 => match raw {
            Some(r) => (vec![], r.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
            None => (vec![], t.int64_data.clone()),
        },
        other => {
            return err(format!("{source}: the tensor `{}` has data type {other}, not float32 or int64", t.name()))
        }
    };
    if f32.len().max(i64.len()) != n {
        return err(format!(
            "{source}: the tensor `{}` holds {} values for dimensions {dims:?}",
            t.name(),
            f32.len().max(i64.len())
        ));
    }
    Ok(Const { dims, f32, i64 })
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

fn pair(v: &[i64]) -> String {
    if v[0] == v[1] {
        v[0].to_string()
    } else {
        format!("[{}, {}]", v[0], v[1])
    }
}

/// A float as the language writes it, exactly (Rust's shortest round trip of the f32).
fn num(x: f32) -> String {
    let s = format!("{x:?}");
    if s.contains('e') || s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

struct Builder {
    stmts: Vec<Statement>,
    source: String,
    /// The input's batch size when the model was exported with a fixed one, else BATCH.
    batch: i64,
}

impl Builder {
    fn what(&self, n: &NodeProto) -> String {
        format!("{}: {} node `{}`", self.source, n.op_type(), n.name())
    }

    fn get<'a>(&self, vals: &'a HashMap<String, Val>, n: &NodeProto, i: usize) -> R<&'a Val> {
        let name = n.input.get(i).map(String::as_str).unwrap_or("");
        vals.get(name).ok_or_else(|| ImportError(format!("{}: input `{name}` is not defined before it", self.what(n))))
    }

    fn konst<'a>(&self, vals: &'a HashMap<String, Val>, n: &NodeProto, i: usize) -> R<&'a Const> {
        match self.get(vals, n, i)? {
            Val::Const(c) => Ok(c),
            _ => err(format!("{}: input {i} must be a constant (an initializer)", self.what(n))),
        }
    }

    fn data(&self, vals: &HashMap<String, Val>, n: &NodeProto, i: usize) -> R<(Option<usize>, usize, bool)> {
        match self.get(vals, n, i)? {
            Val::Stmt { stmt, rank, squeezed } => Ok((*stmt, *rank, *squeezed)),
            _ => err(format!("{}: input {i} is a constant where Percept needs the data", self.what(n))),
        }
    }

    /// Append a statement reading `src`; returns its value.
    fn push(&mut self, src: Option<usize>, call: String, params: Vec<(&'static str, Vec<usize>, Vec<f32>)>) -> usize {
        let previous = self.stmts.len().checked_sub(1);
        let from = (src != previous).then_some(src);
        self.stmts.push(Statement { label: None, call, from, params, refs: vec![] });
        self.stmts.len() - 1
    }

    fn node(&mut self, n: &NodeProto, vals: &mut HashMap<String, Val>) -> R<()> {
        let out = n.output.first().cloned().unwrap_or_default();
        let op = n.op_type();
        let set = |vals: &mut HashMap<String, Val>, v: Val| {
            vals.insert(out.clone(), v);
        };
        match op {
            "Constant" => {
                let t = attr(n, "value").and_then(|a| a.t.as_ref());
                let t = t.ok_or_else(|| ImportError(format!("{}: only `value` tensors are read", self.what(n))))?;
                set(vals, Val::Const(tensor(t, &self.source)?));
            }
            "Identity" | "Dropout" => {
                let v = self.get(vals, n, 0)?.clone();
                set(vals, v);
            }
            "Shape" => {
                self.data(vals, n, 0)?;
                if int(n, "start", 0) != 0 || attr(n, "end").is_some() {
                    return err(format!("{}: only a whole shape is folded", self.what(n)));
                }
                set(vals, Val::ShapeOf);
            }
            "Gather" => {
                let idx = self.konst(vals, n, 1)?.i64.clone();
                match (self.get(vals, n, 0)?, idx.as_slice()) {
                    (Val::ShapeOf, [0]) => set(vals, Val::Const(Const { dims: vec![], f32: vec![], i64: vec![BATCH] })),
                    _ => return err(format!("{}: only the batch size (index 0 of a shape) is folded", self.what(n))),
                }
            }
            "Unsqueeze" => {
                let c = self.konst(vals, n, 0)?.clone();
                if c.dims.is_empty() {
                    set(vals, Val::Const(Const { dims: vec![1], ..c }));
                } else {
                    return err(format!("{}: only scalars are unsqueezed", self.what(n)));
                }
            }
            "Concat" if n.input.iter().all(|i| matches!(vals.get(i), Some(Val::Const(_)))) => {
                let mut i64s = vec![];
                for i in 0..n.input.len() {
                    i64s.extend(self.konst(vals, n, i)?.i64.iter().copied());
                }
                set(vals, Val::Const(Const { dims: vec![i64s.len()], f32: vec![], i64: i64s }));
            }
            "Concat" => {
                if int(n, "axis", 1) != 1 {
                    return err(format!("{}: only concatenation along channels (axis 1) is supported", self.what(n)));
                }
                let mut parts = vec![];
                for i in 0..n.input.len() {
                    parts.push(self.data(vals, n, i)?);
                }
                let (first, rank, squeezed) = parts[0];
                let refs: Vec<Option<usize>> = parts[1..].iter().map(|p| p.0).collect();
                let s = self.push(first, String::new(), vec![]);
                self.stmts[s].refs = refs;
                self.stmts[s].call = "concat".into();
                set(vals, Val::Stmt { stmt: Some(s), rank, squeezed });
            }
            "Add" => {
                let (a, b) = (self.get(vals, n, 0)?.clone(), self.get(vals, n, 1)?.clone());
                let (Val::Stmt { stmt: x, rank, squeezed }, Val::Stmt { stmt: y, .. }) = (a, b) else {
                    return err(format!(
                        "{}: only the sum of two layers' outputs is imported (a bias belongs to its layer)",
                        self.what(n)
                    ));
                };
                // The previous statement as the first operand when it is one of them.
                let previous = self.stmts.len().checked_sub(1);
                let (first, other) = if y == previous { (y, x) } else { (x, y) };
                let s = self.push(first, "add".into(), vec![]);
                self.stmts[s].refs = vec![other];
                set(vals, Val::Stmt { stmt: Some(s), rank, squeezed });
            }
            "Relu" | "Sigmoid" | "Tanh" | "LeakyRelu" | "Elu" | "Softmax" => {
                let (src, rank, squeezed) = self.data(vals, n, 0)?;
                let call = match op {
                    "Relu" => "relu".into(),
                    "Sigmoid" => "sigmoid".into(),
                    "Tanh" => "tanh".into(),
                    // ONNX's default slope is 0.01; written out, as Percept's is 0.1.
                    "LeakyRelu" => format!("leaky_relu(slope: {})", num(float(n, "alpha", 0.01))),
                    "Elu" => format!("elu(alpha: {})", num(float(n, "alpha", 1.0))),
                    _ => {
                        let axis = int(n, "axis", -1);
                        if rank != 2 || (axis != 1 && axis != -1) {
                            return err(format!(
                                "{}: softmax is imported over the features of a flat output",
                                self.what(n)
                            ));
                        }
                        "softmax".into()
                    }
                };
                let s = self.push(src, call, vec![]);
                set(vals, Val::Stmt { stmt: Some(s), rank, squeezed });
            }
            "Flatten" | "Reshape" => {
                let (src, rank, squeezed) = self.data(vals, n, 0)?;
                if op == "Flatten" && int(n, "axis", 1) != 1 {
                    return err(format!(
                        "{}: Flatten with axis {} (Percept flattens after the batch axis, 1)",
                        self.what(n),
                        int(n, "axis", 1)
                    ));
                }
                if op == "Reshape" {
                    let shape = &self.konst(vals, n, 1)?.i64;
                    // The batch: dynamic, kept (0), inferred (-1), or the exported static size.
                    let batch_first = matches!(shape.first(), Some(&BATCH) | Some(&0) | Some(&-1))
                        || shape.first() == Some(&self.batch);
                    if shape.len() != 2 || !batch_first || (shape[1] != -1 && shape[0] == -1) {
                        return err(format!(
                            "{}: only reshapes to [batch, features] (flattening) are imported, not {shape:?}",
                            self.what(n)
                        ));
                    }
                }
                if rank == 2 || squeezed {
                    // Already flat on Percept's side.
                    set(vals, Val::Stmt { stmt: src, rank: 2, squeezed: false });
                } else {
                    let s = self.push(src, "flatten".into(), vec![]);
                    set(vals, Val::Stmt { stmt: Some(s), rank: 2, squeezed: false });
                }
            }
            "Gemm" => {
                let (src, rank, _) = self.data(vals, n, 0)?;
                if rank != 2 {
                    return err(format!("{}: the input is not flat", self.what(n)));
                }
                if int(n, "transA", 0) != 0 || float(n, "alpha", 1.0) != 1.0 || float(n, "beta", 1.0) != 1.0 {
                    return err(format!(
                        "{}: Gemm with transA, alpha ≠ 1 or beta ≠ 1 is not a dense layer",
                        self.what(n)
                    ));
                }
                let w = self.konst(vals, n, 1)?;
                let (rows, cols) = (w.dims[0], w.dims[1]);
                let (units, weight) = if int(n, "transB", 0) == 1 {
                    (rows, w.f32.clone())
                } else {
                    (
                        cols,
                        (0..cols)
                            .flat_map(|o| (0..rows).map(move |i| (o, i)))
                            .map(|(o, i)| w.f32[i * cols + o])
                            .collect(),
                    )
                };
                let fan_in = weight.len() / units;
                let mut params = vec![("weight", vec![units, fan_in], weight)];
                if n.input.len() > 2 && !n.input[2].is_empty() {
                    let c = self.konst(vals, n, 2)?;
                    if c.f32.len() != units {
                        return err(format!(
                            "{}: the bias has shape {:?}; only a per-output bias [{units}] is a dense layer's",
                            self.what(n),
                            c.dims
                        ));
                    }
                    params.push(("bias", vec![units], c.f32.clone()));
                }
                let call = format!("dense({units}{})", if params.len() == 1 { ", bias: false" } else { "" });
                let s = self.push(src, call, params);
                set(vals, Val::Stmt { stmt: Some(s), rank: 2, squeezed: false });
            }
            "Conv" | "ConvTranspose" => {
                let (src, rank, _) = self.data(vals, n, 0)?;
                if rank != 4 {
                    return err(format!("{}: only 2-D convolutions of [N, C, H, W] are imported", self.what(n)));
                }
                let w = self.konst(vals, n, 1)?.clone();
                if w.dims.len() != 4 {
                    return err(format!("{}: the weight has shape {:?}, not 4-D", self.what(n), w.dims));
                }
                if attr(n, "auto_pad").and_then(|a| a.s.as_deref()).is_some_and(|s| s != b"NOTSET") {
                    return err(format!("{}: auto_pad is not folded; export with explicit pads", self.what(n)));
                }
                let pads = ints(n, "pads").unwrap_or(vec![0; 4]);
                if pads.len() != 4 || pads[0] != pads[2] || pads[1] != pads[3] {
                    return err(format!("{}: asymmetric pads {pads:?} (Percept pads each side alike)", self.what(n)));
                }
                let strides = ints(n, "strides").unwrap_or(vec![1, 1]);
                let dilations = ints(n, "dilations").unwrap_or(vec![1, 1]);
                let groups = int(n, "group", 1);
                let transposed = op == "ConvTranspose";
                let filters = if transposed { w.dims[1] * groups as usize } else { w.dims[0] };
                let mut call = format!(
                    "{}({filters}, kernel: {}",
                    if transposed { "conv_transpose2d" } else { "conv2d" },
                    pair(&[w.dims[2] as i64, w.dims[3] as i64])
                );
                let mut opt = |key: &str, v: &[i64], default: i64| {
                    if v.iter().any(|&x| x != default) {
                        call += &format!(", {key}: {}", pair(v));
                    }
                };
                opt("stride", &strides, 1);
                opt("padding", &pads[..2], 0);
                if transposed {
                    let op = ints(n, "output_padding").unwrap_or(vec![0, 0]);
                    if attr(n, "output_shape").is_some() {
                        return err(format!(
                            "{}: output_shape is not folded; export with output_padding",
                            self.what(n)
                        ));
                    }
                    opt("output_padding", &op, 0);
                }
                opt("dilation", &dilations, 1);
                if groups != 1 {
                    call += &format!(", groups: {groups}");
                }
                let mut params = vec![("weight", w.dims.clone(), w.f32.clone())];
                if n.input.len() > 2 && !n.input[2].is_empty() {
                    params.push(("bias", vec![filters], self.konst(vals, n, 2)?.f32.clone()));
                } else {
                    call += ", bias: false";
                }
                call += ")";
                let s = self.push(src, call, params);
                set(vals, Val::Stmt { stmt: Some(s), rank: 4, squeezed: false });
            }
            "MaxPool" | "AveragePool" => {
                let (src, rank, _) = self.data(vals, n, 0)?;
                let k = ints(n, "kernel_shape").unwrap_or_default();
                if rank != 4 || k.len() != 2 {
                    return err(format!("{}: only 2-D pooling is imported", self.what(n)));
                }
                if int(n, "ceil_mode", 0) != 0 {
                    return err(format!("{}: ceil_mode (Percept pools in floor mode)", self.what(n)));
                }
                if ints(n, "dilations").is_some_and(|d| d.iter().any(|&x| x != 1)) {
                    return err(format!("{}: dilated pooling", self.what(n)));
                }
                let pads = ints(n, "pads").unwrap_or(vec![0; 4]);
                if pads.len() != 4 || pads[0] != pads[2] || pads[1] != pads[3] {
                    return err(format!("{}: asymmetric pads {pads:?}", self.what(n)));
                }
                let strides = ints(n, "strides").unwrap_or(vec![1, 1]);
                let kind = if op == "MaxPool" { "maxpool" } else { "avgpool" };
                let mut call = format!("{kind}({}", pair(&k));
                if strides != k {
                    call += &format!(", stride: {}", pair(&strides));
                }
                if pads[..2] != [0, 0] {
                    call += &format!(", padding: {}", pair(&pads[..2]));
                    // ONNX's default excludes the padding from the divisor.
                    if op == "AveragePool" && int(n, "count_include_pad", 0) == 0 {
                        call += ", count_include_pad: false";
                    }
                }
                call += ")";
                if n.output.len() > 1 && !n.output[1].is_empty() {
                    return err(format!("{}: MaxPool's indices output", self.what(n)));
                }
                let s = self.push(src, call, vec![]);
                set(vals, Val::Stmt { stmt: Some(s), rank: 4, squeezed: false });
            }
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let (src, rank, _) = self.data(vals, n, 0)?;
                if rank != 4 {
                    return err(format!("{}: the input is not an image", self.what(n)));
                }
                let call = if op == "GlobalAveragePool" { "global_avgpool" } else { "global_maxpool" };
                let s = self.push(src, call.into(), vec![]);
                set(vals, Val::Stmt { stmt: Some(s), rank: 4, squeezed: true });
            }
            "BatchNormalization" => {
                let (src, rank, squeezed) = self.data(vals, n, 0)?;
                if squeezed {
                    return err(format!("{}: batch norm after a global pooling, before its flatten", self.what(n)));
                }
                if int(n, "training_mode", 0) != 0 {
                    return err(format!("{}: the training form (export in evaluation mode)", self.what(n)));
                }
                let eps = float(n, "epsilon", 1e-5);
                // ONNX: running = running·momentum + batch·(1 − momentum); Percept's m weighs the batch.
                let momentum = 1.0 - f64::from(float(n, "momentum", 0.9));
                let channels = self.konst(vals, n, 1)?.f32.len();
                let mut params = vec![];
                for (i, name) in [(1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")] {
                    params.push((name, vec![channels], self.konst(vals, n, i)?.f32.clone()));
                }
                let call = format!("batchnorm(eps: {}, momentum: {})", num(eps), num(momentum as f32));
                let s = self.push(src, call, params);
                set(vals, Val::Stmt { stmt: Some(s), rank, squeezed: false });
            }
            other => return err(format!("{}: {other} is not imported", self.what(n))),
        }
        Ok(())
    }

    /// The text and the weights: labels where a statement is referred to by name.
    fn finish(mut self, input_name: &str, input_shape: &[i64], model_name: &str, opset: i64) -> R<Imported> {
        let input_label = ident(input_name).unwrap_or_else(|| "x".into());
        let mut needed: Vec<usize> = vec![];
        for s in &self.stmts {
            needed.extend(s.from.iter().flatten().copied());
            needed.extend(s.refs.iter().flatten().copied());
        }
        for i in needed {
            if self.stmts[i].label.is_none() {
                // `t<index>`, never the input's name.
                let label = format!("t{i}");
                self.stmts[i].label = Some(if label == input_label { format!("{label}_") } else { label });
            }
        }
        let name_of = |stmts: &[Statement], r: Option<usize>| match r {
            None => input_label.clone(),
            Some(i) => stmts[i].label.clone().expect("labelled above"),
        };
        let shape: Vec<String> = input_shape.iter().map(|d| d.to_string()).collect();
        let mut text = format!(
            "# Imported by `percept import` from {} (ONNX opset {opset}).\nmodel {model_name} {{\n    input {input_label}: [{}]\n",
            self.source,
            shape.join(", ")
        );
        let mut tensors = vec![];
        for (i, s) in self.stmts.iter().enumerate() {
            let mut call = s.call.clone();
            if !s.refs.is_empty() {
                let names: Vec<String> = s.refs.iter().map(|&r| name_of(&self.stmts, r)).collect();
                call = format!("{call}({})", names.join(", "));
            }
            if let Some(src) = s.from {
                let from = format!("from: {}", name_of(&self.stmts, src));
                call = match call.strip_suffix(')') {
                    Some(head) => format!("{head}, {from})"),
                    None => format!("{call}({from})"),
                };
            }
            let label = s.label.as_ref().map(|l| format!("{l}: ")).unwrap_or_default();
            text += &format!("    {label}{call}\n");
            // Percept's parameter prefix: the label, else the statement's index.
            let prefix = s.label.clone().unwrap_or_else(|| i.to_string());
            for (suffix, dims, data) in &s.params {
                tensors.push(NamedTensor::f32(format!("{prefix}.{suffix}"), dims, data.clone()));
            }
            if s.call.starts_with("batchnorm") {
                tensors.push(NamedTensor {
                    name: format!("{prefix}.num_batches_tracked"),
                    shape: vec![],
                    data: percept_runtime::tensorfile::Data::I64(vec![0]),
                });
            }
        }
        text += "}\n";
        Ok(Imported { text, weights: TensorFile { tensors, metadata: HashMap::new() } })
    }
}

/// `name` if it is a valid identifier of the language (not a keyword), else `None`.
fn ident(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first = chars.next()?;
    let ok = (first.is_ascii_alphabetic() || first == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ok && !["model", "input", "loss", "from"].contains(&name)).then(|| name.to_string())
}
