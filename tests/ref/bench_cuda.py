#!/usr/bin/env python3
"""bench_cuda.py — drq's CUDA backend against PyTorch CUDA on the same GPU (make bench-cuda).

1. The CIFAR-10 DDPM UNet (random weights), forward and forward + input-VJP,
   at batch 1 … 256: `drq model bench --device cuda:0` against the same
   architecture from ref_models.py in PyTorch (eager fp32 with PyTorch's
   defaults: TF32 convolutions, float32 matmuls; cudnn.benchmark off and on,
   the better PyTorch figure is compared).  Ratio drq / PyTorch < 1: drq is
   faster.  Achieved TFLOP/s count 2·MACs of the convolutions, linears and
   attention products (hooks below); a VJP costs as much as a forward.
2. Full-gradient PGD (fixed ω, DDPM purifier t* = 100, WRN-28-10) with
   tests/cuda_bench_pgd: seconds per PGD step per image, images per hour for
   PGD-40, and achieved TFLOP/s inside the loop against the card's dense TF32
   peak.

Needs a GPU and PyTorch with CUDA (the GPU machines have both).  Without a
GPU it says so and exits 0 without figures.
"""
import argparse
import datetime
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# dense TF32 tensor-core peak, TFLOP/s (NVIDIA data sheets); matched on the device name
TF32_PEAK = [("H200", 494.7), ("H100 PCIe", 378.0), ("H100", 494.7), ("A100", 156.0), ("L40S", 183.0),
             ("A10", 62.5), ("L4", 60.0)]

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def peak_for(name):
    for key, v in TF32_PEAK:
        if key in name:
            return v
    return None


def unet_flops(torch, R, cfg):
    """Forward FLOPs (2·MAC) of one image through the UNet: convolutions, linears, attention products."""
    import torch.nn as nn
    model = R.build("ddpm-unet", cfg).eval()
    total = [0]

    def conv_hook(m, inp, out):
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def lin_hook(m, inp, out):
        total[0] += 2 * out.numel() * m.in_features

    def attn_hook(m, inp, out):
        x = inp[0]
        c, l = x.shape[1], x.shape[2] * x.shape[3]
        total[0] += 2 * 2 * c * l * l * x.shape[0]  # QᵀK and V·Pᵀ

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(lin_hook)
        elif type(m).__name__ == "AttnBlock":
            m.register_forward_hook(attn_hook)
    with torch.no_grad():
        model(torch.rand(1, cfg["in_channels"], 32, 32), torch.tensor([10.0]))
    return total[0]


def wrn_flops(torch, R, cfg):
    import torch.nn as nn
    model = R.build("wrn", cfg).eval()
    total = [0]

    def conv_hook(m, inp, out):
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
    with torch.no_grad():
        model(torch.rand(1, cfg["in_channels"], 32, 32))
    return total[0]


def torch_time(torch, R, batch, vjp, repeat, benchmark):
    torch.backends.cudnn.benchmark = benchmark
    torch.manual_seed(0)
    model = R.build("ddpm-unet", R.CIFAR10_UNET).cuda().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, 3, 32, 32, device="cuda")
    t = torch.arange(batch, dtype=torch.float32, device="cuda") + 90
    best = float("inf")
    for r in range(repeat + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        if vjp:
            xr = x.detach().clone().requires_grad_(True)
            y = model(xr, t)
            (g,) = torch.autograd.grad(y, xr, torch.ones_like(y) * 1e-2)
        else:
            with torch.no_grad():
                model(x, t)
        torch.cuda.synchronize()
        if r:
            best = min(best, time.perf_counter() - t0)
    del model
    torch.cuda.empty_cache()
    return best / batch


def drq_time(drq, batch, vjp, repeat):
    cmd = [drq, "model", "bench", "--arch", "ddpm-unet", "--config", "cifar10", "--batch", str(batch), "--repeat",
           str(repeat), "--device", "cuda:0"] + (["--vjp"] if vjp else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.split("s_per_image=")[1].split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drq", default="build/drq")
    ap.add_argument("--pgd", default="build/tests/cuda_bench_pgd")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--pgd-batches", default="32,128")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("bench-cuda: PyTorch is not installed for", sys.executable, "- no figures")
        return 0
    if not torch.cuda.is_available():
        print("bench-cuda: no GPU visible to PyTorch: nothing measured")
        return 0
    import ref_models as R
    name = torch.cuda.get_device_name(0)
    peak = peak_for(name)
    fu, fw = unet_flops(torch, R, R.CIFAR10_UNET), wrn_flops(torch, R, R.CIFAR10_WRN)
    print(f"# {datetime.date.today()} {name}; torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}; "
          f"dense TF32 peak {peak or 'unknown'} TFLOP/s")
    print(f"# UNet forward {fu / 1e9:.2f} GFLOP/image, WRN-28-10 forward {fw / 1e9:.2f} GFLOP/image")
    print("| mode | batch | drq ms/img | torch ms/img | drq/torch | drq TFLOP/s | torch TFLOP/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for vjp in (False, True):
        for b in map(int, args.batches.split(",")):
            d = drq_time(args.drq, b, vjp, args.repeat)
            t = min(torch_time(torch, R, b, vjp, args.repeat, bm) for bm in (False, True))
            fl = fu * (2 if vjp else 1)
            print(f"| {'fwd+vjp' if vjp else 'fwd'} | {b} | {d * 1e3:.3f} | {t * 1e3:.3f} | {d / t:.2f} | "
                  f"{fl / d / 1e12:.1f} | {fl / t / 1e12:.1f} |", flush=True)
    print()
    print("| PGD (t*=100, full gradient) batch | s/step/img | images/hour PGD-40 | TFLOP/s | % TF32 peak |")
    print("| --- | --- | --- | --- | --- |")
    for b in map(int, args.pgd_batches.split(",")):
        out = subprocess.run([args.pgd, "--device", "cuda:0", "--batch", str(b), "--tstar", "100", "--steps", "2"],
                             check=True, capture_output=True, text=True).stdout
        s = float(out.split("s_per_step_per_image=")[1].split()[0])
        ev = float(out.split("unet_evals_per_step_per_image=")[1].split()[0])
        flops = (ev + 100) * fu + 2 * fw  # UNet forwards (incl. recomputation) + 100 VJPs; WRN forward + VJP
        tf = flops / s / 1e12
        pct = f"{100 * tf / peak:.0f}%" if peak else "n/a"
        print(f"| {b} | {s:.4f} | {3600 / (40 * s):.0f} | {tf:.1f} | {pct} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
