"""st_layout.py — safetensors files in the layouts users actually hold, from
drq's original-named fixtures, with the Python standard library only (no
torch, no numpy: tensors are moved as raw little-endian bytes).

    python3 tests/ref/st_layout.py robustbench IN OUT   # WRN state_dict as RobustBench + safetensors save it
    python3 tests/ref/st_layout.py diffusers IN OUT --attn new|old   # DDPM UNet under diffusers key names

`robustbench`: every tensor of IN (F16 widened to F32, exactly), plus `X.num_batches_tracked` (I64 scalar)
beside every `X.running_mean`, as `model.state_dict()` of RobustBench's
WideResNet holds them; written like `safetensors.torch.save_file(sd, OUT,
metadata={"format": "pt"})`.  When the `safetensors` package is installed it
writes the file itself (safetensors.numpy, needs numpy); otherwise this
module's writer produces the same bytes: the library's layout (tensors sorted
by descending dtype, then by name, in the header and in the data; compact
JSON, "__metadata__" first; header padded with spaces to a multiple of 8).

`diffusers`: IN's original (pesser) DDPM names renamed to diffusers'
(google/ddpm-cifar10-32's diffusion_pytorch_model.safetensors), the attention
q/k/v/proj_out 1×1 conv weights [C, C, 1, 1] stored as Linear [C, C];
`--attn new` names them to_q/to_k/to_v/to_out.0 (diffusers ≥ 0.14), `--attn
old` query/key/value/proj_attn.  The map is written here independently of
drq's C one (worker/models/diffusers_names.c maps the other way).
"""
import argparse
import json
import os
import re
import struct
import sys

# the safetensors library's Dtype order (its enum, "increasing alignment")
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
               "I64", "U64"]
DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
              "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def read_raw(path):
    """(metadata or None, {name: (dtype, shape, bytes)}) in header order."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        out[name] = (e["dtype"], list(e["shape"]), data[b:end])
    return meta, out


def write_standard(path, tensors, metadata=None):
    """tensors {name: (dtype, shape, bytes)} in the safetensors library's layout."""
    names = sorted(tensors, key=lambda k: (-DTYPE_ORDER.index(tensors[k][0]), k))
    header, off = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for k in names:
        dt, shape, b = tensors[k]
        n = 1
        for d in shape:
            n *= d
        assert len(b) == n * DTYPE_SIZE[dt], (k, dt, shape, len(b))
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for k in names:
            f.write(tensors[k][2])
    os.replace(tmp, path)


def robustbench(src, dst):
    _, t = read_raw(src)
    sd = {}
    for k, (dt, shape, b) in t.items():  # RobustBench's weights are float32: widen F16 exactly
        if dt == "F16":
            n = len(b) // 2
            dt, b = "F32", struct.pack(f"<{n}f", *struct.unpack(f"<{n}e", b))
        sd[k] = (dt, shape, b)
    for k in t:
        if k.endswith(".running_mean"):
            sd[k[: -len("running_mean")] + "num_batches_tracked"] = ("I64", [], struct.pack("<q", 196 * 391))
    meta = {"format": "pt"}
    try:
        import numpy as np
        from safetensors.numpy import save_file
    except ImportError:
        write_standard(dst, sd, meta)
        return "tests/ref/st_layout.py's writer (the safetensors package is not installed)"
    npd = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "F64": np.float64}
    arrays = {k: np.frombuffer(b, dtype=npd[dt]).reshape(shape) for k, (dt, shape, b) in sd.items()}
    save_file(arrays, dst, metadata=meta)
    return "the safetensors library"


def diffusers_name(name, L, attn):
    """The diffusers name of an original DDPM UNet name (None: not a UNet name)."""
    attn_names = {"new": {"q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"},
                  "old": {"q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"}}[attn]
    res_map = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "temb_proj": "time_emb_proj",
               "nin_shortcut": "conv_shortcut"}

    def block(rest):  # "norm1.weight" inside a resnet
        part, leaf = rest.rsplit(".", 1)
        return f"{res_map[part]}.{leaf}"

    def attn_block(rest):
        part, leaf = rest.rsplit(".", 1)
        return f"{'group_norm' if part == 'norm' else attn_names[part]}.{leaf}"

    m = re.fullmatch(r"temb\.dense\.([01])\.(weight|bias)", name)
    if m:
        return f"time_embedding.linear_{int(m[1]) + 1}.{m[2]}"
    m = re.fullmatch(r"(conv_in|conv_out|norm_out)\.(weight|bias)", name)
    if m:
        return f"{'conv_norm_out' if m[1] == 'norm_out' else m[1]}.{m[2]}"
    m = re.fullmatch(r"(down|up)\.(\d+)\.(block|attn)\.(\d+)\.(.+)", name)
    if m:
        i = int(m[2]) if m[1] == "down" else L - 1 - int(m[2])
        kind = "resnets" if m[3] == "block" else "attentions"
        tail = block(m[5]) if m[3] == "block" else attn_block(m[5])
        return f"{m[1]}_blocks.{i}.{kind}.{m[4]}.{tail}"
    m = re.fullmatch(r"down\.(\d+)\.downsample\.conv\.(weight|bias)", name)
    if m:
        return f"down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}"
    m = re.fullmatch(r"up\.(\d+)\.upsample\.conv\.(weight|bias)", name)
    if m:
        return f"up_blocks.{L - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}"
    m = re.fullmatch(r"mid\.block_([12])\.(.+)", name)
    if m:
        return f"mid_block.resnets.{int(m[1]) - 1}.{block(m[2])}"
    m = re.fullmatch(r"mid\.attn_1\.(.+)", name)
    if m:
        return f"mid_block.attentions.0.{attn_block(m[1])}"
    return None


def diffusers(src, dst, attn):
    _, t = read_raw(src)
    L = 1 + max(int(re.match(r"down\.(\d+)\.", k)[1]) for k in t if k.startswith("down."))
    out = {}
    for k, (dt, shape, b) in t.items():
        nk = diffusers_name(k, L, attn)
        if nk is None:
            raise SystemExit(f"{src}: '{k}' is not a DDPM UNet tensor name")
        if re.search(r"\.(attn\.\d+|attn_1)\.(q|k|v|proj_out)\.weight$", k):
            assert len(shape) == 4 and shape[2:] == [1, 1], (k, shape)
            shape = shape[:2]  # Linear [C, C]
        out[nk] = (dt, shape, b)
    write_standard(dst, out, {"format": "pt"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("layout", choices=["robustbench", "diffusers"])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--attn", choices=["new", "old"], default="new")
    a = ap.parse_args()
    if a.layout == "robustbench":
        print(f"{a.dst}: written by {robustbench(a.src, a.dst)}")
    else:
        diffusers(a.src, a.dst, a.attn)
        print(f"{a.dst}: diffusers names ({a.attn} attention names)")


if __name__ == "__main__":
    sys.exit(main())
