"""check_full.py — drq against the PyTorch float64 oracle on the full configs
(CIFAR-10: DDPM UNet 35.7 M parameters, WRN-28-10 36.5 M; ImageNet: the
guided-diffusion 256×256 ADM UNet "imagenet256", 552.8 M), random weights.

    /usr/bin/python3 tests/ref/check_full.py --drq build/drq [--threads N] [--keep]

For each architecture: builds the model with seeded random weights (default
init + random norm affine parameters and BN statistics), batch 2 (the ADM
UNet: batch 1, t = 149, DiffPure's first step at t* = 150), writes weights
(F32) and inputs (x, t, grad_y) to a temporary folder, runs
`drq model run --arch A --config cifar10|imagenet256 ...`, and compares y (rel L2 ≤ 1e-5)
and grad_x (rel L2 ≤ 1e-4) with the float64 oracle.  Prints every error;
exits 1 on any failure.  With --keep the folder stays, holding
expected.<arch>.safetensors for tests/tool_stcmp.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_guided as rg  # noqa: E402
import ref_models as rm  # noqa: E402

TOL = {"y": 1e-5, "grad_x": 1e-4}
BATCH = 2
PRESET = {"ddpm-unet": "cifar10", "wrn": "cifar10", "guided-unet": "imagenet256"}
GUIDED_256_PARAMS = 552_814_086  # openai/guided-diffusion 256x256_diffusion_uncond.pt


def case(arch, seed):
    cfg = {"ddpm-unet": rm.CIFAR10_UNET, "wrn": rm.CIFAR10_WRN, "guided-unet": rg.IMAGENET256}[arch]
    want = {"ddpm-unet": rm.CIFAR10_UNET_PARAMS, "wrn": rm.CIFAR10_WRN_PARAMS, "guided-unet": GUIDED_256_PARAMS}[arch]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 7919)
    model = rm.build(arch, cfg).float()
    assert rm.n_params(model) == want, (arch, rm.n_params(model), want)
    rm.randomize_norms(model, gen)
    model.eval()
    if arch == "guided-unet":
        x = torch.randn(1, 3, 256, 256, generator=gen)
        t = torch.tensor([149.0])
        grad_y = torch.randn(1, 6, 256, 256, generator=gen)
    elif arch == "ddpm-unet":
        x = torch.randn(BATCH, 3, 32, 32, generator=gen)
        t = torch.tensor([99.0, 512.37])  # DiffPure's last step index, and a fractional one
        grad_y = torch.randn(BATCH, 3, 32, 32, generator=gen)
    else:
        x = torch.rand(BATCH, 3, 32, 32, generator=gen)
        t = None
        grad_y = torch.randn(BATCH, 10, generator=gen)
    return model, x, t, grad_y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drq", default="build/drq", help="path of the drq binary")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--arch", default="ddpm-unet,wrn,guided-unet", help="comma-separated: ddpm-unet, wrn, guided-unet")
    ap.add_argument("--seed", type=int, default=20240)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if not os.access(args.drq, os.X_OK):
        print(f"check_full: {args.drq} is not an executable (build it with make)", file=sys.stderr)
        return 2

    tmp = tempfile.mkdtemp(prefix="drq_check_full.")
    failed = 0
    try:
        for k, arch in enumerate(args.arch.split(",")):
            model, x, t, grad_y = case(arch, args.seed + k)
            w = os.path.join(tmp, f"{arch}.weights.safetensors")
            inp = os.path.join(tmp, f"{arch}.in.safetensors")
            out = os.path.join(tmp, f"{arch}.out.safetensors")
            exp = os.path.join(tmp, f"expected.{arch}.safetensors")
            rm.save_safetensors(w, rm.float_state_dict(model))
            io = {"x": x}
            if t is not None:
                io["t"] = t
            io["grad_y"] = grad_y
            rm.save_safetensors(inp, io)

            cmd = [args.drq, "model", "run", "--arch", arch, "--config", PRESET[arch], "--weights", w,
                   "--in", inp, "--out", out]
            print(f"== {arch}: {' '.join(cmd)}", flush=True)
            t0 = time.time()
            r = subprocess.run(cmd)
            t_drq = time.time() - t0
            if r.returncode != 0:
                print(f"FAIL {arch}: drq exited with status {r.returncode}")
                failed += 2
                continue

            t0 = time.time()
            m64 = model.double()
            y64, gx64 = rm.forward_vjp(m64, x.double(), grad_y.double(), None if t is None else t.double())
            t_ref = time.time() - t0
            rm.save_safetensors(exp, {"y": y64.float(), "grad_x": gx64.float()})
            got = rm.load_safetensors(out)
            print(f"   drq {t_drq:.1f} s (forward + VJP, incl. loading), float64 oracle {t_ref:.1f} s")
            for name, ref in (("y", y64), ("grad_x", gx64)):
                if name not in got:
                    print(f"FAIL {arch} {name}: missing from {out}")
                    failed += 1
                    continue
                a = got[name]
                if tuple(a.shape) != tuple(ref.shape):
                    print(f"FAIL {arch} {name}: shape {list(a.shape)}, expected {list(ref.shape)}")
                    failed += 1
                    continue
                rel, mx = rm.rel_l2(a, ref.numpy())
                ok = rel <= TOL[name]  # NaN compares False: fails
                failed += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {arch:9s} {name:6s} {str(list(a.shape)):16s} rel_l2 {rel:.3e}"
                      f"  max_abs {mx:.3e}  tol {TOL[name]:.0e}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("check_full: " + ("all ok" if not failed else f"{failed} failure(s)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
