//! Helpers shared by the compiler's integration tests.
#![allow(dead_code)]

use percept_compiler::build::{forward_graph, BuildOptions};
use percept_compiler::ir::Graph;
use percept_compiler::layers::Loss;
use percept_compiler::ops::SourceKind;
use percept_compiler::tensor::{Real, Tensor};
use percept_compiler::{parse_and_check, ModelSpec, SourceFile};
use std::collections::HashMap;

pub fn example(name: &str) -> String {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn spec(text: &str) -> ModelSpec {
    let src = SourceFile::new("test.nn", text);
    parse_and_check(&src).unwrap_or_else(|d| panic!("{}", d.render(&src)))
}

pub fn train_graph(spec: &ModelSpec, batch: usize) -> Graph {
    forward_graph(spec, batch, &BuildOptions::train()).expect("graph builds")
}

/// A small deterministic generator (xorshift64*), enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545f4914f6cdd1d)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn tensor<T: Real>(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor<T> {
        let n = shape.iter().product();
        Tensor::new(shape.to_vec(), (0..n).map(|_| T::from_f64(self.uniform(lo, hi))).collect())
    }
}

/// Random values for every source of a graph: data and parameters in [-1, 1), targets
/// that fit the loss, running variances positive.
pub fn random_feeds<T: Real>(g: &Graph, spec: &ModelSpec, rng: &mut Rng) -> HashMap<SourceKind, Tensor<T>> {
    let mut feeds = HashMap::new();
    for (kind, v) in g.sources() {
        let shape = g.shape(v).to_vec();
        let t = match kind {
            SourceKind::Target => match spec.loss.map(|l| l.loss) {
                Some(Loss::SoftmaxCrossEntropy) => {
                    let k = spec.output_shape()[0];
                    Tensor::new(shape.clone(), (0..shape[0]).map(|_| T::from_usize(rng.below(k))).collect())
                }
                Some(Loss::BinaryCrossEntropy) => {
                    let n = shape.iter().product();
                    Tensor::new(shape.clone(), (0..n).map(|_| T::from_usize(rng.below(2))).collect())
                }
                _ => rng.tensor(&shape, -1.0, 1.0),
            },
            SourceKind::State(name) if name.ends_with("running_var") => rng.tensor(&shape, 0.5, 1.5),
            _ => rng.tensor(&shape, -1.0, 1.0),
        };
        feeds.insert(kind.clone(), t);
    }
    feeds
}

/// A bias that reaches a batch norm through nothing but ops that pass a per-channel shift
/// on (pooling, flattening, adding) has a zero gradient: the normalization removes the
/// shift. Its computed value is then rounding noise of sums of far larger terms, which no
/// tolerance relative to the (zero) result can judge, so such layers are given no bias
/// (as they usually are in practice). Walks back from each batch norm over those ops to
/// the layer before them.
fn without_biases_before_batchnorm(lines: &mut [String]) {
    let weighted = ["conv2d(", "conv_transpose2d(", "dense("];
    let passes_shift = ["avgpool(", "maxpool(", "global_avgpool", "global_maxpool", "flatten", "add(", "upsample("];
    let norms: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains("batchnorm")).collect();
    for bn in norms {
        for line in lines[..bn].iter_mut().rev() {
            let op = line.split_once(": ").filter(|(l, _)| !l.contains('(')).map_or(line.as_str(), |(_, op)| op);
            if weighted.iter().any(|w| op.starts_with(w)) {
                if !line.contains("bias: false") {
                    line.insert_str(line.len() - 1, ", bias: false");
                }
                break;
            } else if !passes_shift.iter().any(|p| op.starts_with(p)) {
                break;
            }
        }
    }
}

/// A random valid network in the model language.
pub fn random_model(rng: &mut Rng) -> (String, usize) {
    let mut lines = vec![];
    let image = rng.below(3) > 0;
    let mut shape: Vec<usize> =
        if image { vec![1 + rng.below(3), 3 + rng.below(7), 3 + rng.below(7)] } else { vec![1 + rng.below(12)] };
    lines.push(format!("input x: [{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")));
    let mut named: Vec<(String, Vec<usize>)> = vec![("x".into(), shape.clone())];
    let acts = ["relu", "sigmoid", "tanh", "leaky_relu", "leaky_relu(slope: 0.2)", "elu", "elu(alpha: 0.5)"];
    for i in 0..1 + rng.below(6) {
        let same: Vec<&String> = named.iter().filter(|(_, s)| *s == shape).map(|(n, _)| n).collect();
        let stmt = if shape.len() == 3 {
            let (c, h, w) = (shape[0], shape[1], shape[2]);
            match rng.below(10) {
                0..=2 => {
                    // Groups (a divisor of the channels, sometimes all: depthwise) and
                    // dilations now and then.
                    let groups = match rng.below(4) {
                        0 => (1..=c).filter(|g| c % g == 0).nth(rng.below(c)).unwrap_or(1),
                        1 => c,
                        _ => 1,
                    };
                    let f = groups * (1 + rng.below(3));
                    let (kh, kw) = (1 + rng.below(3.min(h + 2)), 1 + rng.below(3.min(w + 2)));
                    let (sh, sw) = (1 + rng.below(2), 1 + rng.below(2));
                    let (dh, dw) = if rng.below(3) == 0 { (1 + rng.below(2), 1 + rng.below(3)) } else { (1, 1) };
                    let extras = format!(
                        "{}{}",
                        if groups > 1 { format!(", groups: {groups}") } else { String::new() },
                        if (dh, dw) != (1, 1) { format!(", dilation: [{dh}, {dw}]") } else { String::new() }
                    );
                    let bias = if rng.below(4) == 0 { ", bias: false" } else { "" };
                    if rng.below(4) == 0 {
                        // A transposed convolution: the output grows by the stride.
                        let (ph, pw) = (rng.below(2), rng.below(2));
                        let (qh, qw) = (rng.below(sh), rng.below(sw));
                        let out = |n: usize, k: usize, s: usize, p: usize, q: usize, d: usize| {
                            ((n - 1) * s + (k - 1) * d + q + 1).checked_sub(2 * p).filter(|&o| o > 0)
                        };
                        let (Some(ho), Some(wo)) = (out(h, kh, sh, ph, qh, dh), out(w, kw, sw, pw, qw, dw)) else {
                            continue;
                        };
                        shape = vec![f, ho, wo];
                        format!(
                            "conv_transpose2d({f}, kernel: [{kh}, {kw}], stride: [{sh}, {sw}], padding: [{ph}, {pw}], \
                             output_padding: [{qh}, {qw}]{extras}{bias})"
                        )
                    } else {
                        let (eh, ew) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
                        let same_pad = eh % 2 == 1 && ew % 2 == 1 && rng.below(3) == 0;
                        let (ph, pw) =
                            if same_pad { ((eh - 1) / 2, (ew - 1) / 2) } else { (rng.below(2), rng.below(2)) };
                        if h + 2 * ph < eh || w + 2 * pw < ew {
                            continue;
                        }
                        let pad = if same_pad { "same".to_string() } else { format!("[{ph}, {pw}]") };
                        shape = vec![f, (h + 2 * ph - eh) / sh + 1, (w + 2 * pw - ew) / sw + 1];
                        format!("conv2d({f}, kernel: [{kh}, {kw}], stride: [{sh}, {sw}], padding: {pad}{extras}{bias})")
                    }
                }
                3 => {
                    let k = 1 + rng.below(3.min(h).min(w));
                    let s = 1 + rng.below(k);
                    // Padding now and then, at most half the window.
                    let p = if rng.below(3) == 0 { rng.below(k / 2 + 1) } else { 0 };
                    shape = vec![c, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1];
                    let padding = if p > 0 { format!(", padding: {p}") } else { String::new() };
                    match rng.below(3) {
                        0 => format!("maxpool({k}, stride: {s}{padding})"),
                        1 => format!("avgpool({k}, stride: {s}{padding})"),
                        _ => format!("avgpool({k}, stride: {s}{padding}, count_include_pad: false)"),
                    }
                }
                4 => "batchnorm(eps: 0.001)".into(),
                5 if !same.is_empty() && rng.below(2) == 0 => format!("add({})", same[rng.below(same.len())]),
                5 => {
                    // Concatenation with an earlier output of the same height and width.
                    let joinable: Vec<(String, usize)> = named
                        .iter()
                        .filter(|(_, s)| s.len() == 3 && s[1..] == shape[1..])
                        .map(|(n, s)| (n.clone(), s[0]))
                        .collect();
                    match joinable.len() {
                        0 => acts[rng.below(acts.len())].into(),
                        n => {
                            let (name, channels) = joinable[rng.below(n)].clone();
                            shape[0] += channels;
                            format!("concat({name})")
                        }
                    }
                }
                6 => {
                    shape = vec![c];
                    if rng.below(2) == 0 { "global_avgpool" } else { "global_maxpool" }.into()
                }
                7 => {
                    shape = vec![c * h * w];
                    "flatten".into()
                }
                8 => "dropout(p: 0.3)".into(),
                _ => acts[rng.below(acts.len())].into(),
            }
        } else {
            let f = shape[0];
            match rng.below(8) {
                0..=2 => {
                    let u = 1 + rng.below(10);
                    shape = vec![u];
                    format!("dense({u})")
                }
                3 => {
                    let (u, p) = (1 + rng.below(5), 1 + rng.below(3));
                    shape = vec![u];
                    format!("maxout({u}, pieces: {p})")
                }
                4 => "batchnorm(eps: 0.001)".into(),
                5 if !same.is_empty() && rng.below(2) == 0 => format!("add({})", same[rng.below(same.len())]),
                5 => {
                    let flat: Vec<(String, usize)> =
                        named.iter().filter(|(_, s)| s.len() == 1).map(|(n, s)| (n.clone(), s[0])).collect();
                    match flat.len() {
                        0 => acts[rng.below(acts.len())].into(),
                        n => {
                            let (name, features) = flat[rng.below(n)].clone();
                            shape = vec![f + features];
                            format!("concat({name})")
                        }
                    }
                }
                6 => "dropout(p: 0.5)".into(),
                _ => {
                    let _ = f;
                    acts[rng.below(acts.len())].into()
                }
            }
        };
        if rng.below(3) == 0 {
            let name = format!("s{i}");
            named.push((name.clone(), shape.clone()));
            lines.push(format!("{name}: {stmt}"));
        } else {
            lines.push(stmt);
        }
    }
    if shape.len() == 3 {
        lines.push("flatten".into());
    }
    let k = 2 + rng.below(4);
    match rng.below(3) {
        0 => {
            lines.push(format!("dense({k})"));
            lines.push("loss softmax_cross_entropy".into());
        }
        1 => {
            lines.push(format!("dense({})", k - 1));
            lines.push("sigmoid".into());
            lines.push("loss binary_cross_entropy".into());
        }
        _ => {
            lines.push(format!("dense({k})"));
            if rng.below(2) == 0 {
                lines.push("softmax".into());
            }
            lines.push("loss mse".into());
        }
    }
    without_biases_before_batchnorm(&mut lines);
    let has_bn = lines.iter().any(|l| l.contains("batchnorm"));
    let batch = if has_bn { 2 + rng.below(4) } else { 1 + rng.below(5) };
    (format!("model gen {{\n    {}\n}}\n", lines.join("\n    ")), batch)
}
