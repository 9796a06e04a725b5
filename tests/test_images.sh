#!/usr/bin/env bash
# test_images.sh — the attack option "save" end to end (docs/report.md §Images)
# on the demo's models and 4 Fashion-MNIST images (t* = 4, 2 PGD steps):
#   `drq run --dry-run` gives the bytes they will take;
#   `drq run` stores x_adv, P(x), P(x_adv) per row (the images table), with
#   the rows' RESULT messages; an interrupted run resumed gives the same
#   images, once each; rerunning a finished sweep adds none;
#   `drq results FILE.db --images DIR` writes PNGs that decode to 28×28
#   gray with samples round(255·v) of the stored floats, and safetensors
#   files whose tensors equal the stored bytes (x: the dataset's pixels / 255);
#   drq-server + drq-worker store the same images (also through checkpoints),
#   and `drq results SWEEP --images DIR` fetches them (PNGs equal the file's);
#   `drq report --out` draws a grid per purifier × attack and links it; a
#   sweep without "save" says so and draws none; an unknown sweep id and an
#   IDX dataset over the per-row cap fail with clear messages.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

DATA=/usr/share/datasets/fashion-mnist
spec() { # spec SAVE PATH KIND COUNT
    cat <<EOF
{"name": "images",
 "dataset": {"kind": "$3", "path": "$2", "start": 0, "count": $4},
 "classifier": {"arch": "wrn", "config": "examples/models/fmnist-wrn.json", "weights": "examples/models/fmnist-wrn.safetensors"},
 "diffusion": {"arch": "ddpm-unet", "config": "examples/models/fmnist-ddpm.json", "weights": "examples/models/fmnist-ddpm.safetensors"},
 "purifiers": [{"name": "ddpm", "kind": "ddpm", "t_star": 4}, {"name": "det", "kind": "ddim", "t_star": 4, "forward": false}],
 "attacks": [{"name": "pgd", "kind": "pgd", "eps": 0.1, "steps": 3, "abs_stepsize": 0.05, "n_uniform": 1 $1}],
 "seeds": [3], "shard": {"images": 2}}
EOF
}
spec ', "save": ["x_adv", "purified"]' "$DATA" fashion-mnist 4 >"$T/s.json"
spec '' "$DATA" fashion-mnist 4 >"$T/plain.json"
dump() { sqlite3 "$1" "select purifier, attack, seed, image, what, c, h, w, hex(data) from images order by 1, 2, 3, 4, 5" | md5sum; }

check_eq "dry run: the images' size (4 images × 2 purifiers × 3 kinds × 3136 bytes)" \
    "$("$DRQ" run "$T/s.json" --dry-run 2>/dev/null | grep '^saved_images:' | cut -d' ' -f2)" 75264
check "drq run with save" bash -c "'$DRQ' run '$T/s.json' --db '$T/a.db' --quiet >'$T/a.log' 2>&1"
check_eq "24 images stored (2 purifiers × 4 images × 3 kinds)" "$(sqlite3 "$T/a.db" 'select count(*) from images')" 24
check_eq "each 1×28×28 float32" "$(sqlite3 "$T/a.db" 'select distinct c, h, w, length(data) from images')" "1|28|28|3136"
"$DRQ" run "$T/s.json" --db "$T/a.db" --quiet >/dev/null 2>&1
check_eq "rerunning the finished sweep adds no image" "$(sqlite3 "$T/a.db" 'select count(*) from images')" 24

# interrupted (SIGINT after about a second) and resumed
"$DRQ" run "$T/s.json" --db "$T/b.db" --quiet --threads 1 >"$T/b1.log" 2>&1 &
P=$!
sleep 1.5
kill -INT "$P" 2>/dev/null
wait "$P"
echo "interrupted run: exit $?, $(sqlite3 "$T/b.db" 'select count(*) from images' 2>/dev/null) images"
check "the interrupted run resumes" bash -c "'$DRQ' run '$T/s.json' --db '$T/b.db' --quiet >'$T/b2.log' 2>&1"
check_eq "resumed: the same images, once each" "$(dump "$T/b.db")" "$(dump "$T/a.db")"

# export
O=$T/out
"$DRQ" results "$T/a.db" --images "$O" 2>"$T/exp.log"
check_eq "drq results --images exit status" "$?" 0
D=$O/sweep1/det/pgd/seed3
check "PNGs and safetensors per row" test -s "$D/000002_x_adv.png" -a -s "$D/000002_x.png" -a -s "$D/000002_purified_clean.png" -a -s "$D/000002_purified_adv.png" -a -s "$D/000002.safetensors"
check_eq "files: 4 PNGs + 1 safetensors per row" "$(find "$O" -type f | wc -l)" 40
check "PNGs decode to 28×28 gray, samples = round(255·v) of the database; safetensors = database bytes" \
    /usr/bin/python3 - "$T/a.db" "$O" "$DATA" <<'EOF'
import gzip, json, os, sqlite3, struct, sys, zlib
import numpy as np
db, out, data = sys.argv[1:4]
with gzip.open(os.path.join(data, "t10k-images-idx3-ubyte.gz")) as f:
    raw = f.read()
clean = np.frombuffer(raw[16:16 + 4 * 784], np.uint8).astype(np.float32).reshape(4, 1, 28, 28) / np.float32(255)
def png(path):
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n"
    off, idat, w = 8, b"", None
    while off < len(b):
        n, t = struct.unpack(">I4s", b[off:off + 8])
        body = b[off + 8:off + 8 + n]
        if t == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert (w, h, depth, ctype) == (28, 28, 8, 0), (w, h, depth, ctype)
        if t == b"IDAT":
            idat += body
        off += 12 + n
    rows = zlib.decompress(idat)
    assert len(rows) == 28 * 29
    px, prev = [], bytearray(28)
    for y in range(28):
        f, line = rows[y * 29], bytearray(rows[y * 29 + 1:(y + 1) * 29])
        for x in range(28):  # undo the PNG filters (none, sub, up, average, paeth)
            a = line[x - 1] if x else 0
            c = prev[x - 1] if x else 0
            p = {0: 0, 1: a, 2: prev[x], 3: (a + prev[x]) // 2}.get(f)
            if f == 4:
                pa, pb, pc = abs(prev[x] - c), abs(a - c), abs(a + prev[x] - 2 * c)
                p = a if pa <= pb and pa <= pc else prev[x] if pb <= pc else c
            line[x] = (line[x] + p) & 255
        px.append(bytes(line))
        prev = line
    return np.frombuffer(b"".join(px), np.uint8).reshape(28, 28)
def st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"])
            for k, v in hdr.items() if k != "__metadata__"}
con = sqlite3.connect(db)
n = 0
for pur, atk, seed, image, what, data in con.execute("select purifier, attack, seed, image, what, data from images"):
    d = os.path.join(out, "sweep1", pur, atk, "seed%d" % seed)
    v = np.frombuffer(data, np.float32).reshape(28, 28)
    want = np.rint(np.clip(v, 0, 1) * 255).astype(np.uint8)
    got = png(os.path.join(d, "%06d_%s.png" % (image, what)))
    assert (got == want).all(), (pur, image, what)
    t = st(os.path.join(d, "%06d.safetensors" % image))
    assert t[what].shape == (1, 28, 28) and t[what].tobytes() == data, (pur, image, what)
    assert t["x"].tobytes() == clean[image].tobytes(), (pur, image, "x")
    assert (png(os.path.join(d, "%06d_x.png" % image)) == np.rint(clean[image, 0] * 255)).all()
    n += 1
assert n == 24, n
EOF

# drq-server + drq-worker over TCP (checkpoints after every PGD step carry the finished
# rows' images too): the same images; `drq results SWEEP --images` fetches them
check "server starts" start_server "$T/srv.db"
start_worker w1 --checkpoint-every 1
check "submit" bash -c "'$DRQ' submit '$T/s.json' >'$T/submit.log' 2>&1"
check "the sweep finishes on drq-server" wait_for 600 sweep_finished "$T/srv.db"
check_eq "drq-server stored the images of drq run, bit for bit" "$(dump "$T/srv.db")" "$(dump "$T/a.db")"
"$DRQ" results 1 --images "$T/rout" 2>"$T/rexp.log"
check_eq "drq results SWEEP --images exit status" "$?" 0
check_eq "from drq-server: 3 PNGs + 1 safetensors per row (no clean x: no spec)" "$(find "$T/rout" -type f | wc -l)" 32
check "from drq-server: the same PNG bytes as the file's export" bash -c \
    "cd '$T/rout' && for f in \$(find . -name '*.png'); do cmp -s \"\$f\" '$O/'\"\$f\" || { echo \"\$f differs\"; exit 1; }; done"

# the report's grids
"$DRQ" report "$T/a.db" --out "$T/rep" >/dev/null 2>&1
check_eq "drq report --out exit status" "$?" 0
for g in images-s1-ddpm-pgd.png images-s1-det-pgd.png; do
    check "$g drawn and linked" bash -c "test -s '$T/rep/$g' && grep -q '($g)' '$T/rep/report.md'"
done
check_eq "grid size: 5 columns × 4 rows of 84-pixel cells, 2-pixel gaps" \
    "$(python3 -c "import struct,sys; b=open(sys.argv[1],'rb').read(); print('%dx%d' % struct.unpack('>II', b[16:24]))" "$T/rep/images-s1-det-pgd.png")" 432x346

check "drq run without save" bash -c "'$DRQ' run '$T/plain.json' --db '$T/p.db' --quiet >'$T/p.log' 2>&1"
"$DRQ" report "$T/p.db" --out "$T/rep2" >/dev/null 2>&1
check "no save: the report says so and draws no grid" bash -c "grep -q 'no attack has \"save\"' '$T/rep2/report.md' && ! ls '$T/rep2'/images-* 2>/dev/null"
msg=$("$DRQ" results "$T/p.db" --images "$T/out2" 2>&1)
check_eq "no save: --images exits 0" "$?" 0
check "no save: --images says there are none" grep -q "no saved images" <<<"$msg"
msg=$("$DRQ" results 7 --images "$T/out3" 2>&1)
check_eq "--images of an unknown sweep: exit 1" "$?" 1
check "--images of an unknown sweep: says so" grep -q "no sweep 7" <<<"$msg"

# an IDX dataset of 1×300×300: 3 images × 360000 bytes per row exceed the 1 MiB cap
mkdir -p "$T/big"
/usr/bin/python3 - "$T/big" <<'EOF'
import struct, sys
with open(sys.argv[1] + "/t10k-images-idx3-ubyte", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 2, 300, 300) + bytes(2 * 300 * 300))
with open(sys.argv[1] + "/t10k-labels-idx1-ubyte", "wb") as f:
    f.write(struct.pack(">II", 0x801, 2) + bytes([1, 2]))
EOF
spec ', "save": ["x_adv", "purified"]' "$T/big" mnist 2 >"$T/big.json"
"$DRQ" run "$T/big.json" --db "$T/big.db" --quiet >"$T/big.log" 2>&1
check_eq "over the cap: the jobs fail (exit 3)" "$?" 3
check "over the cap: the error names the size, the dataset and the cap" \
    grep -q "attacks\[0\].save: images of 1x300x300 from $T/big make 1080000 bytes per row, more than the cap of 1048576" "$T/big.db.log"
finish
