"""gen_fixtures.py — small-config parity fixtures for `make test`.

    /usr/bin/python3 tests/ref/gen_fixtures.py --out tests/fixtures

For each fixture NAME writes
  NAME.json               the config (exactly the architecture's config keys)
  NAME.weights.safetensors  the state_dict under its original key names
                          (no num_batches_tracked); F16 by default to keep the
                          committed fixtures small, --weights-dtype F32 for F32.
                          The oracle uses the stored (rounded) values exactly.
  NAME.io.safetensors     inputs x (N×C×H×W), t (UNet only: N float step
                          indices in [0, 999]), grad_y (cotangent shaped like
                          the output), and the expected y and grad_x, computed
                          in float64 and stored as F32.
Everything is random (default init, random GroupNorm/BatchNorm affine
parameters and BN running statistics) from a fixed seed per fixture, on one
thread, so the output is deterministic.
"""
import argparse
import copy
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_models as rm  # noqa: E402

N = 3
FIXTURES = [
    # name, arch, config, input spatial size, seed
    ("unet_tiny", "ddpm-unet",
     dict(resolution=8, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[4]),
     8, 1001),
    ("unet_small", "ddpm-unet",
     dict(resolution=16, in_channels=1, out_ch=1, ch=32, ch_mult=[1, 1, 1], num_res_blocks=2,
          attn_resolutions=[8, 4]),
     16, 1002),
    ("guided_tiny", "guided-unet",
     dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult=[1, 2], attention_resolutions=[16],
          num_heads=4, num_head_channels=16, use_scale_shift_norm=True, resblock_updown=True, learn_sigma=True),
     32, 1005),
    ("guided_plain", "guided-unet",
     dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=[1, 1, 2], attention_resolutions=[8, 4],
          num_heads=2, num_head_channels=-1, use_scale_shift_norm=False, resblock_updown=False, learn_sigma=False),
     16, 1006),
    ("wrn_tiny", "wrn", dict(depth=10, widen=1, num_classes=10, in_channels=3), 8, 1003),
    ("wrn_small", "wrn", dict(depth=16, widen=2, num_classes=10, in_channels=1), 16, 1004),
    # identity and downsampling Bottlenecks, odd feature maps (36 → 18 → 9 → 5 → 3 → 2)
    ("resnet_tiny", "resnet50", dict(num_classes=10, layers=[2, 1, 2, 1], width=8), 36, 1005),
]


def make_case(arch, cfg, hw, seed, weights_dtype, n=N):
    """Random model + inputs + float64 oracle.  Returns (state_dict to store,
    store dtypes, io dict, float32-vs-float64 errors)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 7919)
    model = rm.build(arch, cfg).float()
    rm.randomize_norms(model, gen)
    sd = rm.float_state_dict(model)
    if weights_dtype == "F16":
        # round once; model and stored file then hold the same values
        sd = {k: v.half().float() for k, v in sd.items()}
    model.load_state_dict(sd, strict=False)  # strict=False: num_batches_tracked not in sd
    model.eval()

    cin = cfg.get("in_channels", 3)  # ResNet-50 and the guided-unet: always RGB
    io = {}
    if arch in ("ddpm-unet", "guided-unet"):
        x = torch.randn(n, cin, hw, hw, generator=gen)
        t = torch.rand(n, generator=gen, dtype=torch.float64) * 999.0
        t[0] = float(int(t[0]))  # one integer step index, the others fractional
        if n > 2:
            t[2] = 999.0
        t = t.float()
        out_ch = cfg["out_ch"] if arch == "ddpm-unet" else 6 if cfg["learn_sigma"] else 3
        out_shape = (n, out_ch, hw, hw)
    else:
        x = torch.rand(n, cin, hw, hw, generator=gen)
        t = None
        out_shape = (n, cfg["num_classes"])
    grad_y = torch.randn(*out_shape, generator=gen)

    m64 = copy.deepcopy(model).double()
    y64, gx64 = rm.forward_vjp(m64, x.double(), grad_y.double(), None if t is None else t.double())
    y32, gx32 = rm.forward_vjp(model, x, grad_y, t)
    errs = {"y": rm.rel_l2(y32.numpy(), y64.numpy()), "grad_x": rm.rel_l2(gx32.numpy(), gx64.numpy())}
    assert tuple(y64.shape) == out_shape, (y64.shape, out_shape)

    io["x"] = x
    if t is not None:
        io["t"] = t
    io["grad_y"] = grad_y
    io["y"] = y64.float()
    io["grad_x"] = gx64.float()
    dtypes = {k: weights_dtype for k in sd}
    return sd, dtypes, io, errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (e.g. tests/fixtures)")
    ap.add_argument("--weights-dtype", choices=["F16", "F32"], default="F16",
                    help="dtype of the stored weights (default F16: half the size)")
    ap.add_argument("--only", default=None, help="comma-separated fixture names")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    total = 0
    for name, arch, cfg, hw, seed in FIXTURES:
        if only and name not in only:
            continue
        sd, dtypes, io, errs = make_case(arch, cfg, hw, seed, args.weights_dtype)
        base = os.path.join(args.out, name)
        with open(base + ".json", "w") as f:
            json.dump(cfg, f)
            f.write("\n")
        rm.save_safetensors(base + ".weights.safetensors", sd, dtypes)
        rm.save_safetensors(base + ".io.safetensors", io)
        size = sum(os.path.getsize(base + s) for s in (".json", ".weights.safetensors", ".io.safetensors"))
        total += size
        nparam = sum(v.numel() for v in sd.values())
        print(f"{name:11s} {arch:9s} {nparam:>9,} weights ({args.weights_dtype}), {size / 1e6:6.2f} MB;"
              f" float32 torch vs float64 oracle: y rel_l2 {errs['y'][0]:.2e}, grad_x rel_l2 {errs['grad_x'][0]:.2e}")
    print(f"total {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
