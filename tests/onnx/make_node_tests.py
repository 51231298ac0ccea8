#!/usr/bin/env python3
"""ONNX's backend node tests for the op types Percept imports, as fixtures for
tests/onnx_node.rs (run once by hand with `pip install onnx numpy`; CI needs no Python
for them).

`onnx.backend.test.case.node.collect_testcases()` gives every node test's model with its
input and expected output data. This script keeps those whose nodes all have op types in
the importer's LAYERS and FOLDED lists (read from src/onnx/import.rs, so the two stay in step) and
writes, for each, into tests/onnx/node/:
  <test>.onnx              the model, its inputs after the first turned into initializers
                           (node tests feed weights as graph inputs; Percept models have
                           one data input and constant weights)
  <test>.io.safetensors    `input` (the first input) and `output` (the expected first
                           output), when both are float32 and the input has 2 or 4
                           dimensions (the importer refuses other inputs on sight)
  <test>.fold.safetensors  for one node of an op the importer folds on constants: every
                           input (`in0`, `in1`, …) and the output (`out`), float32 or int64,
                           to check the folding against ONNX's expected output
The tests are ONNX's (Apache-2.0; LICENSE beside them). tests/onnx_node.rs imports each:
it must match the expected output (rtol 1e-4, atol 1e-5) or be refused with a reason;
tests/onnx/node/RESULTS.txt pins which.

    python3 tests/onnx/make_node_tests.py
"""
import json
import re
import shutil
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "node"


def supported():
    text = (ROOT / "src/onnx/import.rs").read_text()
    blocks = re.findall(r"pub const (?:LAYERS|FOLDED): &\[&str\] = &\[(.*?)\];", text, re.S)
    return {op for block in blocks for op in re.findall(r'"(\w+)"', block)}


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        dtype = "I64" if tensors[name].dtype == np.int64 else "F32"
        raw = np.ascontiguousarray(tensors[name], dtype=np.int64 if dtype == "I64" else np.float32).tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def folded():
    text = (ROOT / "src/onnx/import.rs").read_text()
    block = re.search(r"pub const FOLDED: &\[&str\] = &\[(.*?)\];", text, re.S).group(1)
    return set(re.findall(r'"(\w+)"', block))


def main():
    ops = supported()
    constant_ops = folded()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node.collect_testcases(None)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    shutil.copy(ROOT / "vendor/onnx/LICENSE", OUT / "LICENSE")
    kept = 0
    for case in sorted(cases, key=lambda c: c.name):
        model = case.model
        if model is None or not case.data_sets:
            continue
        if not {n.op_type for n in model.graph.node} <= ops:
            continue
        inputs, outputs = case.data_sets[0]
        if not all(isinstance(a, np.ndarray) for a in list(inputs) + list(outputs)):
            continue
        model = onnx.ModelProto.FromString(model.SerializeToString())
        graph = model.graph
        for info, value in list(zip(graph.input, inputs))[1:]:
            graph.initializer.append(numpy_helper.from_array(value, info.name))
        (OUT / f"{case.name}.onnx").write_bytes(model.SerializeToString())
        # Percept's inputs are [N, features] or [N, C, H, W]; others are refused on sight.
        if inputs and inputs[0].dtype == np.float32 and inputs[0].ndim in (2, 4) and outputs[0].dtype == np.float32:
            save_safetensors(OUT / f"{case.name}.io.safetensors", {"input": inputs[0], "output": outputs[0]})
        # One node of an op the importer folds, on float32 or int64 tensors: all its inputs
        # and its output, for checking the folding itself (the import refuses these on data).
        numbers = (np.float32, np.int64)
        if (len(graph.node) == 1 and graph.node[0].op_type in constant_ops
                and all(a.dtype in numbers for a in list(inputs) + [outputs[0]])):
            save_safetensors(OUT / f"{case.name}.fold.safetensors",
                             {**{f"in{i}": a for i, a in enumerate(inputs)}, "out": outputs[0]})
        kept += 1
    print(f"{kept} node tests of {len(ops)} op types, onnx {onnx.__version__}")


if __name__ == "__main__":
    sys.exit(main())
