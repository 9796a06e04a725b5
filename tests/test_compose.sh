#!/usr/bin/env bash
# test_compose.sh — docker-compose.yml and deploy/Dockerfile* (issue 13, docs/cluster.md):
#   - `docker-compose config` (Debian's docker-compose, a test-only dependency) accepts
#     the file, with and without the cpu profile;
#   - the server keeps its database on a named volume and publishes 5555/5556; every GPU
#     worker reserves an nvidia device with the gpu capability; the CPU worker is behind
#     the cpu profile; health checks run `drq status`;
#   - a structural lint of the Dockerfiles (hadolint is not packaged in Debian): FROM a
#     pinned Debian base, apt-get install with --no-install-recommends and list cleanup,
#     no -march=native, the build packages are those of deploy/install-deps.sh, a
#     HEALTHCHECK with `drq status`, a non-root USER.
# No image is built or pulled here (no registry access); docs/cluster.md says so.
cd "$(dirname "$0")/.." || exit 1
PASS=0 FAIL=0 SKIPPED=0
check() { local what=$1; shift; if "$@"; then PASS=$((PASS + 1)); else FAIL=$((FAIL + 1)); echo "FAIL: $what"; fi; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIP: $1"; }
T=$(mktemp -d /tmp/drq-compose-test.XXXXXX)
trap 'rm -rf "$T"' EXIT

if command -v docker-compose >/dev/null; then
    check "docker-compose config accepts docker-compose.yml" \
        sh -c "docker-compose -f docker-compose.yml config >'$T/config.yml' 2>'$T/err'"
    [ -s "$T/err" ] && grep -v -i "warn" "$T/err" | head -5
    check "docker-compose config --profile cpu" \
        sh -c "docker-compose -f docker-compose.yml --profile cpu config --services >'$T/services' 2>/dev/null"
    check "services: server, worker-gpu0, worker-gpu1, worker-cpu" \
        test "$(LC_ALL=C sort "$T/services" | tr '\n' ' ')" == "server worker-cpu worker-gpu0 worker-gpu1 "
    # (docker-compose 1.29's `config` lists profiled services too; the profile itself is
    # checked on the resolved file below)
    if command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null; then
        check "structure of the resolved file" python3 - "$T/config.yml" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c["services"]
srv = s["server"]
ok = True
def need(cond, what):
    global ok
    if not cond:
        print("compose:", what); ok = False
vols = srv.get("volumes", [])
need(any((v.get("source") if isinstance(v, dict) else v.split(":")[0]) == "drq-data" for v in vols), "server: database on the named volume drq-data")
need("drq-data" in c.get("volumes", {}), "volume drq-data declared")
ports = [str(p.get("target") if isinstance(p, dict) else p) for p in srv.get("ports", [])]
need(any("5555" in p for p in ports) and any("5556" in p for p in ports), "server publishes 5555 and 5556")
need("/data/drq.db" in srv["command"], "server: --db on the volume")
for name, svc in s.items():
    hc = svc.get("healthcheck", {}).get("test", [])
    need("drq" in hc and "status" in hc, f"{name}: health check runs drq status")
    if name.startswith("worker-gpu"):
        devs = svc["deploy"]["resources"]["reservations"]["devices"]
        need(any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devs), f"{name}: nvidia gpu reservation")
        need("drq-worker" in svc["command"], f"{name}: runs drq-worker")
need(s.get("worker-cpu", {}).get("profiles") == ["cpu"] if "worker-cpu" in s else True, "worker-cpu behind the cpu profile")
sys.exit(0 if ok else 1)
PY
    else
        skip "python3-yaml missing: structure of the resolved file not checked"
    fi
else
    skip "docker-compose not installed (deploy/install-deps.sh installs it): compose file not validated"
fi

# ---- Dockerfiles: structural lint ------------------------------------------------------
deps_pkgs=$(sed -n '/^PKGS=(/,/^)/p' deploy/install-deps.sh | sed 's/#.*//' | tr -s ' \n' '\n' | grep -v -e '^PKGS=(' -e '^)$' -e '^$')
for f in deploy/Dockerfile deploy/Dockerfile.cuda; do
    check "$f exists" test -s "$f"
    [ -s "$f" ] || continue
    check "$f: first instruction is FROM a pinned Debian 12 base" \
        sh -c "grep -v -e '^#' -e '^\$' -e '^ARG' '$f' | head -1 | grep -qE '^FROM debian:12(-slim)?( |\$)'"
    check "$f: no -march=native" sh -c "! grep -v '^#' '$f' | grep -q 'march=native'"
    check "$f: no :latest base" sh -c "! grep -qE '^FROM [^ ]*:latest' '$f'"
    n_install=$(grep -c 'apt-get install' "$f")
    check "$f: every apt-get install has -y --no-install-recommends" \
        test "$(grep 'apt-get install' "$f" | grep -c -- '-y --no-install-recommends')" -eq "$n_install"
    check "$f: apt lists removed in the same layer" \
        test "$(grep -c 'rm -rf /var/lib/apt/lists' "$f")" -ge "$(grep -c 'apt-get update' "$f" | awk '{print ($1>0)}')"
    check "$f: HEALTHCHECK runs drq status" grep -qE '^HEALTHCHECK .*"drq", "status"' "$f"
    check "$f: runs as a non-root USER" grep -qE '^USER [a-z]' "$f"
    check "$f: no sudo, no curl | sh" sh -c "! grep -qE 'sudo|curl .*\\| *(ba)?sh' '$f'"
    # the -dev packages it builds with are the ones install-deps.sh installs
    for p in $(grep -oE '\b(lib[a-z0-9+.-]*-dev|build-essential|pkg-config)\b' "$f" | grep -vE 'cuda|cublas|cudnn' | sort -u); do
        check "$f: build package $p is in deploy/install-deps.sh" sh -c "echo '$deps_pkgs' | grep -qx '$p'"
    done
    # and the other way: every library the build links (a -dev package of install-deps.sh
    # that is not marked test only) is installed by the image
    for p in $(sed -n '/^PKGS=(/,/^)/p' deploy/install-deps.sh | grep -v 'test only\|only for bench' |
               grep -oE '\blib[a-z0-9+.-]*-dev\b' | grep -v clang | sort -u); do
        check "$f: installs the build package $p" grep -qE "(^|[ ])$p( |\\\\|\$)" "$f"
    done
done
check "Dockerfile.cuda builds the CUDA backend" grep -q 'CUDA=1' deploy/Dockerfile.cuda
check "Dockerfile builds CPU-only" grep -q 'CUDA=0' deploy/Dockerfile
echo "RESULT $PASS $FAIL $SKIPPED"
[ "$FAIL" -eq 0 ]
