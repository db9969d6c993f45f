#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Trains a few-step conditional diffusion model and writes its model folder.

The network is a small conditional U-Net with a timestep embedding (below); the node runs
the sampling loop itself (docs/models.md, "Diffusion models"), so the folder holds the
denoising network alone, traced with its three inputs, and a manifest whose `diffusion`
section says how it was trained and how to sample it.

The data are what `enhance-train MODEL --export-data FILE` writes: inputs (the condition,
normalised as the node will) and targets, both [S, 1, H, W]; the targets in the window of
the recipe (for mr2ct: [-1024, 3071] HU to [0, 1]) are mapped to the diffusion's units
(HU / 1024 for mr2ct: air -1, water 0, dense bone about 1).

    build/models/enhance-train mr2ct --export-data /tmp/mr2ct-data.pt
    models/tools/train_diffusion.py mr2ct-diffusion --data /tmp/mr2ct-data.pt \\
        --out models/mr2ct-diffusion

Training: v-prediction (Salimans and Ho 2022) with the squared error, cosine schedule of
1000 timesteps; half of each batch at the few inference timesteps the manifest names, so
that the network is best where the node samples it, half uniform over all timesteps.
Random patches mostly inside the head, random flips and transposes, Adam with cosine
learning-rate decay. Deterministic for a seed and a thread count.
"""
import argparse
import json
import math
import os
import time

import torch
from torch import nn
import torch.nn.functional as F

TRAINING_TIMESTEPS = 1000
INFERENCE_TIMESTEPS = [999, 749, 499, 249]  # "trailing" spacing of 4 steps
HU_SCALE = 1024.0  # diffusion units: HU / 1024
CT_WINDOW = (-1024.0, 3071.0)  # the recipe's target window (enhance-train's kCtWindow)


# ---------------------------------------------------------------------------- network

def timestep_features(t, dims):
    """Sinusoidal features of the timestep index t [B] (as in Ho et al. 2020)."""
    half = dims // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * frequencies[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with ReLU and a skip; the timestep shifts the first one's
    features (a per-channel bias from the embedding)."""

    def __init__(self, channels, embedding, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.shift = nn.Linear(embedding, channels)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):
        h = F.relu(self.conv1(x) + self.shift(emb)[:, :, None, None])
        return x + self.conv2(h)


class ConditionalUNet(nn.Module):
    """forward(x_t [B,1,h,w], t [B], condition [B,C,h,w]) -> v [B,1,h,w]; h and w
    multiples of 16.

    The input is first folded 2x2 into channels (pixel unshuffle), so every convolution
    runs at half resolution or below: levels at 1/2 (w0 features), 1/4 (w1) and 1/8 (w2),
    one residual block each on the way down, two in the middle, a merge of the skip and a
    residual block on the way up, then unfolded back to full resolution."""

    def __init__(self, condition_channels=1, widths=(24, 48, 64), embedding=64):
        super().__init__()
        w0, w1, w2 = widths
        self.embedding = embedding
        self.time = nn.Sequential(nn.Linear(embedding, embedding), nn.SiLU(),
                                  nn.Linear(embedding, embedding))
        self.inp = nn.Conv2d(4 * (1 + condition_channels), w0, 3, padding=1)
        self.enc0 = ResidualBlock(w0, embedding)
        self.down1 = nn.Conv2d(w0, w1, 3, stride=2, padding=1)
        self.enc1 = ResidualBlock(w1, embedding)
        self.down2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.mid1 = ResidualBlock(w2, embedding)
        self.mid2 = ResidualBlock(w2, embedding, dilation=2)
        self.up1 = nn.ConvTranspose2d(w2, w1, 2, stride=2)
        self.merge1 = nn.Conv2d(2 * w1, w1, 3, padding=1)
        self.dec1 = ResidualBlock(w1, embedding)
        self.up0 = nn.ConvTranspose2d(w1, w0, 2, stride=2)
        self.merge0 = nn.Conv2d(2 * w0, w0, 3, padding=1)
        self.dec0 = ResidualBlock(w0, embedding)
        self.out = nn.Conv2d(w0, 4, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t, t, condition):
        emb = self.time(timestep_features(t, self.embedding))
        x = F.pixel_unshuffle(torch.cat([x_t, condition], dim=1), 2)
        s0 = self.enc0(F.relu(self.inp(x)), emb)
        s1 = self.enc1(F.relu(self.down1(s0)), emb)
        m = self.mid2(self.mid1(F.relu(self.down2(s1)), emb), emb)
        u1 = self.dec1(F.relu(self.merge1(torch.cat([F.relu(self.up1(m)), s1], dim=1))), emb)
        u0 = self.dec0(F.relu(self.merge0(torch.cat([F.relu(self.up0(u1)), s0], dim=1))), emb)
        return F.pixel_shuffle(self.out(u0), 2)


# ---------------------------------------------------------------------------- diffusion

def cosine_alphas_cumprod(steps, s=0.008):
    """ā_t of the cosine schedule (Nichol and Dhariwal 2021), β capped at 0.999, as the
    node computes it."""
    f = [math.cos((i / steps + s) / (1 + s) * math.pi / 2) ** 2 for i in range(steps + 1)]
    alphas, product = [], 1.0
    for i in range(steps):
        beta = min(1 - f[i + 1] / f[i], 0.999)
        product *= 1 - beta
        alphas.append(product)
    return torch.tensor(alphas, dtype=torch.float32)


def random_patches(inputs, targets, count, size, generator):
    """`count` random patches, at least 30% inside the head (target above -900 HU), in
    random flips and transposes."""
    xs, ys = [], []
    slices, _, rows, columns = inputs.shape
    while len(xs) < count:
        k = int(torch.randint(slices, (1,), generator=generator))
        r = int(torch.randint(rows - size + 1, (1,), generator=generator))
        c = int(torch.randint(columns - size + 1, (1,), generator=generator))
        y = targets[k, :, r:r + size, c:c + size]
        if (y > -900.0 / HU_SCALE).float().mean() < 0.3:
            continue
        x = inputs[k, :, r:r + size, c:c + size]
        turn = int(torch.randint(8, (1,), generator=generator))
        if turn & 1:
            x, y = x.flip(-1), y.flip(-1)
        if turn & 2:
            x, y = x.flip(-2), y.flip(-2)
        if turn & 4:
            x, y = x.transpose(-1, -2), y.transpose(-1, -2)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def training_timesteps(count, generator):
    """Half at the inference timesteps, half uniform."""
    few = torch.tensor(INFERENCE_TIMESTEPS)[torch.randint(len(INFERENCE_TIMESTEPS),
                                                          (count,), generator=generator)]
    uniform = torch.randint(TRAINING_TIMESTEPS, (count,), generator=generator)
    pick = torch.rand(count, generator=generator) < 0.5
    return torch.where(pick, few, uniform)


def train(network, inputs, targets, args):
    generator = torch.Generator().manual_seed(args.seed)
    alphas = cosine_alphas_cumprod(TRAINING_TIMESTEPS)
    optimizer = torch.optim.Adam(network.parameters(), lr=args.learning_rate)
    losses, start = [], time.time()
    for step in range(args.steps):
        lr = args.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        condition, x0 = random_patches(inputs, targets, args.batch, args.patch, generator)
        t = training_timesteps(args.batch, generator)
        noise = torch.randn(x0.shape, generator=generator)
        a = alphas[t][:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        v = a.sqrt() * noise - (1 - a).sqrt() * x0
        loss = F.mse_loss(network(x_t, t.float(), condition), v)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {sum(losses[-100:]) / len(losses[-100:]):.5f}  "
                  f"lr {lr:.2e}  {time.time() - start:.0f} s", flush=True)
    tail = max(1, args.steps // 20)
    return sum(losses[:tail]) / tail, sum(losses[-tail:]) / tail, time.time() - start


# ---------------------------------------------------------------------------- folder

def manifest(args, parameters):
    return {
        "name": args.model,
        "version": "1.0.0",
        "task": "mr2ct",
        "modalities": ["MR"],
        "intended_use": "Synthetic CT in HU from T1-weighted head MR by conditional diffusion, "
                        "with an uncertainty map (trained on one head with a segmentation-based "
                        "pseudo-CT). Demonstration model, not for clinical use: not for dose "
                        "planning, attenuation correction or diagnosis.",
        "archive": "model.pt",
        "slice_context": 0,
        "input_normalization": {"method": "percentile", "low": 0, "high": 99.5},
        "output_normalization": {"method": "window", "low": 0.0, "high": HU_SCALE},
        "output_range": [-1024.0, 3071.0],
        "output_units": "HU",
        "size_multiple": 16,
        # The U-Net's receptive radius is 92 px: tiles overlap by 4 x that (rounded to the
        # size multiple), so tiling changes no pixel (docs/models.md); slices up to 1024 px
        # run whole.
        "tile": {"size": 1024, "overlap": 384},
        "fp16": False,
        "max_batch": 8,
        "diffusion": {
            "training_timesteps": TRAINING_TIMESTEPS,
            "schedule": {"type": "cosine"},
            "prediction": "v",
            "timesteps": INFERENCE_TIMESTEPS,
            "eta": args.eta,
            "clip": [-1.0, 3.0],
            "samples": 4,
            "seed": 20261202,
            "time_input": "index",
        },
        "training": {"parameters": parameters, "steps": args.steps, "seed": args.seed},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the model's name, e.g. mr2ct-diffusion")
    parser.add_argument("--data", required=True, help="enhance-train MODEL --export-data FILE")
    parser.add_argument("--out", required=True, help="the model folder to write")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta written to the manifest")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    inputs, targets = torch.load(args.data)
    targets = (CT_WINDOW[0] + targets * (CT_WINDOW[1] - CT_WINDOW[0])) / HU_SCALE
    print(f"data: {inputs.shape[0]} slices of {inputs.shape[2]}x{inputs.shape[3]}")
    network = ConditionalUNet(condition_channels=inputs.shape[1])
    parameters = sum(p.numel() for p in network.parameters())
    print(f"network: conditional U-Net, {parameters} parameters")
    first, last, seconds = train(network, inputs, targets, args)
    print(f"training: {args.steps} steps in {seconds:.0f} s; loss {first:.5f} -> {last:.5f}")

    network.eval()
    example = (torch.randn(1, 1, 64, 64), torch.full((1,), 999.0), torch.rand(1, 1, 64, 64))
    with torch.no_grad():
        traced = torch.jit.trace(network, example)
    os.makedirs(args.out, exist_ok=True)
    traced.save(os.path.join(args.out, "model.pt"))
    m = manifest(args, parameters)
    del m["training"]
    # The domain check describes the training data, which retraining does not change.
    path = os.path.join(args.out, "manifest.json")
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        if "domain_check" in previous:
            m["domain_check"] = previous["domain_check"]
    with open(path, "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
