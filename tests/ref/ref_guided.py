"""ref_guided.py — independent PyTorch reference of the ADM UNet
(openai/guided-diffusion UNetModel, unconditional), the oracle for
worker/models/guided_unet.c.  Written from the architecture facts
(../shared/DESIGN.md §10, docs/design.md §Models); guided_diffusion is not
imported.  state_dict keys are the checkpoint's own (time_embed.*,
input_blocks.*, middle_block.*, output_blocks.*, out.*), so a state_dict saved
from this module is what `drq model run --arch guided-unet` loads.

Config: a dict with guided-diffusion's flag names — image_size, num_channels,
num_res_blocks, channel_mult, attention_resolutions, num_heads,
num_head_channels, use_scale_shift_norm, resblock_updown, learn_sigma.
Also here: the learned-variance reverse step (LEARNED_RANGE) and the purifier
step with the 224↔256 bilinear resizes, in any dtype; and use_bf16(model),
drq's "precision": "bf16" (docs/spec.md): the operands of every convolution,
linear layer and attention matmul rounded to bfloat16 with torch's own
.to(torch.bfloat16), the products then in the model's dtype (float64 for the
oracle), the VJP the same ops' VJP at the rounded operands with the incoming
gradient rounded too (the rounding's derivative taken as the identity).
Running this file checks the parameter count of the 256×256 preset.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

GUIDED_KEYS = ("image_size", "num_channels", "num_res_blocks", "channel_mult", "attention_resolutions", "num_heads",
               "num_head_channels", "use_scale_shift_norm", "resblock_updown", "learn_sigma")
IMAGENET256 = dict(image_size=256, num_channels=256, num_res_blocks=2, channel_mult=[1, 1, 2, 2, 4, 4],
                   attention_resolutions=[32, 16, 8], num_heads=4, num_head_channels=64, use_scale_shift_norm=True,
                   resblock_updown=True, learn_sigma=True)


def gn(c):
    return nn.GroupNorm(32, c, eps=1e-5)


def timestep_embedding(t, dim):
    """[cos(t·f), sin(t·f)], f_k = exp(−k·ln(10000)/half), k < half = dim/2 (cos first)."""
    half = dim // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype) / half)
    a = t.reshape(-1, 1) * f.reshape(1, -1)
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


class Seq(nn.Module):
    """A container whose children are named 0, 1, … (TimestepEmbedSequential's keys)."""

    def __init__(self, *mods):
        super().__init__()
        for i, m in enumerate(mods):
            self.add_module(str(i), m)

    def forward(self, x, emb):
        for m in self.children():
            x = m(x, emb) if isinstance(m, ResBlock) else m(x)
        return x


class Resample(nn.Module):
    """Nearest ×2 up or 2×2 average-pool down, no parameters."""

    def __init__(self, up):
        super().__init__()
        self.up = up

    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.up else F.avg_pool2d(x, 2)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_ch, scale_shift, updown=None):
        super().__init__()
        self.in_layers = nn.Sequential(gn(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, 2 * cout if scale_shift else cout))
        self.out_layers = nn.Sequential(gn(cout), nn.SiLU(), nn.Identity(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)
        self.scale_shift = scale_shift
        self.resample = None if updown is None else Resample(updown == "up")

    def forward(self, x, emb):
        h = self.in_layers[1](self.in_layers[0](x))
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.in_layers[2](h)
        e = self.emb_layers(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
        else:
            h = self.out_layers[0](h + e)
        h = self.out_layers[3](F.silu(h))
        return self.skip_connection(x) + h


class Attention(nn.Module):
    """Multi-head self-attention, legacy QKV order: qkv split per head as [q, k, v]."""

    def __init__(self, c, heads):
        super().__init__()
        self.norm = gn(c)
        self.qkv = nn.Conv1d(c, 3 * c, 1)
        self.proj_out = nn.Conv1d(c, c, 1)
        self.heads = heads

    def forward(self, x):
        n, c, hh, ww = x.shape
        qkv = self.qkv(self.norm(x).reshape(n, c, -1))
        ch = c // self.heads
        q, k, v = qkv.reshape(n * self.heads, 3 * ch, hh * ww).split(ch, dim=1)
        if getattr(self, "bf16", False):
            a = _AttnBF16.apply(q, k, v, 1 / math.sqrt(ch)).reshape(n, c, hh * ww)
            return x + self.proj_out(a).reshape(n, c, hh, ww)
        s = 1 / math.sqrt(math.sqrt(ch))
        w = torch.softmax(torch.einsum("bct,bcs->bts", q * s, k * s), dim=-1)
        a = torch.einsum("bts,bcs->bct", w, v).reshape(n, c, hh * ww)
        return x + self.proj_out(a).reshape(n, c, hh, ww)


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.op = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class GuidedUNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert sorted(cfg) == sorted(GUIDED_KEYS), f"guided-unet config keys {sorted(cfg)}"
        mc, mult, nrb = cfg["num_channels"], list(cfg["channel_mult"]), cfg["num_res_blocks"]
        attn, ss, updown = set(cfg["attention_resolutions"]), cfg["use_scale_shift_norm"], cfg["resblock_updown"]
        hc = cfg["num_head_channels"]

        def heads(c):
            return c // hc if hc > 0 else cfg["num_heads"]

        self.mc = mc
        emb = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        ch = mult[0] * mc
        self.input_blocks = nn.ModuleList([Seq(nn.Conv2d(3, ch, 3, padding=1))])
        chans, res = [ch], cfg["image_size"]
        for lv, m in enumerate(mult):
            for _ in range(nrb):
                layers = [ResBlock(ch, m * mc, emb, ss)]
                ch = m * mc
                if res in attn:
                    layers.append(Attention(ch, heads(ch)))
                self.input_blocks.append(Seq(*layers))
                chans.append(ch)
            if lv != len(mult) - 1:
                self.input_blocks.append(Seq(ResBlock(ch, ch, emb, ss, "down") if updown else Down(ch)))
                chans.append(ch)
                res //= 2
        self.middle_block = Seq(ResBlock(ch, ch, emb, ss), Attention(ch, heads(ch)), ResBlock(ch, ch, emb, ss))
        self.output_blocks = nn.ModuleList()
        for lv, m in list(enumerate(mult))[::-1]:
            for i in range(nrb + 1):
                layers = [ResBlock(ch + chans.pop(), m * mc, emb, ss)]
                ch = m * mc
                if res in attn:
                    layers.append(Attention(ch, heads(ch)))
                if lv and i == nrb:
                    layers.append(ResBlock(ch, ch, emb, ss, "up") if updown else Up(ch))
                    res *= 2
                self.output_blocks.append(Seq(*layers))
        assert not chans
        self.out = nn.Sequential(gn(ch), nn.SiLU(), nn.Conv2d(ch, 6 if cfg["learn_sigma"] else 3, 3, padding=1))

    def forward(self, x, t):
        emb = self.time_embed(timestep_embedding(t.to(x.dtype), self.mc))
        hs, h = [], x
        for b in self.input_blocks:
            h = b(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for b in self.output_blocks:
            h = b(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


# --------------------------------------------------------------------------- the purifier's pieces
def linear_schedule(dtype=torch.float64):
    """β (linspace(1e-4, 0.02, 1000)), ᾱ and log β̃ clipped (β̃_0 := β̃_1), in float64."""
    beta = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - beta, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    post = beta * (1 - abar_prev) / (1 - abar)
    log_post = torch.log(torch.cat([post[1:2], post[1:]]))
    return beta.to(dtype), abar.to(dtype), log_post.to(dtype)


def learned_step(x, out, i, z, clamp_x0=False):
    """One reverse step at index i from the model output out = [ε, r] (LEARNED_RANGE):
    x0 = √(1/ᾱ)x − √(1/ᾱ−1)ε, mean = c1·x0 + c2·x, log σ² = v·log β + (1−v)·log β̃, v = (r+1)/2,
    x' = mean + σ·z (no noise at i = 0)."""
    beta, abar, log_post = linear_schedule(torch.float64)
    ab, abm = abar[i].item(), (abar[i - 1].item() if i > 0 else 1.0)
    eps, r = out[:, :3], out[:, 3:]
    x0 = math.sqrt(1 / ab) * x - math.sqrt(1 / ab - 1) * eps
    if clamp_x0:
        x0 = x0.clamp(-1, 1)
    c1 = beta[i].item() * math.sqrt(abm) / (1 - ab)
    c2 = (1 - abm) * math.sqrt(1 - beta[i].item()) / (1 - ab)
    y = c1 * x0 + c2 * x
    if i > 0:
        v = (r + 1) / 2
        y = y + torch.exp(0.5 * (v * math.log(beta[i].item()) + (1 - v) * log_post[i].item())) * z
    return y


def build(cfg):
    return GuidedUNet(cfg)


# --------------------------------------------------------------------------- bf16 operands (use_bf16)
def bf16(x):
    """x rounded to bfloat16 (torch's round-to-nearest-even), back in x's dtype."""
    return x.to(torch.bfloat16).to(x.dtype)


class _ConvBF16(torch.autograd.Function):
    """conv(bf16(x), bf16(w)) + b; backward: the input gradient conv_input(bf16(w), bf16(gy)) only."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding):
        wr = bf16(w)
        ctx.save_for_backward(wr)
        ctx.conf = (x.shape, stride, padding)
        conv = F.conv2d if x.dim() == 4 else F.conv1d
        return conv(bf16(x), wr, b, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx, gy):
        (wr,) = ctx.saved_tensors
        shape, stride, padding = ctx.conf
        f = torch.nn.grad.conv2d_input if len(shape) == 4 else torch.nn.grad.conv1d_input
        return f(shape, wr, bf16(gy), stride=stride, padding=padding), None, None, None, None


class _LinearBF16(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        wr = bf16(w)
        ctx.save_for_backward(wr)
        return bf16(x) @ wr.t() + b

    @staticmethod
    def backward(ctx, gy):
        (wr,) = ctx.saved_tensors
        return bf16(gy) @ wr, None, None


class _AttnBF16(torch.autograd.Function):
    """One head per batch entry, q, k, v: B × ch × T.  S = bf16(q)ᵀbf16(k)·scale, P = softmax(S) (unrounded),
    a = bf16(v)·bf16(P)ᵀ; backward with bf16(ga), bf16(P) in gV, the softmax backward on the unrounded P,
    and bf16(gS) in gQ, gK — kernels/ops.h "bf16 operands"."""

    @staticmethod
    def forward(ctx, q, k, v, scale):
        qr, kr, vr = bf16(q), bf16(k), bf16(v)
        p = torch.softmax(torch.einsum("bct,bcs->bts", qr, kr) * scale, dim=-1)
        ctx.save_for_backward(qr, kr, vr, p)
        ctx.scale = scale
        return torch.einsum("bts,bcs->bct", bf16(p), vr)

    @staticmethod
    def backward(ctx, ga):
        qr, kr, vr, p = ctx.saved_tensors
        gar, pr = bf16(ga), bf16(p)
        gv = torch.einsum("bts,bct->bcs", pr, gar)
        gp = torch.einsum("bct,bcs->bts", gar, vr)
        gs = bf16(p * (gp - (gp * p).sum(-1, keepdim=True)) * ctx.scale)
        gq = torch.einsum("bts,bcs->bct", gs, kr)
        gk = torch.einsum("bts,bct->bcs", gs, qr)
        return gq, gk, gv, None


def use_bf16(model):
    """Switches model (in place) to bf16 operands; returns it."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv1d)):
            m.forward = (lambda mod: lambda x: _ConvBF16.apply(x, mod.weight, mod.bias, mod.stride, mod.padding))(m)
        elif isinstance(m, nn.Linear):
            m.forward = (lambda mod: lambda x: _LinearBF16.apply(x, mod.weight, mod.bias))(m)
        elif isinstance(m, Attention):
            m.bf16 = True
    return model


if __name__ == "__main__":
    n = sum(p.numel() for p in GuidedUNet(IMAGENET256).parameters())
    print(f"guided-unet imagenet256: {n:,} parameters")
