"""ref_rng.py — an independent numpy implementation of drq's seeded noise
(docs/seeds.md): Philox4x32-10, the per-image key, Box–Muller normals and
uniforms, element e in counter block e/4.  Test oracle only."""
import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = (1 << 64) - 1


def key(seed, image, stream):
    return ((seed * 83492791) & MASK) ^ ((image * 73856093) & MASK) ^ ((stream * 19349663) & MASK)


def philox_blocks(k, nblocks):
    """uint32 array (nblocks, 4): Philox4x32-10 of counters {b lo, b hi, 0, 0} under key k."""
    b = np.arange(nblocks, dtype=np.uint64)
    c = [b & np.uint64(0xFFFFFFFF), b >> np.uint64(32), np.zeros_like(b), np.zeros_like(b)]
    k0, k1 = k & 0xFFFFFFFF, (k >> 32) & 0xFFFFFFFF
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
        p0, p1 = M0 * c[0], M1 * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(0xFFFFFFFF)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(0xFFFFFFFF)
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
    return np.stack(c, axis=1).astype(np.uint32)


def normal(k, n):
    x = philox_blocks(k, (n + 3) // 4).reshape(-1, 2, 2)  # pairs (0,1), (2,3)
    u1 = (x[..., 0].astype(np.float32) + np.float32(1.0)) * np.float32(2.0 ** -32)
    u2 = x[..., 1].astype(np.float32) * np.float32(2.0 ** -32)
    r = np.sqrt(np.float32(-2.0) * np.log(u1))
    th = np.float32(6.28318530717958647692) * u2
    z = np.stack([r * np.cos(th), r * np.sin(th)], axis=-1).astype(np.float32)
    return z.reshape(-1)[:n]


def uniform(k, n, lo, hi):
    x = philox_blocks(k, (n + 3) // 4).reshape(-1)[:n]
    u = (x >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)
    return (np.float32(hi - lo) * u + np.float32(lo)).astype(np.float32)
