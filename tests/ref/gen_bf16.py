#!/usr/bin/env python3
"""gen_bf16.py — an independent float64 reference of the guided-unet with
"precision": "bf16" (docs/spec.md; ref_guided.use_bf16: every convolution,
linear layer and attention matmul with its operands rounded by torch's own
.to(torch.bfloat16), products and sums in float64) for tests/test_bf16.c:
the forward y and the input-VJP grad_x on the committed guided_tiny and
guided_plain fixtures (their weights, x, t and grad_y).

The test compares statistics, not values: bf16 rounding is chaotic through a
deep net (float64 vs float32 activations flip a few roundings in the first
layer, each flip is a whole bf16 step, and the differences grow layer by layer
until the two roundings are as different as independent ones), so drq's bf16
result and this one agree in the size of their difference from fp32 (the
fixtures' y, grad_x), not elementwise.  Checked here: that difference is
above 1e-3 (bf16 does something at this size).

Writes tests/fixtures/guided_bf16.safetensors: NAME.y, NAME.grad_x (float32).
Run: /usr/bin/python3 tests/ref/gen_bf16.py
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ref_guided as RG  # noqa: E402
import ref_models as R  # noqa: E402

FIX = os.path.join(HERE, "..", "fixtures")
NAMES = ["guided_tiny", "guided_plain"]


def main():
    torch.set_num_threads(2)
    out = {}
    for name in NAMES:
        cfg = json.load(open(os.path.join(FIX, name + ".json")))
        m = RG.GuidedUNet(cfg)
        sd = {k: torch.from_numpy(v.astype(np.float64)) for k, v in R.load_safetensors(
            os.path.join(FIX, name + ".weights.safetensors")).items()}
        m.load_state_dict(sd, strict=True)
        m = RG.use_bf16(m.double().eval())
        for p in m.parameters():
            p.requires_grad_(False)
        io = {k: torch.from_numpy(v.astype(np.float64)) for k, v in R.load_safetensors(
            os.path.join(FIX, name + ".io.safetensors")).items()}
        y, gx = R.forward_vjp(m, io["x"], io["grad_y"], io["t"])
        dy, dg = R.rel_l2(y.numpy(), io["y"].numpy())[0], R.rel_l2(gx.numpy(), io["grad_x"].numpy())[0]
        print(f"{name}: bf16 vs fp32-exact reference: y {dy:.3e}, grad_x {dg:.3e} (relative L2)")
        assert min(dy, dg) > 1e-3, "bf16 moves the result too little for the test to see it"
        out[name + ".y"], out[name + ".grad_x"] = y.float().numpy(), gx.float().numpy()
    path = os.path.join(FIX, "guided_bf16.safetensors")
    R.save_safetensors(path, out)
    print("wrote", path)


if __name__ == "__main__":
    main()
