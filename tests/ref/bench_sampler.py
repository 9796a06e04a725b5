#!/usr/bin/env python3
"""bench_sampler.py — what users pay for: one full-gradient pass through DDPM
purification on the CIFAR-10 UNet (forward t* reverse steps from x, then the
exact VJP of the purified image with one UNet recomputation per step), drq
against the same computation written in PyTorch as a user would (each
sampler step under torch.utils.checkpoint), same machine, same threads.

    /usr/bin/python3 tests/ref/bench_sampler.py --drq build/drq [--threads 2] [--batch 1,8] [--steps 2,6]

drq side: `drq purify SPEC --purifier ddpm --in IN --out OUT` with x and
grad_y in IN (y = P_ω(x) and the full VJP grad_x), run at two depths t*; the
difference of the two wall times divided by the difference of the steps is
the cost of one sampler step (model loading and the fixed work cancel).
PyTorch side: the same depths, timed in-process, the same difference.
Prints seconds per sampler step per image and the ratio drq / PyTorch.
Then the memory of the full gradient (--mem-depths, default 2,100): the peak
resident set (drq's own VmHWM) of one pass at t* = 2 and at
t* = 100, batch 1 and 8.  Checkpointing keeps one state per step, so the
difference of the two must be O(t* × image), and the t* = 2 figure is the
weights, their oneDNN copies and one UNet's activations.
Random weights (the timing does not depend on them); float32 on both sides.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_models as R  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


def schedule():
    beta = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return beta, np.cumprod(1 - beta)


def torch_pass(unet, x, grad_y, t_star):
    """DDPM (fixedlarge) purification from x at depth t_star, full gradient, per-step checkpoints."""
    beta, ab = schedule()
    n = x.shape[0]
    gen = torch.Generator().manual_seed(0)
    x = x.detach().clone().requires_grad_(True)
    s = np.sqrt(ab[t_star - 1]) * (2 * x - 1) + np.sqrt(1 - ab[t_star - 1]) * torch.randn(x.shape, generator=gen)

    def step(s, i, z):
        t = torch.full((n,), float(i))
        eps = unet(s, t)
        x0 = float(np.sqrt(1 / ab[i])) * s - float(np.sqrt(1 / ab[i] - 1)) * eps
        abm = ab[i - 1] if i >= 1 else 1.0
        c1 = float(beta[i] * np.sqrt(abm) / (1 - ab[i]))
        c2 = float((1 - abm) * np.sqrt(1 - beta[i]) / (1 - ab[i]))
        out = c1 * x0 + c2 * s
        return out + float(np.sqrt(beta[i])) * z if i > 0 else out

    for i in range(t_star - 1, -1, -1):
        z = torch.randn(x.shape, generator=gen)
        s = checkpoint(step, s, i, z, use_reentrant=False)
    y = torch.clamp((s + 1) / 2, 0, 1)
    (gx,) = torch.autograd.grad(y, x, grad_y)
    return gx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drq", default="build/drq")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--steps", default="2,6", help="the two depths t* whose difference is timed")
    ap.add_argument("--repeat", type=int, default=2, help="best of N at each depth")
    ap.add_argument("--mem-depths", default="2,100", help="the two depths t* whose peak RSS is reported")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_lo, t_hi = (int(v) for v in a.steps.split(","))
    print(machine_line(a.threads) + f"  torch {torch.__version__}")
    print("# full-gradient DDPM purification pass on the CIFAR-10 UNet: seconds per sampler step per image")
    print(f"{'batch':>5} {'drq s/step/img':>15} {'torch s/step/img':>17} {'drq/torch':>9}")

    torch.manual_seed(0)
    unet = R.build("ddpm-unet", R.CIFAR10_UNET).float().eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    tmp = tempfile.mkdtemp(prefix="drq_bench_sampler.")
    weights = os.path.join(tmp, "unet.safetensors")
    R.save_safetensors(weights, R.float_state_dict(unet))
    with open(os.path.join(tmp, "unet.json"), "w") as f:
        json.dump(R.CIFAR10_UNET, f)

    for batch in (int(b) for b in a.batch.split(",")):
        gen = torch.Generator().manual_seed(batch)
        x = torch.rand(batch, 3, 32, 32, generator=gen)
        gy = torch.randn(batch, 3, 32, 32, generator=gen)
        io = os.path.join(tmp, f"in{batch}.safetensors")
        R.save_safetensors(io, {"x": x, "grad_y": gy})
        drq_t, torch_t = {}, {}
        for depth in (t_lo, t_hi):
            sp = write_spec(tmp, weights, batch, depth)
            best = float("inf")
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                run_purify(a, sp, io, tmp)
                best = min(best, time.perf_counter() - t0)
            drq_t[depth] = best
            best = float("inf")
            for r in range(a.repeat + 1):
                t0 = time.perf_counter()
                torch_pass(unet, x, gy, depth)
                if r:
                    best = min(best, time.perf_counter() - t0)
            torch_t[depth] = best
        d = (drq_t[t_hi] - drq_t[t_lo]) / (t_hi - t_lo) / batch
        t = (torch_t[t_hi] - torch_t[t_lo]) / (t_hi - t_lo) / batch
        print(f"{batch:>5} {d:>15.4f} {t:>17.4f} {d / t:>9.2f}", flush=True)

    m_lo, m_hi = (int(v) for v in a.mem_depths.split(","))
    print(f"# peak RSS of one drq full-gradient pass (MiB); states: {m_hi} steps x batch x 3x32x32 float32")
    print(f"{'batch':>5} {'t*=' + str(m_lo):>9} {'t*=' + str(m_hi):>9} {'growth':>8} {'states':>8}")
    for batch in (int(b) for b in a.batch.split(",")):
        io = os.path.join(tmp, f"in{batch}.safetensors")
        rss = {}
        for depth in (m_lo, m_hi):
            rss[depth] = run_purify(a, write_spec(tmp, weights, batch, depth), io, tmp) / 1024
        states = m_hi * batch * 3 * 32 * 32 * 4 / 2**20
        print(f"{batch:>5} {rss[m_lo]:>9.1f} {rss[m_hi]:>9.1f} {rss[m_hi] - rss[m_lo]:>8.1f} {states:>8.1f}",
              flush=True)


def write_spec(tmp, weights, batch, depth, diffusion=None):
    """A one-purifier spec at depth t* over the bench UNet, or over the diffusion model given as the
    spec's "diffusion" object (its dataset and classifier are never used by drq purify)."""
    spec = {"name": "bench", "dataset": {"kind": "cifar10", "path": tmp, "count": batch},
            "classifier": {"arch": "wrn", "config": os.path.join(FIX, "wrn_small.json"),
                           "weights": os.path.join(FIX, "wrn_small.weights.safetensors")},
            "diffusion": diffusion or {"arch": "ddpm-unet", "config": os.path.join(tmp, "unet.json"),
                                       "weights": weights},
            "purifiers": [{"name": "ddpm", "kind": "ddpm", "t_star": depth}],
            "attacks": [{"name": "a", "kind": "pgd"}]}
    sp = os.path.join(tmp, f"spec{depth}.json")
    with open(sp, "w") as f:
        json.dump(spec, f)
    return sp


def machine_line(threads):
    """The header line of a bench: date, CPU, threads, ISA."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "native")
    return (f"# {time.strftime('%Y-%m-%d')}  {cpu}  threads={threads}  {platform.machine()}  "
            f"ONEDNN_MAX_CPU_ISA={isa}")


def purify(drq, sp, io, out, threads, *extra):
    """Runs one `drq purify --purifier ddpm --seed 0` pass; returns what it says on stderr: forward_s,
    backward_s (seconds) and peak_rss_kib (drq's own VmHWM: getrusage of a child forked from this
    Python process would count Python's own memory too)."""
    r = subprocess.run([drq, "purify", sp, "--purifier", "ddpm", "--seed", "0", "--in", io, "--out", out,
                        "--threads", str(threads), *extra],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        sys.exit(f"drq purify failed ({r.returncode}): {r.stderr}")
    return {k: float(r.stderr.split(k + "=")[-1].split()[0]) for k in ("forward_s", "backward_s", "peak_rss_kib")}


def run_purify(a, sp, io, tmp):
    """One drq full-gradient pass; its peak resident set in KiB."""
    return int(purify(a.drq, sp, io, os.path.join(tmp, "out.safetensors"), a.threads)["peak_rss_kib"])


if __name__ == "__main__":
    main()
