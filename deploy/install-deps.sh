#!/usr/bin/env bash
# install-deps.sh — installs every Debian package drq needs to build, test,
# benchmark and run its demo.  Idempotent; silent when all are present.
set -euo pipefail
PKGS=(
  build-essential pkg-config bc
  libdnnl-dev                                        # CPU math: oneDNN (convolutions and GEMM)
  libopenblas0-pthread                               # only for benchmarks: PyTorch's BLAS (docs/design.md §Numerics)
  libjansson-dev libzmq3-dev libuv1-dev libsqlite3-dev zlib1g-dev sqlite3
  libmicrohttpd-dev                                  # drq-server --http: the dashboard and /metrics
  libjpeg62-turbo-dev                                # ImageNet validation JPEGs (libjpeg-turbo)
  libmatio-dev libmatio11                            # ImageNet devkit's meta.mat (matio; libmatio11: the runtime)
  python3-pil                                        # test only: Pillow, the oracle of Res256Crop224 (tests/test_res256.sh)
  python3-scipy                                      # test only: writes the synthetic devkit meta.mat (tests/test_imagenet_devkit.sh)
  gnuplot-nox                                        # drq report --out: the PNG and SVG plots (docs/report.md)
  libpng-dev                                         # drq results --images, the report's image grid: PNG writing (docs/report.md)
  python3-torch python3-numpy                        # test oracle and training only
  dataset-fashion-mnist                              # demo dataset
  clang libclang-rt-14-dev                           # test only: make fuzz (libFuzzer, ASan/UBSan runtimes)
  curl chromium                                      # test only: tests/test_dashboard.sh (HTTP requests, headless browser)
  # TEST ONLY (issue 13, docs/cluster.md); the product never needs these:
  #   slurmctld slurmd slurm-client munge: tests/test_slurm.sh runs a real single-node Slurm
  #   docker-compose: tests/test_compose.sh validates docker-compose.yml (docker-compose config)
  #   systemd: tests/test_systemd.sh runs systemd-analyze verify on deploy/systemd/*
  slurmctld slurmd slurm-client munge docker-compose systemd
)
missing=()
for p in "${PKGS[@]}"; do
  [[ "$p" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
