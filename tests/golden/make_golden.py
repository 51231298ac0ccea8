#!/usr/bin/env python3
"""Golden values from PyTorch for Percept's training step (run once by hand; CI does not
need torch).

For lenet5.nn, cnn_bn.nn, tests/golden/global_maxpool.nn, tests/golden/resblock.nn,
tests/golden/inception.nn, tests/golden/unet.nn, tests/golden/mobile.nn,
tests/golden/padded_pool.nn and tests/golden/bilinear.nn
(as the equivalent torch module, whose state_dict keys are Percept's parameter names), writes
`<model>.safetensors` holding:
  init.<name>   the initial weights (PyTorch's default initialization, seed 0)
  batch0.x, batch0.y, batch1.x, batch1.y   two mini-batches of 8 MNIST training images
                (the first 16 in file order, pixels / 255, no normalization)
  after.<name>  the weights after two steps of SGD (lr 0.05, momentum 0.9,
                weight decay 1e-4) in training mode, running statistics included
and metadata: the torch version, the hyperparameters, the two losses. The models of the
vision layers (VISION: resblock, inception, unet, mobile, padded_pool, bilinear) get three
mini-batches and three steps instead, and `outputs.batch0`, the initial model's outputs
on the first batch in evaluation mode.

It also writes, for lenet5 and cnn_bn, `<model>_<optimizer>.safetensors`: three steps (three
mini-batches of 8) with the optimizers whose semantics the first files do not pin — Adam
with weight decay (torch.optim.Adam: L2 added to the gradient) and SGD with Nesterov
momentum and weight decay. They hold only `batch2.*` and `after.*` (the initial weights
and the first two batches are those of `<model>.safetensors`: same seed, same images),
with `optimizer` and its settings in the metadata.

    python3 tests/golden/make_golden.py [MODEL ...]   (default: all)
"""
import gzip
import json
import struct
import sys
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
LR, MOMENTUM, WEIGHT_DECAY, BATCH = 0.05, 0.9, 1e-4, 8


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def cnn_bn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


class GlobalMaxPool(nn.Module):
    """Percept's `global_maxpool`: [N, C, H, W] -> [N, C]."""

    def forward(self, x):
        return nn.functional.adaptive_max_pool2d(x, 1).flatten(1)


def global_maxpool():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), GlobalMaxPool(), nn.Linear(8, 10))


class ResBlock(nn.Module):
    """tests/golden/resblock.nn: modules named as Percept names the statements' parameters
    (the label, else the statement's index), so the state_dict keys are the same."""

    def __init__(self):
        super().__init__()
        for name, module in [("stem", nn.Conv2d(1, 8, 3, padding=1)), ("2", nn.Conv2d(8, 8, 3, stride=2, padding=1)),
                             ("main", nn.Conv2d(8, 8, 3, padding=1)), ("5", nn.Conv2d(8, 8, 1, stride=2)),
                             ("9", nn.Linear(8 * 14 * 14, 10))]:
            self.add_module(name, module)

    def forward(self, x):
        stem = self.stem(x)
        main = getattr(self, "main")(torch.relu(getattr(self, "2")(torch.relu(stem))))
        shortcut = getattr(self, "5")(stem)
        return getattr(self, "9")(torch.relu(shortcut + main).flatten(1))


def resblock():
    return ResBlock()


class Inception(nn.Module):
    """tests/golden/inception.nn: two branches of the stem and the stem, concatenated along
    channels in Percept's order (the previous output first, then the named ones)."""

    def __init__(self):
        super().__init__()
        for name, module in [("stem", nn.Conv2d(1, 6, 3, padding=1)), ("b1", nn.Conv2d(6, 4, 1)),
                             ("3", nn.Conv2d(6, 6, 3, padding=1)), ("8", nn.Linear(16 * 14 * 14, 10))]:
            self.add_module(name, module)

    def forward(self, x):
        s = torch.relu(self.stem(x))
        b1 = self.b1(s)
        b3 = getattr(self, "3")(s)
        y = nn.functional.max_pool2d(torch.relu(torch.cat([b3, b1, s], dim=1)), 2)
        return getattr(self, "8")(y.flatten(1))


def inception():
    return Inception()


class UNet(nn.Module):
    """tests/golden/unet.nn: pool, upsample back (nearest), concatenate the skip."""

    def __init__(self):
        super().__init__()
        for name, module in [("skip", nn.Conv2d(1, 4, 3, padding=1)), ("3", nn.Conv2d(4, 4, 3, padding=1)),
                             ("7", nn.Conv2d(8, 4, 3, stride=2, padding=1)), ("10", nn.Linear(4 * 14 * 14, 10))]:
            self.add_module(name, module)

    def forward(self, x):
        skip = self.skip(x)
        y = getattr(self, "3")(nn.functional.max_pool2d(torch.relu(skip), 2))
        y = nn.Upsample(scale_factor=2, mode="nearest")(torch.relu(y))
        y = torch.relu(getattr(self, "7")(torch.cat([y, skip], dim=1)))
        return getattr(self, "10")(y.flatten(1))


def unet():
    return UNet()


class Mobile(nn.Module):
    """tests/golden/mobile.nn: depthwise and pointwise convolutions, a dilated grouped one
    with `same` padding, a transposed one back to 28x28."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 16, 1)
        self.dilated = nn.Conv2d(16, 16, 3, padding="same", dilation=2, groups=4)
        self.up = nn.ConvTranspose2d(16, 4, 3, stride=2, padding=1, output_padding=1)
        self.head = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        for conv in [self.stem, self.depthwise, self.pointwise, self.dilated, self.up]:
            x = torch.relu(conv(x))
        return self.head(x.flatten(1))


def mobile():
    return Mobile()


def bilinear():
    """tests/golden/bilinear.nn: bilinear upsampling by 2 and by (2, 3)."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Tanh(),
        nn.Upsample(scale_factor=(2, 3), mode="bilinear", align_corners=False),
        nn.Flatten(), nn.Linear(4 * 28 * 42, 10))


def padded_pool():
    """tests/golden/padded_pool.nn: padded max pooling, average pooling with and without
    the padding in the divisor."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, padding=1), nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), nn.ReLU(),
        nn.AvgPool2d(2, padding=1), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


MODELS = {"lenet5": lenet5, "cnn_bn": cnn_bn, "global_maxpool": global_maxpool, "resblock": resblock,
          "inception": inception, "unet": unet, "mobile": mobile,
          "padded_pool": padded_pool, "bilinear": bilinear}


# The models of the vision layers (branches, concat, upsampling, grouped, dilated and
# transposed convolutions, padded pooling): recorded with the initial model's outputs and
# three SGD steps; the others with two.
VISION = {"resblock", "inception", "unet", "mobile", "padded_pool", "bilinear"}


OPTIMIZERS = {
    "adam": ({"optimizer": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2},
             lambda params, o: torch.optim.Adam(params, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                                                weight_decay=o["weight_decay"])),
    "nesterov": ({"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                 lambda params, o: torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], nesterov=True,
                                                   weight_decay=o["weight_decay"])),
}


def mnist_batches(count=2):
    images = gzip.open(ROOT / "data/mnist/train-images-idx3-ubyte.gz").read()[16:]
    labels = gzip.open(ROOT / "data/mnist/train-labels-idx1-ubyte.gz").read()[8:]
    out = []
    for b in range(count):
        lo, hi = b * BATCH, (b + 1) * BATCH
        x = torch.tensor(list(images[lo * 784:hi * 784]), dtype=torch.float32).reshape(BATCH, 1, 28, 28) / 255.0
        y = torch.tensor(list(labels[lo:hi]), dtype=torch.int64)
        out.append((x, y))
    return out


def save_safetensors(path, tensors, metadata):
    """A minimal safetensors writer (F32 and I64), so the script needs only torch."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def train(make, batches, make_opt, settings, outputs=False):
    """A fresh `make()` (seed 0) trained on `batches` with `make_opt`: the initial weights
    and the batches as tensors (with `outputs`, also the initial model's outputs on the
    first batch in evaluation mode), the trained model, the losses."""
    torch.manual_seed(0)
    model = make()
    tensors = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}
    if outputs:
        model.eval()
        with torch.no_grad():
            tensors["outputs.batch0"] = model(batches[0][0]).clone()
    model.train()
    for i, (x, y) in enumerate(batches):
        tensors[f"batch{i}.x"] = x
        tensors[f"batch{i}.y"] = y.to(torch.float32)
    opt = make_opt(model.parameters(), settings)
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return tensors, model, losses


def record(name, make, batches, settings, make_opt, out):
    """Train with `make_opt`; write the last batch and the weights after."""
    tensors, model, losses = train(make, batches, make_opt, settings)
    tensors = {k: v for k, v in tensors.items() if k.startswith(f"batch{len(batches) - 1}.")}
    tensors.update({f"after.{k}": v.clone() for k, v in model.state_dict().items()})
    meta = {"torch": torch.__version__, "python": sys.version.split()[0], "batch": str(BATCH),
            "losses": json.dumps(losses)}
    meta.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in settings.items()})
    save_safetensors(out, tensors, meta)
    print(f"{out.name}: losses {losses}, torch {torch.__version__}")


def sgd(params, _settings):
    return torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    wanted = sys.argv[1:] or list(MODELS) + [f"{m}_{o}" for m in ("lenet5", "cnn_bn") for o in OPTIMIZERS]
    for name in wanted:
        if "_" in name and name.rsplit("_", 1)[1] in OPTIMIZERS:
            model, opt = name.rsplit("_", 1)
            settings, make_opt = OPTIMIZERS[opt]
            record(name, MODELS[model], mnist_batches(3), settings, make_opt, OUT / f"{name}.safetensors")
            continue
        # The vision layers' models: their outputs and three steps.
        vision = name in VISION
        tensors, model, losses = train(MODELS[name], mnist_batches(3 if vision else 2), sgd, {}, outputs=vision)
        tensors.update({f"after.{k}": v.clone() for k, v in model.state_dict().items()})
        meta = {"torch": torch.__version__, "python": sys.version.split()[0], "lr": str(LR),
                "momentum": str(MOMENTUM), "weight_decay": str(WEIGHT_DECAY), "batch": str(BATCH),
                "losses": json.dumps(losses)}
        save_safetensors(OUT / f"{name}.safetensors", tensors, meta)
        print(f"{name}: losses {losses}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
