#!/usr/bin/env python3
"""`percept export` against onnx and onnxruntime (run by .ci/run in a virtual environment
with onnx and onnxruntime; with torch too, the `--format torch` modules as well).

For every example model and the golden models of tests/golden: train it for two steps (so no weight is at its initial value),
export it as ONNX, check the file with onnx.checker (full check, shape inference), run
onnxruntime on a random batch and compare with `percept run` on the same batch; with a
fixed batch and at opsets 13 and 21 for one model too. If torch is importable, also load
the weights into the `--format torch` module with strict=True and compare its outputs.

    python3 tests/onnx/check_export.py [PERCEPT_BINARY]
"""
import json
import py_compile
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
PERCEPT = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "percept")


def percept(*args, cwd):
    r = subprocess.run([PERCEPT, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"percept {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r.stdout


def write_npy(path, a):
    np.save(path, a.astype(np.float32))


def read_safetensors(path):
    b = Path(path).read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[v["dtype"]]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=dtype).reshape(v["shape"])
    return out


def check(model, work, opset=17, batch=None):
    name = model.stem
    data = "xor" if name in ("xor", "perceptron") else ROOT / "data" / "mnist"
    weights = work / f"{name}.safetensors"
    if not weights.exists():
        target = ["--target", "input"] if name == "autoencoder" else []
        percept("train", model, "--data", data, "--steps", "2", "--save", weights, "--checkpoint",
                work / f"{name}.ck.safetensors", "--metrics", work / f"{name}.jsonl", *target, cwd=work)
    onnx_path = work / f"{name}_{opset}.onnx"
    extra = ["--batch", str(batch)] if batch else []
    percept("export", model, "--weights", weights, "--out", onnx_path, "--opset", str(opset), *extra, cwd=work)
    m = onnx.load(str(onnx_path))
    onnx.checker.check_model(m, full_check=True)
    summary = json.loads(percept("check", model, "--json", cwd=work))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch or 5, *summary["input_shape"])).astype(np.float32)
    write_npy(work / "x.npy", x)
    percept("run", model, "--weights", weights, "--input", work / "x.npy", "--output", work / "y.npy", cwd=work)
    ours = np.load(work / "y.npy")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    err = np.abs(ours - theirs).max()
    assert ours.shape == theirs.shape and err <= 1e-4 * max(1.0, np.abs(theirs).max()), f"{name}: {err}"
    print(f"{name} (opset {opset}{', batch ' + str(batch) if batch else ''}): onnx.checker ok, "
          f"onnxruntime = percept run within {err:.1e}")
    # The PyTorch twin compiles (without torch too); with torch, it loads and runs.
    py = work / f"{name}.py"
    percept("export", model, "--format", "torch", "--out", py, cwd=work)
    py_compile.compile(str(py), doraise=True)
    try:
        import torch
        from safetensors.torch import load_file  # noqa: F401
    except ImportError:
        print(f"{name}: the --format torch module compiles (no torch here to run it)")
        return
    scope = {}
    exec(compile(py.read_text(), str(py), "exec"), scope)
    cls = next(v for k, v in scope.items() if isinstance(v, type) and issubclass(v, torch.nn.Module) and k != "Module")
    net = cls()
    state = {k: torch.from_numpy(v.copy()) for k, v in read_safetensors(weights).items()}
    net.load_state_dict(state, strict=True)
    net.eval()
    with torch.no_grad():
        t = net(torch.from_numpy(x)).numpy()
    terr = np.abs(ours - t).max()
    assert terr <= 1e-4 * max(1.0, np.abs(t).max()), f"{name} torch: {terr}"
    print(f"{name}: the --format torch module (strict load) = percept run within {terr:.1e}")


def main():
    # Every example, and the golden models of the vision layers (upsampling among them).
    names = sorted((ROOT / "examples").glob("*.nn")) + sorted((ROOT / "tests" / "golden").glob("*.nn"))
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        for model in names:
            check(model, work)
        check(ROOT / "examples" / "lenet5.nn", work, opset=13, batch=3)
        check(ROOT / "examples" / "mobilenet_tiny.nn", work, opset=21)


if __name__ == "__main__":
    main()
