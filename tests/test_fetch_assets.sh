#!/usr/bin/env bash
# test_fetch_assets.sh — deploy/fetch-assets against a local HTTP server
# (tests/http_fixture_server.py on 127.0.0.1, a free port) serving synthetic
# assets: a small fake CIFAR-10 tarball and two small PyTorch-format checkpoints
# written with the standard library (zip format, pesser's flat keys; legacy
# format, RobustBench's {'state_dict': 'module.…' keys, num_batches_tracked}).
# Every URL is overridden: no test touches the internet.
#
# With curl and with wget (each that is installed): a truncated transfer that
# resumes with a Range request, a redirect, Google Drive's confirmation
# interstitial (form and old link + cookie styles), a server that ignores Range;
# unpacking, conversion, SHA-256 recorded on the first fetch and verified after;
# a second run does nothing (no request at all); a .part left by an interrupted
# run is resumed.  Errors: a wrong MD5, an HTML page, Google Drive's quota page,
# a 404, a changed file against its recorded SHA-256.
# Prints "RESULT <passed> <failed> <skipped>".
cd "$(dirname "$0")/.."
source tests/queue_lib.sh
FETCH=deploy/fetch-assets
S=$T/srv
mkdir -p "$S"

# --- synthetic assets (standard library only)
python3 - "$S" <<'EOF'
import array, collections, io, os, pickle, sys, tarfile, types, zipfile
s = sys.argv[1]
# CIFAR-10 binary layout: 1 label byte + 3072 pixel bytes per record
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as tf:
    def add(name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    for i, f in enumerate(["data_batch_%d.bin" % k for k in range(1, 6)] + ["test_batch.bin"]):
        add("cifar-10-batches-bin/" + f, bytes((i * 7 + j) % 256 for j in range(4 * 3073)))
    add("cifar-10-batches-bin/batches.meta.txt", b"airplane\nautomobile\n")
open(f"{s}/cifar-10-binary.tar.gz", "wb").write(buf.getvalue() + os.urandom(0))

# stand-ins for torch's globals, so pickle writes what torch.save writes
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
class FloatStorage: pass
class LongStorage: pass
for c in (FloatStorage, LongStorage):
    c.__module__ = "torch"
    setattr(torch, c.__name__, c)
def _rebuild_tensor_v2(*a): pass
_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2

class Ref:
    def __init__(self, pid): self.pid = pid
class T:
    n = 0
    def __init__(self, stype, values, shape, code):
        self.key = str(T.n); T.n += 1
        self.data = array.array(code, values).tobytes()
        self.ref = Ref(("storage", stype, self.key, "cpu", len(values)))
        self.shape = shape
    def __reduce__(self):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc); acc *= d
        return (_rebuild_tensor_v2, (self.ref, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))

def dump(obj):
    f = io.BytesIO()
    p = pickle.Pickler(f, protocol=2)
    p.persistent_id = lambda o: o.pid if isinstance(o, Ref) else None
    p.dump(obj)
    return f.getvalue()

def f32(shape, base):
    n = 1
    for d in shape: n *= d
    return T(FloatStorage, [base + 0.25 * i for i in range(n)], shape, "f")

ddpm = collections.OrderedDict([("conv_in.weight", f32([4, 3, 3, 3], 1.0)), ("conv_in.bias", f32([4], -2.0)),
                                ("temb.dense.0.weight", f32([16, 4], 0.5))])
with zipfile.ZipFile(f"{s}/ddpm.ckpt", "w") as z:
    z.writestr("archive/data.pkl", dump(ddpm))
    for t in ddpm.values():
        z.writestr(f"archive/data/{t.key}", t.data)
    z.writestr("archive/version", "3\n")

sd = collections.OrderedDict([("module.conv1.weight", f32([16, 3, 3, 3], 0.1)), ("module.fc.bias", f32([10], 3.0)),
                              ("module.bn1.num_batches_tracked", T(LongStorage, [100], [], "q"))])
with open(f"{s}/wrn.pt", "wb") as f:
    for o in (0x1950a86a20f9469cfc6c, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(o, f, protocol=2)
    f.write(dump({"state_dict": sd, "epoch": 200}))
    keys = [t.key for t in sd.values()]
    pickle.dump(keys, f, protocol=2)
    for t in sd.values():
        esize = 8 if t.key == keys[-1] else 4
        f.write((len(t.data) // esize).to_bytes(8, "little"))
        f.write(t.data)
EOF
check "synthetic assets written" test -s "$S/wrn.pt"
MD5_CIFAR=$(md5sum "$S/cifar-10-binary.tar.gz" | cut -d' ' -f1)
MD5_DDPM=$(md5sum "$S/ddpm.ckpt" | cut -d' ' -f1)
SHA_WRN=$(sha256sum "$S/wrn.pt" | cut -d' ' -f1)

# --- the server
python3 tests/http_fixture_server.py --dir "$S" --port-file "$T/port" --log "$T/requests" >"$T/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
PORT=$(cat "$T/port" 2>/dev/null)
check "http server listening" test -n "$PORT"
U=http://127.0.0.1:$PORT
export DRQ_FETCH_BACKOFF=0 DRQ_FETCH_RETRIES=4
export DRQ_MD5_CIFAR10=$MD5_CIFAR DRQ_MD5_DDPM=$MD5_DDPM

nreq() { wc -l <"$T/requests"; }
# fetch NAME DIR [ENV=VALUE...] -- [ARGS]: fetch-assets with the default (happy) URLs
# unless overridden; output in $T/NAME.out/.err, status in RC
fetch() {
    local name=$1 dir=$2
    shift 2
    local envs=(DRQ_URL_CIFAR10="$U/trunc/cifar-10-binary.tar.gz?${DRQ_FETCH_TOOL:-x}" DRQ_URL_DDPM="$U/redirect/ddpm.ckpt"
        DRQ_URL_WRN="$U/gdrive/uc?export=download&id=wrn.pt")
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift
    env "${envs[@]}" python3 "$FETCH" "$dir" "$@" >"$T/$name.out" 2>"$T/$name.err"
    RC=$?
}
grep_out() { grep -qE "$2" "$T/$1.out" "$T/$1.err"; }
# st_keys FILE: the tensor names of a safetensors file, sorted, comma-separated
st_keys() {
    python3 - "$1" <<'EOF'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
print(",".join(sorted(k for k in json.loads(raw[8:8 + n]) if k != "__metadata__")))
EOF
}

TOOLS=()
for t in curl wget; do command -v $t >/dev/null && TOOLS+=($t); done
check "curl or wget present" test "${#TOOLS[@]}" -gt 0
for tool in "${TOOLS[@]}"; do
    export DRQ_FETCH_TOOL=$tool
    A=$T/assets-$tool
    r0=$(nreq)
    fetch "$tool-first" "$A"
    check_eq "$tool: first run status" "$RC" 0
    [ "$RC" -eq 0 ] || { cat "$T/$tool-first.out" "$T/$tool-first.err"; }
    check "$tool: truncated transfer resumed with a Range request" \
        grep -qE "^GET /trunc/cifar-10-binary.tar.gz\\?$tool bytes=[1-9][0-9]*-$" "$T/requests"
    check "$tool: interstitial confirmed" grep -q "^GET /gdrive/download?.*confirm=t" "$T/requests"
    check "$tool: tarball in place" cmp -s "$A/cifar-10-binary.tar.gz" "$S/cifar-10-binary.tar.gz"
    check "$tool: test_batch.bin unpacked" test "$(stat -c %s "$A/cifar-10-batches-bin/test_batch.bin" 2>/dev/null)" = 12292
    check "$tool: ddpm checkpoint in place" cmp -s "$A/ddpm-cifar10-ema.ckpt" "$S/ddpm.ckpt"
    check "$tool: Standard.pt in place" cmp -s "$A/Standard.pt" "$S/wrn.pt"
    check_eq "$tool: ddpm converted" "$(st_keys "$A/ddpm-cifar10-ema.safetensors" 2>/dev/null)" \
        "conv_in.bias,conv_in.weight,temb.dense.0.weight"
    check_eq "$tool: wrn converted, module. stripped, num_batches_tracked dropped" \
        "$(st_keys "$A/wrn-28-10-standard.safetensors" 2>/dev/null)" "conv1.weight,fc.bias"
    check_eq "$tool: SHA-256 recorded" "$(grep ' Standard.pt$' "$A/SHA256SUMS" 2>/dev/null | cut -d' ' -f1)" "$SHA_WRN"
    check "$tool: says the SHA-256 was recorded" grep_out "$tool-first" "no checksum is published.*recorded its SHA-256"
    check "$tool: MD5s checked" grep_out "$tool-first" "MD5 $MD5_DDPM ok"
    check "$tool: prints the spec lines" grep -qF "\"weights\": \"$A/wrn-28-10-standard.safetensors\"" "$T/$tool-first.out"
    check "$tool: no .part left" test -z "$(ls "$A"/*.part "$A"/*.html 2>/dev/null)"

    # second run: nothing at all
    m0=$(stat -c %Y.%s "$A/ddpm-cifar10-ema.safetensors" "$A/cifar-10-batches-bin/test_batch.bin")
    r1=$(nreq)
    fetch "$tool-second" "$A"
    check_eq "$tool: second run status" "$RC" 0
    check_eq "$tool: second run makes no request" "$(nreq)" "$r1"
    check "$tool: second run says up to date" grep_out "$tool-second" "nothing to do"
    check_eq "$tool: second run rewrites nothing" \
        "$(stat -c %Y.%s "$A/ddpm-cifar10-ema.safetensors" "$A/cifar-10-batches-bin/test_batch.bin")" "$m0"

    # an interrupted earlier run left a .part: resumed from its size
    B2=$T/part-$tool
    mkdir -p "$B2"
    head -c 1000 "$S/ddpm.ckpt" >"$B2/ddpm-cifar10-ema.ckpt.part"
    fetch "$tool-part" "$B2" DRQ_URL_DDPM="$U/files/ddpm.ckpt?$tool" -- --only ddpm
    check_eq "$tool: .part resumed: status" "$RC" 0
    check "$tool: .part resumed from byte 1000" grep -q "^GET /files/ddpm.ckpt?$tool bytes=1000-$" "$T/requests"
    check "$tool: .part resumed: file complete" cmp -s "$B2/ddpm-cifar10-ema.ckpt" "$S/ddpm.ckpt"

    # a server that ignores Range: the interrupted transfer starts again from zero
    fetch "$tool-norange" "$T/norange-$tool" DRQ_URL_DDPM="$U/norange/ddpm.ckpt?$tool" -- --only ddpm
    check_eq "$tool: no-Range server: status" "$RC" 0
    check "$tool: no-Range server: file complete" cmp -s "$T/norange-$tool/ddpm-cifar10-ema.ckpt" "$S/ddpm.ckpt"
    # old Google Drive style: a confirm= link and a download_warning cookie
    fetch "$tool-gdlink" "$T/gdlink-$tool" DRQ_URL_WRN="$U/gdrive/uc?export=download&id=wrn.pt&style=link" -- --only wrn
    check_eq "$tool: Drive link+cookie interstitial: status" "$RC" 0
    check "$tool: Drive link+cookie interstitial: file" cmp -s "$T/gdlink-$tool/Standard.pt" "$S/wrn.pt"
done
unset DRQ_FETCH_TOOL

# --- errors
A=$T/assets-${TOOLS[0]}
fetch md5 "$T/md5" DRQ_MD5_CIFAR10=0123456789abcdef0123456789abcdef DRQ_URL_CIFAR10="$U/files/cifar-10-binary.tar.gz" \
    -- --only cifar10
check_eq "wrong MD5: status 1" "$RC" 1
check "wrong MD5: says so" grep -q "MD5 mismatch: got $MD5_CIFAR, expected 0123456789abcdef0123456789abcdef" "$T/md5.err"
check "wrong MD5: no file in place, kept as .bad" test ! -e "$T/md5/cifar-10-binary.tar.gz" -a -e "$T/md5/cifar-10-binary.tar.gz.bad"
check "wrong MD5: nothing unpacked" test ! -e "$T/md5/cifar-10-batches-bin"

fetch html "$T/html" DRQ_URL_DDPM="$U/html/ddpm.ckpt" -- --only ddpm
check_eq "HTML page: status 1" "$RC" 1
check "HTML page: says so" grep -q "got an HTML page instead of the file (Service Unavailable)" "$T/html.err"
check "HTML page: no checkpoint" test ! -e "$T/html/ddpm-cifar10-ema.ckpt" -a ! -e "$T/html/ddpm-cifar10-ema.safetensors"

fetch quota "$T/quota" DRQ_URL_WRN="$U/quota/wrn.pt" -- --only wrn
check_eq "Drive quota page: status 1" "$RC" 1
check "Drive quota page: says so" grep -q "quota page instead of the file" "$T/quota.err"
check "Drive quota page: no checkpoint" test ! -e "$T/quota/Standard.pt"

fetch 404 "$T/404" DRQ_URL_DDPM="$U/files/missing.ckpt" -- --only ddpm
check_eq "404: status 1" "$RC" 1
check "404: says so" grep -q "HTTP 404" "$T/404.err"

# a retry (after the failure) with a good URL works in the same folder
fetch html-retry "$T/html" DRQ_URL_DDPM="$U/files/ddpm.ckpt" -- --only ddpm
check_eq "after an HTML page, a good URL: status 0" "$RC" 0

# the recorded SHA-256 catches a changed file
printf 'x' >>"$A/Standard.pt"
fetch changed "$A"
check_eq "changed Standard.pt: status 1" "$RC" 1
check "changed Standard.pt: says so" grep -q "differs from the one recorded" "$T/changed.err"

fetch usage "" -- --only nonsense
check_eq "usage: status 2" "$RC" 2
finish
