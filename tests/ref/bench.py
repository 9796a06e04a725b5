#!/usr/bin/env python3
"""bench.py — drq against PyTorch on the CPU, same machine, same threads (make bench).

For each case it runs `drq model bench` (random weights; best of R runs after
a warm-up) and times the same architecture from ref_models.py in PyTorch:
eager fp32, both NCHW and channels_last, parameters frozen so autograd only
computes the input gradient; the better PyTorch figure is the one compared.
Prints seconds per image, the ratio drq / PyTorch (< 1: drq is faster), and
drq's achieved GFLOP/s as a fraction of this machine's measured peak: oneDNN
sgemm at 2048³ on the same threads (`drq model peak`), measured in the same
run.  Cases: the CIFAR-10 UNet and WRN-28-10 (32×32), and the demo's
Fashion-MNIST models (examples/models, 28×28), where small channel counts
leave more of the time to pointwise work and parallel-region overhead.

Use /usr/bin/python3 (Debian's python3-torch); install libopenblas0-pthread
first, or PyTorch's GEMMs run on the reference BLAS (docs/bench.md).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_models as R  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "..", "..", "examples", "models")


def demo_config(name):
    with open(os.path.join(DEMO, name)) as f:
        return json.load(f)


# (label, arch, drq --config, config dict, resolution, batch, vjp)
CASES = [
    ("unet", "ddpm-unet", "cifar10", R.CIFAR10_UNET, 32, 1, False),
    ("unet", "ddpm-unet", "cifar10", R.CIFAR10_UNET, 32, 8, False),
    ("unet", "ddpm-unet", "cifar10", R.CIFAR10_UNET, 32, 1, True),
    ("unet", "ddpm-unet", "cifar10", R.CIFAR10_UNET, 32, 8, True),
    ("wrn-28-10", "wrn", "cifar10", R.CIFAR10_WRN, 32, 8, True),
    ("demo-unet", "ddpm-unet", os.path.join(DEMO, "fmnist-ddpm.json"), demo_config("fmnist-ddpm.json"), 28, 8, False),
    ("demo-unet", "ddpm-unet", os.path.join(DEMO, "fmnist-ddpm.json"), demo_config("fmnist-ddpm.json"), 28, 8, True),
    ("demo-wrn", "wrn", os.path.join(DEMO, "fmnist-wrn.json"), demo_config("fmnist-wrn.json"), 28, 8, True),
]


def torch_time(arch, cfg, res, batch, vjp, repeat, channels_last):
    torch.manual_seed(0)
    model = R.build(arch, cfg).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, cfg["in_channels"], res, res)
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


def field(out, key):
    return float(out.split(key + "=")[1].split()[0])


def drq_time(drq, arch, config, res, batch, vjp, repeat, threads, alg="direct"):
    """(seconds per image, achieved GFLOP/s) of `drq model bench`."""
    cmd = [drq, "model", "bench", "--arch", arch, "--config", config, "--batch", str(batch), "--res", str(res),
           "--repeat", str(repeat), "--threads", str(threads)] + (["--vjp"] if vjp else [])
    env = dict(os.environ, DRQ_CONV_ALG=alg)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return field(out, "s_per_image"), field(out, "gflops")


def sgemm_peak(drq, threads):
    out = subprocess.run([drq, "model", "peak", "--threads", str(threads), "--size", "2048", "--repeat", "5"],
                         check=True, capture_output=True, text=True).stdout
    return field(out, "gflops")


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
    peak = sgemm_peak(a.drq, a.threads)
    print(f"# ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'native')}  "
          f"measured peak: oneDNN sgemm 2048^3 = {peak:.1f} GFLOP/s on {a.threads} threads")
    print("# drq: default (direct convolutions, batch-invariant rows) and DRQ_CONV_ALG=winograd (wino);"
          " GFLOP/s and %peak of the default")
    print(f"{'model':<10} {'mode':<8} {'batch':>5} {'drq s/img':>10} {'wino s/img':>10} {'torch s/img':>12} "
          f"{'drq/torch':>9} {'wino/torch':>10} {'GFLOP/s':>8} {'%peak':>6}")
    for name, arch, config, cfg, res, batch, vjp in CASES:
        d, gf = drq_time(a.drq, arch, config, res, batch, vjp, a.repeat, a.threads)
        w, _ = drq_time(a.drq, arch, config, res, batch, vjp, a.repeat, a.threads, "winograd")
        tt = min(torch_time(arch, cfg, res, batch, vjp, a.repeat, cl) for cl in (False, True))
        print(f"{name:<10} {'fwd+vjp' if vjp else 'fwd':<8} {batch:>5} {d:>10.4f} {w:>10.4f} {tt:>12.4f} "
              f"{d / tt:>9.2f} {w / tt:>10.2f} {gf:>8.1f} {100 * gf / peak:>5.0f}%", flush=True)


if __name__ == "__main__":
    main()
