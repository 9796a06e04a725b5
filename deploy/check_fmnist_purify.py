#!/usr/bin/python3
"""check_fmnist_purify.py — checks the Fashion-MNIST demo models in PyTorch.

  /usr/bin/python3 deploy/check_fmnist_purify.py --models examples/models

Loads fmnist-wrn and fmnist-ddpm (safetensors + json, through tests/ref/ref_models.py) and
runs DDPM purification (docs/design.md §Purification) on the first --n test images for each t* in --tstar:

  x_d = 2x - 1;  x = sqrt(ᾱ_{t*-1}) x_d + sqrt(1-ᾱ_{t*-1}) ε            (forward noising)
  for i = t*-1 .. 0:                                                    (ancestral reverse)
      x0   = sqrt(1/ᾱ_i) x - sqrt(1/ᾱ_i - 1) ε_θ(x, i)                 (no clamp)
      mean = c1_i x0 + c2_i x,  c1_i = β_i sqrt(ᾱ_{i-1})/(1-ᾱ_i),  c2_i = (1-ᾱ_{i-1}) sqrt(α_i)/(1-ᾱ_i)
      x    = mean + σ_i z  (i ≥ 1),  fixedlarge: σ_i² = β_i, σ_0² = posterior variance at 1
  P(x) = clamp((x0 + 1)/2, 0, 1)  with x0 of the last step (i = 0)

and prints the classifier's accuracy on the purified clean images per t*.  The demo needs
≥ 80% at the t* it uses.  Noise comes from a torch.Generator seeded with --seed (this is a
PyTorch check, not drq's per-image Philox scheme), so the numbers repeat for a fixed seed.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
import ref_models as R  # noqa: E402
from train_fmnist import load_fmnist  # noqa: E402


def load_model(models_dir, name, arch):
    with open(os.path.join(models_dir, f"{name}.json")) as f:
        cfg = json.load(f)
    model = R.build(arch, cfg)
    w = R.load_safetensors(os.path.join(models_dir, f"{name}.safetensors"))
    sd = model.state_dict()
    missing = [k for k in sd if k not in w and not k.endswith("num_batches_tracked")]
    extra = [k for k in w if k not in sd]
    assert not missing and not extra, f"{name}: missing {missing[:5]} extra {extra[:5]}"
    for k in w:
        assert tuple(w[k].shape) == tuple(sd[k].shape), f"{name}: {k} shape {w[k].shape} vs {tuple(sd[k].shape)}"
    model.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=False)
    model.eval()
    return model, cfg


class Schedule:
    def __init__(self):
        b = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
        a = 1.0 - b
        ab = np.cumprod(a)
        ab_prev = np.concatenate([[1.0], ab[:-1]])  # ᾱ_{-1} = 1
        self.beta, self.alpha, self.abar, self.abar_prev = b, a, ab, ab_prev
        self.c1 = b * np.sqrt(ab_prev) / (1.0 - ab)
        self.c2 = (1.0 - ab_prev) * np.sqrt(a) / (1.0 - ab)
        post_var = b * (1.0 - ab_prev) / (1.0 - ab)
        self.sigma2 = b.copy()  # fixedlarge
        self.sigma2[0] = post_var[1]


@torch.no_grad()
def purify(unet, x01, tstar, sched, gen):
    """x01: [N,C,H,W] in [0,1]; returns P(x) in [0,1] (float32)."""
    s = sched
    xd = 2.0 * x01 - 1.0
    a = s.abar[tstar - 1]
    x = math.sqrt(a) * xd + math.sqrt(1.0 - a) * torch.randn(xd.shape, generator=gen)
    x0 = None
    for i in range(tstar - 1, -1, -1):
        t = torch.full((x.shape[0],), float(i))
        eps = unet(x, t)
        x0 = math.sqrt(1.0 / s.abar[i]) * x - math.sqrt(1.0 / s.abar[i] - 1.0) * eps
        mean = s.c1[i] * x0 + s.c2[i] * x
        if i > 0:
            x = mean + math.sqrt(s.sigma2[i]) * torch.randn(x.shape, generator=gen)
        else:
            x = mean
    return ((x0 + 1.0) / 2.0).clamp(0.0, 1.0)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="examples/models")
    ap.add_argument("--n", type=int, default=500, help="first n test images")
    ap.add_argument("--tstar", default="10,20,30,50")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bs", type=int, default=250)
    ap.add_argument("--need", type=float, default=0.80, help="required purified clean accuracy")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    wrn, _ = load_model(args.models, "fmnist-wrn", "wrn")
    unet, ucfg = load_model(args.models, "fmnist-ddpm", "ddpm-unet")
    xte, yte = load_fmnist("t10k")
    x, y = xte[:args.n], yte[:args.n]
    sched = Schedule()

    def acc(imgs):
        return (torch.cat([wrn(imgs[i:i + 500]) for i in range(0, len(imgs), 500)]).argmax(1) == y).float().mean().item()

    print(f"first {args.n} test images, seed {args.seed}, UNet {ucfg}")
    print(f"clean accuracy (no purification): {100 * acc(x):.2f}%")
    ok = []
    for ts in [int(v) for v in args.tstar.split(",")]:
        t0 = time.time()
        gen = torch.Generator().manual_seed(args.seed * 7919 + ts)
        p = torch.cat([purify(unet, x[i:i + args.bs], ts, sched, gen) for i in range(0, len(x), args.bs)])
        # for reference: the same forward noise without any denoising
        gen = torch.Generator().manual_seed(args.seed * 7919 + ts)
        a = sched.abar[ts - 1]
        noisy = ((math.sqrt(a) * (2 * x - 1) + math.sqrt(1 - a) * torch.randn(x.shape, generator=gen)) + 1) / 2
        a_p, a_n = acc(p), acc(noisy.clamp(0, 1))
        l2 = (p - x).flatten(1).norm(dim=1).mean().item()
        good = a_p >= args.need
        if good:
            ok.append(ts)
        print(f"t*={ts:3d}: purified clean accuracy {100 * a_p:6.2f}%   (noised, not denoised: {100 * a_n:6.2f}%;"
              f" mean ||P(x)-x||_2 {l2:.3f})  {'OK' if good else 'below'} {100 * args.need:.0f}%"
              f"  [{time.time() - t0:.0f} s]", flush=True)
    print(f"t* meeting >= {100 * args.need:.0f}%: {ok if ok else 'none'}")


if __name__ == "__main__":
    main()
