#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Trains a small convolutional variational autoencoder for the domain check.

The node runs such a VAE on every slice of a series before a model, to tell whether the
series looks like the model's training data (in distribution) or not. This script trains
it on the inputs a recipe exports and writes it as a TorchScript archive.

Archive contract (what the node calls):

    forward(x [B,1,H,W] float32) -> (reconstruction [B,1,H,W], mu [B,L,H/8,W/8],
                                     logvar [B,L,H/8,W/8])

H and W multiples of 8 (the node pads with 0 at the bottom and the right); x and the
reconstruction in the normalised units below; deterministic: the decoder sees z = mu, no
sampling. The node's per-slice scores are r = mean over the unpadded pixels of
(x - reconstruction)^2 and k = mean over all latent elements of
0.5 * (mu^2 + exp(logvar) - 1 - logvar); a series' features are the medians over its
slices of log r and log k.

Normalisation, per slice, the same in training and in the node:
  window            the data as exported; for CT that is [-1024, 3071] HU -> [0, 1].
  slice-percentile  body = voxels > 0.02 * (99.5th percentile of the slice), all voxels
                    if fewer than 16; lo = 0th and hi = 99.5th percentile of the body
                    (linear interpolation); x' = (x - lo) / (hi - lo).

Network (DomainVae below), fully convolutional, SiLU between layers (--activation relu:
ReLU, tried and not taken, docs/models.md), in two sizes (--network):
  wide (the default)
  encoder  3x3 stride-2 convolutions 1 -> 16 -> 24 -> 32 features (1/2, 1/4, 1/8 of
           the resolution), a 3x3 convolution of 32 at 1/8, then a 1x1 convolution to
           mu and logvar (L channels each) at 1/8.
  decoder  3x3 convolutions L -> 32 -> 32 at 1/8, then three times: a 1x1 convolution to
           4x the features and a pixel shuffle (2x up, 32 -> 16 -> 8 -> 4 features),
           followed by a 3x3 convolution (16, 8, and finally 4 -> 1 at full resolution).
  With L = 8 (the default): 0.292 GMAC per 512x512 slice (counted with forward hooks on
  the convolutions, printed), 37,685 parameters, an archive of 185 KB; with --latent 4:
  0.286 GMAC, 36,269 parameters, 180 KB (as good or slightly better on the perturbed
  sets of the domain checks, and reconstructs no worse); L = 16 would exceed 0.3 GMAC.
  --dilation widens the view of the 3x3 convolutions at 1/8 (experiments; it did not
  help).
  small (the CT checks' and the MR checks')
  encoder  3x3 stride-2 convolutions 1 -> 8 -> 16 -> 32 features, then as wide.
  decoder  3x3 convolutions L -> 32 -> 32 at 1/8, a 1x1 convolution to 64 features and a
           pixel shuffle (16 features at 1/4), a 3x3 convolution of 16, and a 1x1
           convolution to 16 values that a 4x4 pixel shuffle spreads over each 4x4 block
           of the full resolution.
  With L = 8: 0.180 GMAC per 512x512 slice, 31,952 parameters, 157 KB. It keeps few and
  narrow feature maps at high resolution, which is what costs on the CPU (docs/models.md
  gives the times). The CT checks keep every target with it, and so do the MR checks when
  it is trained 6000 steps (3000 lose some); the wide one tells ghosting apart better on
  the broader sets, at twice the cost (docs/models.md, "The shipped domain checks").

Loss: r + beta * k on random crops, with r and k as the node computes them (mean
squared error per pixel and KL divergence per latent element) and z sampled with the
reparameterisation trick: the negative ELBO of a Gaussian decoder of fixed variance
sigma^2 = beta * 64 / (2 L) in these units (beta 1e-4 and L 8: sigma 0.02). With beta
1e-4 the KL ends near 0.5-0.7 nat per latent element for CT and 3 for MR; 1e-3 (MR) and
1e-5 (CT) change it 3-4 fold with hardly any change in the reconstruction error, which
the network's capacity and the noise bound. Random crops (default 128x128), flips, Adam
with cosine learning-rate decay; deterministic for a seed and a thread count.
3000 steps of 16 crops take about 6 minutes with 2 threads on an idle 2-core CPU (the wide
network on the MR inputs at half the resolution; the small one there: 6000 in 2 minutes).

Data: `enhance-train MODEL --export-data FILE` writes (inputs, targets), inputs
[S, C, H, W] normalised as the model sees them; the middle channel is used. The MR
exports are normalised per slab with the same percentile rule, which is scale- but not
offset-invariant (its body threshold is relative to zero): --slabs undoes the slab's
offset first (undo_slab_offset), so that training sees what the node will. Slices can be
held out (--held-out) to measure r and k on data not trained on, or left out of both
(--exclude), e.g. slabs that overlap the held-out block. At the end the script prints
r and k (means of the per-slice log r and log k) on the training and held-out slices.

    build/models/enhance-train ct-denoise --export-data /tmp/vae/ct-denoise.pt
    models/tools/train_vae.py --data /tmp/vae/ct-denoise.pt --normalisation window \\
        --held-out 0:40-48 --flips hv --out /tmp/vae/domain-ct.pt

    build/models/enhance-train mr-denoise --export-data /tmp/vae/mr-denoise.pt
    build/models/enhance-train mr2ct --export-data /tmp/vae/mr2ct.pt
    models/tools/train_vae.py --data /tmp/vae/mr-denoise.pt /tmp/vae/mr2ct.pt \\
        --normalisation slice-percentile --slabs 12 10 \\
        --held-out 0:60-84 1:40-60 1:150-160 1:250-260 \\
        --exclude 1:140-150 1:160-170 1:240-250 1:260-270 --out /tmp/vae/domain-mr.pt

(ct-denoise: 12 phantoms of 4 slices, the last two held out. mr-denoise: slabs of 12
slices of ch2better, slabs 5 and 6 held out. mr2ct: three copies of slabs of 10 slices of
ch2 at offsets 0, 3 and 6; the slabs inside slices 55-74 held out, those that overlap
them partly excluded.)
"""
import argparse
import math
import time

import torch
from torch import nn
import torch.nn.functional as F

DOWNSAMPLING = 8


# ---------------------------------------------------------------------------- network

class DomainVae(nn.Module):
    """forward(x [B,1,H,W]) -> (reconstruction, mu, logvar); z = mu (no sampling)."""

    def __init__(self, latent=8, dilation=1, network="wide", activation="silu"):
        super().__init__()
        self.latent = latent
        act = nn.SiLU if activation == "silu" else nn.ReLU
        d = dilation  # of the 3x3 convolutions at 1/8, for a wider view at the same cost
        first, second = (16, 24) if network == "wide" else (8, 16)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, first, 3, stride=2, padding=1), act(),            # 1/2
            nn.Conv2d(first, second, 3, stride=2, padding=1), act(),       # 1/4
            nn.Conv2d(second, 32, 3, stride=2, padding=1), act(),          # 1/8
            nn.Conv2d(32, 32, 3, padding=d, dilation=d), act(),
            nn.Conv2d(32, 2 * latent, 1))                                  # mu, logvar
        at_eighth = [
            nn.Conv2d(latent, 32, 3, padding=1), act(),                    # 1/8
            nn.Conv2d(32, 32, 3, padding=d, dilation=d), act(),
            nn.Conv2d(32, 4 * 16, 1), nn.PixelShuffle(2), act(),           # 1/4
            nn.Conv2d(16, 16, 3, padding=1), act()]
        if network == "wide":
            self.decoder = nn.Sequential(
                *at_eighth,
                nn.Conv2d(16, 4 * 8, 1), nn.PixelShuffle(2), act(),        # 1/2
                nn.Conv2d(8, 8, 3, padding=1), act(),
                nn.Conv2d(8, 4 * 4, 1), nn.PixelShuffle(2), act(),         # 1/1
                nn.Conv2d(4, 1, 3, padding=1))
        else:
            self.decoder = nn.Sequential(
                *at_eighth,
                nn.Conv2d(16, 16, 1), nn.PixelShuffle(4))                  # 1/1, 4x4 blocks

    def encode(self, x):
        h = self.encoder(x)
        mu, logvar = h[:, :self.latent], h[:, self.latent:]
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(mu), mu, logvar


def kl_elements(mu, logvar):
    """KL divergence of N(mu, exp(logvar)) from N(0, 1), per latent element."""
    return 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar)


def count_gmac(model, height=512, width=512):
    """Multiply-accumulates of the convolutions for one [1,1,height,width] slice."""
    total = [0]

    def hook(module, inputs, output):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        per_output = kernel * module.in_channels // module.groups
        total[0] += output.numel() * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model(torch.zeros(1, 1, height, width))
    for h in handles:
        h.remove()
    return total[0] / 1e9


# ---------------------------------------------------------------------------- data

def quantile(values, q):
    """As the node's Quantile: linear interpolation between order statistics."""
    return torch.quantile(values.double(), q).item()


def normalise_slice_percentile(x):
    """x [H,W] -> the node's per-slice percentile normalisation (module docstring)."""
    flat = x.reshape(-1)
    threshold = 0.02 * quantile(flat, 0.995)
    body = flat[flat > threshold]
    if body.numel() < 16:
        body = flat
    lo = quantile(body, 0.0)
    hi = max(quantile(body, 0.995), lo + 1e-6)
    return (x - lo) / (hi - lo)


def normalise(x, method):
    if method == "window":
        return x
    return normalise_slice_percentile(x)


def parse_ranges(specs, files):
    """["I:A-B", ...] -> one set of slice indices per data file (B exclusive)."""
    chosen = [set() for _ in range(files)]
    for spec in specs:
        index, span = spec.split(":")
        first, end = span.split("-")
        chosen[int(index)].update(range(int(first), int(end)))
    return chosen


def undo_slab_offset(slices, slab):
    """The MR exports are normalised per slab of `slab` slices with the same percentile
    rule (lo = the smallest body voxel, just above 2% of the slab's 99.5th percentile), so
    the original zero lies at -0.02 p / 0.98, p the slab's 99.5th percentile in exported
    units. Shifting it back to 0 makes the per-slice normalisation see what the node will
    see in the original series (the rule is scale- but not offset-invariant)."""
    out = slices.clone()
    for first in range(0, slices.shape[0], slab):
        p = quantile(slices[first:first + slab].reshape(-1), 0.995)
        out[first:first + slab] += 0.02 * p / 0.98
    return out


def load_slices(paths, method, held_out, exclude, slabs, downsample=1):
    """-> (training slices, held-out slices): lists of [H,W] tensors, normalised; with
    `downsample` N, the means of N x N pixels first (with 2, pixels twice as large, as the
    in-plane super-resolution models see a series, and as a check with "downsample": 2 in
    its manifest scores full-resolution slices)."""
    held = parse_ranges(held_out, len(paths))
    left = parse_ranges(exclude, len(paths))
    train, test = [], []
    for i, path in enumerate(paths):
        inputs = torch.load(path)[0]
        middle = inputs[:, inputs.shape[1] // 2].float()
        if slabs and slabs[i] > 0:
            middle = undo_slab_offset(middle, slabs[i])
        if downsample > 1:
            middle = F.avg_pool2d(middle[:, None], downsample)[:, 0]
        for s in range(middle.shape[0]):
            if s in left[i]:
                continue
            x = normalise(middle[s], method)
            (test if s in held[i] else train).append(x)
        print(f"{path}: {middle.shape[0]} slices of {middle.shape[1]}x{middle.shape[2]}, "
              f"{len(held[i])} held out, {len(left[i])} excluded", flush=True)
    return train, test


def random_batch(slices, batch, crop, flips, generator):
    """Random crops (zero-padded where a slice is smaller) with random flips."""
    out = torch.zeros(batch, 1, crop, crop)
    for b in range(batch):
        x = slices[torch.randint(len(slices), (1,), generator=generator).item()]
        h, w = x.shape
        top = torch.randint(max(1, h - crop + 1), (1,), generator=generator).item()
        left = torch.randint(max(1, w - crop + 1), (1,), generator=generator).item()
        patch = x[top:top + crop, left:left + crop]
        if torch.rand(1, generator=generator).item() < 0.5:
            patch = patch.flip(1)
        if "v" in flips and torch.rand(1, generator=generator).item() < 0.5:
            patch = patch.flip(0)
        out[b, 0, :patch.shape[0], :patch.shape[1]] = patch
    return out


# ---------------------------------------------------------------------------- scores

def pad_to_multiple(x, multiple=DOWNSAMPLING):
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple))


@torch.no_grad()
def slice_scores(model, x):
    """x [H,W] normalised -> (r, k) as the node computes them."""
    h, w = x.shape
    reconstruction, mu, logvar = model(pad_to_multiple(x[None, None]))
    r = ((x - reconstruction[0, 0, :h, :w]) ** 2).mean().item()
    k = kl_elements(mu, logvar).mean().item()
    return r, k


def log_score_summary(model, slices):
    """Means and SDs of per-slice log r and log k."""
    scores = torch.tensor([slice_scores(model, x) for x in slices], dtype=torch.float64)
    logs = scores.log()
    return logs.mean(0).tolist(), logs.std(0).tolist() if len(slices) > 1 else [0.0, 0.0]


# ---------------------------------------------------------------------------- training

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", required=True,
                        help="enhance-train MODEL --export-data FILE (one or more)")
    parser.add_argument("--normalisation", choices=["window", "slice-percentile"],
                        required=True)
    parser.add_argument("--out", required=True, help="the TorchScript archive to write")
    parser.add_argument("--held-out", nargs="*", default=[], metavar="I:A-B",
                        help="slices A..B-1 of the I-th --data file: not trained on")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="I:A-B",
                        help="slices left out of training and of the held-out set")
    parser.add_argument("--slabs", nargs="*", type=int, default=[], metavar="N",
                        help="per --data file: the export normalised slabs of N slices "
                             "(mr-denoise 12, mr2ct 10) whose offset is undone; 0: none")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128, help="multiple of 8")
    parser.add_argument("--flips", choices=["h", "hv"], default="h",
                        help="left-right flips, or also up-down ones")
    parser.add_argument("--network", choices=["wide", "small"], default="wide",
                        help="the network's size (see above)")
    parser.add_argument("--latent", type=int, default=8, help="latent channels L")
    parser.add_argument("--activation", choices=["silu", "relu"], default="silu",
                        help="between layers (relu: tried and not taken, docs/models.md)")
    parser.add_argument("--dilation", type=int, default=1,
                        help="of the 3x3 convolutions at 1/8 resolution (experiments)")
    parser.add_argument("--beta", type=float, default=1e-4,
                        help="weight of the KL per latent element against the MSE per pixel")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--downsample", type=int, default=1, choices=[1, 2, 4],
                        help="N: train on the means of N x N pixels (2: the in-plane "
                             "super-resolution models' inputs, the MR checks; 4: for a "
                             "check that scores those inputs' 2x2 means, tried and not "
                             "taken, docs/models.md)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.crop % DOWNSAMPLING:
        parser.error("--crop must be a multiple of 8")

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # tiny activations early in training are slow otherwise
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.time()

    if args.slabs and len(args.slabs) != len(args.data):
        parser.error("--slabs needs one number per --data file")
    train, test = load_slices(args.data, args.normalisation, args.held_out, args.exclude,
                              args.slabs, args.downsample)
    print(f"{len(train)} training slices, {len(test)} held out", flush=True)

    model = DomainVae(args.latent, args.dilation, args.network, args.activation)
    gmac = count_gmac(model)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"DomainVae {args.network}, latent {args.latent}: {parameters} parameters, "
          f"{gmac:.3f} GMAC per 512x512 slice", flush=True)

    optimiser = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / args.steps)))
    running_r = running_k = 0.0
    for step in range(1, args.steps + 1):
        x = random_batch(train, args.batch, args.crop, args.flips, generator)
        mu, logvar = model.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
        r = F.mse_loss(model.decode(z), x)
        k = kl_elements(mu, logvar).mean()
        loss = r + args.beta * k
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        running_r += r.item()
        running_k += k.item()
        if step % 250 == 0:
            print(f"step {step}: r {running_r / 250:.3e}, k {running_k / 250:.4f} "
                  f"({time.time() - start:.0f} s)", flush=True)
            running_r = running_k = 0.0

    model.eval()
    scripted = torch.jit.script(model)
    scripted.save(args.out)
    reloaded = torch.jit.load(args.out)
    probe = pad_to_multiple(test[0] if test else train[0])[None, None]
    with torch.no_grad():
        difference = max((a - b).abs().max().item()
                         for a, b in zip(reloaded(probe), model(probe)))
    if difference > 1e-5:
        raise RuntimeError(f"the archive differs from the network by {difference}")

    (train_mean, train_sd) = log_score_summary(model, train)
    line = (f"summary: {args.out}: {args.network}, latent {args.latent}, beta {args.beta:g}, "
            f"{gmac:.3f} GMAC per 512x512 slice, {parameters} parameters; "
            f"train log r {train_mean[0]:.3f} (SD {train_sd[0]:.3f}), "
            f"log k {train_mean[1]:.3f} (SD {train_sd[1]:.3f})")
    if test:
        (test_mean, test_sd) = log_score_summary(model, test)
        line += (f"; held-out log r {test_mean[0]:.3f} (SD {test_sd[0]:.3f}), "
                 f"log k {test_mean[1]:.3f} (SD {test_sd[1]:.3f})")
    print(f"{line}; {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
