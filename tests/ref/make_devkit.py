#!/usr/bin/env python3
"""make_devkit.py — a synthetic ILSVRC2012 devkit for tests/test_imagenet_devkit.sh.

    make_devkit.py meta OUT.mat [--variant NAME] [--seed S]
        writes a meta.mat shaped like the devkit's: the struct array synsets
        (ILSVRC2012_ID, WNID, words, gloss, num_children, children,
        wordnet_height, num_train_images) with 1000 classes (num_children 0)
        and some non-class synsets above them.  The IDs 1..1000 are given to
        the classes in an order that is not the order of their WNIDs, and the
        entries are shuffled, so that a reader that maps ID → index wrongly
        gives wrong labels.  Numeric fields use several MATLAB classes
        (double, uint16, uint8, int32), as files written by different tools do.
        --variant breaks it in one way (see VARIANTS) for the error tests;
        --compact writes only the fields drq reads, zlib-compressed (the
        fuzz seeds of tests/fuzz/seeds.sh).
    make_devkit.py expect META.mat TRUTH.txt N...
        prints the 0-based torchvision class index of each image number N,
        computed independently of drq the way torchvision does
        (torchvision.datasets.imagenet.parse_meta_mat: the classes' WNIDs
        sorted by name; parse_val_groundtruth_txt: line N is image N).

Needs scipy and numpy (python3-scipy, test only).
"""
import random
import sys

import numpy as np
import scipy.io

FIELDS = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
          "num_train_images"]
VARIANTS = ["good", "no_wnid_field", "wnid_not_string", "id_not_number", "id_zero", "leaf_id_1001",
            "dup_id", "dup_wnid", "leaves_999", "leaves_1001", "not_struct", "no_synsets", "nonleaf_id_dup",
            "num_children_negative", "id_fraction"]


def synsets(seed):
    rng = random.Random(seed)
    wnids = sorted(rng.sample(range(1000000, 99999999), 1000 + 12))
    wnids = ["n%08d" % w for w in wnids]
    leaves, parents = wnids[:1000], wnids[1000:]
    rng.shuffle(leaves)  # ID k+1 is leaves[k]: not the sorted order
    rows = []
    for k, w in enumerate(leaves):
        rows.append(dict(ILSVRC2012_ID=k + 1, WNID=w, words="class %d" % k, gloss="a synthetic class",
                         num_children=0, children=np.zeros((1, 0)), wordnet_height=0,
                         num_train_images=1300))
    for j, w in enumerate(parents):
        kids = list(range(1 + j * 80, 1 + min(1000, (j + 1) * 80)))
        rows.append(dict(ILSVRC2012_ID=1001 + j, WNID=w, words="group %d" % j, gloss="a synthetic group",
                         num_children=len(kids), children=np.array([kids], dtype=np.float64),
                         wordnet_height=1 + j % 3, num_train_images=0))
    rng.shuffle(rows)
    return rows


def to_struct(rows, fields):
    a = np.empty((len(rows), 1), dtype=[(f, "O") for f in fields])
    numeric = {"ILSVRC2012_ID": [np.float64, np.uint16], "num_children": [np.float64, np.uint8],
               "wordnet_height": [np.float64], "num_train_images": [np.float64, np.int32]}
    for i, r in enumerate(rows):
        for f in fields:
            v = r[f]
            if f in numeric and not isinstance(v, (str, np.ndarray)):
                t = numeric[f][i % len(numeric[f])]
                v = np.array([[v]], dtype=t)
            a[i, 0][f] = v
    return a


def meta(out, variant, seed, compact=False):
    rows = synsets(seed)
    fields = list(FIELDS) if not compact else ["ILSVRC2012_ID", "WNID", "num_children"]
    leaf = [r for r in rows if r["num_children"] == 0]
    group = [r for r in rows if r["num_children"] > 0]
    if variant == "no_wnid_field":
        fields.remove("WNID")
    elif variant == "wnid_not_string":
        leaf[7]["WNID"] = np.array([[3.0]])
    elif variant == "id_not_number":
        leaf[3]["ILSVRC2012_ID"] = "12"
    elif variant == "id_zero":
        leaf[3]["ILSVRC2012_ID"] = 0
    elif variant == "id_fraction":
        leaf[3]["ILSVRC2012_ID"] = np.array([[2.5]])
    elif variant == "leaf_id_1001":
        leaf[5]["ILSVRC2012_ID"] = 1500
    elif variant == "dup_id":
        leaf[5]["ILSVRC2012_ID"] = leaf[6]["ILSVRC2012_ID"]
    elif variant == "nonleaf_id_dup":
        group[2]["ILSVRC2012_ID"] = leaf[9]["ILSVRC2012_ID"]
    elif variant == "dup_wnid":
        leaf[5]["WNID"] = leaf[6]["WNID"]
    elif variant == "leaves_999":
        leaf[5]["num_children"] = 1
    elif variant == "num_children_negative":
        leaf[5]["num_children"] = np.array([[-1.0]])
    elif variant == "leaves_1001":
        rows.append(dict(leaf[0], WNID="n99999999"))
    elif variant != "good" and variant not in ("not_struct", "no_synsets"):
        sys.exit("make_devkit.py: unknown variant " + variant)
    if variant == "not_struct":
        scipy.io.savemat(out, do_compression=compact, mdict={"synsets": np.arange(12.0).reshape(12, 1)})
    elif variant == "no_synsets":
        scipy.io.savemat(out, do_compression=compact, mdict={"classes": to_struct(rows, fields)})
    else:
        scipy.io.savemat(out, do_compression=compact, mdict={"synsets": to_struct(rows, fields)})


def expect(mat, truth, numbers):
    # torchvision's parse_meta_mat, written out
    m = scipy.io.loadmat(mat, squeeze_me=True)["synsets"]
    classes = [s for s in m if int(s["num_children"]) == 0]
    wnid_of_id = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in classes}
    order = sorted(wnid_of_id.values())
    index = {w: i for i, w in enumerate(order)}
    ids = [int(x) for x in open(truth).read().split()]
    print(" ".join(str(index[wnid_of_id[ids[n - 1]]]) for n in numbers))


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 2 and a[0] == "meta":
        variant, seed = "good", 1
        if "--variant" in a:
            variant = a[a.index("--variant") + 1]
        if "--seed" in a:
            seed = int(a[a.index("--seed") + 1])
        meta(a[1], variant, seed, "--compact" in a)
    elif len(a) >= 4 and a[0] == "expect":
        expect(a[1], a[2], [int(x) for x in a[3:]])
    else:
        sys.exit(__doc__)
