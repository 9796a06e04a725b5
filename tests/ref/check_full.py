"""check_full.py — drq against the PyTorch float64 oracle on the full configs
(CIFAR-10 DDPM UNet 35.7 M parameters, WRN-28-10 36.5 M; ImageNet ResNet-50
25.6 M at 224×224 and the guided-diffusion 256×256 ADM UNet "imagenet256",
552.8 M), random weights.

    /usr/bin/python3 tests/ref/check_full.py --drq build/drq [--threads N] [--keep]

For each architecture: builds the model with seeded random weights (default
init + random norm affine parameters and BN statistics), batch 2 (the ADM
UNet: batch 1, t = 149, DiffPure's first step at t* = 150), writes weights
(F32) and inputs (x, t, grad_y) to a temporary folder, runs
`drq model run --arch A --config cifar10|imagenet|imagenet256 ...`, and compares
y (rel L2 ≤ 1e-5) and grad_x (rel L2 ≤ 1e-4) with the float64 oracle.
ResNet-50 runs three seeds, and its grad_x is held to 1e-4 or twice PyTorch
float32's own worst error on those seeds where that is larger (ReLU decisions
that flip between float32 and float64; see kink_cases).  Prints every error;
exits 1 on any failure.  With --keep the folder stays, holding
expected.<arch>.safetensors for tests/tool_stcmp.
"""
import argparse
import copy
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
import ref_resnet as rr  # noqa: E402

TOL = {"y": 1e-5, "grad_x": 1e-4}
BATCH = 2
GUIDED_256_PARAMS = 552_814_086  # openai/guided-diffusion 256x256_diffusion_uncond.pt


# arch: (config, parameters, --config preset, input side, classes)
FULL = {
    "ddpm-unet": (rm.CIFAR10_UNET, rm.CIFAR10_UNET_PARAMS, "cifar10", 32, None),
    "wrn": (rm.CIFAR10_WRN, rm.CIFAR10_WRN_PARAMS, "cifar10", 32, 10),
    "resnet50": (rr.IMAGENET_RESNET50, rr.IMAGENET_RESNET50_PARAMS, "imagenet", 224, 1000),
    "guided-unet": (rg.IMAGENET256, GUIDED_256_PARAMS, "imagenet256", 256, None),
}


def case(arch, seed):
    cfg, want, _, hw, classes = FULL[arch]
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
        x = torch.rand(BATCH, 3, hw, hw, generator=gen)
        t = None
        grad_y = torch.randn(BATCH, classes, generator=gen)
    return model, x, t, grad_y


KINK_SEEDS = 3  # ResNet-50 cases


def kink_cases(arch, seed):
    """The ResNet-50 cases and the grad_x tolerance they can be held to.

    At 224×224 ResNet-50 takes ~10 M ReLU decisions.  Wherever a
    pre-activation lies within float32 rounding of zero, a float32 and the
    float64 computation may decide it differently, and the input gradient
    then moves by anything from 1e-5 to 1e-2 (measured: PyTorch's own
    float32 is 5e-5 to 1.2e-2 from float64 on these seeds; drq 8e-6 to 5e-4;
    either, without a flip, ~1e-5).  The tight VJP check of the architecture
    is the small fixture at 1e-4 (tests/test_parity.sh); here grad_x must be
    within 1e-4 or, where PyTorch's float32 itself is farther on these
    cases, within twice PyTorch's worst error (measured: drq and PyTorch are
    both 1.19e-2 from float64 on seed 20240, where float64 decides a unit
    differently from both)."""
    cases, worst = [], 0.0
    for s in range(seed, seed + KINK_SEEDS):
        model, x, t, grad_y = case(arch, s)
        _, gx32 = rm.forward_vjp(model, x, grad_y)
        y64, gx64 = rm.forward_vjp(copy.deepcopy(model).double(), x.double(), grad_y.double())
        rel = rm.rel_l2(gx32.numpy(), gx64.numpy())[0]
        worst = max(worst, rel)
        print(f"   {arch} seed {s}: PyTorch float32 grad_x {rel:.1e} from float64")
        cases.append((f"{arch}#{s}", model, x, t, grad_y, (y64, gx64)))
    tol = dict(TOL, grad_x=max(TOL["grad_x"], 2 * worst))
    print(f"   {arch}: grad_x tolerance {tol['grad_x']:.1e} (1e-4, or twice PyTorch float32's worst on these cases)")
    return [c + (tol,) for c in cases]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drq", default="build/drq", help="path of the drq binary")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--arch", default="ddpm-unet,wrn,resnet50,guided-unet",
                    help="comma-separated: ddpm-unet, wrn, resnet50, guided-unet")
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
        cases = []
        for k, arch in enumerate(args.arch.split(",")):
            if arch == "resnet50":
                cases += [(arch,) + c for c in kink_cases(arch, args.seed + k)]
            else:
                cases.append((arch, arch) + case(arch, args.seed + k) + (None, TOL))
        for arch, label, model, x, t, grad_y, ref64, tol in cases:
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

            cmd = [args.drq, "model", "run", "--arch", arch, "--config", FULL[arch][2], "--weights", w,
                   "--in", inp, "--out", out]
            print(f"== {label}: {' '.join(cmd)}", flush=True)
            t0 = time.time()
            r = subprocess.run(cmd)
            t_drq = time.time() - t0
            if r.returncode != 0:
                print(f"FAIL {label}: drq exited with status {r.returncode}")
                failed += 2
                continue

            t0 = time.time()
            oracle = "float64 oracle computed before"
            if ref64 is None:
                m64 = model.double()
                ref64 = rm.forward_vjp(m64, x.double(), grad_y.double(), None if t is None else t.double())
                oracle = f"float64 oracle {time.time() - t0:.1f} s"
            y64, gx64 = ref64
            rm.save_safetensors(exp, {"y": y64.float(), "grad_x": gx64.float()})
            got = rm.load_safetensors(out)
            print(f"   drq {t_drq:.1f} s (forward + VJP, incl. loading), {oracle}")
            for name, ref in (("y", y64), ("grad_x", gx64)):
                if name not in got:
                    print(f"FAIL {label} {name}: missing from {out}")
                    failed += 1
                    continue
                a = got[name]
                if tuple(a.shape) != tuple(ref.shape):
                    print(f"FAIL {label} {name}: shape {list(a.shape)}, expected {list(ref.shape)}")
                    failed += 1
                    continue
                rel, mx = rm.rel_l2(a, ref.numpy())
                ok = rel <= tol[name]  # NaN compares False: fails
                failed += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {label:14s} {name:6s} {str(list(a.shape)):16s} rel_l2 {rel:.3e}"
                      f"  max_abs {mx:.3e}  tol {tol[name]:.1e}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("check_full: " + ("all ok" if not failed else f"{failed} failure(s)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
