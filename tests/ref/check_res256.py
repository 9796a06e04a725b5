"""check_res256.py — drq's ImageNet image path against Pillow, the library
torchvision's ImageFolder and RobustBench's Res256Crop224 use.

    /usr/bin/python3 tests/ref/check_res256.py --tool build/tests/tool_imagenet

Writes test images generated here (random noise and smooth gradients, RGB,
greyscale and CMYK, sizes odd and even, wider and taller than square, up-
and downscaled) as JPEGs with Pillow into a temporary folder, then checks,
each as one counted result:
  decode   drq's libjpeg-turbo decode == Pillow's Image.open().convert("RGB");
  resize   drq's bilinear resize of the decoded pixels vs Pillow's
           Image.resize(size, BILINEAR) of the same pixels;
  crop     drq's Res256Crop224 of the JPEG vs Pillow + torchvision's rules
           (short side 256, long int(256·long/short), centre crop 224 at
           round((size − 224)/2), Python's round);
  dataset  dataset_load("imagenet") on a class-folder and a flat layout:
           the same crops and the expected labels;
each within one grey level (max |difference| ≤ 1), the count of differing
values printed.  Ends with "RESULT <passed> <failed>".
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

TOL = 1  # grey levels


def make_images(rng):
    """(name, PIL image) pairs: noise, smooth gradients, grey, CMYK."""
    out = []
    # the last two: extreme aspect ratios, whose full Resize(256) is 40434 × 256 and 256 × 35593
    # pixels, of which drq computes only the crop
    sizes = [(500, 375), (333, 517), (256, 300), (301, 257), (1000, 257), (224, 224), (97, 131), (640, 480),
             (3001, 19), (17, 2364)]
    for k, (w, h) in enumerate(sizes):
        if k % 2 == 0:
            a = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            kind = "noise"
        else:
            y, x = np.mgrid[0:h, 0:w]
            a = np.stack([127.5 + 127.5 * np.sin(x / (7.0 + c) + y / (11.0 + 2 * c)) for c in range(3)], -1)
            a = np.clip(a, 0, 255).astype(np.uint8)
            kind = "smooth"
        out.append((f"{kind}_{w}x{h}", Image.fromarray(a, "RGB")))
    g = rng.integers(0, 256, size=(287, 411), dtype=np.uint8)
    out.append(("grey_411x287", Image.fromarray(g, "L")))
    c = rng.integers(0, 256, size=(300, 263, 4), dtype=np.uint8)
    out.append(("cmyk_263x300", Image.fromarray(c, "CMYK")))
    # saved progressive (name prefix "prog_"): about 10 scans, inside drq's scan budget
    out.append(("prog_smooth_640x480", out[7][1]))
    return out


def res256crop224(img):
    """torchvision Resize(256) + CenterCrop(224) on a PIL image, as bytes (H, W, 3)."""
    w, h = img.size
    if w <= h:
        ow, oh = 256, int(256 * h / w)
    else:
        oh, ow = 256, int(256 * w / h)
    r = img.resize((ow, oh), Image.BILINEAR)
    top, left = int(round((oh - 224) / 2.0)), int(round((ow - 224) / 2.0))
    return np.asarray(r.crop((left, top, left + 224, top + 224)))


class Checker:
    def __init__(self):
        self.passed = self.failed = 0

    def compare(self, what, got, want):
        if got.shape != want.shape:
            print(f"FAIL {what}: shape {got.shape}, Pillow {want.shape}")
            self.failed += 1
            return
        d = np.abs(got.astype(np.int16) - want.astype(np.int16))
        ok = int(d.max(initial=0)) <= TOL
        print(f"{'ok  ' if ok else 'FAIL'} {what:34s} max |diff| {int(d.max(initial=0))}, "
              f"{int((d > 0).sum())} of {d.size} values differ")
        self.passed += ok
        self.failed += not ok

    def expect(self, what, cond, detail=""):
        print(f"{'ok  ' if cond else 'FAIL'} {what}{': ' + detail if detail and not cond else ''}")
        self.passed += bool(cond)
        self.failed += not cond


def run(tool, *args):
    return subprocess.run([tool, *args], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", default="build/tests/tool_imagenet")
    args = ap.parse_args()
    rng = np.random.default_rng(20251)
    tmp = tempfile.mkdtemp(prefix="drq_res256.")
    ck = Checker()
    tool = args.tool
    try:
        imgs = make_images(rng)
        for name, img in imgs:
            path = os.path.join(tmp, name + ".JPEG")
            img.save(path, "JPEG", quality=90, progressive=name.startswith("prog_"))
            pil = Image.open(path).convert("RGB")
            want = np.asarray(pil)
            raw = os.path.join(tmp, name + ".rgb")
            r = run(tool, "decode", path, raw)
            if r.returncode:
                ck.expect(f"decode {name}", False, r.stderr.strip())
                continue
            w, h = map(int, r.stdout.split())
            got = np.fromfile(raw, np.uint8).reshape(h, w, 3)
            ck.compare(f"decode {name}", got, want)
            for ow, oh in ((256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256), (w + 3, h // 2 + 1)):
                out = os.path.join(tmp, f"{name}.{ow}x{oh}.rgb")
                r = run(tool, "resize", raw, str(w), str(h), str(ow), str(oh), out)
                if r.returncode:
                    ck.expect(f"resize {name} → {ow}x{oh}", False, r.stderr.strip())
                    continue
                got = np.fromfile(out, np.uint8).reshape(oh, ow, 3)
                ck.compare(f"resize {name} → {ow}x{oh}", got, np.asarray(pil.resize((ow, oh), Image.BILINEAR)))
            crop = os.path.join(tmp, name + ".crop")
            r = run(tool, "crop", path, crop)
            if r.returncode:
                ck.expect(f"crop {name}", False, r.stderr.strip())
                continue
            got = np.fromfile(crop, np.uint8).reshape(3, 224, 224).transpose(1, 2, 0)
            ck.compare(f"Res256Crop224 {name}", got, res256crop224(pil))

        # dataset layouts: class folders (sorted wnids, sorted files) and flat + labels file
        cls = os.path.join(tmp, "folders", "val")
        expect_lab, expect_img = [], []
        for c, wnid in enumerate(["n01440764", "n01443537", "n01484850"]):
            os.makedirs(os.path.join(cls, wnid))
            for j, (name, img) in enumerate(imgs[c * 3:c * 3 + 3]):
                p = os.path.join(cls, wnid, f"{wnid}_{j}.JPEG")
                img.save(p, "JPEG", quality=85)
                expect_lab.append(c)
                expect_img.append(res256crop224(Image.open(p).convert("RGB")))
        flat = os.path.join(tmp, "flat")
        os.makedirs(flat)
        flat_lab = [int(v) for v in rng.integers(0, 1000, size=len(imgs))]
        for k, (name, img) in enumerate(imgs):
            img.save(os.path.join(flat, f"ILSVRC2012_val_{k + 1:08d}.JPEG"), "JPEG", quality=85)
        with open(os.path.join(flat, "ILSVRC2012_val_labels.txt"), "w") as f:
            f.write("".join(f"{v}\n" for v in flat_lab))
        flat_img = [res256crop224(Image.open(os.path.join(flat, f"ILSVRC2012_val_{k + 1:08d}.JPEG")).convert("RGB"))
                    for k in range(len(imgs))]
        for what, root, labs, ims, start, count in (
                ("class folders", os.path.join(tmp, "folders"), expect_lab, expect_img, 2, 5),
                ("flat + labels", flat, flat_lab, flat_img, 3, 6)):
            out = os.path.join(tmp, "ds.rgb")
            r = run(tool, "dataset", root, str(start), str(count), out)
            if r.returncode:
                ck.expect(f"dataset {what}", False, r.stderr.strip())
                continue
            got_lab = [int(v) for v in r.stdout.split()]
            ck.expect(f"dataset {what}: labels of images {start}..{start + count - 1}",
                      got_lab == labs[start:start + count], f"{got_lab} vs {labs[start:start + count]}")
            got = np.fromfile(out, np.uint8).reshape(count, 3, 224, 224).transpose(0, 2, 3, 1)
            ck.compare(f"dataset {what}: crops", got, np.stack(ims[start:start + count]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"RESULT {ck.passed} {ck.failed}")
    return 1 if ck.failed else 0


if __name__ == "__main__":
    sys.exit(main())
