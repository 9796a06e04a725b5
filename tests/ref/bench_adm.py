#!/usr/bin/env python3
"""bench_adm.py — the ImageNet full-gradient pass on this machine (issue 17):
the guided-diffusion 256×256 ADM UNet (preset imagenet256, 552.8 M
parameters, random weights) as DDPM purifier with learned σ and the
224 → 256 → 224 resizes inside P, one 224×224 image, the forward t* steps
and the exact VJP (one UNet recomputation per step), through `drq purify`.

    /usr/bin/python3 tests/ref/bench_adm.py --drq build/drq [--threads 2] [--depths 1,3] [--budgets 0,1]
                                            [--device cuda:0] [--workdir DIR]

For each memory budget (`--mem-budget MIB`: 0 never checkpoints inside the
UNet, 1 always does) it runs two depths t* and prints, per depth, the
forward and backward seconds and drq's own peak resident set (VmHWM).  The
differences between the depths give the cost of one sampler step (seconds,
and the GFLOP/s of that step from the model's FLOP count: forward + recompute
+ input-VJP = 4 UNet forwards) and the memory each step adds; the peak of a
t* = 150 pass is then the lower depth's peak plus (150 − lower depth) × that
growth, and the time of one 150-step pass the matching line — both printed
as extrapolations, with the growth the sampler's states should give
(one 3×256×256 float32 state per step and image: 0.75 MiB).
A t* = 150 pass itself takes hours on 2 cores: not a CI job, not in make bench.
"""
import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_sampler as B  # noqa: E402
import ref_guided as G  # noqa: E402
import ref_models as R  # noqa: E402

UNET_GFLOP = 2240.0  # one 256×256 forward of imagenet256 (drq run --dry-run, worker/models/flops.c)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--drq", default="build/drq")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depths", default="1,3", help="the two depths t* whose difference is one step")
    ap.add_argument("--budgets", default="0,1", help="--mem-budget values (MiB) to run")
    ap.add_argument("--target", type=int, default=150, help="the t* to extrapolate to")
    ap.add_argument("--device", default="cpu", help="drq purify's --device: cpu or cuda:N")
    ap.add_argument("--workdir", help="a folder to keep the 2.2 GB of random weights in (reused when there)")
    a = ap.parse_args()
    lo, hi = (int(v) for v in a.depths.split(","))
    print(B.machine_line(a.threads) + f"  device={a.device}")
    print("# full-gradient DDPM pass, ADM UNet imagenet256, random weights, one 224x224 image")

    tmp = a.workdir or tempfile.mkdtemp(prefix="drq_bench_adm.")
    weights = os.path.join(tmp, "adm.safetensors")
    if not os.path.exists(weights):
        torch.manual_seed(0)
        with torch.no_grad():
            unet = G.build(G.IMAGENET256).float()
            R.save_safetensors(weights, R.float_state_dict(unet))
        del unet
    gen = torch.Generator().manual_seed(1)
    io = os.path.join(tmp, "in.safetensors")
    R.save_safetensors(io, {"x": torch.rand(1, 3, 224, 224, generator=gen),
                            "grad_y": torch.randn(1, 3, 224, 224, generator=gen)})

    print(f"{'budget':>6} {'t*':>4} {'forward s':>10} {'backward s':>11} {'peak MiB':>9}")
    res = {}
    adm = {"arch": "guided-unet", "config": "imagenet256", "weights": weights}
    for budget in (int(b) for b in a.budgets.split(",")):
        for depth in (lo, hi):
            fwd, bwd, rss = run_purify(a, B.write_spec(tmp, weights, 1, depth, adm), io, tmp, budget)
            res[budget, depth] = (fwd, bwd, rss)
            print(f"{budget:>6} {depth:>4} {fwd:>10.1f} {bwd:>11.1f} {rss:>9.0f}", flush=True)

    state_mib = 3 * 256 * 256 * 4 / 2**20
    print(f"# per sampler step (t*={hi} minus t*={lo}) and the extrapolation to t*={a.target}")
    print(f"{'budget':>6} {'s/step':>8} {'GFLOP/s':>8} {'MiB/step':>9} {'state MiB':>10} "
          f"{'peak@' + str(a.target) + ' MiB':>14} {'pass@' + str(a.target) + ' h':>11}")
    for budget in (int(b) for b in a.budgets.split(",")):
        f0, b0, r0 = res[budget, lo]
        f1, b1, r1 = res[budget, hi]
        step = ((f1 + b1) - (f0 + b0)) / (hi - lo)
        grow = (r1 - r0) / (hi - lo)
        peak = r0 + (a.target - lo) * max(grow, state_mib)
        hours = (f0 + b0 + (a.target - lo) * step) / 3600
        print(f"{budget:>6} {step:>8.1f} {4 * UNET_GFLOP / step:>8.1f} {grow:>9.2f} {state_mib:>10.2f} "
              f"{peak:>14.0f} {hours:>11.2f}", flush=True)


def run_purify(a, sp, io, tmp, budget):
    """One drq full-gradient pass: (forward s, backward s, peak RSS MiB) as drq purify reports them."""
    r = B.purify(a.drq, sp, io, os.path.join(tmp, "out.safetensors"), a.threads, "--mem-budget", str(budget),
                 "--device", a.device)
    return r["forward_s"], r["backward_s"], r["peak_rss_kib"] / 1024


if __name__ == "__main__":
    main()
