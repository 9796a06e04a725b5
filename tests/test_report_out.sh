#!/usr/bin/env bash
# test_report_out.sh — `drq report FILE.db --out DIR` (cli/report_out.c, docs/report.md)
# on small noop sweeps (rows in seconds, no model):
#   report.md and the Markdown / CSV tables 1, 3, S2 and 6 with the right row
#   counts, and values equal to means recomputed with awk from `drq results`;
#   Fig. 3 and Fig. 1c as valid PNGs (magic bytes, non-trivial size) and SVGs,
#   linked from report.md;
#   a sweep without fresh-ω / EOT / transfer attacks gets no Table 3 random
#   columns and no Table S2, and report.md says "not in this sweep";
#   without gnuplot the tables are still written, report.md says so, exit 0;
#   a missing DIR (and its parents) is created; an unwritable DIR exits 1.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

cat >"$T/a.json" <<'EOF'
{"name": "report-a", "dataset": {"kind": "none", "count": 6},
 "purifiers": [{"name": "p1", "kind": "none"}, {"name": "p2", "kind": "none"}],
 "attacks": [{"name": "a-fixed", "kind": "noop", "randomness": "fixed"},
             {"name": "a-fresh", "kind": "noop", "randomness": "fresh"},
             {"name": "a-eot", "kind": "noop", "randomness": "eot", "eot_k": 2},
             {"name": "a-tr", "kind": "noop", "randomness": "transfer", "transfer_seed": 0}],
 "seeds": [0, 1, 2], "shard": {"images": 3}}
EOF
cat >"$T/b.json" <<'EOF'
{"name": "report-b", "dataset": {"kind": "none", "count": 5},
 "purifiers": [{"name": "p1", "kind": "none"}],
 "attacks": [{"name": "b-fixed", "kind": "noop", "randomness": "fixed"}],
 "seeds": [4], "shard": {"images": 5}}
EOF
check "drq run a (noop)" bash -c "'$DRQ' run '$T/a.json' --db '$T/a.db' --quiet >'$T/run-a.log' 2>&1"
check "drq run b (noop)" bash -c "'$DRQ' run '$T/b.json' --db '$T/b.db' --quiet >'$T/run-b.log' 2>&1"
"$DRQ" results "$T/a.db" --out "$T/a.csv" 2>/dev/null

HAVE_GP=0
command -v gnuplot >/dev/null && HAVE_GP=1

# ---- sweep a: every table, every plot; DIR and its parent do not exist yet ---------------------------------------
O=$T/out/a
"$DRQ" report "$T/a.db" --out "$O" >"$T/rep-a.log" 2>&1
check_eq "drq report --out exit status" "$?" 0
check "a missing DIR (and parent) is created" test -d "$O"
check "report.md written" test -s "$O/report.md"
for t in table1-distances table3-fixed-vs-random tableS2-transfer table6-compression; do
    check "$t.md and $t.csv written" test -s "$O/$t.md" -a -s "$O/$t.csv"
done
rows() { tail -n +2 "$1" | wc -l; }
check_eq "Table 1: a row per purifier × attack" "$(rows "$O/table1-distances.csv")" 8
check_eq "Table 6: a row per purifier × attack" "$(rows "$O/table6-compression.csv")" 8
check_eq "Table 3: a row per purifier (one attack family)" "$(rows "$O/table3-fixed-vs-random.csv")" 2
check_eq "Table S2: a row per purifier × transfer attack" "$(rows "$O/tableS2-transfer.csv")" 2
check_eq "Table 1 Markdown: header, rule and 8 rows" "$(grep -c '^|' "$O/table1-distances.md")" 10
check_eq "Table 3 header: fixed, fresh and EOT columns" \
    "$(head -1 "$O/table3-fixed-vs-random.csv")" \
    "purifier,gradient,attack_fixed,attack_fresh,attack_eot,seeds,clean_acc_mean,clean_acc_std,robust_acc_fixed_mean,robust_acc_fixed_std,robust_acc_fresh_mean,robust_acc_fresh_std,robust_acc_eot_mean,robust_acc_eot_std"

# a value of a CSV table: col FILE KEYCOLS... COLUMN (by header name), rows matched on their first fields
cell() { # cell FILE "p1,a-fixed" COLUMN
    awk -F, -v key="$2" -v col="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        { n = split(key, k, ","); ok = 1; for (i = 1; i <= n; i++) if ($i != k[i]) ok = 0; if (ok) print $c }' "$1"
}
# means from drq results (columns: 2 purifier, 3 attack, 4 seed, 9 clean_correct, 10 robust, 14 dist_init_l2,
# 18 dist_end_l2, 19 dist_end_linf, 21 ssim_pur, 22 comp_adv, 23 comp_unif_mean)
col_mean() { # col_mean PUR ATK COL [ROBUST]: mean of a results column (over rows with robust == ROBUST)
    awk -F, -v p="$1" -v a="$2" -v c="$3" -v r="${4:-}" 'NR > 1 && $2 == p && $3 == a && $c != "" && (r == "" || $10 == r) { s += $c; n++ }
        END { printf "%.6f", s / n }' "$T/a.csv"
}
acc_mean() { # acc_mean PUR ATK COL [SKIPSEED [ONLYSEED]]: mean over seeds of the per-seed accuracy (%)
    awk -F, -v p="$1" -v a="$2" -v c="$3" -v skip="${4:-x}" -v only="${5:-x}" 'NR > 1 && $2 == p && $3 == a && $4 != skip && (only == "x" || $4 == only) { n[$4]++; ok[$4] += $c }
        END { for (s in n) { t += 100 * ok[s] / n[s]; k++ } printf "%.6f", t / k }' "$T/a.csv"
}
same() { # same A B: equal to 6 decimals
    awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a != "" && b != "" && d < 1e-6 && d > -1e-6) }' || { echo "  $1 != $2"; return 1; }
}
check "Table 1 L2 init p1/a-fixed = mean of dist_init_l2" same "$(cell "$O/table1-distances.csv" p1,a-fixed dist_init_l2_mean)" "$(col_mean p1 a-fixed 14)"
check "Table 1 L2 end p2/a-eot = mean of dist_end_l2" same "$(cell "$O/table1-distances.csv" p2,a-eot dist_end_l2_mean)" "$(col_mean p2 a-eot 18)"
check "Table 1 L∞ end p2/a-fresh = mean of dist_end_linf" same "$(cell "$O/table1-distances.csv" p2,a-fresh dist_end_linf_mean)" "$(col_mean p2 a-fresh 19)"
check "Table 1 SSIM pur p1/a-tr = mean of ssim_pur" same "$(cell "$O/table1-distances.csv" p1,a-tr ssim_pur_mean)" "$(col_mean p1 a-tr 21)"
check "Table 3 robust fixed p1 = mean over seeds" same "$(cell "$O/table3-fixed-vs-random.csv" p1 robust_acc_fixed_mean)" "$(acc_mean p1 a-fixed 10)"
check "Table 3 robust fresh p2 = mean over seeds" same "$(cell "$O/table3-fixed-vs-random.csv" p2 robust_acc_fresh_mean)" "$(acc_mean p2 a-fresh 10)"
check "Table 3 robust EOT p2 = mean over seeds" same "$(cell "$O/table3-fixed-vs-random.csv" p2 robust_acc_eot_mean)" "$(acc_mean p2 a-eot 10)"
check "Table 3 clean p1 = the fixed attack's clean accuracy" same "$(cell "$O/table3-fixed-vs-random.csv" p1 clean_acc_mean)" "$(acc_mean p1 a-fixed 9)"
check "Table S2 transfer p1 = seeds 1, 2" same "$(cell "$O/tableS2-transfer.csv" p1,a-tr robust_acc_transfer_mean)" "$(acc_mean p1 a-tr 10 0)"
check "Table S2 source p2 = seed 0" same "$(cell "$O/tableS2-transfer.csv" p2,a-tr robust_acc_source_mean)" "$(acc_mean p2 a-tr 10 x 0)"
check "Table 6 robust p2/a-fresh = mean comp_adv of robust rows" same "$(cell "$O/table6-compression.csv" p2,a-fresh comp_robust_mean)" "$(col_mean p2 a-fresh 22 1)"
check "Table 6 non-robust p1/a-fixed" same "$(cell "$O/table6-compression.csv" p1,a-fixed comp_nonrobust_mean)" "$(col_mean p1 a-fixed 22 0)"
check "Table 6 uniform p1/a-eot" same "$(cell "$O/table6-compression.csv" p1,a-eot comp_uniform_mean)" "$(col_mean p1 a-eot 23)"
check_eq "Table 6 robust + non-robust images = rows" \
    "$(awk -F, 'NR > 1 { s += $4 + $7 } END { print s }' "$O/table6-compression.csv")" "$(rows "$T/a.csv")"
check "report.md embeds Table 3 with the EOT column" grep -q '| robust acc % EOT |' "$O/report.md"
check "report.md: no Table 5 without a gradcorr analysis" grep -q 'Not in this sweep: no gradcorr analysis' "$O/report.md"
check "report.md: no Table 7 / fit without a screen analysis" grep -q 'Not in this sweep: no screen analysis' "$O/report.md"
check "report.md: no Table S6 without a variance analysis" grep -q 'Not in this sweep: no variance analysis' "$O/report.md"
check "no analysis table files" test ! -e "$O/table5-gradcorr.csv" -a ! -e "$O/table7-screen.csv" -a ! -e "$O/tableS6-variance.csv"

png_ok() { # valid PNG: the 8 magic bytes and more than 5 KB
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ] && [ "$(stat -c %s "$1")" -gt 5000 ]
}
svg_ok() { head -c 300 "$1" | grep -q '<svg' && tail -c 50 "$1" | grep -q '</svg>'; }
if [ $HAVE_GP == 1 ]; then
    for f in fig3-compression-robustness fig1c-distances; do
        check "$f.png is a PNG" png_ok "$O/$f.png"
        check "$f.svg is an SVG" svg_ok "$O/$f.svg"
        check "report.md links $f.png and .svg" grep -q "]($f.png)" "$O/report.md"
        check "$f.gp and .dat written" test -s "$O/$f.gp" -a -s "$O/$f.dat"
    done
    check_eq "Fig. 3 data: a point per purifier × attack" "$(grep -c '^[0-9]' "$O/fig3-compression-robustness.dat")" 8
    check_eq "Fig. 1c data: init, max, end per purifier × attack" "$(grep -c '^[-0-9]' "$O/fig1c-distances.dat")" 24
    check "no gnuplot.log left after a clean run" test ! -e "$O/gnuplot.log"
else
    skip "gnuplot not installed (deploy/install-deps.sh installs gnuplot-nox): PNG and SVG checks"
fi

# ---- sweep b: fixed ω only --------------------------------------------------------------------------------------
O=$T/out-b
"$DRQ" report "$T/b.db" --out "$O" >"$T/rep-b.log" 2>&1
check_eq "drq report b --out exit status" "$?" 0
check_eq "b: Table 3 has no random-ω column" "$(head -1 "$O/table3-fixed-vs-random.csv")" \
    "purifier,gradient,attack_fixed,seeds,clean_acc_mean,clean_acc_std,robust_acc_fixed_mean,robust_acc_fixed_std"
check "b: report.md says random ω is not in this sweep" grep -q 'Random ω (fresh, EOT): not in this sweep' "$O/report.md"
check "b: no Table S2 files" test ! -e "$O/tableS2-transfer.csv" -a ! -e "$O/tableS2-transfer.md"
check "b: report.md says Table S2 is not in this sweep" grep -q 'Not in this sweep: no attack with randomness "transfer"' "$O/report.md"
check_eq "b: Table 1 has one row" "$(rows "$O/table1-distances.csv")" 1

# ---- without gnuplot --------------------------------------------------------------------------------------------
O=$T/out-nogp
DRQ_GNUPLOT=/nonexistent/gnuplot "$DRQ" report "$T/a.db" --out "$O" >/dev/null 2>"$T/nogp.log"
check_eq "without gnuplot: exit 0" "$?" 0
check "without gnuplot: a warning" grep -q 'warning: gnuplot not found' "$T/nogp.log"
check "without gnuplot: tables written" test -s "$O/table1-distances.csv" -a -s "$O/table3-fixed-vs-random.md"
check "without gnuplot: no PNG" test ! -e "$O/fig3-compression-robustness.png"
check "without gnuplot: report.md says so" grep -q 'gnuplot was not found' "$O/report.md"
check "without gnuplot: the scripts are there to run later" test -s "$O/fig3-compression-robustness.gp"

# ---- unwritable DIR ---------------------------------------------------------------------------------------------
touch "$T/afile"
"$DRQ" report "$T/a.db" --out "$T/afile/out" >/dev/null 2>"$T/bad.log"
check_eq "DIR under a regular file: exit 1" "$?" 1
check "DIR under a regular file: a clear error" grep -q "drq: report: cannot create $T/afile/out: $T/afile is not a directory" "$T/bad.log"
if [ "$(id -u)" != 0 ]; then
    mkdir "$T/ro" && chmod 555 "$T/ro"
    "$DRQ" report "$T/a.db" --out "$T/ro" >/dev/null 2>"$T/ro.log"
    check_eq "read-only DIR: exit 1" "$?" 1
    check "read-only DIR: a clear error" grep -q "drq: report: $T/ro is not writable" "$T/ro.log"
else
    skip "read-only DIR: running as root, which may write anywhere"
fi
"$DRQ" report "$T/a.db" --out >/dev/null 2>&1
check_eq "--out without DIR: usage, exit 1" "$?" 1

finish
