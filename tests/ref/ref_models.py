"""ref_models.py — independent PyTorch reference of the two drq architectures.

Written from the architecture facts (docs/design.md §Models: DDPM UNet and WideResNet)
only, as the oracle for the C implementation.  state_dict keys are exactly
the ones docs/design.md §Models lists (the original checkpoint keys), so a state_dict saved
from these modules is what `drq model run --weights` loads.

Configs are plain dicts with exactly these keys:
  DDPM UNet: resolution, in_channels, out_ch, ch, ch_mult, num_res_blocks, attn_resolutions
  WRN:       depth, widen, num_classes, in_channels

Running this file checks the parameter counts of the full CIFAR-10 configs.
Use /usr/bin/python3 (the interpreter with torch).
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

UNET_KEYS = ("resolution", "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks", "attn_resolutions")
WRN_KEYS = ("depth", "widen", "num_classes", "in_channels")

CIFAR10_UNET = dict(resolution=32, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 2, 2], num_res_blocks=2,
                    attn_resolutions=[16])
CIFAR10_WRN = dict(depth=28, widen=10, num_classes=10, in_channels=3)
CIFAR10_UNET_PARAMS = 35_746_307
CIFAR10_WRN_PARAMS = 36_479_194


# --------------------------------------------------------------------------- DDPM UNet (docs/design.md §Models)

def swish(x):
    return x * torch.sigmoid(x)


def group_norm(c):
    return nn.GroupNorm(num_groups=32, num_channels=c, eps=1e-6, affine=True)


def timestep_embedding(t, ch):
    """emb = [sin(t·f), cos(t·f)], f_k = exp(-k·ln(10000)/(half-1)), k = 0..half-1, half = ch/2."""
    assert ch % 2 == 0 and ch >= 4, "ch must be even (and > 2)"
    half = ch // 2
    k = torch.arange(half, dtype=t.dtype, device=t.device)
    f = torch.exp(-k * (math.log(10000.0) / (half - 1)))
    a = t.reshape(-1, 1) * f.reshape(1, -1)
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout, temb_ch):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1)
        self.temb_proj = nn.Linear(temb_ch, cout)
        self.norm2 = group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)
        # dropout is inactive at evaluation: not modelled
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1, stride=1, padding=0)
        else:
            self.nin_shortcut = None

    def forward(self, x, temb):
        h = self.conv1(swish(self.norm1(x)))
        h = h + self.temb_proj(swish(temb))[:, :, None, None]
        h = self.conv2(swish(self.norm2(h)))
        s = self.nin_shortcut(x) if self.nin_shortcut is not None else x
        return s + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = group_norm(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        n, c, hh, ww = x.shape
        hn = self.norm(x)
        q = self.q(hn).reshape(n, c, hh * ww)
        k = self.k(hn).reshape(n, c, hh * ww)
        v = self.v(hn).reshape(n, c, hh * ww)
        # w[n, i, j] = sum_c q[c, i] k[c, j] / sqrt(C), softmax over the keys j
        w = torch.einsum("nci,ncj->nij", q, k) * (c ** -0.5)
        w = torch.softmax(w, dim=2)
        # h[n, c, i] = sum_j v[c, j] w[i, j]
        h = torch.einsum("ncj,nij->nci", v, w).reshape(n, c, hh, ww)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # right and bottom by 1


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=1, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One down or up level: `block`, `attn` lists and an optional resampler."""

    def __init__(self):
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class DDPMUNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert sorted(cfg) == sorted(UNET_KEYS), f"UNet config keys {sorted(cfg)}"
        self.cfg = dict(cfg)
        ch, mult, nrb = cfg["ch"], list(cfg["ch_mult"]), cfg["num_res_blocks"]
        attn_res = set(cfg["attn_resolutions"])
        self.ch, self.L, self.nrb = ch, len(mult), nrb
        temb_ch = 4 * ch

        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch, 3, stride=1, padding=1)

        # Down path; track the channel count of every tensor pushed on the skip stack.
        skips = [ch]
        res = cfg["resolution"]
        c = ch
        self.down = nn.ModuleList()
        for i in range(self.L):
            lvl = Level()
            cout = ch * mult[i]
            for _ in range(nrb):
                lvl.block.append(ResnetBlock(c, cout, temb_ch))
                c = cout
                if res in attn_res:
                    lvl.attn.append(AttnBlock(c))
                skips.append(c)
            if i != self.L - 1:
                lvl.downsample = Downsample(c)
                skips.append(c)
                res //= 2
            self.down.append(lvl)

        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(c, c, temb_ch)
        self.mid.attn_1 = AttnBlock(c)
        self.mid.block_2 = ResnetBlock(c, c, temb_ch)

        # Up path: levels L-1..0, each block eats one skip (popped from the stack).
        ups = [None] * self.L
        for i in reversed(range(self.L)):
            lvl = Level()
            cout = ch * mult[i]
            for _ in range(nrb + 1):
                lvl.block.append(ResnetBlock(c + skips.pop(), cout, temb_ch))
                c = cout
                if res in attn_res:
                    lvl.attn.append(AttnBlock(c))
            if i != 0:
                lvl.upsample = Upsample(c)
                res *= 2
            ups[i] = lvl
        assert not skips
        self.up = nn.ModuleList(ups)  # up.{i} is level i

        self.norm_out = group_norm(c)
        self.conv_out = nn.Conv2d(c, cfg["out_ch"], 3, stride=1, padding=1)

    def forward(self, x, t):
        temb = timestep_embedding(t.to(x.dtype), self.ch)
        temb = self.temb.dense[1](swish(self.temb.dense[0](temb)))

        hs = [self.conv_in(x)]
        for i in range(self.L):
            lvl = self.down[i]
            for j in range(self.nrb):
                h = lvl.block[j](hs[-1], temb)
                if len(lvl.attn):
                    h = lvl.attn[j](h)
                hs.append(h)
            if i != self.L - 1:
                hs.append(lvl.downsample(hs[-1]))

        h = hs[-1]
        h = self.mid.block_1(h, temb)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, temb)

        for i in reversed(range(self.L)):
            lvl = self.up[i]
            for j in range(self.nrb + 1):
                h = lvl.block[j](torch.cat([h, hs.pop()], dim=1), temb)
                if len(lvl.attn):
                    h = lvl.attn[j](h)
            if i != 0:
                h = lvl.upsample(h)
        assert not hs

        return self.conv_out(swish(self.norm_out(h)))


# --------------------------------------------------------------------------- WideResNet (docs/design.md §Models)

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.equal = cin == cout
        assert not (self.equal and stride != 1), "in == out with stride != 1 is not a WRN block"
        if not self.equal:
            self.convShortcut = nn.Conv2d(cin, cout, 1, stride=stride, padding=0, bias=False)
        else:
            self.convShortcut = None

    def forward(self, x):
        if self.equal:
            o = F.relu(self.bn1(x))
            o = self.conv2(F.relu(self.bn2(self.conv1(o))))
            return x + o
        x = F.relu(self.bn1(x))
        o = self.conv2(F.relu(self.bn2(self.conv1(x))))
        return self.convShortcut(x) + o


class Group(nn.Module):
    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = nn.ModuleList(
            [BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)])

    def forward(self, x):
        for b in self.layer:
            x = b(x)
        return x


class WideResNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert sorted(cfg) == sorted(WRN_KEYS), f"WRN config keys {sorted(cfg)}"
        self.cfg = dict(cfg)
        depth, k = cfg["depth"], cfg["widen"]
        assert (depth - 4) % 6 == 0, "depth must be 6n+4"
        n = (depth - 4) // 6
        chs = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(cfg["in_channels"], chs[0], 3, stride=1, padding=1, bias=False)
        self.block1 = Group(n, chs[0], chs[1], 1)
        self.block2 = Group(n, chs[1], chs[2], 2)
        self.block3 = Group(n, chs[2], chs[3], 2)
        self.bn1 = nn.BatchNorm2d(chs[3], eps=1e-5)
        self.fc = nn.Linear(chs[3], cfg["num_classes"])

    def forward(self, x):
        h = self.conv1(x)
        h = self.block3(self.block2(self.block1(h)))
        h = F.relu(self.bn1(h))
        h = h.mean(dim=(2, 3))  # global average pool
        return self.fc(h)


# --------------------------------------------------------------------------- helpers

def build(arch, cfg):
    if arch == "ddpm-unet":
        return DDPMUNet(cfg)
    if arch == "guided-unet":  # the ADM UNet: tests/ref/ref_guided.py
        import ref_guided
        return ref_guided.GuidedUNet(cfg)
    if arch == "wrn":
        return WideResNet(cfg)
    if arch == "resnet50":  # tests/ref/ref_resnet.py
        from ref_resnet import ResNet50
        return ResNet50(cfg)
    raise ValueError(arch)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def randomize_norms(model, gen):
    """Random affine parameters for every GroupNorm/BatchNorm and random BN
    running statistics, so a test notices a swapped or ignored one."""
    for m in model.modules():
        if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)):
            m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


def float_state_dict(model):
    """state_dict without num_batches_tracked (drq ignores it; we only write floats)."""
    return {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def forward_vjp(model, x, grad_y, t=None):
    """y = model(x[, t]) and grad_x = (∂y/∂x)ᵀ grad_y, in the model's dtype, eval mode."""
    model.eval()
    x = x.detach().clone().requires_grad_(True)
    y = model(x, t) if t is not None else model(x)
    (gx,) = torch.autograd.grad(y, x, grad_y)
    return y.detach(), gx.detach()

# --------------------------------------------------------------------------- safetensors I/O (plain Python)

_ST_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2)}


def save_safetensors(path, tensors, dtypes=None):
    """Writes {name: tensor/array} in the given order, contiguous offsets, header
    padded with spaces to a multiple of 8.  dtypes: optional {name: "F32"|"F16"}
    (default F32).  Written to a temporary file, then renamed."""
    header, blobs, off = {}, [], 0
    for name, v in tensors.items():
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        dt = (dtypes or {}).get(name, "F32")
        assert dt in ("F32", "F16"), dt
        b = np.ascontiguousarray(a, dtype=_ST_DTYPES[dt][0]).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    """{name: float32 numpy array} from a F32/F16/BF16 safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        np_dt, size = _ST_DTYPES[e["dtype"]]
        a = np.frombuffer(data[b:end], dtype=np_dt)
        if e["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a.astype(np.float32).reshape(e["shape"])
    return out


def rel_l2(a, e):
    """‖a−e‖/‖e‖ in float64 (absolute when ‖e‖ = 0), and max |a−e|."""
    a = np.asarray(a, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    d = a - e
    den = np.sqrt((e * e).sum())
    return float(np.sqrt((d * d).sum()) / (den if den > 1e-300 else 1.0)), float(np.abs(d).max(initial=0.0))


def _check_counts():
    u = DDPMUNet(CIFAR10_UNET)
    w = WideResNet(CIFAR10_WRN)
    nu, nw = n_params(u), n_params(w)
    print(f"DDPM UNet CIFAR-10: {nu:,} parameters (expected {CIFAR10_UNET_PARAMS:,})")
    print(f"WRN-28-10:          {nw:,} parameters (expected {CIFAR10_WRN_PARAMS:,})")
    assert nu == CIFAR10_UNET_PARAMS, nu
    assert nw == CIFAR10_WRN_PARAMS, nw
    # spot-check the key names docs/design.md lists
    ku, kw = set(u.state_dict()), set(w.state_dict())
    for k in ("temb.dense.0.weight", "temb.dense.1.bias", "conv_in.weight", "down.0.block.0.norm1.weight",
              "down.1.block.0.nin_shortcut.weight", "down.1.attn.1.proj_out.weight", "down.1.downsample.conv.weight",
              "mid.block_1.temb_proj.weight", "mid.attn_1.q.weight", "mid.block_2.conv2.bias",
              "up.0.block.2.nin_shortcut.weight", "up.1.attn.2.k.bias", "up.3.upsample.conv.weight",
              "norm_out.weight", "conv_out.bias"):
        assert k in ku, k
    for k in ("down.3.downsample.conv.weight", "up.0.upsample.conv.weight", "down.0.attn.0.q.weight"):
        assert k not in ku, k
    for k in ("conv1.weight", "block1.layer.0.convShortcut.weight", "block3.layer.3.bn2.running_var",
              "block2.layer.0.bn1.running_mean", "bn1.running_var", "bn1.weight", "fc.weight", "fc.bias"):
        assert k in kw, k
    assert "block1.layer.1.convShortcut.weight" not in kw


if __name__ == "__main__":
    _check_counts()
    print("ok")
