#!/usr/bin/env bash
# test_report_analyses.sh — the analysis part of `drq report --out` (cli/report_analyses.c,
# docs/report.md) on a real sweep of the demo's Fashion-MNIST models (2 images, t* of 2–8):
#   Tables 5, 7 and S6 with a row per purifier (× estimator pair), their values equal to means
#   recomputed with awk from `drq results --kind`; Figs. 2f and 4 as PNG and SVG;
#   the compression → robustness fit on attack rows added to the same database with known robust
#   counts (k of 20 per config): its intercept and slope equal an independent float64 Newton fit
#   in Python (numpy) on the Table 7 compression rates, Table 7 predicts every config, Fig. 3
#   with the fit is drawn; with 2 attacked configs the report says it cannot fit.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

DATA=/usr/share/datasets/fashion-mnist
if [ ! -d "$DATA" ]; then
    skip "no Fashion-MNIST at $DATA (deploy/install-deps.sh installs dataset-fashion-mnist)"
    finish
fi
cat >"$T/s.json" <<EOF2
{"name": "report-an", "dataset": {"kind": "fashion-mnist", "path": "$DATA", "count": 2},
 "classifier": {"arch": "wrn", "config": "examples/models/fmnist-wrn.json", "weights": "examples/models/fmnist-wrn.safetensors"},
 "diffusion": {"arch": "ddpm-unet", "config": "examples/models/fmnist-ddpm.json", "weights": "examples/models/fmnist-ddpm.safetensors"},
 "purifiers": [{"name": "t4", "kind": "ddpm", "t_star": 4}, {"name": "t2", "kind": "ddpm", "t_star": 2},
               {"name": "t6", "kind": "ddpm", "t_star": 6}, {"name": "r8", "kind": "reverse", "t_star": 8}],
 "analyses": [{"name": "scr", "kind": "screen", "n_uniform": 2, "eps": 0.06},
              {"name": "var", "kind": "variance", "n_delta": 2, "n_omega": 3, "eps": 0.06},
              {"name": "gc", "kind": "gradcorr", "estimators": ["fixed", "bpda"]}],
 "seeds": [0], "shard": {"images": 2}}
EOF2
check "drq run (screen, variance, gradcorr)" bash -c "'$DRQ' run '$T/s.json' --db '$T/s.db' --threads 2 --quiet >'$T/run.log' 2>&1"
for k in screen variance gradcorr; do "$DRQ" results "$T/s.db" --kind $k --out "$T/$k.csv" 2>/dev/null; done

HAVE_GP=0
command -v gnuplot >/dev/null && HAVE_GP=1
rows() { tail -n +2 "$1" | wc -l; }
cell() { # cell FILE "k1,k2" COLUMN: the column (by header name) of the row whose first fields are k1,k2
    awk -F, -v key="$2" -v col="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        { n = split(key, k, ","); ok = 1; for (i = 1; i <= n; i++) if ($i != k[i]) ok = 0; if (ok) print $c }' "$1"
}
mean_of() { # mean_of FILE COLUMN FILTERCOL=VALUE...: mean of a column (by header name) over matching rows
    awk -F, -v col="$2" -v f1="$3" -v f2="${4:-}" 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
        { split(f1, a, "="); if ($h[a[1]] != a[2]) next; if (f2 != "") { split(f2, b, "="); if ($h[b[1]] != b[2]) next }
          s += $h[col]; n++ } END { printf "%.6f", s / n }' "$1"
}
same() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a != "" && b != "" && d < 1e-6 && d > -1e-6) }' || { echo "  $1 != $2"; return 1; }; }

O=$T/out
"$DRQ" report "$T/s.db" --out "$O" >"$T/rep.log" 2>&1
check_eq "drq report --out exit status" "$?" 0
for t in table5-gradcorr table7-screen tableS6-variance; do
    check "$t.md and $t.csv written" test -s "$O/$t.md" -a -s "$O/$t.csv"
done
check_eq "Table 7: a row per screened purifier" "$(rows "$O/table7-screen.csv")" 4
check_eq "Table S6: a row per purifier" "$(rows "$O/tableS6-variance.csv")" 4
check_eq "Table 5: a row per purifier × estimator pair" "$(rows "$O/table5-gradcorr.csv")" 4
check_eq "Table 7 in the spec's purifier order with kinds and t*" \
    "$(tail -n +2 "$O/table7-screen.csv" | cut -d, -f2-4 | tr '\n' ' ')" "t4,ddpm,4 t2,ddpm,2 t6,ddpm,6 r8,reverse,8 "
check "Table 7 compression t4 = mean of comp_unif_mean" same "$(cell "$O/table7-screen.csv" scr,t4 comp_mean)" "$(mean_of "$T/screen.csv" comp_unif_mean purifier=t4)"
check "Table S6 SNR r8 = mean of snr" same "$(cell "$O/tableS6-variance.csv" r8,var snr_mean)" "$(mean_of "$T/variance.csv" snr purifier=r8)"
check "Table S6 radius fixed ω t2" same "$(cell "$O/tableS6-variance.csv" t2,var radius_fixed_omega_mean)" "$(mean_of "$T/variance.csv" radius_fixed_omega purifier=t2)"
check "Table 5 cosine t6 fixed/bpda = mean of cosine" same "$(cell "$O/table5-gradcorr.csv" t6,gc,clean,fixed,bpda cosine_mean)" "$(mean_of "$T/gradcorr.csv" cosine purifier=t6)"
check "report.md: no attack, so no fit" grep -q 'Cannot fit: no purifier config was both screened and attacked' "$O/report.md"

png_ok() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ] && [ "$(stat -c %s "$1")" -gt 5000 ]; }
svg_ok() { head -c 300 "$1" | grep -q '<svg' && tail -c 50 "$1" | grep -q '</svg>'; }
if [ $HAVE_GP == 1 ]; then
    for f in fig4-tstar fig2f-radii; do
        check "$f.png is a PNG" png_ok "$O/$f.png"
        check "$f.svg is an SVG" svg_ok "$O/$f.svg"
        check "report.md links $f.png" grep -q "]($f.png)" "$O/report.md"
    done
    check_eq "Fig. 4 data: compression at every t* (ddpm 3, reverse 1)" "$(grep -c '^[0-9]' "$O/fig4-tstar.dat")" 4
    check_eq "Fig. 4: the ddpm line runs in t* order, not the spec's" \
        "$(awk '/^# .*ddpm: t\*/ { on = 1; next } on && /^[0-9]/ { printf "%s ", $1; next } on { exit }' "$O/fig4-tstar.dat")" "2 4 6 "
else
    skip "gnuplot not installed (deploy/install-deps.sh installs gnuplot-nox): PNG and SVG checks"
fi

# ---- the fit: attack rows with known robust counts, k of 20 per config ------------------------------------------
sqlite3 "$T/s.db" ".backup '$T/f.db'" # the rows may still be in s.db's WAL
add_attack() { # add_attack PURIFIER K: 20 rows of attack pgd-fixed, the first K robust
    local sql="BEGIN;" i
    for i in $(seq 0 19); do
        sql+="INSERT INTO results (sweep, purifier, attack, seed, image, clean_correct, robust) VALUES (1, '$1', 'pgd-fixed', 0, $((100 + i)), 1, $((i < $2 ? 1 : 0)));"
    done
    sqlite3 "$T/f.db" "$sql COMMIT;"
}
add_attack t2 3
add_attack t4 7
add_attack t6 12
O=$T/out-fit
"$DRQ" report "$T/f.db" --out "$O" >"$T/rep-fit.log" 2>&1
check_eq "fit report exit status" "$?" 0
fitrow=$(grep '^| scr | pgd-fixed |' "$O/report.md")
check "report.md: a fit over 3 configs with a and b" bash -c "echo '$fitrow' | grep -Eq '^\| scr \| pgd-fixed \| 3 \| -?[0-9.]+ ± [0-9.]+ \| -?[0-9.]+ ± [0-9.]+ \|'"
ref=$(/usr/bin/python3 - "$O/table7-screen.csv" <<'PY'
import csv, sys
import numpy as np
rows = {r["purifier"]: float(r["comp_mean"]) for r in csv.DictReader(open(sys.argv[1]))}
x = np.array([rows["t2"], rows["t4"], rows["t6"]]); k = np.array([3.0, 7, 12]); n = np.array([20.0, 20, 20])
X = np.stack([np.ones(3), x], 1); beta = np.zeros(2)
for _ in range(100):  # Newton on the binomial log-likelihood, float64
    p = 1 / (1 + np.exp(-X @ beta)); W = n * p * (1 - p)
    beta = beta + np.linalg.solve(X.T @ (W[:, None] * X), X.T @ (k - n * p))
print(f"{beta[0]:.3f} {beta[1]:.3f}")
PY
)
got=$(echo "$fitrow" | awk -F'|' '{ split($5, a, " "); split($6, b, " "); print a[1], b[1] }')
check_eq "fit a, b = an independent numpy Newton fit (3 decimals)" "$got" "$ref"
check_eq "Table 7 predicts all 4 configs" "$(awk -F, 'NR > 1 && $11 != "" { n++ } END { print n }' "$O/table7-screen.csv")" 4
check_eq "Table 7: r8 was screened, not attacked" "$(cell "$O/table7-screen.csv" scr,r8 robust_pgd-fixed)" ""
check_eq "Table 7: t4 attacked 7 of 20" "$(cell "$O/table7-screen.csv" scr,t4 robust_pgd-fixed)" 35
if [ $HAVE_GP == 1 ]; then
    check "fig3-fit.png is a PNG" png_ok "$O/fig3-fit.png"
    check "report.md links fig3-fit.png" grep -q "](fig3-fit.png)" "$O/report.md"
fi
sqlite3 "$T/f.db" "DELETE FROM results WHERE attack = 'pgd-fixed' AND purifier = 't6'"
"$DRQ" report "$T/f.db" --out "$T/out-2" >/dev/null 2>&1
check "2 attacked configs: cannot fit" grep -q 'cannot fit: fewer than 3 attacked configs' "$T/out-2/report.md"
finish
