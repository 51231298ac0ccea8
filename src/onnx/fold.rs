//! Constants of an ONNX graph: initializers (inline or in an external file), `Constant`
//! nodes, and what the importer folds from them — the weight transforms exporters emit
//! (Transpose, Cast, Reshape, Unsqueeze, Squeeze, Concat of initializers), the shape
//! arithmetic of flattening (Shape, Gather, Unsqueeze, Concat) and the pads computation
//! the TorchScript exporter writes for `F.pad` (ConstantOfShape, Slice, Sub, Mul, …).

use super::import::ImportError;
use super::proto::{self, NodeProto, TensorProto};
use std::path::Path;

type R<T> = Result<T, ImportError>;

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(ImportError(msg.into()))
}

/// How many values folding may make beyond the file's size in bytes (the importer's
/// budget for one model: exporters' folds transform each weight once or twice and compute
/// small shapes; a hostile graph could otherwise ask for far more memory than it holds).
pub const MAX_FOLDED: usize = 1 << 22;

/// The batch dimension in a folded shape (ONNX's dynamic `N`).
pub const BATCH: i64 = i64::MIN;

/// A constant tensor's values: float32 (weights) or int64 (shapes, axes), as in a weights file.
pub use percept_runtime::tensorfile::Data;

#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Const {
    pub fn i64s(values: Vec<i64>) -> Const {
        Const { dims: vec![values.len()], data: Data::I64(values) }
    }

    /// The float values, or `None` for an int64 tensor.
    pub fn f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            Data::I64(_) => None,
        }
    }

    /// The int64 values, or `None` for a float tensor.
    pub fn i64(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            Data::F32(_) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// The tensor with element `i` of the result taken from element `pick(i)` of this one.
    fn gather(&self, dims: Vec<usize>, pick: impl Fn(usize) -> usize) -> Const {
        let n: usize = dims.iter().product();
        let data = match &self.data {
            Data::F32(v) => Data::F32((0..n).map(|i| v[pick(i)]).collect()),
            Data::I64(v) => Data::I64((0..n).map(|i| v[pick(i)]).collect()),
        };
        Const { dims, data }
    }
}

/// An initializer whose data lives in a file beside the model (`location`, `offset`,
/// `length`, as the exporters write large models), with that data read in as raw bytes.
pub fn with_external_data(t: &TensorProto, source: &str, dir: &Path) -> R<TensorProto> {
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

/// A TensorProto's values (float32, int64 or bool, inline or raw).
pub fn tensor(t: &TensorProto, source: &str) -> R<Const> {
    use proto::tensor_proto::DataType;
    if t.dims.iter().any(|&d| d < 0) {
        return err(format!("{source}: the tensor `{}` has dimensions {:?}", t.name(), t.dims));
    }
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let raw = t.raw_data.as_deref();
    let data = match t.data_type() {
        x if x == DataType::Float as i32 => Data::F32(match raw {
            Some(r) => r.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            None => t.float_data.clone(),
        }),
        x if x == DataType::Int64 as i32 => Data::I64(match raw {
            Some(r) => r.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
            None => t.int64_data.clone(),
        }),
        // Booleans (dropout's training_mode) as 0 and 1.
        x if x == DataType::Bool as i32 => Data::I64(match raw {
            Some(r) => r.iter().map(|&b| i64::from(b != 0)).collect(),
            None => t.int32_data.iter().map(|&b| i64::from(b != 0)).collect(),
        }),
        other => {
            let name = DataType::try_from(other).map(|d| d.as_str_name()).unwrap_or("unknown");
            return err(format!(
                "{source}: the tensor `{}` has data type {name} ({other}), not float32 or int64",
                t.name()
            ));
        }
    };
    let c = Const { dims, data };
    if n != Some(c.len()) {
        return err(format!(
            "{source}: the tensor `{}` holds {} values for dimensions {:?}",
            t.name(),
            c.len(),
            c.dims
        ));
    }
    Ok(c)
}

/// `axis` of a rank-`rank` tensor, negative counting from the end, or `None` when out of range.
pub fn axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

/// Flatten's `axis` of a rank-`rank` input, in 0..=rank (negative: counted from the end).
pub fn flatten_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..=rank as i64).contains(&a).then_some(a as usize)
}

/// The ints of attribute `name`, or of input `i` (`input`, its constant, if any; opsets
/// 13 and 18 moved `axes`, `pads` and shapes from attributes to inputs), or `None` when
/// neither is given.
pub fn ints_attr_or_input(n: &NodeProto, name: &str, i: usize, input: Option<&Const>) -> R<Option<Vec<i64>>> {
    if let Some(a) = n.attribute.iter().find(|a| a.name() == name) {
        return Ok(Some(a.ints.clone()));
    }
    match n.input.get(i).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => match input.and_then(Const::i64) {
            Some(v) => Ok(Some(v.to_vec())),
            None => err(format!("`{name}` ({s}) must be a constant int64 tensor")),
        },
    }
}

/// Evaluate `n` when it only transforms constants (`inputs`: its inputs, all constant),
/// making at most `limit` values where an op makes more than an input holds. `None`: the op
/// is not one the importer folds.
pub fn fold(n: &NodeProto, inputs: &[&Const], limit: usize) -> R<Option<Const>> {
    let what = || format!("{} node `{}`", n.op_type(), n.name());
    let attr = |name: &str| n.attribute.iter().find(|a| a.name() == name);
    let input = |i: usize| inputs.get(i).map(|c| (*c).clone());
    let too_large = |count: Option<usize>| {
        count
            .is_none_or(|c| c > limit)
            .then(|| ImportError(format!("{}: folding makes more values than the model file holds", what())))
    };
    let Some(x) = inputs.first() else { return Ok(None) };
    let rank = x.dims.len();
    let folded = match n.op_type() {
        "Identity" | "Dropout" => (*x).clone(),
        "Shape" if attr("start").is_none() && attr("end").is_none() => {
            Const::i64s(x.dims.iter().map(|&d| d as i64).collect())
        }
        "Cast" => {
            use proto::tensor_proto::DataType;
            let to = attr("to").and_then(|a| a.i).unwrap_or(0) as i32;
            let data = match (&x.data, to) {
                (Data::F32(v), t) if t == DataType::Float as i32 => Data::F32(v.clone()),
                (Data::I64(v), t) if t == DataType::Int64 as i32 => Data::I64(v.clone()),
                (Data::I64(v), t) if t == DataType::Float as i32 => Data::F32(v.iter().map(|&i| i as f32).collect()),
                (Data::F32(v), t) if t == DataType::Int64 as i32 && v.iter().all(|f| f.fract() == 0.0) => {
                    Data::I64(v.iter().map(|&f| f as i64).collect())
                }
                _ => return err(format!("{}: a cast to data type {to} is not folded", what())),
            };
            Const { dims: x.dims.clone(), data }
        }
        "Transpose" => {
            let perm: Vec<usize> = match attr("perm") {
                Some(a) => a.ints.iter().map(|&p| p as usize).collect(),
                None => (0..rank).rev().collect(),
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..rank).collect::<Vec<_>>() {
                return err(format!("{}: perm {perm:?} for {rank} dimensions", what()));
            }
            let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
            let strides = strides(&x.dims);
            let out_strides = self::strides(&dims);
            x.gather(dims.clone(), |i| {
                (0..rank).map(|k| (i / out_strides[k]) % dims[k] * strides[perm[k]]).sum::<usize>()
            })
        }
        "Reshape" => {
            let Some(shape) = input(1).and_then(|c| c.i64().map(<[i64]>::to_vec)) else {
                return err(format!("{}: the shape must be an int64 constant", what()));
            };
            Const {
                dims: reshaped(&x.dims, &shape).ok_or_else(|| ImportError(format!("{}: {shape:?}", what())))?,
                ..(*x).clone()
            }
        }
        "Flatten" => {
            let a = flatten_axis(attr("axis").and_then(|a| a.i).unwrap_or(1), rank)
                .ok_or_else(|| ImportError(format!("{}: the axis", what())))?;
            let outer: usize = x.dims[..a].iter().product();
            Const { dims: vec![outer, x.len() / outer.max(1)], ..(*x).clone() }
        }
        "Unsqueeze" | "Squeeze" => {
            let axes = ints_attr_or_input(n, "axes", 1, inputs.get(1).copied())
                .map_err(|e| ImportError(format!("{}: {}", what(), e.0)))?;
            let mut dims = x.dims.clone();
            if n.op_type() == "Unsqueeze" {
                let axes = axes.unwrap_or_default();
                let out_rank = rank + axes.len();
                let mut axes: Vec<usize> = axes.iter().filter_map(|&a| axis(a, out_rank)).collect();
                axes.sort_unstable();
                axes.dedup();
                if axes.len() + rank != out_rank {
                    return err(format!("{}: axes out of range or repeated", what()));
                }
                for a in axes {
                    dims.insert(a, 1);
                }
            } else {
                let axes: Vec<usize> = match axes {
                    Some(a) => a.iter().filter_map(|&a| axis(a, rank)).collect(),
                    None => (0..rank).filter(|&a| x.dims[a] == 1).collect(),
                };
                if axes.iter().any(|&a| x.dims[a] != 1) {
                    return err(format!("{}: squeezes a dimension that is not 1", what()));
                }
                dims = (0..rank).filter(|a| !axes.contains(a)).map(|a| x.dims[a]).collect();
            }
            Const { dims, ..(*x).clone() }
        }
        "Concat" => {
            let a = axis(attr("axis").and_then(|a| a.i).unwrap_or(0), rank.max(1))
                .ok_or_else(|| ImportError(format!("{}: the axis", what())))?;
            if let Some(e) = too_large(inputs.iter().try_fold(0usize, |a, c| a.checked_add(c.len()))) {
                return Err(e);
            }
            concat(inputs, a.min(rank.saturating_sub(1)))
                .ok_or_else(|| ImportError(format!("{}: inputs of different ranks, data types or sizes", what())))?
        }
        "Gather" => {
            let (Some(idx), Some(data)) = (input(1).and_then(|c| c.i64().map(<[i64]>::to_vec)), x.i64()) else {
                return Ok(None);
            };
            if rank != 1 || attr("axis").and_then(|a| a.i).unwrap_or(0) != 0 {
                return Ok(None);
            }
            let picked: Option<Vec<i64>> = idx.iter().map(|&i| axis(i, data.len()).map(|i| data[i])).collect();
            let picked = picked.ok_or_else(|| ImportError(format!("{}: an index out of range", what())))?;
            let dims = input(1).map(|c| c.dims).unwrap_or_default();
            Const { dims, data: Data::I64(picked) }
        }
        "ConstantOfShape" => {
            let Some(shape) = x.i64().filter(|s| s.iter().all(|&d| d >= 0)) else {
                return err(format!("{}: the shape must be non-negative int64s", what()));
            };
            let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            if let Some(e) = too_large(dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))) {
                return Err(e);
            }
            let fill = match attr("value").and_then(|a| a.t.as_ref()) {
                Some(t) => tensor(t, "")?,
                None => Const { dims: vec![1], data: Data::F32(vec![0.0]) },
            };
            if fill.len() != 1 {
                return err(format!("{}: the value must be one number", what()));
            }
            fill.gather(dims, |_| 0)
        }
        "Slice" => slice(n, inputs).map_err(|e| ImportError(format!("{}: {e}", what())))?,
        "Add" | "Sub" | "Mul" | "Div" => {
            let y = input(1).ok_or_else(|| ImportError(format!("{}: one input", what())))?;
            binary(n.op_type(), x, &y, limit).ok_or_else(|| {
                ImportError(format!("{}: shapes {:?} and {:?} of different types or that do not broadcast, or an inexact integer division", what(), x.dims, y.dims))
            })?
        }
        _ => return Ok(None),
    };
    Ok(Some(folded))
}

/// ONNX Slice (opset 10 on: starts, ends, axes, steps as inputs; before: attributes).
fn slice(n: &NodeProto, inputs: &[&Const]) -> Result<Const, String> {
    let x = inputs[0];
    let rank = x.dims.len();
    let list = |name: &str, i: usize| -> Option<Vec<i64>> {
        match n.attribute.iter().find(|a| a.name() == name) {
            Some(a) => Some(a.ints.clone()),
            None => inputs.get(i).and_then(|c| c.i64().map(<[i64]>::to_vec)),
        }
    };
    let (Some(starts), Some(ends)) = (list("starts", 1), list("ends", 2)) else {
        return Err("starts and ends must be int64 constants".into());
    };
    let axes = list("axes", 3).unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = list("steps", 4).unwrap_or_else(|| vec![1; starts.len()]);
    if axes.len() != starts.len() || ends.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps of different lengths".into());
    }
    // Per axis: first index, step, count.
    let mut ranges: Vec<(i64, i64, usize)> = x.dims.iter().map(|&d| (0, 1, d)).collect();
    for k in 0..starts.len() {
        let a = axis(axes[k], rank).ok_or("an axis out of range")?;
        let (d, step) = (x.dims[a] as i64, steps[k]);
        if step == 0 {
            return Err("a step of 0".into());
        }
        let clamp = |v: i64, lo: i64, hi: i64| {
            let v = if v < 0 { v.saturating_add(d) } else { v };
            v.clamp(lo, hi)
        };
        let (start, end) = if step > 0 {
            (clamp(starts[k], 0, d), clamp(ends[k], 0, d))
        } else {
            (clamp(starts[k], 0, d - 1), clamp(ends[k], -1, d - 1))
        };
        // ⌈distance / |step|⌉ elements.
        let distance = if step > 0 { end - start } else { start - end };
        let count = (distance.max(0) + step.abs() - 1) / step.abs();
        ranges[a] = (start, step, count as usize);
    }
    let dims: Vec<usize> = ranges.iter().map(|r| r.2).collect();
    let (in_strides, out_strides) = (strides(&x.dims), strides(&dims));
    Ok(x.gather(dims.clone(), |i| {
        (0..rank)
            .map(|k| {
                let j = ((i / out_strides[k]) % dims[k]) as i64;
                (ranges[k].0 + j * ranges[k].1) as usize * in_strides[k]
            })
            .sum()
    }))
}

/// Elementwise Add, Sub, Mul, Div of two constants of one type, with NumPy broadcasting;
/// `None` when the shapes do not broadcast, the types differ or an integer division is
/// inexact (ONNX leaves its rounding to the implementation).
fn binary(op: &str, a: &Const, b: &Const, limit: usize) -> Option<Const> {
    let rank = a.dims.len().max(b.dims.len());
    let pad = |d: &[usize]| [vec![1; rank - d.len()], d.to_vec()].concat();
    let (da, db) = (pad(&a.dims), pad(&b.dims));
    let dims: Vec<usize> = (0..rank)
        .map(|k| match (da[k], db[k]) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let (sa, sb, so) = (strides(&da), strides(&db), strides(&dims));
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= limit.max(a.len()).max(b.len()))?;
    let at = |i: usize, d: &[usize], s: &[usize]| -> usize {
        (0..rank).map(|k| if d[k] == 1 { 0 } else { (i / so[k]) % dims[k] * s[k] }).sum()
    };
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) => Data::F32(
            (0..n)
                .map(|i| {
                    let (p, q) = (x[at(i, &da, &sa)], y[at(i, &db, &sb)]);
                    match op {
                        "Add" => p + q,
                        "Sub" => p - q,
                        "Mul" => p * q,
                        _ => p / q,
                    }
                })
                .collect(),
        ),
        (Data::I64(x), Data::I64(y)) => Data::I64(
            (0..n)
                .map(|i| {
                    let (p, q) = (x[at(i, &da, &sa)], y[at(i, &db, &sb)]);
                    match op {
                        "Add" => p.checked_add(q),
                        "Sub" => p.checked_sub(q),
                        "Mul" => p.checked_mul(q),
                        _ => (q != 0 && p.checked_rem(q) == Some(0)).then(|| p / q),
                    }
                })
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    };
    Some(Const { dims, data })
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for k in (0..dims.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * dims[k + 1];
    }
    s
}

/// ONNX Reshape's dimensions: `0` keeps the input's, one `-1` is inferred.
fn reshaped(dims: &[usize], shape: &[i64]) -> Option<Vec<usize>> {
    let n: usize = dims.iter().product();
    let mut out: Vec<usize> = vec![];
    let mut infer = None;
    for (k, &s) in shape.iter().enumerate() {
        match s {
            0 => out.push(*dims.get(k)?),
            -1 if infer.is_none() => {
                infer = Some(k);
                out.push(1);
            }
            s if s > 0 => out.push(usize::try_from(s).ok()?),
            _ => return None,
        }
    }
    let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if let Some(k) = infer {
        if known == 0 || !n.is_multiple_of(known) {
            return None;
        }
        out[k] = n / known;
    }
    (out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) == Some(n)).then_some(out)
}

/// The constants joined along `axis` (same rank and data type, same other dimensions).
fn concat(parts: &[&Const], axis: usize) -> Option<Const> {
    let first = *parts.first()?;
    let rank = first.dims.len();
    if rank == 0 {
        // Scalars join as a vector (what exporters' shape lists do after Unsqueeze).
        let vectors: Vec<Const> = parts
            .iter()
            .map(|p| if p.dims.is_empty() { Const { dims: vec![1], ..(*p).clone() } } else { (*p).clone() })
            .collect();
        return concat(&vectors.iter().collect::<Vec<_>>(), 0);
    }
    let same = |p: &&Const| {
        p.dims.len() == rank
            && (0..rank).all(|k| k == axis || p.dims[k] == first.dims[k])
            && std::mem::discriminant(&p.data) == std::mem::discriminant(&first.data)
    };
    if !parts.iter().all(same) {
        return None;
    }
    let outer: usize = first.dims[..axis].iter().product();
    let inner: usize = first.dims[axis + 1..].iter().product();
    let mut dims = first.dims.clone();
    dims[axis] = parts.iter().map(|p| p.dims[axis]).sum();
    let data = match &first.data {
        Data::F32(_) => Data::F32(join(parts, outer, inner, axis, |p| p.f32().unwrap())),
        Data::I64(_) => Data::I64(join(parts, outer, inner, axis, |p| p.i64().unwrap())),
    };
    Some(Const { dims, data })
}

fn join<T: Copy>(parts: &[&Const], outer: usize, inner: usize, axis: usize, values: impl Fn(&Const) -> &[T]) -> Vec<T> {
    let mut out = vec![];
    for o in 0..outer {
        for p in parts {
            let chunk = p.dims[axis] * inner;
            out.extend_from_slice(&values(p)[o * chunk..(o + 1) * chunk]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn node(op: &str, attrs: Vec<proto::AttributeProto>) -> NodeProto {
        NodeProto { op_type: Some(op.into()), attribute: attrs, ..Default::default() }
    }

    fn ints(name: &str, v: &[i64]) -> proto::AttributeProto {
        proto::AttributeProto { name: Some(name.into()), ints: v.to_vec(), ..Default::default() }
    }

    #[test]
    fn a_transposed_weight_is_folded() {
        let w = Const { dims: vec![2, 3], data: Data::F32(vec![1., 2., 3., 4., 5., 6.]) };
        let t = fold(&node("Transpose", vec![ints("perm", &[1, 0])]), &[&w], LIMIT).unwrap().unwrap();
        assert_eq!(t, Const { dims: vec![3, 2], data: Data::F32(vec![1., 4., 2., 5., 3., 6.]) });
    }

    #[test]
    fn shapes_fold_through_unsqueeze_concat_and_reshape() {
        let batch = Const { dims: vec![], data: Data::I64(vec![BATCH]) };
        let u = fold(&node("Unsqueeze", vec![ints("axes", &[0])]), &[&batch], LIMIT).unwrap().unwrap();
        assert_eq!(u.dims, [1]);
        let c = fold(&node("Concat", vec![]), &[&u, &Const::i64s(vec![-1])], LIMIT).unwrap().unwrap();
        assert_eq!(c, Const::i64s(vec![BATCH, -1]));
        let x = Const { dims: vec![2, 3, 4], data: Data::F32(vec![0.0; 24]) };
        let r = fold(&node("Reshape", vec![]), &[&x, &Const::i64s(vec![0, -1])], LIMIT).unwrap().unwrap();
        assert_eq!(r.dims, [2, 12]);
        assert!(fold(&node("Reshape", vec![]), &[&x, &Const::i64s(vec![5, -1])], LIMIT).is_err());
    }

    #[test]
    fn concat_joins_along_an_inner_axis() {
        // Folding may not make more values than the budget: 100 copies of 2·10⁴ values.
        let big = Const { dims: vec![20_000], data: Data::F32(vec![0.0; 20_000]) };
        let copies: Vec<&Const> = vec![&big; 100];
        assert!(fold(&node("Concat", vec![]), &copies, LIMIT)
            .unwrap_err()
            .0
            .contains("more values than the model file"));
        let a = Const { dims: vec![2, 1], data: Data::I64(vec![1, 2]) };
        let b = Const { dims: vec![2, 2], data: Data::I64(vec![3, 4, 5, 6]) };
        let attr = proto::AttributeProto { name: Some("axis".into()), i: Some(1), ..Default::default() };
        let c = fold(&node("Concat", vec![attr]), &[&a, &b], LIMIT).unwrap().unwrap();
        assert_eq!(c, Const { dims: vec![2, 3], data: Data::I64(vec![1, 3, 4, 2, 5, 6]) });
    }
}
