//! A model's PyTorch twin as Python source (`percept export --format torch`): one
//! `nn.Module` whose submodules are named after Percept's parameter prefixes, so its
//! `state_dict` keys are Percept's parameter names and `load_state_dict(strict=True)` takes
//! the weights file as it is; `forward` follows the statements (`from:`, `add`, `concat`),
//! in evaluation semantics of each layer as PyTorch defines them. The loss is not part of
//! the module (a final `sigmoid` before binary cross-entropy is).

use percept_compiler::layers::{Activation, Layer};
use percept_compiler::shape::conv_padding;
use percept_compiler::spec::{ModelSpec, Ref};

fn tuple(v: &[usize]) -> String {
    format!("({}, {})", v[0], v[1])
}

fn py_float(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains(['.', 'e']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// `Lenet5` from `lenet5`, `ResNet8` stays as written after the first letter.
fn class_name(model: &str) -> String {
    model
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The Python source of the module.
pub fn module(spec: &ModelSpec, source: &str) -> String {
    let class = class_name(&spec.name);
    let mut init = vec![];
    let mut forward = vec![];
    let input = spec.input.name.clone().unwrap_or_else(|| "x".into());
    let var = |r: Ref| match r {
        Ref::Input => format!("v_{input}"),
        Ref::Layer(i) => format!("v{i}"),
    };
    for l in &spec.layers {
        let x = var(l.input);
        let y = var(Ref::Layer(l.index));
        let c = l.in_shape.first().copied().unwrap_or(0);
        let m = format!("self._modules[{:?}]", l.prefix);
        let mut module = |ctor: String| {
            init.push(format!("        self.add_module({:?}, {ctor})", l.prefix));
            format!("{m}({x})")
        };
        let expr = match &l.layer {
            Layer::Dense { units, bias } => module(format!("nn.Linear({c}, {units}, bias={})", py_bool(*bias))),
            Layer::Maxout { units, pieces } => {
                let lin = module(format!("nn.Linear({c}, {})", units * pieces));
                format!("{lin}.view({x}.shape[0], {units}, {pieces}).amax(2)")
            }
            Layer::Conv2d { filters, kernel, stride, padding, dilation, groups, bias } => {
                let p = conv_padding(*padding, *kernel, *dilation);
                module(format!(
                    "nn.Conv2d({c}, {filters}, {}, stride={}, padding={}, dilation={}, groups={groups}, bias={})",
                    tuple(kernel),
                    tuple(stride),
                    tuple(&p),
                    tuple(dilation),
                    py_bool(*bias)
                ))
            }
            Layer::ConvTranspose2d { filters, kernel, stride, padding, output_padding, dilation, groups, bias } => {
                module(format!(
                    "nn.ConvTranspose2d({c}, {filters}, {}, stride={}, padding={}, output_padding={}, groups={groups}, \
                     bias={}, dilation={})",
                    tuple(kernel),
                    tuple(stride),
                    tuple(padding),
                    tuple(output_padding),
                    py_bool(*bias),
                    tuple(dilation)
                ))
            }
            Layer::MaxPool { size, stride, padding } => {
                format!("F.max_pool2d({x}, {}, stride={}, padding={})", tuple(size), tuple(stride), tuple(padding))
            }
            Layer::AvgPool { size, stride, padding, count_include_pad } => format!(
                "F.avg_pool2d({x}, {}, stride={}, padding={}, count_include_pad={})",
                tuple(size),
                tuple(stride),
                tuple(padding),
                py_bool(*count_include_pad)
            ),
            Layer::BatchNorm { eps, momentum } => module(format!(
                "nn.BatchNorm{}d({c}, eps={}, momentum={})",
                if l.in_shape.len() == 1 { 1 } else { 2 },
                py_float(*eps),
                py_float(*momentum)
            )),
            Layer::Flatten => format!("{x}.flatten(1)"),
            Layer::GlobalAvgPool => format!("{x}.mean((2, 3))"),
            Layer::GlobalMaxPool => format!("{x}.amax((2, 3))"),
            Layer::Dropout { p } => format!("F.dropout({x}, {}, self.training)", py_float(*p)),
            Layer::Add { .. } => {
                std::iter::once(x.clone()).chain(l.others.iter().map(|&o| var(o))).collect::<Vec<_>>().join(" + ")
            }
            Layer::Concat { .. } => {
                let parts: Vec<String> = std::iter::once(x.clone()).chain(l.others.iter().map(|&o| var(o))).collect();
                format!("torch.cat([{}], 1)", parts.join(", "))
            }
            Layer::Upsample { factor, bilinear } => {
                let f = format!("({}.0, {}.0)", factor[0], factor[1]);
                if *bilinear {
                    format!("F.interpolate({x}, scale_factor={f}, mode=\"bilinear\", align_corners=False)")
                } else {
                    format!("F.interpolate({x}, scale_factor={f}, mode=\"nearest\")")
                }
            }
            Layer::Softmax => format!("torch.softmax({x}, 1)"),
            Layer::Activation(a) => match a {
                Activation::Relu => format!("torch.relu({x})"),
                Activation::Sigmoid => format!("torch.sigmoid({x})"),
                Activation::Tanh => format!("torch.tanh({x})"),
                Activation::LeakyRelu { slope } => format!("F.leaky_relu({x}, {})", py_float(*slope)),
                Activation::Elu { alpha } => format!("F.elu({x}, {})", py_float(*alpha)),
            },
        };
        forward.push(format!("        {y} = {expr}  # {}", l.text));
    }
    let last = spec.layers.last().map_or(format!("v_{input}"), |l| var(Ref::Layer(l.index)));
    format!(
        "\"\"\"The PyTorch twin of `{name}` ({source}), written by `percept export --format torch`.

Its state_dict keys are Percept's parameter names, so the weights load as they are:

    from safetensors.torch import load_file
    model = {class}()
    model.load_state_dict(load_file(\"weights.safetensors\"), strict=True)
    model.eval()  # batch norm with its running statistics, no dropout
\"\"\"
import torch
import torch.nn as nn
import torch.nn.functional as F


class {class}(nn.Module):
    def __init__(self):
        super().__init__()
        # Named after Percept's statements, so the parameters are `<name>.weight`, ...
{init}

    def forward(self, v_{input}):
{forward}
        return {last}
",
        name = spec.name,
        init = if init.is_empty() { "        pass".to_string() } else { init.join("\n") },
        forward = forward.join("\n"),
    )
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}
