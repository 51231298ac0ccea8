//! Percept → ONNX: the evaluation-mode forward graph of a checked model (batch norm with
//! its running statistics, dropout removed, no loss; a final `sigmoid` before binary
//! cross-entropy kept) as an ONNX `ModelProto`, one node or a few per statement, with the
//! weights as initializers under Percept's names. The input and output keep the model's
//! names (`input` and `output` when it has none).

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use percept_compiler::layers::{Activation, Layer};
use percept_compiler::shape::conv_padding;
use percept_compiler::spec::{ModelSpec, Ref};
use percept_runtime::tensorfile::TensorFile;

/// The opsets written: 13 to 21 (`ReduceMax` takes its axes as an input from 18 on).
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// The batch dimension of the exported input and output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    Fixed(usize),
    /// A symbolic `N`.
    Dynamic,
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(i),
        ..Default::default()
    }
}

/// A sliding window's attributes: its size, strides, and the same padding on both sides.
fn window(kernel: &[usize], stride: &[usize], padding: [usize; 2]) -> Vec<AttributeProto> {
    vec![
        attr_ints("kernel_shape", kernel),
        attr_ints("strides", stride),
        attr_ints("pads", &[padding[0], padding[1], padding[0], padding[1]]),
    ]
}

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(f as f32),
        ..Default::default()
    }
}

fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(s.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn value_info(name: &str, batch: Batch, shape: &[usize]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let first = match batch {
        Batch::Fixed(n) => Value::DimValue(n as i64),
        Batch::Dynamic => Value::DimParam("N".into()),
    };
    let dim = std::iter::once(first)
        .chain(shape.iter().map(|&d| Value::DimValue(d as i64)))
        .map(|v| Dimension { value: Some(v), ..Default::default() })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn i64_tensor(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![data.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    fresh: usize,
}

impl Graph {
    /// Add a node; returns its output's name.
    fn node(&mut self, op: &str, inputs: &[String], attrs: Vec<AttributeProto>, tag: &str) -> String {
        self.fresh += 1;
        let out = format!("{tag}/{op}_{}", self.fresh);
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(out.clone()),
            input: inputs.to_vec(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }
}

/// The model as ONNX, at `opset`, for `batch`.
pub fn export(spec: &ModelSpec, weights: &TensorFile, batch: Batch, opset: i64) -> Result<ModelProto, String> {
    if !OPSETS.contains(&opset) {
        return Err(format!("--opset {opset}: Percept writes opsets {} to {}", OPSETS.start(), OPSETS.end()));
    }
    let mut g = Graph { nodes: vec![], initializers: vec![], fresh: 0 };
    let param = |g: &mut Graph, name: &str| -> Result<String, String> {
        let t = weights.get(name).ok_or_else(|| format!("the weights have no `{name}`"))?;
        let data = t.as_f32().ok_or_else(|| format!("`{name}` is not float32"))?;
        g.initializers.push(f32_tensor(name, &t.shape, data));
        Ok(name.to_string())
    };
    // A layer's inputs: x, its weight and, with `bias`, its bias.
    let weighted = |g: &mut Graph, x: String, prefix: &str, bias: bool| -> Result<Vec<String>, String> {
        let mut ins = vec![x, param(g, &format!("{prefix}.weight"))?];
        if bias {
            ins.push(param(g, &format!("{prefix}.bias"))?);
        }
        Ok(ins)
    };
    let input_name = spec.input.name.clone().unwrap_or_else(|| "input".into());
    let mut outs: Vec<String> = vec![];
    let value = |outs: &Vec<String>, r: Ref| match r {
        Ref::Input => input_name.clone(),
        Ref::Layer(i) => outs[i].clone(),
    };
    for l in &spec.layers {
        let x = value(&outs, l.input);
        let tag = l.tag();
        let p = |s: &str| format!("{}.{s}", l.prefix);
        let y = match &l.layer {
            Layer::Dense { bias, .. } => {
                let ins = weighted(&mut g, x, &l.prefix, *bias)?;
                g.node("Gemm", &ins, vec![attr_int("transB", 1)], &tag)
            }
            Layer::Maxout { units, pieces } => {
                let ins = weighted(&mut g, x, &l.prefix, true)?;
                let z = g.node("Gemm", &ins, vec![attr_int("transB", 1)], &tag);
                let shape = format!("{tag}/maxout_shape");
                g.initializers.push(i64_tensor(&shape, &[0, *units as i64, *pieces as i64]));
                let r = g.node("Reshape", &[z, shape], vec![], &tag);
                if opset >= 18 {
                    let axes = format!("{tag}/maxout_axes");
                    g.initializers.push(i64_tensor(&axes, &[2]));
                    g.node("ReduceMax", &[r, axes], vec![attr_int("keepdims", 0)], &tag)
                } else {
                    g.node("ReduceMax", &[r], vec![attr_ints("axes", &[2]), attr_int("keepdims", 0)], &tag)
                }
            }
            Layer::Conv2d { kernel, stride, padding, dilation, groups, bias, .. } => {
                let ins = weighted(&mut g, x, &l.prefix, *bias)?;
                let mut attrs = window(kernel, stride, conv_padding(*padding, *kernel, *dilation));
                attrs.extend([attr_ints("dilations", dilation), attr_int("group", *groups as i64)]);
                g.node("Conv", &ins, attrs, &tag)
            }
            Layer::ConvTranspose2d { kernel, stride, padding, output_padding, dilation, groups, bias, .. } => {
                let ins = weighted(&mut g, x, &l.prefix, *bias)?;
                let mut attrs = window(kernel, stride, *padding);
                attrs.extend([
                    attr_ints("output_padding", output_padding),
                    attr_ints("dilations", dilation),
                    attr_int("group", *groups as i64),
                ]);
                g.node("ConvTranspose", &ins, attrs, &tag)
            }
            Layer::MaxPool { size, stride, padding } => g.node("MaxPool", &[x], window(size, stride, *padding), &tag),
            Layer::AvgPool { size, stride, padding, count_include_pad } => {
                let mut attrs = window(size, stride, *padding);
                attrs.push(attr_int("count_include_pad", i64::from(*count_include_pad)));
                g.node("AveragePool", &[x], attrs, &tag)
            }
            Layer::BatchNorm { eps, momentum } => {
                let mut ins = vec![x];
                for s in ["weight", "bias", "running_mean", "running_var"] {
                    ins.push(param(&mut g, &p(s))?);
                }
                // ONNX's momentum weighs the running value; Percept's the batch.
                let attrs = vec![attr_float("epsilon", *eps), attr_float("momentum", 1.0 - momentum)];
                g.node("BatchNormalization", &ins, attrs, &tag)
            }
            Layer::Flatten if l.in_shape.len() == 1 => x,
            Layer::Flatten => g.node("Flatten", &[x], vec![attr_int("axis", 1)], &tag),
            Layer::GlobalAvgPool | Layer::GlobalMaxPool => {
                let op = if matches!(l.layer, Layer::GlobalAvgPool) { "GlobalAveragePool" } else { "GlobalMaxPool" };
                let pooled = g.node(op, &[x], vec![], &tag);
                g.node("Flatten", &[pooled], vec![attr_int("axis", 1)], &tag)
            }
            Layer::Dropout { .. } => x,
            Layer::Add { .. } => {
                let mut sum = x;
                for &o in &l.others {
                    sum = g.node("Add", &[sum, value(&outs, o)], vec![], &tag);
                }
                sum
            }
            Layer::Concat { .. } => {
                let ins: Vec<String> = std::iter::once(x).chain(l.others.iter().map(|&o| value(&outs, o))).collect();
                g.node("Concat", &ins, vec![attr_int("axis", 1)], &tag)
            }
            Layer::Upsample { factor, bilinear } => {
                let scales = format!("{tag}/scales");
                g.initializers.push(TensorProto {
                    name: Some(scales.clone()),
                    dims: vec![4],
                    data_type: Some(DataType::Float as i32),
                    float_data: vec![1.0, 1.0, factor[0] as f32, factor[1] as f32],
                    ..Default::default()
                });
                // Nearest: output o reads input ⌊o/f⌋; bilinear: PyTorch's align_corners=False.
                let attrs = if *bilinear {
                    vec![attr_string("mode", "linear"), attr_string("coordinate_transformation_mode", "half_pixel")]
                } else {
                    vec![
                        attr_string("mode", "nearest"),
                        attr_string("coordinate_transformation_mode", "asymmetric"),
                        attr_string("nearest_mode", "floor"),
                    ]
                };
                g.node("Resize", &[x, String::new(), scales], attrs, &tag)
            }
            Layer::Softmax => g.node("Softmax", &[x], vec![attr_int("axis", 1)], &tag),
            Layer::Activation(a) => match a {
                Activation::Relu => g.node("Relu", &[x], vec![], &tag),
                Activation::Sigmoid => g.node("Sigmoid", &[x], vec![], &tag),
                Activation::Tanh => g.node("Tanh", &[x], vec![], &tag),
                Activation::LeakyRelu { slope } => g.node("LeakyRelu", &[x], vec![attr_float("alpha", *slope)], &tag),
                Activation::Elu { alpha } => g.node("Elu", &[x], vec![attr_float("alpha", *alpha)], &tag),
            },
        };
        outs.push(y);
    }
    // The output keeps the last statement's label, or is `output`; an identity names it
    // when the last value is another's (a dropout or flatten of a flat input at the end).
    let output_name = spec.layers.last().and_then(|l| l.label.clone()).unwrap_or_else(|| "output".into());
    let last = outs.last().cloned().unwrap_or_else(|| input_name.clone());
    g.nodes.push(NodeProto {
        op_type: Some("Identity".into()),
        name: Some("output/Identity".into()),
        input: vec![last],
        output: vec![output_name.clone()],
        ..Default::default()
    });
    let graph = GraphProto {
        name: Some(spec.name.clone()),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![value_info(&input_name, batch, &spec.input.shape)],
        output: vec![value_info(&output_name, batch, spec.output_shape())],
        ..Default::default()
    };
    Ok(ModelProto {
        // The IR version of the ONNX release that introduced the opset: 8 (opsets ≤ 17),
        // 9 (18, 19), 10 (20, 21).
        ir_version: Some(match opset {
            ..=17 => 8,
            18 | 19 => 9,
            _ => 10,
        }),
        producer_name: Some("percept".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(graph),
        ..Default::default()
    })
}
