#!/usr/bin/env python3
"""bench.py — drq against PyTorch on the CPU, same machine, same threads (make bench).

For each case it runs `drq model bench` (random weights; best of R runs after
a warm-up) and times the same architecture from ref_models.py in PyTorch:
eager fp32, both NCHW and channels_last, parameters frozen so autograd only
computes the input gradient; the better PyTorch figure is the one compared.
Prints seconds per image and the ratio drq / PyTorch (< 1: drq is faster).

Use /usr/bin/python3 (Debian's python3-torch); install libopenblas0-pthread
first, or PyTorch's GEMMs run on the reference BLAS (docs/bench.md).
"""
import argparse
import os
import platform
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_models as R  # noqa: E402

CASES = [  # (arch, config, batch, vjp)
    ("ddpm-unet", R.CIFAR10_UNET, 1, False),
    ("ddpm-unet", R.CIFAR10_UNET, 8, False),
    ("ddpm-unet", R.CIFAR10_UNET, 1, True),
    ("ddpm-unet", R.CIFAR10_UNET, 8, True),
    ("wrn", R.CIFAR10_WRN, 8, True),
]


def torch_time(arch, cfg, batch, vjp, repeat, channels_last):
    torch.manual_seed(0)
    model = R.build(arch, cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, cfg["in_channels"], 32, 32)
    t = torch.arange(batch, dtype=torch.float32) + 90 if arch == "ddpm-unet" else None
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    best = float("inf")
    for r in range(repeat + 1):
        t0 = time.perf_counter()
        if vjp:
            xr = x.detach().clone().requires_grad_(True)
            y = model(xr, t) if t is not None else model(xr)
            (g,) = torch.autograd.grad(y, xr, torch.ones_like(y) * 1e-2)
        else:
            with torch.no_grad():
                y = model(x, t) if t is not None else model(x)
        dt = time.perf_counter() - t0
        if r:
            best = min(best, dt)
    return best / batch


def drq_time(drq, arch, batch, vjp, repeat, threads, alg="direct"):
    cmd = [drq, "model", "bench", "--arch", arch, "--config", "cifar10", "--batch", str(batch),
           "--repeat", str(repeat), "--threads", str(threads)] + (["--vjp"] if vjp else [])
    env = dict(os.environ, DRQ_CONV_ALG=alg)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return float(out.split("s_per_image=")[1].split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drq", default="build/drq")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# {time.strftime('%Y-%m-%d')}  {cpu}  threads={a.threads}  torch {torch.__version__}  "
          f"{platform.machine()}")
    print("# drq: default (direct convolutions, batch-invariant rows) and DRQ_CONV_ALG=winograd (wino)")
    print(f"{'model':<10} {'mode':<8} {'batch':>5} {'drq s/img':>10} {'wino s/img':>10} {'torch s/img':>12} "
          f"{'drq/torch':>9} {'wino/torch':>10}")
    for arch, cfg, batch, vjp in CASES:
        d = drq_time(a.drq, arch, batch, vjp, a.repeat, a.threads)
        w = drq_time(a.drq, arch, batch, vjp, a.repeat, a.threads, "winograd")
        tt = min(torch_time(arch, cfg, batch, vjp, a.repeat, cl) for cl in (False, True))
        name = "unet" if arch == "ddpm-unet" else "wrn-28-10"
        print(f"{name:<10} {'fwd+vjp' if vjp else 'fwd':<8} {batch:>5} {d:>10.4f} {w:>10.4f} {tt:>12.4f} "
              f"{d / tt:>9.2f} {w / tt:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
