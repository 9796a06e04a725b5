#!/usr/bin/env bash
# test_systemd.sh — deploy/systemd units (issue 13, docs/cluster.md §systemd):
# `systemd-analyze verify` on drq-server.service and on an instance of drq-worker@.service
# (ExecStart pointed at this build's binaries, which verify requires to exist), plus the
# restart semantics: on-failure with exit 1 (corrupt database, bad option) not retried,
# SIGTERM a success for workers, hardening options present.  Skips (counted) without
# systemd-analyze.
cd "$(dirname "$0")/.." || exit 1
B=${BUILD:-build}
ROOT=$(pwd)
PASS=0 FAIL=0 SKIPPED=0
check() { local what=$1; shift; if "$@"; then PASS=$((PASS + 1)); else FAIL=$((FAIL + 1)); echo "FAIL: $what"; fi; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIP: $1"; }
T=$(mktemp -d /tmp/drq-systemd-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
S=deploy/systemd/drq-server.service
W=deploy/systemd/drq-worker@.service

for u in "$S" "$W"; do
    check "$u: Restart=on-failure" grep -qx 'Restart=on-failure' "$u"
    check "$u: exit 1 is not restarted" grep -qx 'RestartPreventExitStatus=1' "$u"
    check "$u: a crash loop is bounded" grep -qE '^StartLimitBurst=[0-9]+' "$u"
    for h in NoNewPrivileges=yes ProtectSystem=strict DynamicUser=yes PrivateTmp=yes; do
        check "$u: $h" grep -qx "$h" "$u"
    done
done
check "server: database in the StateDirectory" sh -c "grep -qx 'StateDirectory=drq' $S && grep -q -- '--db /var/lib/drq/drq.db' $S"
check "worker: SIGTERM is a success" grep -qE '^SuccessExitStatus=.*SIGTERM' "$W"
check "worker: the instance is the GPU index" grep -q -- '--device cuda:%i' "$W"
check "worker: stop time covers the bounded stop" grep -qE '^TimeoutStopSec=(1[2-9][0-9]|[2-9][0-9][0-9])' "$W"

if ! command -v systemd-analyze >/dev/null; then
    skip "systemd-analyze not installed (deploy/install-deps.sh installs systemd): units not verified"
elif [ ! -x "$B/drq-server" ] || [ ! -x "$B/drq-worker" ]; then
    skip "no $B/drq-server or $B/drq-worker: build first"
else
    mkdir -p "$T/units"
    sed "s#/usr/local/bin/#$ROOT/$B/#g" "$S" >"$T/units/drq-server.service"
    sed "s#/usr/local/bin/#$ROOT/$B/#g" "$W" >"$T/units/drq-worker@.service"
    cp "$T/units/drq-worker@.service" "$T/units/drq-worker@0.service"
    for u in drq-server.service drq-worker@0.service; do
        (cd "$T/units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$T/units/$u") >"$T/$u.out" 2>&1
        rc=$?
        # the unit's own findings (not those of the host's other units)
        grep -E "$u|drq-" "$T/$u.out" | grep -v -e 'Documentation=' >"$T/$u.own"
        check "systemd-analyze verify $u (rc $rc)" test "$rc" -eq 0 -a ! -s "$T/$u.own"
        [ -s "$T/$u.own" ] || [ "$rc" -ne 0 ] && cat "$T/$u.out" | head -10
    done
fi
echo "RESULT $PASS $FAIL $SKIPPED"
[ "$FAIL" -eq 0 ]
