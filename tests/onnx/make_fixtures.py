#!/usr/bin/env python3
"""ONNX fixtures for tests/onnx_import.rs (run once by hand with torch, onnx and
onnxruntime; CI does not need them).

For each model below, exports `tests/onnx/<name>.onnx` from a PyTorch module (seed 0)
with torch.onnx.export — the TorchScript-based exporter (dynamo=False) at opset 17, or
the dynamo-based one at opset 18 for the `_dynamo` names — and writes
`<name>.io.safetensors`:
  input    a batch of 3 random inputs (seed 1)
  output   onnxruntime's outputs for it (checked against the module's own)

  lenet5, resblock     tests/golden/make_golden.py's modules: same seed, so the same
                       initial weights as the golden files (tests/golden.rs trains the
                       imported models against those)
  branches             branches, padded pooling, a dilated grouped and a transposed conv
  patterns             what exporters write for F.pad, x @ w.t() + b, torch.maximum of two
                       linears, .view + amax (maxout), x.mean((2, 3)), interpolate, batch
                       norm after an add and after a linear — also exported
                       without constant folding (`patterns_nofold`: the weight transforms
                       and the pads arithmetic stay in the graph) and by dynamo
  patterns_opset11/21  the same at the ends of the opset range (TorchScript at 11, dynamo at 21)
  patterns_log         the same ending in log_softmax (no outputs file: Percept imports it
                       only with --loss)
  ex_<example>         every model of examples/ as its PyTorch twin (`percept export
                       --format torch`, PyTorch's default initialization), from both
                       exporters (`ex_<example>_dynamo`; not the autoencoder, whose
                       `code` submodule torch.export cannot trace)
`unsupported.onnx` uses GELU and a cumulative sum, which Percept does not import.

    python3 tests/onnx/make_fixtures.py [PERCEPT]   (default: target/release/percept)
"""
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(__file__).resolve().parent
ROOT = OUT.parents[1]
sys.path.insert(0, str(ROOT / "tests/golden"))
import make_golden  # noqa: E402  (the golden modules: one definition of each)
from make_node_tests import save_safetensors  # noqa: E402


class Branches(nn.Module):
    """A residual block with a projection shortcut, a concatenation, batch norm in
    evaluation mode, leaky relu (ONNX's default slope), padded pooling both ways, global
    pooling, `x.view(x.size(0), -1)` and a final softmax."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.main = nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False)
        self.short = nn.Conv2d(8, 8, 1, stride=2)
        self.side = nn.Conv2d(8, 4, 3, padding=2, dilation=2, groups=4)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.up = nn.ConvTranspose2d(12, 6, 2, stride=2)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        s = nn.functional.leaky_relu(self.bn(self.stem(x)))
        y = torch.relu(self.main(s) + self.short(s))
        z = torch.cat([self.pool(y), self.avg(self.side(y))], dim=1)
        z = torch.tanh(self.up(z))
        z = nn.functional.adaptive_avg_pool2d(z, 1)
        return torch.softmax(self.head(z.view(z.size(0), -1)), dim=1)


class Patterns(nn.Module):
    """Exporter patterns the importer folds into Percept's layers."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3)  # after F.pad: its padding
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)  # after an add: not fused into a convolution
        self.w = nn.Parameter(torch.randn(6, 8) * 0.3)  # x @ w.t() + b: MatMul + Add
        self.b = nn.Parameter(torch.randn(6) * 0.1)
        self.l1 = nn.Linear(6, 5)
        self.l2 = nn.Linear(6, 5)  # the max of two linears: maxout
        self.mo = nn.Linear(5, 3 * 2)  # .view + amax: maxout
        self.bn1 = nn.BatchNorm1d(3)
        self.head = nn.Linear(3, 4)

    def logits(self, x):
        y = self.c1(F.pad(x, (1, 1, 1, 1)))
        y = torch.relu(self.bn(y + self.c2(y)))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = F.avg_pool2d(F.pad(y, (1, 1, 1, 1)), 3, stride=2)
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        y = torch.cat([y.mean((2, 3)), y.amax((2, 3))], dim=1)
        y = y @ self.w.t() + self.b
        y = torch.maximum(self.l1(y), self.l2(y))
        y = self.mo(y).view(y.shape[0], 3, 2).amax(2)
        return self.head(self.bn1(y))

    def forward(self, x):
        return torch.softmax(self.logits(x), dim=1)


class LogPatterns(Patterns):
    """The same ending in log_softmax, which Percept imports only as the loss (--loss)."""

    def forward(self, x):
        return torch.log_softmax(self.logits(x), dim=1)


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.cumsum(nn.functional.gelu(self.fc(x)), dim=1)


TS = {"dynamo": False, "opset_version": 17}
DYNAMO = {"dynamo": True, "opset_version": 18}


def twin(percept, example):
    """The PyTorch twin of examples/<example>.nn and its input shape."""
    work = Path(tempfile.mkdtemp())
    py = work / f"{example}.py"
    subprocess.run([percept, "export", str(ROOT / f"examples/{example}.nn"), "--format", "torch", "--out", str(py)],
                   check=True, capture_output=True)
    spec = importlib.util.spec_from_file_location(example, py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = next(v for k, v in vars(module).items()
               if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == example)
    text = (ROOT / f"examples/{example}.nn").read_text()
    shape = next(line for line in text.splitlines() if line.strip().startswith("input"))
    dims = [int(d) for d in shape.split("[")[1].split("]")[0].split(",")]
    return cls, tuple(dims)


def models(percept):
    yield "lenet5", make_golden.lenet5, (1, 28, 28), TS
    yield "lenet5_dynamo", make_golden.lenet5, (1, 28, 28), DYNAMO
    yield "resblock", make_golden.resblock, (1, 28, 28), TS
    yield "branches", Branches, (3, 8, 8), TS
    yield "patterns", Patterns, (3, 8, 8), TS
    yield "patterns_nofold", Patterns, (3, 8, 8), {**TS, "do_constant_folding": False}
    yield "patterns_dynamo", Patterns, (3, 8, 8), DYNAMO
    yield "patterns_log", LogPatterns, (3, 8, 8), TS
    # The ends of the opset range: 11 (attributes for axes; Resize-11, Pad-11) and 21.
    yield "patterns_opset11", Patterns, (3, 8, 8), {**TS, "opset_version": 11}
    yield "patterns_opset21", Patterns, (3, 8, 8), {**DYNAMO, "opset_version": 21}
    for nn_file in sorted((ROOT / "examples").glob("*.nn")):
        cls, shape = twin(percept, nn_file.stem)
        yield f"ex_{nn_file.stem}", cls, shape, TS
        # torch.export cannot trace a submodule named `code` (GraphModule's own attribute),
        # which the autoencoder's twin has: its label is `code`.
        if nn_file.stem != "autoencoder":
            yield f"ex_{nn_file.stem}_dynamo", cls, shape, DYNAMO
    yield "unsupported", Unsupported, (4,), TS


def main():
    percept = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/percept")
    for name, make, shape, kwargs in models(percept):
        torch.manual_seed(0)
        model = make().eval()
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                # Statistics other than the initial 0 and 1, so the import of them shows.
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
        torch.manual_seed(1)
        x = torch.rand(3, *shape)
        path = OUT / f"{name}.onnx"
        dynamic = None if kwargs["dynamo"] else {"x": {0: "batch"}, "y": {0: "batch"}}
        torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamic_axes=dynamic,
                          **kwargs)
        if name in ("unsupported", "patterns_log"):
            continue
        out = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
        with torch.no_grad():
            assert np.allclose(out, model(x).numpy(), atol=1e-5), name
        save_safetensors(OUT / f"{name}.io.safetensors", {"input": x.numpy(), "output": out})
        print(f"{name}: {path.stat().st_size} bytes, output {out.shape}, torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
