#!/usr/bin/env bash
# test_analyses_cli.sh — the analysis kinds through `drq run` (the embedded
# coordinator, its store and two workers) on the demo's Fashion-MNIST models:
#   every job finishes; variance_results, gradcorr_results and screen_results
#   hold one row per image (gradcorr: per estimator pair) and
#   `drq results --kind` exports exactly those rows (CSV and JSONL);
#   a screen's compression rate is the fixed-ω attack's comp_unif (one code);
#   a second `drq run` of the same sweep adds no row; --dry-run counts the
#   analyses; a bad --kind is a usage error.
# A reduced sweep (6 images, t* = 4) keeps it to seconds.
cd "$(dirname "$0")/.." || exit 1
source tests/queue_lib.sh

DATA=/usr/share/datasets/fashion-mnist
if [ ! -d "$DATA" ]; then
    skip "no Fashion-MNIST at $DATA (deploy/fetch-assets)"
    finish
fi
cat >"$T/s.json" <<JSON
{"name": "analyses-cli",
 "dataset": {"kind": "fashion-mnist", "path": "$DATA", "start": 0, "count": 6},
 "classifier": {"arch": "wrn", "config": "examples/models/fmnist-wrn.json", "weights": "examples/models/fmnist-wrn.safetensors"},
 "diffusion": {"arch": "ddpm-unet", "config": "examples/models/fmnist-ddpm.json", "weights": "examples/models/fmnist-ddpm.safetensors"},
 "purifiers": [{"name": "ddpm", "kind": "ddpm", "t_star": 4}, {"name": "none", "kind": "none"}],
 "attacks": [{"name": "pgd", "kind": "pgd", "eps": 0.03, "steps": 1, "n_uniform": 2}],
 "analyses": [{"name": "var", "kind": "variance", "n_delta": 3, "n_omega": 2, "eps": 0.03},
              {"name": "gc", "kind": "gradcorr", "estimators": ["fixed", "eot", "bpda"], "eot_k": 2},
              {"name": "scr", "kind": "screen", "n_uniform": 2, "eps": 0.03}],
 "seeds": [3],
 "shard": {"images": 3}}
JSON

check "--dry-run counts the analyses" bash -c "'$DRQ' run '$T/s.json' --dry-run 2>&1 | grep -q 'include 3 analyses'"
check "drq run" "$DRQ" run "$T/s.json" --db "$T/a.db" --quiet --workers 2 --threads 1 --batch 2
q() { sqlite3 "$T/a.db" "$1"; }
check_eq "jobs done" "$(q "SELECT count(*) FROM jobs WHERE state = 'done'")" 16
check_eq "results rows" "$(q "SELECT count(*) FROM results")" 48
check_eq "variance_results rows" "$(q "SELECT count(*) FROM variance_results")" 12
check_eq "gradcorr_results rows (3 pairs per image)" "$(q "SELECT count(*) FROM gradcorr_results")" 36
check_eq "screen_results rows" "$(q "SELECT count(*) FROM screen_results")" 12
check_eq "law of total variance in every row" \
    "$(q "SELECT count(*) FROM variance_results WHERE abs(var_total - var_input - var_internal) <= 1e-9 * var_total")" 12
check_eq "identity purifier: no internal variance, snr NULL" \
    "$(q "SELECT count(*) FROM variance_results WHERE purifier = 'none' AND var_internal = 0 AND snr IS NULL")" 6
check_eq "screen compression = the fixed-ω attack's comp_unif" \
    "$(q "SELECT count(*) FROM screen_results s JOIN results r ON r.sweep = s.sweep AND r.purifier = s.purifier
          AND r.image = s.image AND r.attack = 'pgd' WHERE s.comp_unif_mean = r.comp_unif_mean
          AND s.comp_unif_std = r.comp_unif_std AND s.clean_pred = r.clean_pred")" 12

for k in variance gradcorr screen; do
    check "drq results --kind $k" "$DRQ" results "$T/a.db" --kind $k --out "$T/$k.csv"
    check "drq results --kind $k --format jsonl" "$DRQ" results "$T/a.db" --kind $k --format jsonl --out "$T/$k.jsonl"
done
check_eq "variance CSV header" "$(head -1 "$T/variance.csv")" \
    "sweep,purifier,analysis,seed,image,label,n_delta,n_omega,var_total,var_input,var_internal,snr,radius_init,radius_fixed_omega,radius_fixed_delta,radius_both,cos_same_omega,cos_same_delta"
check_eq "variance CSV rows" "$(tail -n +2 "$T/variance.csv" | wc -l)" 12
check_eq "gradcorr CSV rows" "$(tail -n +2 "$T/gradcorr.csv" | wc -l)" 36
check_eq "screen JSONL rows" "$(wc -l <"$T/screen.jsonl")" 12
# the export is the table, value for value (floats compared as numbers)
same_as_table() { # same_as_table KIND: the CSV export equals the table's rows
    python3 - "$T/a.db" "$T/$1.csv" "$1" <<'PY'
import csv, sqlite3, sys
db, path, kind = sys.argv[1:]
rows = list(csv.reader(open(path)))
cols = rows[0]
con = sqlite3.connect(db)
order = "purifier, analysis, seed, image" + (", rowid" if kind == "gradcorr" else "")
table = con.execute(f"SELECT {', '.join(cols)} FROM {kind}_results ORDER BY {order}").fetchall()
def same(a, b):
    if b is None: return a == ""
    if isinstance(b, float): return a != "" and float(a) == b
    return a == str(b)
ok = len(table) == len(rows) - 1 and all(all(same(a, b) for a, b in zip(r, t)) for r, t in zip(rows[1:], table))
sys.exit(0 if ok else 1)
PY
}
for k in variance gradcorr screen; do check "$k export equals its table" same_as_table $k; done
check "a bad --kind is a usage error" bash -c "! '$DRQ' results '$T/a.db' --kind pgd 2>/dev/null"

check "drq run again (the sweep is complete)" "$DRQ" run "$T/s.json" --db "$T/a.db" --quiet --workers 1 --threads 1
check_eq "no row twice: gradcorr_results" "$(q "SELECT count(*) FROM gradcorr_results")" 36
check_eq "no row twice: results" "$(q "SELECT count(*) FROM results")" 48
finish
