#!/usr/bin/env python3
"""Percept against PyTorch on this machine, same run, same settings.

    python3 bench/pytorch_compare.py                       # throughput, 1 and 2 threads
    python3 bench/pytorch_compare.py --threads 1 --models lenet5
    python3 bench/pytorch_compare.py --accuracy            # time to accuracy, LeNet-5

Throughput: training steps (forward, loss, backward, SGD with momentum) at batch 64 on
random data, samples/s, for PyTorch eager and torch.compile (where it works) and for
`percept bench --json` (fused and unfused), with the ratio Percept/PyTorch eager.
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


def models():
    return {
        "mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)),
        "lenet5": lambda: nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)),
        "cnn_bn": lambda: nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10)),
    }


def torch_throughput(name, threads, batch, seconds, compiled):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = models()[name]()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(fwd(x), y)
        loss.backward()
        opt.step()

    fwd = model
    compile_s = 0.0
    if compiled:
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


def percept_bench(name, threads, batch, seconds):
    out = subprocess.run([str(PERCEPT), "bench", str(ROOT / "examples" / f"{name}.nn"), "--batch", str(batch),
                          "--threads", str(threads), "--seconds", str(seconds), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def throughput(args):
    print(f"torch {torch.__version__}, batch {args.batch}, SGD momentum 0.9, random data, {args.seconds} s per measurement")
    print(f"{'model':<8} {'threads':>7} {'torch eager':>12} {'torch.compile':>14} {'percept fused':>14} {'percept unfused':>16} {'percept/eager':>14}")
    for threads in args.threads:
        for name in args.models:
            eager, _ = torch_throughput(name, threads, args.batch, args.seconds, False)
            try:
                comp, comp_s = torch_throughput(name, threads, args.batch, args.seconds, True)
                comp_txt = f"{comp:,.0f} ({comp_s:.0f} s)"
            except Exception as e:  # torch.compile needs a C compiler and may fail
                comp_txt = f"n/a ({type(e).__name__})"
            p = percept_bench(name, threads, args.batch, args.seconds)
            fused, unfused = p["fused"]["samples_per_s"], p["unfused"]["samples_per_s"]
            print(f"{name:<8} {threads:>7} {eager:>12,.0f} {comp_txt:>14} {fused:>14,.0f} {unfused:>16,.0f} {fused / eager:>13.2f}x", flush=True)


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
    model = models()["lenet5"]()
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
    ap.add_argument("--models", nargs="+", default=["mlp", "lenet5", "cnn_bn"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--accuracy", action="store_true", help="time to accuracy on MNIST instead of throughput")
    args = ap.parse_args()
    if not PERCEPT.exists():
        sys.exit(f"build Percept first: cargo build --release (no {PERCEPT})")
    accuracy(args) if args.accuracy else throughput(args)


if __name__ == "__main__":
    main()
