#!/usr/bin/env python3
"""Percept against PyTorch on this machine, same run, same settings.

    python3 bench/pytorch_compare.py                       # throughput, 1 and 2 threads
    python3 bench/pytorch_compare.py --threads 1 --models lenet5
    python3 bench/pytorch_compare.py --models all --no-compile   # every example, eager only
    python3 bench/pytorch_compare.py --accuracy            # time to accuracy, LeNet-5

The PyTorch models are built from `percept check --json` (the same layers, defaults and
parameter shapes; the parameter counts are checked against Percept's), so every example
runs.

Throughput: training steps (forward, loss, backward, SGD with momentum) at batch 64 on
random data, samples/s, for PyTorch eager and torch.compile (where it works; its compile
time measured cold: dynamo reset and inductor's caches off for each compilation) and for
`percept bench --json` (fused and unfused), with the ratio Percept/PyTorch eager; then, in
the same run, inference (evaluation mode, no gradients): the latency of one sample (batch
1, µs per call) and the throughput at batch 64, PyTorch eager against `percept bench
--inference --json` (fused), at each thread count.
Accuracy: LeNet-5 on MNIST with Percept's default recipe (batch 64, SGD lr 0.05 momentum
0.9, one-cycle per step, PyTorch's default init, inputs normalized), 3 epochs, test
accuracy and training seconds after each epoch, beside `percept train --json`.

Needs torch (CPU) for the PyTorch side; without it, it says so and exits 0. Build Percept
first: cargo build --release.
"""
import argparse
import gzip
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PERCEPT = ROOT / "target" / "release" / "percept"

try:
    import torch
    import torch.nn as nn
except ImportError:
    print("torch is not installed: pip install torch (CPU) to compare; skipping.")
    sys.exit(0)


def parse_layer(text):
    """`conv2d(16, kernel: [3, 5], padding: same)` -> ("conv2d", [16], {"kernel": [3, 5], "padding": "same"})."""
    kind, _, rest = text.partition("(")
    pos, kw = [], {}
    if rest:
        body, depth, parts, cur = rest[:-1], 0, [], ""
        for ch in body:
            depth += ch == "["
            depth -= ch == "]"
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        for part in (q.strip() for q in parts if q.strip()):
            key, sep, val = part.partition(":")
            val = (val if sep else key).strip()
            try:
                val = json.loads(val)
            except ValueError:
                pass  # a word: `same`, `valid`, a statement name
            if sep:
                kw[key.strip()] = val
            else:
                pos.append(val)
    return kind.strip(), pos, kw


def pair(v):
    return list(v) if isinstance(v, list) else [v, v]


class Network(nn.Module):
    """A Percept model as PyTorch modules, from `percept check --json`: the same layers,
    defaults (docs/LANGUAGE.md's table) and parameter shapes, run in statement order
    (`from:`, `add`, `concat` by the statements' names)."""

    def __init__(self, summary):
        super().__init__()
        self.steps = []  # (name, kind, module or argument, source name or None)
        self.input_name = summary.get("input_name") or "input"
        shapes = {self.input_name: summary["input_shape"]}
        shape = summary["input_shape"]
        self.mods = nn.ModuleList()
        for layer in summary["layers"]:
            kind, pos, kw = parse_layer(layer["layer"])
            source = kw.pop("from", None)
            if source is not None:
                shape = shapes[source]
            mod = None
            if kind == "dense":
                mod = nn.Linear(shape[0], pos[0], bias=kw.get("bias", True))
            elif kind == "conv2d":
                k, d = pair(kw["kernel"]), pair(kw.get("dilation", 1))
                pad = kw.get("padding", 0)
                pad = ([((k[0] - 1) * d[0]) // 2, ((k[1] - 1) * d[1]) // 2] if pad == "same"
                       else [0, 0] if pad == "valid" else pair(pad))
                mod = nn.Conv2d(shape[0], pos[0], k, stride=pair(kw.get("stride", 1)), padding=pad, dilation=d,
                                groups=kw.get("groups", 1), bias=kw.get("bias", True))
            elif kind == "conv_transpose2d":
                mod = nn.ConvTranspose2d(shape[0], pos[0], pair(kw["kernel"]), stride=pair(kw.get("stride", 1)),
                                         padding=pair(kw.get("padding", 0)),
                                         output_padding=pair(kw.get("output_padding", 0)),
                                         dilation=pair(kw.get("dilation", 1)), groups=kw.get("groups", 1),
                                         bias=kw.get("bias", True))
            elif kind == "maxpool":
                mod = nn.MaxPool2d(pair(pos[0]), stride=pair(kw.get("stride", pos[0])), padding=pair(kw.get("padding", 0)))
            elif kind == "avgpool":
                mod = nn.AvgPool2d(pair(pos[0]), stride=pair(kw.get("stride", pos[0])), padding=pair(kw.get("padding", 0)),
                                   count_include_pad=kw.get("count_include_pad", True))
            elif kind == "upsample":
                mod = nn.Upsample(scale_factor=tuple(float(f) for f in pair(pos[0])), mode="nearest")
            elif kind == "batchnorm":
                cls = nn.BatchNorm1d if len(shape) == 1 else nn.BatchNorm2d
                mod = cls(shape[0], eps=kw.get("eps", 1e-5), momentum=kw.get("momentum", 0.1))
            elif kind == "maxout":
                mod = nn.Linear(shape[0], pos[0] * kw.get("pieces", 2))
            elif kind == "dropout":
                mod = nn.Dropout(kw.get("p", 0.5))
            elif kind == "leaky_relu":
                mod = nn.LeakyReLU(kw.get("slope", 0.1))
            elif kind == "elu":
                mod = nn.ELU(kw.get("alpha", 1.0))
            elif kind in ("relu", "sigmoid", "tanh"):
                mod = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[kind]()
            elif kind == "softmax":
                mod = nn.Softmax(dim=1)
            elif kind not in ("flatten", "global_avgpool", "global_maxpool", "add", "concat"):
                raise ValueError(f"no PyTorch translation for `{layer['layer']}`")
            if mod is not None:
                self.mods.append(mod)
            arg = pos if kind in ("add", "concat") else (mod, kw.get("pieces", 2)) if kind == "maxout" else mod
            self.steps.append((layer["name"], kind, arg, source))
            shape = layer["output_shape"]
            shapes[layer["name"]] = shape
        count = sum(p.numel() for p in self.parameters())
        if count != summary["trainable_parameters"]:
            raise ValueError(f"{summary['model']}: {count} PyTorch parameters, Percept has {summary['trainable_parameters']}")

    def forward(self, x):
        named = {self.input_name: x}
        for name, kind, arg, source in self.steps:
            if source is not None:
                x = named[source]
            if kind == "flatten":
                x = x.flatten(1)
            elif kind == "global_avgpool":
                x = x.mean((2, 3))
            elif kind == "global_maxpool":
                x = x.amax((2, 3))
            elif kind == "add":
                for other in arg:
                    x = x + named[other]
            elif kind == "concat":
                x = torch.cat([x] + [named[other] for other in arg], dim=1)
            elif kind == "maxout":
                # unit u's pieces are u·pieces … u·pieces + pieces − 1 (DESIGN.md's names)
                x = arg[0](x)
                x = x.view(x.shape[0], -1, arg[1]).amax(2)
            else:
                x = arg(x)
            named[name] = x
        return x


def summary_of(path):
    out = subprocess.run([str(PERCEPT), "check", str(path), "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def example(name):
    return ROOT / "examples" / f"{name}.nn"


def batch_and_loss(summary, batch):
    """Random inputs and targets for the model's loss, and the PyTorch loss."""
    x = torch.rand(batch, *summary["input_shape"])
    out = summary["output_shape"]
    loss = summary["loss"]
    if loss == "softmax_cross_entropy":
        return x, torch.randint(0, out[0], (batch,)), nn.CrossEntropyLoss()
    if loss == "binary_cross_entropy":
        return x, torch.randint(0, 2, (batch, *out)).float(), nn.BCELoss()
    if loss == "mse":
        return x, torch.rand(batch, *out), nn.MSELoss()
    raise ValueError(f"loss {loss!r} cannot be trained")


def torch_throughput(name, threads, batch, seconds, compiled):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    summary = summary_of(example(name))
    model = Network(summary)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x, y, loss_fn = batch_and_loss(summary, batch)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(fwd(x), y)
        loss.backward()
        opt.step()

    fwd = model
    compile_s = 0.0
    if compiled:
        # Cold: no compiled graph kept from an earlier model or thread count (which also
        # kept hitting dynamo's recompile limit), none read back from inductor's caches.
        torch._dynamo.reset()
        for flag in ("fx_graph_cache", "autotune_local_cache"):
            if hasattr(torch._inductor.config, flag):
                setattr(torch._inductor.config, flag, False)
        t = time.perf_counter()
        fwd = torch.compile(model)
        step()
        compile_s = time.perf_counter() - t
    for _ in range(3):
        step()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds or n < 3:
        step()
        n += 1
    return n * batch / (time.perf_counter() - t), compile_s


def torch_inference(name, threads, batch, seconds):
    """PyTorch eager in evaluation mode without gradients: (samples/s, µs per call)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    summary = summary_of(example(name))
    model = Network(summary).eval()
    x = torch.rand(batch, *summary["input_shape"])
    with torch.no_grad():
        for _ in range(3):
            model(x)
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds or n < 3:
            model(x)
            n += 1
        elapsed = time.perf_counter() - t
    return n * batch / elapsed, 1e6 * elapsed / n


def percept_bench(name, threads, batch, seconds, inference=False):
    out = subprocess.run([str(PERCEPT), "bench", str(example(name)), "--batch", str(batch),
                          "--threads", str(threads), "--seconds", str(seconds), "--json"]
                         + (["--inference"] if inference else []),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def throughput(args):
    print(f"torch {torch.__version__}, batch {args.batch}, SGD momentum 0.9, random data, {args.seconds} s per measurement")
    print(f"{'model':<15} {'threads':>7} {'torch eager':>12} {'torch.compile':>14} {'percept fused':>14} {'percept unfused':>16} {'percept/eager':>14}")
    inference = []
    for threads in args.threads:
        for name in args.models:
            eager, _ = torch_throughput(name, threads, args.batch, args.seconds, False)
            comp_txt = "skipped"
            try:
                if args.compile:
                    comp, comp_s = torch_throughput(name, threads, args.batch, args.seconds, True)
                    comp_txt = f"{comp:,.0f} ({comp_s:.0f} s)"
            except Exception as e:  # torch.compile needs a C compiler and may fail
                comp_txt = f"n/a ({type(e).__name__})"
            p = percept_bench(name, threads, args.batch, args.seconds)
            fused, unfused = p["fused"]["samples_per_s"], p["unfused"]["samples_per_s"]
            print(f"{name:<15} {threads:>7} {eager:>12,.0f} {comp_txt:>14} {fused:>14,.0f} {unfused:>16,.0f} {fused / eager:>13.2f}x", flush=True)
            _, t_lat = torch_inference(name, threads, 1, args.seconds)
            t_rate, _ = torch_inference(name, threads, args.batch, args.seconds)
            p_lat = percept_bench(name, threads, 1, args.seconds, inference=True)["fused"]["us_per_batch"]
            p_rate = percept_bench(name, threads, args.batch, args.seconds, inference=True)["fused"]["samples_per_s"]
            inference.append((name, threads, t_lat, p_lat, t_rate, p_rate))
    print(f"\ninference, evaluation mode: latency of batch 1 (µs per call), throughput at batch {args.batch} (samples/s)")
    print(f"{'model':<15} {'threads':>7} {'torch b1 µs':>12} {'percept b1 µs':>14} {'torch/percept':>14} "
          f"{'torch b' + str(args.batch):>12} {'percept b' + str(args.batch):>14} {'percept/torch':>14}")
    for name, threads, t_lat, p_lat, t_rate, p_rate in inference:
        print(f"{name:<15} {threads:>7} {t_lat:>12,.1f} {p_lat:>14,.1f} {t_lat / p_lat:>13.1f}x "
              f"{t_rate:>12,.0f} {p_rate:>14,.0f} {p_rate / t_rate:>13.2f}x", flush=True)


def mnist():
    d = ROOT / "data" / "mnist"
    def images(f):
        return torch.frombuffer(bytearray(gzip.open(d / f).read()[16:]), dtype=torch.uint8).float().div(255).reshape(-1, 1, 28, 28)
    def labels(f):
        return torch.frombuffer(bytearray(gzip.open(d / f).read()[8:]), dtype=torch.uint8).long()
    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def onecycle(step, total, base=0.05):
    peak = 0.25 * total
    if step < peak:
        return base * (0.1 + 0.9 * step / peak)
    p = (step - peak) / max(total - peak, 1)
    floor = base / 1000
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * p))


def accuracy(args):
    threads = args.threads[-1]
    torch.set_num_threads(threads)
    xtr, ytr, xte, yte = mnist()
    mean, std = xtr.mean(), xtr.std(unbiased=False)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    torch.manual_seed(1)
    model = Network(summary_of(example("lenet5")))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    epochs, batch = 3, 64
    total = epochs * math.ceil(len(xtr) / batch)
    step, trained = 0, 0.0
    print(f"PyTorch {torch.__version__} eager, {threads} thread(s), LeNet-5, Percept's default recipe:")
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        t = time.perf_counter()
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            for g in opt.param_groups:
                g["lr"] = onecycle(step, total)
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
            step += 1
        trained += time.perf_counter() - t
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"  epoch {epoch + 1}: test accuracy {100 * acc:.2f}% after {trained:.1f} s of training", flush=True)
    out = subprocess.run([str(PERCEPT), "train", str(ROOT / "examples" / "lenet5.nn"), "--threads", str(threads), "--json",
                          "--save", "/tmp/pc.safetensors", "--checkpoint", "/tmp/pc.ckpt", "--metrics", "/tmp/pc.jsonl"],
                         capture_output=True, text=True, check=True)
    print(f"Percept, {threads} thread(s), same recipe:")
    trained = 0.0
    for line in out.stdout.splitlines():
        e = json.loads(line)
        if "samples" in e:
            trained += e["seconds"]
            print(f"  epoch {e['epoch']}: test accuracy {100 * e['test']['accuracy']:.2f}% after {trained:.1f} s of training")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "lenet5", "cnn_bn"],
                    help="example names (examples/NAME.nn), or `all` for every example")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    ap.add_argument("--accuracy", action="store_true", help="time to accuracy on MNIST instead of throughput")
    args = ap.parse_args()
    if not PERCEPT.exists():
        sys.exit(f"build Percept first: cargo build --release (no {PERCEPT})")
    if args.models == ["all"]:
        args.models = sorted(p.stem for p in (ROOT / "examples").glob("*.nn"))
    accuracy(args) if args.accuracy else throughput(args)


if __name__ == "__main__":
    main()
