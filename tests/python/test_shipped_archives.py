# SPDX-License-Identifier: GPL-3.0-or-later
"""Every model shipped under models/ opens in PyTorch (Debian's python3-torch): the
archive loads with torch.jit.load and keeps the contract of docs/models.md on a zero
input of the shape its manifest implies (a diffusion model's denoising network: x_t, the
first inference timestep and the condition). Skipped (exit code 77) without python3-torch."""
import json
import os
import sys
import unittest

try:
    import torch
except ImportError:  # python3-torch is a test-only package
    print("python3-torch is not installed: skipped")
    sys.exit(77)

MODELS = os.environ.get(
    "ENHANCE_SHIPPED_MODELS",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))


def shipped():
    for name in sorted(os.listdir(MODELS)):
        manifest = os.path.join(MODELS, name, "manifest.json")
        if os.path.isfile(manifest):
            with open(manifest, encoding="utf-8") as f:
                yield name, json.load(f)


class ShippedArchives(unittest.TestCase):
    def test_each_archive_runs_in_pytorch(self):
        models = list(shipped())
        self.assertTrue(models, "no model folders in " + MODELS)
        torch.set_num_threads(1)
        for name, manifest in models:
            with self.subTest(model=name):
                scale = manifest.get("scale", {})
                context = manifest.get("slice_context", 0)
                if scale.get("through_plane", 1) > 1:
                    channels = 2 * max(1, context)
                else:
                    channels = 2 * context + 1
                s = scale.get("in_plane", 1)
                module = torch.jit.load(os.path.join(MODELS, name, manifest["archive"]),
                                        map_location="cpu")
                module.eval()
                condition = torch.zeros(1, channels, 32, 48)
                with torch.no_grad():
                    if "diffusion" in manifest:
                        steps = manifest["diffusion"].get("timesteps", [999])
                        first = float(steps[0]) if isinstance(steps, list) else 999.0
                        y = module(torch.randn(1, 1, 32, 48), torch.full((1,), first), condition)
                    else:
                        y = module(condition)
                self.assertEqual(tuple(y.shape), (1, 1, 32 * s, 48 * s))
                self.assertTrue(bool(torch.isfinite(y).all()))


if __name__ == "__main__":
    unittest.main()
