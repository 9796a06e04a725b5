#!/usr/bin/env python3
"""gen_pgd_fixture.py — an independent PGD reference (float64 PyTorch) for
tests/test_pgd_ref.c: L∞ PGD with a random start and fixed ω, full gradient
through the sampler, on the committed unet_small / wrn_small fixtures.

Cases: DDIM (t* = 4, stride 2: deterministic given ω), DDIM without forward
noising ("forward": false, t* = 4, stride 2: no ω at all) and DDPM fixedlarge
(t* = 3).  Noise comes from ref_rng.py (drq's Philox scheme re-implemented).
Writes tests/fixtures/pgd_ref.safetensors: x, label, and for each case the
iterate after every step (xadv_<case>_<k>).

Run: /usr/bin/python3 tests/ref/gen_pgd_fixture.py
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ref_models as R  # noqa: E402
import ref_rng as G  # noqa: E402

FIX = os.path.join(HERE, "..", "fixtures")
SEED, EPS, STEP, STEPS = 3, 0.1, 0.02, 3
IMAGES = [0, 1]
LABELS = [3, 7]


def load(name, arch):
    cfg = json.load(open(os.path.join(FIX, name + ".json")))
    m = R.build(arch, cfg)
    sd = {k: torch.from_numpy(v.astype(np.float64)) for k, v in R.load_safetensors(
        os.path.join(FIX, name + ".weights.safetensors")).items()}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    return m.double().eval()


def schedule():
    beta = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return beta, np.cumprod(1 - beta)


def purify(unet, x, kind, t_star, stride=1, forward=True):
    beta, ab = schedule()
    shape = x.shape[1:]
    per = int(np.prod(shape))
    noise = lambda stream: torch.stack([torch.from_numpy(G.normal(G.key(SEED, i, stream), per).astype(np.float64))
                                        .reshape(shape) for i in IMAGES])
    s = 2 * x - 1
    if forward:
        s = np.sqrt(ab[t_star - 1]) * s + np.sqrt(1 - ab[t_star - 1]) * noise(1)
    steps = list(range(t_star - 1, -1, -stride))
    for k, i in enumerate(steps):
        t = torch.full((x.shape[0],), float(i), dtype=torch.float64)
        eps = unet(s, t)
        x0 = np.sqrt(1 / ab[i]) * s - np.sqrt(1 / ab[i] - 1) * eps
        if kind == "ddim":
            prev = steps[k + 1] if k + 1 < len(steps) else -1
            abp = ab[prev] if prev >= 0 else 1.0
            s = np.sqrt(abp) * x0 + np.sqrt(1 - abp) * eps
        else:
            abm = ab[i - 1] if i >= 1 else 1.0
            c1 = beta[i] * np.sqrt(abm) / (1 - ab[i])
            c2 = (1 - abm) * np.sqrt(1 - beta[i]) / (1 - ab[i])
            s = c1 * x0 + c2 * s
            if i > 0:
                s = s + np.sqrt(beta[i]) * noise(1000 + i)
    return torch.clamp((s + 1) / 2, 0, 1)


def main():
    torch.set_num_threads(2)
    unet, clf = load("unet_small", "ddpm-unet"), load("wrn_small", "wrn")
    for p in list(unet.parameters()) + list(clf.parameters()):
        p.requires_grad_(False)
    yy, xx = np.mgrid[0:16, 0:16]
    x = np.stack([np.exp(-((xx - 5 - 4 * i) ** 2 + (yy - 6) ** 2) / 12.0)[None] for i in IMAGES]).astype(np.float32)
    x = torch.from_numpy(x).double()
    label = torch.tensor(LABELS)
    out = {"x": x.float(), "label": label.float()}
    for name, kind, t_star, stride, forward in (("ddim", "ddim", 4, 2, True), ("ddpm", "ddpm", 3, 1, True),
                                                ("ddimdet", "ddim", 4, 2, False)):
        start = torch.stack([torch.from_numpy(G.uniform(G.key(SEED, i, 2), 256, -EPS, EPS).astype(np.float64))
                             .reshape(1, 16, 16) for i in IMAGES])
        xa = torch.clamp(x + start, 0, 1)
        for k in range(STEPS):
            xr = xa.clone().requires_grad_(True)
            logits = clf(purify(unet, xr, kind, t_star, stride, forward))
            loss = torch.nn.functional.cross_entropy(logits, label, reduction="sum")
            (g,) = torch.autograd.grad(loss, xr)
            xa = torch.clamp(torch.min(torch.max(xa + STEP * torch.sign(g), x - EPS), x + EPS), 0, 1)
            out[f"xadv_{name}_{k + 1}"] = xa.float()
    R.save_safetensors(os.path.join(FIX, "pgd_ref.safetensors"), {k: v.numpy() for k, v in out.items()})
    print("wrote", os.path.join(FIX, "pgd_ref.safetensors"))


if __name__ == "__main__":
    main()
