#!/usr/bin/env bash
# test_curve.sh — CurveZMQ with real processes on 127.0.0.1 (docs/security.md):
#   1. drq keygen writes NAME.key / NAME.key_secret (0600) in the zcert format;
#   2. the loopback rule: a non-loopback bind without CURVE is refused, and
#      allowed with --insecure (logged);
#   3. with CURVE: an unauthorised client gets no status and cannot cancel; an
#      unauthorised worker gets no job and the sweep does not move for it; a
#      plain (non-CURVE) client and a wrong server key fail with a clear
#      message instead of hanging; an authorised pair works (flags and env);
#   4. garbage during the handshake (raw bytes, a CURVE greeting followed by
#      junk) leaves the server serving;
#   5. revocation: a key file removed + SIGHUP is refused on reconnect.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

K=$T/keys
mkdir -p "$K/private" "$K/workers" "$K/clients"

# ---- 1. keygen ---------------------------------------------------------------------------
for n in server w1 c1 intruder; do
    "$DRQ" keygen "$n" --dir "$K/private" >"$T/keygen-$n.out" 2>"$T/keygen.log"
    check_eq "drq keygen $n exits 0" $? 0
done
check_eq "the secret file is mode 0600" "$(stat -c %a "$K/private/c1.key_secret")" 600
check "the public file holds a public-key line" grep -qE '^    public-key = "[^"]{40}"$' "$K/private/c1.key"
check "the public file holds no secret" bash -c "! grep -q secret-key '$K/private/c1.key'"
check "the secret file holds both keys" bash -c "grep -q public-key '$K/private/c1.key_secret' && grep -qE '^    secret-key = \"[^\"]{40}\"\$' '$K/private/c1.key_secret'"
check_eq "keygen prints the public key" "$(cat "$T/keygen-c1.out")" "$(sed -n 's/^    public-key = "\(.*\)"$/\1/p' "$K/private/c1.key")"
"$DRQ" keygen c1 --dir "$K/private" >/dev/null 2>"$T/keygen-again.log"
check_eq "keygen never overwrites a key" $? 1
cp "$K/private/w1.key" "$K/workers/"
cp "$K/private/c1.key" "$K/clients/"
SKEY=$K/private/server.key
AUTH=(--server-key "$SKEY" --curve-secret "$K/private/c1.key_secret")
BAD=(--server-key "$SKEY" --curve-secret "$K/private/intruder.key_secret")

cat >"$T/spec.json" <<'EOF'
{"name": "curve", "dataset": {"kind": "none", "count": 40},
 "attacks": [{"name": "a", "kind": "noop", "ms_per_image": 20}],
 "seeds": [0], "shard": {"images": 5}}
EOF

# ---- 2. the loopback rule ----------------------------------------------------------------
"$SERVER" --db "$T/open.db" --workers tcp://0.0.0.0:$WPORT --clients tcp://127.0.0.1:$CPORT >"$T/open.log" 2>&1 &
P=$!
PIDS+=("$P")
check "non-loopback bind without CURVE exits" wait_exit "$P" 5
check "… saying why" grep -q "refusing to bind tcp://0.0.0.0:$WPORT without CURVE" "$T/open.log"
"$SERVER" --db "$T/open.db" --workers tcp://0.0.0.0:$WPORT --clients tcp://127.0.0.1:$CPORT --insecure >"$T/insecure.log" 2>&1 &
P=$!
PIDS+=("$P")
check "--insecure starts it" wait_for 10 grep -q "drq-server .* on tcp://0.0.0.0:$WPORT" "$T/insecure.log"
check "… with a warning in the log" grep -q "WARNING: --insecure: tcp://0.0.0.0:$WPORT is bound without CURVE" "$T/insecure.log"
kill -TERM "$P" 2>/dev/null
wait_exit "$P" 5
"$SERVER" --db "$T/open.db" --curve-secret "$K/private/server.key_secret" >"$T/nokeys.log" 2>&1
check_eq "--curve-secret without authorized keys is refused" $? 1

# ---- 3. CURVE on ---------------------------------------------------------------------------
DB=$T/curve.db
check "server starts with CURVE" start_server "$DB" --curve-secret "$K/private/server.key_secret" \
    --authorized-workers "$K/workers" --authorized-clients "$K/clients"
check "it says CURVE is on" grep -qF "curve: on (server public key $(cat "$T/keygen-server.out"))" "$T/server.log"

# an unauthorised client: refused at once (no timeout), with the reason
t0=$(date +%s%N)
DRQ_TIMEOUT_MS=4000 "$DRQ" status "${BAD[@]}" >"$T/bad-status.out" 2>"$T/bad-status.err"
check_eq "unauthorised client: status exits 2" $? 2
check "… says its key was refused" grep -q "refused this client's key" "$T/bad-status.err"
check "… prints no status" test ! -s "$T/bad-status.out"
check "… within 3 s" test $((($(date +%s%N) - t0) / 1000000)) -lt 3000
check "the refusal is logged with address and key" \
    grep -qF "curve: refused clients connection from 127.0.0.1, key $(cat "$T/keygen-intruder.out"): key not in" "$T/server.log"

# a plain client (no CURVE) against the CURVE server: no answer, a clear timeout
DRQ_TIMEOUT_MS=1500 "$DRQ" status >"$T/plain.out" 2>"$T/plain.err"
check_eq "plain client: status exits 2" $? 2
check "… prints no status" test ! -s "$T/plain.out"

# a wrong server key (another key's public half): fails clearly, no hang
t0=$(date +%s%N)
DRQ_TIMEOUT_MS=4000 timeout 20 "$DRQ" status --server-key "$K/private/w1.key" --curve-secret "$K/private/c1.key_secret" \
    >"$T/wrongkey.out" 2>"$T/wrongkey.err"
check_eq "wrong server key: status exits 2" $? 2
check "… with a message naming the server key" grep -q "server-key" "$T/wrongkey.err"
check "… within the client timeout" test $((($(date +%s%N) - t0) / 1000000)) -lt 6000

# the authorised client submits
S1=$("$DRQ" submit "$T/spec.json" "${AUTH[@]}" 2>"$T/submit.err")
check_eq "authorised client: submit exits 0" $? 0
check "… prints a sweep id" test -n "$S1"

# the intruder cannot cancel it
DRQ_TIMEOUT_MS=3000 "$DRQ" cancel "${S1:-1}" "${BAD[@]}" >"$T/bad-cancel.out" 2>&1
check_eq "unauthorised client: cancel exits 2" $? 2
check_eq "… and nothing was cancelled" "$(sql "$DB" "select n_cancelled from sweeps where id = ${S1:-0}")" 0

# an unauthorised worker: refused, no job, the sweep does not move
start_worker intruder "${BAD[@]}"
sleep 3
check_eq "unauthorised worker: no job done" "$(sql "$DB" "select n_done from sweeps where id = ${S1:-0}")" 0
check_eq "… none leased" "$(sql "$DB" "select count(*) from jobs where state = 'leased'")" 0
check "… never joined" bash -c "! grep -q 'worker intruder joined' '$T/server.log'"
check "… refusal logged" grep -qF "curve: refused workers connection from 127.0.0.1, key $(cat "$T/keygen-intruder.out")" "$T/server.log"
check "… server still alive" kill -0 "$SERVER_PID"

# ---- 4. garbage during the handshake -------------------------------------------------------
garbage() { # garbage PORT: raw bytes, then a ZMTP greeting announcing CURVE followed by junk
    python3 - "$1" <<'EOF'
import os, socket, sys
port = int(sys.argv[1])
for payload in (os.urandom(4096), b"GET / HTTP/1.0\r\n\r\n",
                b"\xff" + b"\0" * 8 + b"\x7f\x03\x00" + b"CURVE".ljust(20, b"\0") + b"\0" * 32 + b"\x04\xc8\x05HELLO" + os.urandom(195),
                b"\xff" + b"\0" * 8 + b"\x7f\x03\x00" + b"CURVE".ljust(20, b"\0") + b"\0" * 32 + os.urandom(3000)):
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            s.sendall(payload)
            s.settimeout(0.3)
            try:
                s.recv(4096)
            except Exception:
                pass
        except Exception:
            pass
        s.close()
EOF
}
check "garbage to the workers port" garbage "$WPORT"
check "garbage to the clients port" garbage "$CPORT"
check "server survives the garbage" kill -0 "$SERVER_PID"

# the authorised worker, keys from the environment
DRQ_SERVER_KEY=$(cat "$T/keygen-server.out") DRQ_CURVE_SECRET=$K/private/w1.key_secret start_worker w1
check "authorised worker (env keys) completes the sweep" wait_for 60 sweep_finished "$DB" "${S1:-0}"
check_eq "all jobs done by w1" "$(sql "$DB" "select count(*) from jobs where sweep = ${S1:-0} and state = 'done'")" 8
check_eq "the intruder still never joined" "$(grep -c 'worker intruder joined' "$T/server.log")" 0
"$DRQ" status "${S1:-0}" "${AUTH[@]}" >"$T/status.out" 2>&1
check_eq "authorised client: status exits 0" $? 0
check "… and shows the finished sweep" grep -q "finished" "$T/status.out"
DRQ_SERVER_KEY=$SKEY DRQ_CURVE_SECRET=$K/private/c1.key_secret "$DRQ" workers >"$T/workers.out" 2>&1
check_eq "authorised client (env keys): workers exits 0" $? 0
check "… lists w1" grep -q "^w1 " "$T/workers.out"

# ---- 5. revocation on SIGHUP ---------------------------------------------------------------
rm "$K/clients/c1.key" "$K/workers/w1.key"
kill -HUP "$SERVER_PID"
check "SIGHUP reloads the keys" wait_for 5 grep -qF "curve: 0 authorized clients key(s) in $K/clients (reloaded)" "$T/server.log"
DRQ_TIMEOUT_MS=4000 "$DRQ" status "${AUTH[@]}" >"$T/revoked.out" 2>"$T/revoked.err"
check_eq "revoked client: status exits 2" $? 2
check "… refused" grep -q "refused this client's key" "$T/revoked.err"
kill -9 "$WORKER_PID"
start_worker w1b --server-key "$SKEY" --curve-secret "$K/private/w1.key_secret"
check "revoked worker key refused on reconnect" \
    wait_for 10 grep -qF "curve: refused workers connection from 127.0.0.1, key $(cat "$T/keygen-w1.out")" "$T/server.log"
check_eq "… and it never joined" "$(grep -c 'worker w1b joined' "$T/server.log")" 0
check "server alive at the end" kill -0 "$SERVER_PID"
kill -TERM "$SERVER_PID"
check "SIGTERM stops it" wait_exit "$SERVER_PID" 5

[ "$FAIL" -gt 0 ] && dump_logs
finish
