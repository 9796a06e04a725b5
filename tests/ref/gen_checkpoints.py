"""gen_checkpoints.py — PyTorch checkpoints for tests/test_convert.sh.

    /usr/bin/python3 tests/ref/gen_checkpoints.py --out DIR [--full]

Writes, from the reference models of ref_models.py (small configs of
tests/fixtures), checkpoints with the real key layouts in both torch.save
formats, and the float64 oracle's outputs for `drq model run`:

  NAME.json                     the model config
  NAME.DTYPE.io.safetensors     x (and t), grad_y, y, grad_x for weights in DTYPE
  CASE.ckpt                     the checkpoints (see CASES in the manifest)
  manifest.tsv                  case, arch, model name, dtype, format, layout, file

Layouts: 'pesser' — torch.save(model.state_dict()), a flat dict (DDPM);
'openai' — the same for the ADM UNet (guided-unet, guided-diffusion's keys);
'robustbench' — torch.save({'state_dict': DataParallel(model).state_dict()
(keys 'module.…', num_batches_tracked present), 'epoch': …, 'best_prec1': …});
'ema' — {'model': other weights, 'ema': the weights}; 'views' — a flat dict
whose tensors are non-contiguous views and slices sharing one storage.
Formats: 'zip' (default torch.save) and 'legacy'
(_use_new_zipfile_serialization=False).

extra_args.ckpt: RobustBench layout (wrn_tiny F32) plus an argparse.Namespace.
--full adds the CIFAR-10 WRN-28-10 (RobustBench layout, both formats) and the
expected tensors as wrn_full.expected.safetensors (F32, for a bitwise check).
Deterministic: fixed seeds, one thread.
"""
import argparse
import collections
import copy
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_models as rm  # noqa: E402

N = 2
MODELS = [
    # name, arch, config, spatial size, seed
    ("unet_tiny", "ddpm-unet",
     dict(resolution=8, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[4]),
     8, 2001),
    ("wrn_tiny", "wrn", dict(depth=10, widen=1, num_classes=10, in_channels=3), 8, 2003),
    ("guided_tiny", "guided-unet",
     dict(image_size=8, num_channels=32, num_res_blocks=1, channel_mult=[1, 2], attention_resolutions=[4],
          num_heads=1, num_head_channels=16, use_scale_shift_norm=True, resblock_updown=True, learn_sigma=True),
     8, 2006),
]
TORCH_DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def build(arch, cfg, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 7919)
    model = rm.build(arch, cfg).float()
    rm.randomize_norms(model, gen)
    if arch == "wrn":
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.num_batches_tracked.fill_(1234)
    model.eval()
    return model, gen


def oracle(arch, cfg, hw, model, dtype, gen):
    """Rounds the model's floats to dtype (in place) and returns the io dict."""
    with torch.no_grad():
        for t in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            t.copy_(t.to(TORCH_DTYPE[dtype]).float())
    cin = cfg.get("in_channels", 3)  # the guided-unet always takes 3
    io = collections.OrderedDict()
    if arch in ("ddpm-unet", "guided-unet"):
        x = torch.randn(N, cin, hw, hw, generator=gen)
        t = torch.tensor([17.0, 999.0])[:N]
        out_ch = cfg["out_ch"] if arch == "ddpm-unet" else 6 if cfg["learn_sigma"] else 3
        out_shape = (N, out_ch, hw, hw)
    else:
        x = torch.rand(N, cin, hw, hw, generator=gen)
        t = None
        out_shape = (N, cfg["num_classes"])
    grad_y = torch.randn(*out_shape, generator=gen)
    m64 = copy.deepcopy(model).double()
    y, gx = rm.forward_vjp(m64, x.double(), grad_y.double(), None if t is None else t.double())
    io["x"] = x
    if t is not None:
        io["t"] = t
    io["grad_y"] = grad_y
    io["y"] = y.float()
    io["grad_x"] = gx.float()
    return io


def sd_in(model, dtype):
    return collections.OrderedDict(
        (k, v.to(TORCH_DTYPE[dtype]) if v.is_floating_point() else v) for k, v in model.state_dict().items())


def views_layout(sd):
    """The same values, stored as transposed views / slices of one shared storage."""
    out = collections.OrderedDict()
    total = sum(v.numel() for v in sd.values() if v.is_floating_point())
    flat = torch.empty(total + 7, dtype=next(iter(sd.values())).dtype)
    off = 7
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        if v.dim() == 2:  # a transposed view: stored column-major
            buf = torch.empty(v.shape[1], v.shape[0], dtype=v.dtype)
            buf.copy_(v.t())
            out[k] = buf.t()
            assert not out[k].is_contiguous()
            continue
        n = v.numel()
        piece = flat[off:off + n].view(v.shape)
        piece.copy_(v)
        out[k] = piece
        off += n
    return out


def save(obj, path, fmt):
    if fmt == "zip":
        torch.save(obj, path)
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--full", action="store_true", help="also the full-size CIFAR-10 WRN-28-10")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for name, arch, cfg, hw, seed in MODELS:
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump(cfg, f)
        for dtype in ("F32", "F16", "BF16"):
            model, gen = build(arch, cfg, seed)
            io = oracle(arch, cfg, hw, model, dtype, gen)
            rm.save_safetensors(os.path.join(args.out, f"{name}.{dtype}.io.safetensors"), io)
            sd = sd_in(model, dtype)
            layouts = []
            if arch == "guided-unet":  # openai/guided-diffusion: torch.save(model.state_dict())
                layouts.append(("openai", sd))
            elif arch == "ddpm-unet":
                layouts.append(("pesser", sd))
                other = collections.OrderedDict((k, torch.zeros_like(v)) for k, v in sd.items())
                if dtype == "F32":
                    layouts.append(("ema", {"model": other, "ema": sd, "step": 790000}))
            else:
                dp = nn.DataParallel(model).state_dict()  # 'module.' keys, num_batches_tracked kept
                dp = collections.OrderedDict(
                    (k, v.to(TORCH_DTYPE[dtype]) if v.is_floating_point() else v) for k, v in dp.items())
                assert all(k.startswith("module.") for k in dp)
                assert any(k.endswith("num_batches_tracked") for k in dp)
                layouts.append(("robustbench", {"state_dict": dp, "epoch": 200, "best_prec1": 95.3,
                                                "arch": "wrn-28-10"}))
                if dtype == "F32":  # metadata the restricted unpickler refuses unless --inert
                    save({"state_dict": dp, "args": argparse.Namespace(lr=0.1, epochs=200)},
                         os.path.join(args.out, "extra_args.ckpt"), "zip")
            if dtype == "F32":
                layouts.append(("views", views_layout(sd)))
            for layout, obj in layouts:
                for fmt in ("zip", "legacy"):
                    case = f"{name}.{layout}.{dtype}.{fmt}"
                    path = os.path.join(args.out, case + ".ckpt")
                    save(obj, path, fmt)
                    rows.append((case, arch, name, dtype, fmt, layout, case + ".ckpt"))
    if args.full:
        model, gen = build("wrn", rm.CIFAR10_WRN, 2005)
        sd = rm.float_state_dict(model)
        rm.save_safetensors(os.path.join(args.out, "wrn_full.expected.safetensors"), sd)
        dp = nn.DataParallel(model).state_dict()
        for fmt in ("zip", "legacy"):
            case = f"wrn_full.robustbench.F32.{fmt}"
            save({"state_dict": dp, "epoch": 200}, os.path.join(args.out, case + ".ckpt"), fmt)
            rows.append((case, "wrn", "wrn_full", "F32", fmt, "robustbench", case + ".ckpt"))
    with open(os.path.join(args.out, "manifest.tsv"), "w") as f:
        for r in rows:
            f.write("\t".join(r) + "\n")
    print(f"{len(rows)} checkpoints in {args.out} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
