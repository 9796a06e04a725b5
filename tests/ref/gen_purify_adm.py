#!/usr/bin/env python3
"""gen_purify_adm.py — an independent float64 reference of the ADM purifier
for tests/test_purify_adm.c: P(x) and its input-VJP on the committed
guided_tiny fixture (image_size 32, learn_sigma), for 28×28 inputs — the
7:8 ratio of DiffPure's 224 ↔ 256 — resized bilinearly to 32 and back
(F.interpolate, align_corners=False), DDPM t* = 3 with the learned variance
(ref_guided.learned_step), no clamps.  Noise is drq's (ref_rng.py).

Also checks that the gradient through σ matters at this tolerance: the VJP
with σ detached must differ from the full one by more than 10× the test's
tolerance (1e-4), or the fixture would not catch a missing σ path.

Writes tests/fixtures/guided_purify.safetensors: x, grad_y, y, grad_x.
Run: /usr/bin/python3 tests/ref/gen_purify_adm.py
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ref_guided as RG  # noqa: E402
import ref_models as R  # noqa: E402
import ref_rng as G  # noqa: E402

FIX = os.path.join(HERE, "..", "fixtures")
SEED, T_STAR, IN, IMAGES = 4, 3, 28, [5, 9]
STREAM_FORWARD_EPS, STREAM_REVERSE_BASE = 1, 1000


def load(name):
    cfg = json.load(open(os.path.join(FIX, name + ".json")))
    m = RG.GuidedUNet(cfg)
    sd = {k: torch.from_numpy(v.astype(np.float64)) for k, v in R.load_safetensors(
        os.path.join(FIX, name + ".weights.safetensors")).items()}
    m.load_state_dict(sd, strict=True)
    return m.double().eval(), cfg["image_size"]


def noise(stream, shape):
    per = int(np.prod(shape))
    return torch.stack([torch.from_numpy(G.normal(G.key(SEED, i, stream), per).astype(np.float64)).reshape(shape)
                        for i in IMAGES])


def purify(model, res, x, detach_sigma=False):
    _, abar, _ = RG.linear_schedule()
    s = 2 * F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False) - 1
    a = abar[T_STAR - 1].item()
    s = np.sqrt(a) * s + np.sqrt(1 - a) * noise(STREAM_FORWARD_EPS, s.shape[1:])
    for i in range(T_STAR - 1, -1, -1):
        out = model(s, torch.full((x.shape[0],), float(i), dtype=torch.float64))
        if detach_sigma:
            out = torch.cat([out[:, :3], out[:, 3:].detach()], dim=1)
        s = RG.learned_step(s, out, i, noise(STREAM_REVERSE_BASE + i, s.shape[1:]))
    return (F.interpolate(s, size=x.shape[2:], mode="bilinear", align_corners=False) + 1) / 2


def main():
    torch.set_num_threads(2)
    model, res = load("guided_tiny")
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(77)
    x = torch.rand(len(IMAGES), 3, IN, IN, generator=gen, dtype=torch.float64).float().double()
    gy = torch.randn(len(IMAGES), 3, IN, IN, generator=gen, dtype=torch.float64).float().double()
    grads = []
    for detach in (False, True):
        xr = x.clone().requires_grad_(True)
        y = purify(model, res, xr, detach)
        (g,) = torch.autograd.grad(y, xr, gy)
        grads.append(g)
        if not detach:
            y_full = y.detach()
    d = float((grads[0] - grads[1]).norm() / grads[0].norm())
    print(f"the σ path's share of grad_x: {d:.2e} (relative L2)")
    assert d > 1e-3, "the learned variance's gradient is too small for the fixture to test it"
    out = {"x": x.float(), "grad_y": gy.float(), "y": y_full.float(), "grad_x": grads[0].float()}
    R.save_safetensors(os.path.join(FIX, "guided_purify.safetensors"), {k: v.numpy() for k, v in out.items()})
    print("wrote", os.path.join(FIX, "guided_purify.safetensors"))


if __name__ == "__main__":
    main()
