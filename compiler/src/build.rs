//! Graph building: [`ModelSpec`] → forward [`Graph`] for one batch size and mode.
//!
//! Each layer expands into primitive ops (`dense` → matmul + bias_add, `batchnorm` in
//! training → batchnorm_train + two running_update, ...). The loss, if asked for, is
//! appended; a final `sigmoid` before `binary_cross_entropy` is folded into the stable
//! with-logits loss (the sigmoid node stays, as the prediction).

use crate::diag::Diagnostic;
use crate::ir::{Graph, Mode, Origin, OutputRole, Phase, ValueId};
use crate::layers::{Activation, Layer, Loss};
use crate::ops::{self, Op, SourceKind};
use crate::spec::{LayerSpec, ModelSpec, Ref};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    pub mode: Mode,
    /// Append the loss (needs targets). Ignored for a model without a loss.
    pub loss: bool,
    /// Layer indices whose outputs become `Activation` outputs (feature extraction).
    pub expose: Vec<usize>,
}

impl BuildOptions {
    pub fn train() -> BuildOptions {
        BuildOptions { mode: Mode::Train, loss: true, expose: vec![] }
    }

    pub fn eval() -> BuildOptions {
        BuildOptions { mode: Mode::Eval, loss: true, expose: vec![] }
    }

    pub fn inference() -> BuildOptions {
        BuildOptions { mode: Mode::Eval, loss: false, expose: vec![] }
    }
}

/// The shape of the targets a loss takes for a batch.
pub fn target_shape(spec: &ModelSpec, batch: usize) -> Option<Vec<usize>> {
    let loss = spec.loss?;
    Some(match loss.loss {
        Loss::SoftmaxCrossEntropy => vec![batch],
        // mse compares every value of an output of any shape, flattened per sample.
        Loss::BinaryCrossEntropy | Loss::Mse => vec![batch, spec.output_shape().iter().product()],
    })
}

pub fn forward_graph(spec: &ModelSpec, batch: usize, opts: &BuildOptions) -> Result<Graph, Diagnostic> {
    let mut g = Graph::new(&spec.name, batch, opts.mode);
    let src_origin = Origin { tag: String::new(), phase: Phase::Forward };
    let with_loss = opts.loss && spec.loss.is_some();
    let source = |g: &mut Graph, kind: SourceKind, shape: Vec<usize>| -> ValueId {
        g.push(Op::Source(ops::Source { kind, shape }), &[], src_origin.clone()).expect("sources have no inputs")[0]
    };
    let data = source(&mut g, SourceKind::Data, batched(batch, &spec.input.shape));
    let target = match target_shape(spec, batch) {
        Some(shape) if with_loss => Some(source(&mut g, SourceKind::Target, shape)),
        _ => None,
    };
    // Parameters and running statistics, in statement order.
    let mut param_ids = std::collections::HashMap::new();
    for p in spec.params() {
        let kind = match p.role {
            r if r.trainable() => SourceKind::Param(p.name.clone()),
            r if r.running() => SourceKind::State(p.name.clone()),
            _ => continue,
        };
        param_ids.insert(p.name.clone(), source(&mut g, kind, p.shape.clone()));
    }

    let mut outs: Vec<ValueId> = Vec::with_capacity(spec.layers.len());
    for l in &spec.layers {
        let x = match l.input {
            Ref::Input => data,
            Ref::Layer(i) => outs[i],
        };
        let origin = Origin { tag: l.tag(), phase: Phase::Forward };
        let mut b = LayerBuilder { g: &mut g, l, origin, params: &param_ids };
        let y = b.expand(x, opts.mode, |s| match s {
            Ref::Input => data,
            Ref::Layer(i) => outs[i],
        })?;
        outs.push(y);
        if opts.expose.contains(&l.index) {
            g.outputs.push((OutputRole::Activation(l.prefix.clone()), y));
        }
    }
    let prediction = *outs.last().expect("a checked model has layers");
    g.outputs.push((OutputRole::Prediction, prediction));

    if let (Some(loss), Some(t)) = (spec.loss.filter(|_| with_loss), target) {
        let origin = Origin { tag: "loss".into(), phase: Phase::Loss };
        let op: Op = match loss.loss {
            Loss::SoftmaxCrossEntropy => ops::SoftmaxCrossEntropy { samples: None }.into(),
            Loss::BinaryCrossEntropy => ops::BceWithLogits { samples: None }.into(),
            Loss::Mse => ops::Mse { samples: None }.into(),
        };
        let input = match loss.loss {
            // The checker guarantees a final sigmoid: the loss reads its input (logits).
            Loss::BinaryCrossEntropy => g.producer(prediction).inputs[0],
            // An image output (a reconstruction) is compared as [batch, values]: a
            // reshape, which aliases.
            Loss::Mse if spec.output_shape().len() > 1 => {
                let shape = vec![g.batch, spec.output_shape().iter().product()];
                g.push(ops::Reshape { shape }.into(), &[prediction], origin.clone())
                    .map_err(|e| Diagnostic::new(loss.span, e.to_string()))?[0]
            }
            _ => prediction,
        };
        let v = g.push(op, &[input, t], origin).map_err(|e| Diagnostic::new(loss.span, e.to_string()))?[0];
        g.outputs.push((OutputRole::Loss, v));
    }
    Ok(g)
}

fn batched(batch: usize, shape: &[usize]) -> Vec<usize> {
    std::iter::once(batch).chain(shape.iter().copied()).collect()
}

struct LayerBuilder<'a> {
    g: &'a mut Graph,
    l: &'a LayerSpec,
    origin: Origin,
    params: &'a std::collections::HashMap<String, ValueId>,
}

impl LayerBuilder<'_> {
    fn op(&mut self, op: impl Into<Op>, inputs: &[ValueId]) -> Result<Vec<ValueId>, Diagnostic> {
        self.g
            .push(op.into(), inputs, self.origin.clone())
            .map_err(|e| Diagnostic::new(self.l.span, format!("internal error while building the graph: {e}")))
    }

    fn op1(&mut self, op: impl Into<Op>, inputs: &[ValueId]) -> Result<ValueId, Diagnostic> {
        Ok(self.op(op, inputs)?[0])
    }

    fn param(&self, suffix: &str) -> Option<ValueId> {
        self.params.get(&format!("{}.{suffix}", self.l.prefix)).copied()
    }

    fn bias(&mut self, y: ValueId) -> Result<ValueId, Diagnostic> {
        match self.param("bias") {
            Some(b) => self.op1(ops::BiasAdd, &[y, b]),
            None => Ok(y),
        }
    }

    fn expand(&mut self, x: ValueId, mode: Mode, lookup: impl Fn(Ref) -> ValueId) -> Result<ValueId, Diagnostic> {
        let w = self.param("weight");
        match &self.l.layer {
            Layer::Dense { .. } => {
                let y = self.op1(ops::MatMul { trans_a: false, trans_b: true }, &[x, w.unwrap()])?;
                self.bias(y)
            }
            Layer::Maxout { pieces, .. } => {
                let z = self.op1(ops::MatMul { trans_a: false, trans_b: true }, &[x, w.unwrap()])?;
                let z = self.bias(z)?;
                self.op1(ops::MaxoutReduce { pieces: *pieces }, &[z])
            }
            Layer::Conv2d { kernel, stride, padding, dilation, groups, .. } => {
                let padding = crate::shape::conv_padding(*padding, *kernel, *dilation);
                let geom = ops::ConvGeom { stride: *stride, padding, dilation: *dilation, groups: *groups };
                let y = self.op1(ops::Conv2d { geom }, &[x, w.unwrap()])?;
                self.bias(y)
            }
            // The input gradient of the convolution that maps the output back to x.
            Layer::ConvTranspose2d { kernel, stride, padding, output_padding, dilation, groups, .. } => {
                let geom = ops::ConvGeom { stride: *stride, padding: *padding, dilation: *dilation, groups: *groups };
                let xs = self.g.shape(x);
                let out = |a: usize| {
                    crate::shape::transposed_out(
                        xs[2 + a],
                        kernel[a],
                        stride[a],
                        padding[a],
                        output_padding[a],
                        dilation[a],
                    )
                };
                let (Some(ho), Some(wo)) = (out(0), out(1)) else {
                    return Err(Diagnostic::new(self.l.span, "conv_transpose2d's padding removes its whole output"));
                };
                let input_hw = [ho, wo];
                let y = self.op1(ops::Conv2dGradInput { geom, input_hw }, &[x, w.unwrap()])?;
                self.bias(y)
            }
            Layer::MaxPool { size, stride, padding } => {
                let geom = ops::PoolGeom { size: *size, stride: *stride, padding: *padding };
                self.op1(ops::MaxPool { geom }, &[x])
            }
            Layer::AvgPool { size, stride, padding, count_include_pad } => {
                let geom = ops::PoolGeom { size: *size, stride: *stride, padding: *padding };
                self.op1(ops::AvgPool { geom, include_pad: *count_include_pad }, &[x])
            }
            Layer::BatchNorm { eps, momentum } => {
                let (gamma, beta) = (w.unwrap(), self.param("bias").unwrap());
                let (rm, rv) = (self.param("running_mean").unwrap(), self.param("running_var").unwrap());
                match mode {
                    Mode::Eval => self.op1(ops::BatchNormEval { eps: *eps }, &[x, rm, rv, gamma, beta]),
                    Mode::Train => {
                        let (n, _, inner) = ops::batchnorm_layout(self.g.shape(x));
                        let count = n * inner;
                        if count < 2 {
                            return Err(Diagnostic::new(
                                self.l.span,
                                format!("batchnorm in training needs more than one value per channel; batch size {n} gives {count}"),
                            )
                            .with_label("this batchnorm")
                            .with_help("train with a batch of 2 or more (`--drop-last` skips a last batch of 1)"));
                        }
                        let partials = self.op1(ops::BatchNormStats, &[x])?;
                        let r = self.op(ops::BatchNormTrain { eps: *eps }, &[x, partials, gamma, beta])?;
                        let corr = count as f64 / (count as f64 - 1.0);
                        let m = *momentum;
                        let new_rm = self.op1(ops::RunningUpdate { momentum: m, correction: 1.0 }, &[rm, r[1]])?;
                        let new_rv = self.op1(ops::RunningUpdate { momentum: m, correction: corr }, &[rv, r[2]])?;
                        let prefix = &self.l.prefix;
                        self.g.outputs.push((OutputRole::State(format!("{prefix}.running_mean")), new_rm));
                        self.g.outputs.push((OutputRole::State(format!("{prefix}.running_var")), new_rv));
                        Ok(r[0])
                    }
                }
            }
            Layer::Flatten if self.l.in_shape.len() == 1 => Ok(x),
            Layer::Flatten => {
                let shape = batched(self.g.batch, &self.l.out_shape);
                self.op1(ops::Reshape { shape }, &[x])
            }
            Layer::GlobalAvgPool => self.op1(ops::GlobalAvgPool, &[x]),
            Layer::Upsample { factor, bilinear: false } => self.op1(ops::Upsample { factor: *factor }, &[x]),
            Layer::Upsample { factor, bilinear: true } => self.op1(ops::UpsampleBilinear { factor: *factor }, &[x]),
            Layer::GlobalMaxPool => self.op1(ops::GlobalMaxPool, &[x]),
            Layer::Dropout { p } => match mode {
                Mode::Eval => Ok(x),
                Mode::Train if *p == 0.0 => Ok(x),
                Mode::Train => self.op1(ops::Dropout { p: *p, stream: self.l.index as u64 }, &[x]),
            },
            // Left to right: ((prev + a) + b) + ...
            Layer::Add { .. } => {
                let mut sum = x;
                for &o in &self.l.others {
                    sum = self.op1(ops::Add, &[sum, lookup(o)])?;
                }
                Ok(sum)
            }
            // torch.cat([prev, a, b, ...], dim=1)
            Layer::Concat { .. } => {
                let ins: Vec<_> = std::iter::once(x).chain(self.l.others.iter().map(|&o| lookup(o))).collect();
                self.op1(ops::Concat, &ins)
            }
            Layer::Softmax => self.op1(ops::Softmax, &[x]),
            Layer::Activation(a) => self.op1(ops::Act { act: *a }, &[x]),
        }
    }
}

/// Whether a layer is the final sigmoid folded into binary cross-entropy.
pub fn is_folded_sigmoid(spec: &ModelSpec, l: &LayerSpec) -> bool {
    matches!(spec.loss, Some(ls) if ls.loss == Loss::BinaryCrossEntropy)
        && l.index + 1 == spec.layers.len()
        && l.layer == Layer::Activation(Activation::Sigmoid)
}

/// Parameters (by name) that train, in statement order.
pub fn trainable_names(spec: &ModelSpec) -> Vec<String> {
    spec.params().filter(|p| p.role.trainable()).map(|p| p.name.clone()).collect()
}
