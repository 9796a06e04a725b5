#!/usr/bin/python3
"""train_fmnist.py — trains the two small Fashion-MNIST demo models for `make demo`.

  /usr/bin/python3 deploy/train_fmnist.py --out examples/models --seed 0

writes, under --out:
  fmnist-wrn.safetensors  + fmnist-wrn.json    WideResNet classifier (input [0,1], no normalisation)
  fmnist-ddpm.safetensors + fmnist-ddpm.json   DDPM UNet ε-predictor at native 28×28 (EMA weights)

The architectures are the PyTorch definitions in tests/ref/ref_models.py (written from
docs/design.md §Models), so the state_dict keys are exactly the ones drq's C loader binds; tensors are
written as float32 without num_batches_tracked.  PyTorch is a training tool only: nothing in
the C code depends on it.

Determinism: one seed drives parameter init, the data order (a torch.Generator per model),
augmentation and the diffusion noise; with the same --threads on the same machine the run
repeats bit for bit.  Data: the Debian package dataset-fashion-mnist
(/usr/share/datasets/fashion-mnist, read with gzip + numpy; no network).
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
import ref_models as R  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"

WRN_CFG = dict(depth=16, widen=2, num_classes=10, in_channels=1)
DDPM_CFG = dict(resolution=28, in_channels=1, out_ch=1, ch=32, ch_mult=[1, 2, 2], num_res_blocks=1,
                attn_resolutions=[7])


# --------------------------------------------------------------------------- data

def _idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fmnist(split, data_dir=DATA_DIR):
    """(images float32 [N,1,28,28] in [0,1], labels int64 [N]); split 'train' or 't10k'."""
    x = _idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    y = _idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(y.astype(np.int64))


def augment(x, gen, pad=2, flip=True):
    """Random crop with zero padding `pad` and random horizontal flip, per image, drawn from gen."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    # gather crops with an index grid (no python loop over images)
    ar = torch.arange(h)
    rows = (dy[:, None] + ar[None, :])  # [n,h]
    cols = (dx[:, None] + torch.arange(w)[None, :])  # [n,w]
    if flip:
        fl = torch.rand(n, generator=gen) < 0.5
        cols = torch.where(fl[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n)[:, None, None]
    out = xp[:, 0][idx_n, rows[:, :, None], cols[:, None, :]]
    return out.unsqueeze(1).contiguous()


def batches(n, bs, gen):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n - bs + 1, bs):  # drop the last partial batch
        yield perm[i:i + bs]


# --------------------------------------------------------------------------- WRN classifier

@torch.no_grad()
def accuracy(model, x, y, bs=500):
    model.eval()
    correct = 0
    for i in range(0, len(x), bs):
        correct += (model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum().item()
    return correct / len(x)


def train_wrn(args, xtr, ytr, xte, yte, log):
    torch.manual_seed(args.seed)
    model = R.WideResNet(WRN_CFG)
    gen = torch.Generator().manual_seed(args.seed * 1000 + 1)
    steps_per_epoch = len(xtr) // args.wrn_bs
    total = steps_per_epoch * args.wrn_epochs
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim == 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=args.wrn_lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.wrn_lr, total_steps=total, pct_start=0.15,
                                                anneal_strategy="cos", div_factor=10.0, final_div_factor=100.0)
    log(f"WRN-{WRN_CFG['depth']}-{WRN_CFG['widen']}: {R.n_params(model):,} parameters, "
        f"{args.wrn_epochs} epochs x {steps_per_epoch} steps, batch {args.wrn_bs}")
    t0 = time.time()
    step = 0
    for ep in range(args.wrn_epochs):
        model.train()
        run_loss, run_n = 0.0, 0
        for idx in batches(len(xtr), args.wrn_bs, gen):
            xb = augment(xtr[idx], gen)
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.item()
            run_n += 1
            if step % 100 == 0:
                log(f"  wrn step {step}/{total} loss {run_loss / run_n:.4f} ({time.time() - t0:.0f} s)")
                run_loss, run_n = 0.0, 0
        acc = accuracy(model, xte, yte)
        log(f"  wrn epoch {ep + 1}: test accuracy {100 * acc:.2f}% ({time.time() - t0:.0f} s)")
    acc = accuracy(model, xte, yte)
    log(f"WRN final test accuracy (10,000 images): {100 * acc:.2f}%  [{time.time() - t0:.0f} s]")
    return model, acc, time.time() - t0


# --------------------------------------------------------------------------- DDPM UNet

def linear_schedule():
    """docs/design.md §Purification: β = linspace(1e-4, 0.02, 1000) in float64, ᾱ_i = Π_{j≤i} (1-β_j)."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    abar = np.cumprod(1.0 - betas)
    return betas, abar


@torch.no_grad()
def denoise_loss(model, x, abar, ts, gen, bs=250):
    """Mean ε-MSE of model on x_d = 2x-1 at each step in ts (fixed noise from gen)."""
    model.eval()
    out = []
    for t in ts:
        tot, n = 0.0, 0
        for i in range(0, len(x), bs):
            x0 = 2 * x[i:i + bs] - 1
            eps = torch.randn(x0.shape, generator=gen)
            a = float(abar[t])
            xt = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
            tt = torch.full((len(x0),), float(t))
            tot += F.mse_loss(model(xt, tt), eps, reduction="sum").item()
            n += eps.numel()
        out.append(tot / n)
    return out


def train_ddpm(args, xtr, xte, log):
    torch.manual_seed(args.seed + 1)
    model = R.DDPMUNet(DDPM_CFG)
    ema = R.DDPMUNet(DDPM_CFG)
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(args.seed * 1000 + 2)
    _, abar = linear_schedule()
    sqrt_ab = torch.from_numpy(np.sqrt(abar)).float()
    sqrt_1mab = torch.from_numpy(np.sqrt(1.0 - abar)).float()
    opt = torch.optim.Adam(model.parameters(), lr=args.ddpm_lr)
    total, warm = args.ddpm_steps, args.ddpm_warmup

    def lr_at(s):  # linear warm-up, then cosine decay to 10% of the peak
        if s < warm:
            return args.ddpm_lr * (s + 1) / warm
        q = (s - warm) / max(1, total - warm)
        return args.ddpm_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * q)))

    log(f"DDPM UNet {DDPM_CFG}: {R.n_params(model):,} parameters, {total} steps, batch {args.ddpm_bs}, "
        f"EMA {args.ema}")
    ema_p = list(ema.parameters())
    mod_p = list(model.parameters())
    t0 = time.time()
    step = 0
    run_loss, run_n = 0.0, 0
    ev_gen_seed = args.seed * 1000 + 3
    while step < total:
        for idx in batches(len(xtr), args.ddpm_bs, gen):
            if step >= total:
                break
            model.train()
            x0 = 2 * augment(xtr[idx], gen, pad=0, flip=True) - 1  # flips only: keep objects centred
            t = torch.randint(0, 1000, (len(idx),), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            xt = sqrt_ab[t].view(-1, 1, 1, 1) * x0 + sqrt_1mab[t].view(-1, 1, 1, 1) * eps
            loss = F.mse_loss(model(xt, t.float()), eps)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            # EMA with the usual warm-up, so the random init does not linger in a short run
            d = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema_p, mod_p):
                    pe.mul_(d).add_(pm, alpha=1 - d)
            run_loss += loss.item()
            run_n += 1
            if step % 100 == 0 or step == total:
                log(f"  ddpm step {step}/{total} loss {run_loss / run_n:.4f} lr {lr_at(step - 1):.2e} "
                    f"({time.time() - t0:.0f} s)")
                run_loss, run_n = 0.0, 0
    train_s = time.time() - t0
    ts = [0, 9, 19, 29, 49, 99, 499, 999]
    xe = xte[:500]
    lm = denoise_loss(model, xe, abar, ts, torch.Generator().manual_seed(ev_gen_seed))
    le = denoise_loss(ema, xe, abar, ts, torch.Generator().manual_seed(ev_gen_seed))
    log("  held-out ε-MSE (first 500 test images) at step index t:")
    for t, a, b in zip(ts, lm, le):
        log(f"    t={t:4d}  raw {a:.4f}  ema {b:.4f}")
    log(f"DDPM done [{train_s:.0f} s training]")
    return ema, train_s, dict(zip(ts, le))


# --------------------------------------------------------------------------- main

def export(model, cfg, out_dir, name, keys):
    assert sorted(cfg) == sorted(keys)
    sd = R.float_state_dict(model)
    # the exported keys must be exactly those of a freshly built reference model
    ref = [k for k in R.build("wrn" if keys == R.WRN_KEYS else "ddpm-unet", cfg).state_dict()
           if not k.endswith("num_batches_tracked")]
    assert list(sd) == ref, "state_dict keys differ from ref_models"
    R.save_safetensors(os.path.join(out_dir, f"{name}.safetensors"), sd)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump({k: cfg[k] for k in keys}, f)
        f.write("\n")
    return os.path.getsize(os.path.join(out_dir, f"{name}.safetensors"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples/models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=["wrn", "ddpm"], default=None, help="train just one of the two models")
    ap.add_argument("--wrn-epochs", type=int, default=2)
    ap.add_argument("--wrn-bs", type=int, default=128)
    ap.add_argument("--wrn-lr", type=float, default=0.1)
    ap.add_argument("--ddpm-steps", type=int, default=1200)
    ap.add_argument("--ddpm-bs", type=int, default=64)
    ap.add_argument("--ddpm-lr", type=float, default=1e-3)
    ap.add_argument("--ddpm-warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.999)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    log(f"train_fmnist: seed {args.seed}, {args.threads} threads, torch {torch.__version__}, out {args.out}")
    xtr, ytr = load_fmnist("train")
    xte, yte = load_fmnist("t10k")
    t_all = time.time()
    if args.only in (None, "wrn"):
        wrn, acc, secs = train_wrn(args, xtr, ytr, xte, yte, log)
        size = export(wrn, WRN_CFG, args.out, "fmnist-wrn", R.WRN_KEYS)
        log(f"wrote {args.out}/fmnist-wrn.safetensors ({size:,} bytes, {R.n_params(wrn):,} parameters), "
            f"test accuracy {100 * acc:.2f}%, {secs:.0f} s")
    if args.only in (None, "ddpm"):
        ema, secs, _ = train_ddpm(args, xtr, xte, log)
        size = export(ema, DDPM_CFG, args.out, "fmnist-ddpm", R.UNET_KEYS)
        log(f"wrote {args.out}/fmnist-ddpm.safetensors ({size:,} bytes, {R.n_params(ema):,} parameters), {secs:.0f} s")
    log(f"total {time.time() - t_all:.0f} s")


if __name__ == "__main__":
    main()
