#!/usr/bin/python3
"""PyTorch side of tests/bench_conv.c: times F.conv2d (forward) and the input
gradient (torch.nn.grad.conv2d_input, i.e. aten convolution_backward with only
the input mask set) on the same shapes, same thread count, and prints TSV rows
"name<TAB>batch<TAB>fwd|bwd<TAB>ms" for bench_conv --torch.

Timing: best of >= --min-time seconds (at least 3 reps) after 2 warm-up
calls, like bench_conv.c.  Asymmetric padding (the DDPM downsample pads
right/bottom only) is timed as conv2d with padding 0 on an input padded
beforehand, i.e. torch at its best (F.pad not counted).

Run with Debian's torch, which needs libopenblas0-pthread for a fair BLAS:
    /usr/bin/python3 tests/ref/bench_conv_torch.py --threads 2 > /tmp/torch_conv.tsv
"""
import argparse
import time

import torch
import torch.nn.functional as F

# Keep in sync with shapes[] in tests/bench_conv.c:
# name, cin, cout, k, stride, pad (top, left, bottom, right), h (= w)
SHAPES = [
    ("ddpm conv_in 3>128 3x3 32", 3, 128, 3, 1, (1, 1, 1, 1), 32),
    ("ddpm 128>128 3x3 32", 128, 128, 3, 1, (1, 1, 1, 1), 32),
    ("ddpm up 256>128 3x3 32", 256, 128, 3, 1, (1, 1, 1, 1), 32),
    ("ddpm down 128 3x3 s2 32", 128, 128, 3, 2, (0, 0, 1, 1), 32),
    ("ddpm 256>256 3x3 16", 256, 256, 3, 1, (1, 1, 1, 1), 16),
    ("ddpm 256>256 3x3 8", 256, 256, 3, 1, (1, 1, 1, 1), 8),
    ("ddpm 256>256 3x3 4", 256, 256, 3, 1, (1, 1, 1, 1), 4),
    ("ddpm nin 256>128 1x1 32", 256, 128, 1, 1, (0, 0, 0, 0), 32),
    ("ddpm attn 256>256 1x1 16", 256, 256, 1, 1, (0, 0, 0, 0), 16),
    ("ddpm conv_out 128>3 3x3 32", 128, 3, 3, 1, (1, 1, 1, 1), 32),
    ("wrn 160>320 3x3 s2 32", 160, 320, 3, 2, (1, 1, 1, 1), 32),
    ("wrn short 160>320 1x1 s2 32", 160, 320, 1, 2, (0, 0, 0, 0), 32),
]


def best_ms(fn, min_time):
    for _ in range(2):
        fn()
    best, start, reps = 1e30, time.perf_counter(), 0
    while reps < 3 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return best * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=0.3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__} threads {torch.get_num_threads()} "
          f"mkldnn {torch.backends.mkldnn.is_available()}")
    with torch.no_grad():
        for name, cin, cout, k, s, (pt, pl, pb, pr), h in SHAPES:
            w = torch.randn(cout, cin, k, k) / (cin * k * k) ** 0.5
            b = torch.randn(cout)
            for n in (1, 8):
                if pt == pl == pb == pr:
                    x = torch.randn(n, cin, h, h)
                    pad = pt
                else:  # pre-padded, conv with padding 0
                    x = torch.randn(n, cin, h + pt + pb, h + pl + pr)
                    pad = 0
                y = F.conv2d(x, w, b, stride=s, padding=pad)
                gy = torch.randn_like(y)
                ms = best_ms(lambda: F.conv2d(x, w, b, stride=s, padding=pad), a.min_time)
                print(f"{name}\t{n}\tfwd\t{ms:.4f}", flush=True)
                ms = best_ms(lambda: torch.nn.grad.conv2d_input(x.shape, w, gy, stride=s, padding=pad),
                             a.min_time)
                print(f"{name}\t{n}\tbwd\t{ms:.4f}", flush=True)


if __name__ == "__main__":
    main()
