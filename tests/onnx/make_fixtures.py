#!/usr/bin/env python3
"""ONNX fixtures for tests/onnx_import.rs (run once by hand; CI does not need torch).

For each model below, exports `tests/onnx/<name>.onnx` from a PyTorch module (seed 0)
with torch.onnx.export — the TorchScript-based exporter (dynamo=False) at opset 17, and
for `lenet5_dynamo` the dynamo-based one at opset 18 — and writes `<name>.io.safetensors`:
  input    a batch of 3 random inputs (seed 1)
  output   onnxruntime's outputs for it
`unsupported.onnx` uses GELU and a cumulative sum, which Percept does not import.

    python3 tests/onnx/make_fixtures.py
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn

OUT = Path(__file__).resolve().parent


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


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


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.cumsum(nn.functional.gelu(self.fc(x)), dim=1)


MODELS = {
    "lenet5": (lenet5, (1, 28, 28), False),
    "lenet5_dynamo": (lenet5, (1, 28, 28), True),
    "branches": (Branches, (3, 8, 8), False),
    "unsupported": (Unsupported, (4,), False),
}


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype=np.float32)
        raw = data.tobytes()
        header[name] = {"dtype": "F32", "shape": list(data.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    for name, (make, shape, dynamo) in MODELS.items():
        torch.manual_seed(0)
        model = make().eval()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                # Statistics other than the initial 0 and 1, so the import of them shows.
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
        torch.manual_seed(1)
        x = torch.rand(3, *shape)
        path = OUT / f"{name}.onnx"
        kwargs = {"dynamo": True, "opset_version": 18} if dynamo else {"dynamo": False, "opset_version": 17}
        torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes=None if dynamo else {"x": {0: "batch"}, "y": {0: "batch"}}, **kwargs)
        if name == "unsupported":
            continue
        out = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
        assert np.allclose(out, model(x).detach().numpy(), atol=1e-5), name
        save_safetensors(OUT / f"{name}.io.safetensors", {"input": x.numpy(), "output": out})
        print(f"{name}: {path.stat().st_size} bytes, output {out.shape}, torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
