#!/usr/bin/env bash
# The real-scale checks, as one prepared script for a machine with one GPU and >= 16 CPU cores.
#   GPU, one after the other:
#     * CIFAR-10 `--subset 200` at sym-40 with the CPU-sized budget (`small` model, CIFAR_KIMG kimg):
#       vanilla and DMIS with each posterior-schedule fit (fixed / prune / refit), via `wsl-diff train`;
#     * CIFAR-10 sym-40, 1000 images per class, `base` model, DMIS vs vanilla for CIFAR_SECONDS each
#       (benchmarks/accelerator_cifar.py).
#   CPU, at the same time, one thread per run: the digits ablation of the posterior-schedule fit at the
#   default budget, DIGITS_RUNS = "setting:fit:seed ..." (settings: sym-40, asym-40, partial-0.5, semi-5).
# Usage: benchmarks/device_checks.sh DATA OUTDIR
# It calls `wsl-diff`. Where pip cannot reach an index (`pip install -e . --no-deps` still wants
# setuptools), run it with PYTHONPATH=<repo> and a `wsl-diff` on PATH that execs
# `python3 -m cli.main "$@"`, as the first device run did.
# EXTRA_TRAIN / EXTRA_CIFAR (env): flags appended to every `wsl-diff train` / the accelerator script (the
# last occurrence of a flag wins), e.g. `--kimg 2` for a quick local dry run.
# What it reports lands in OUTDIR (few files): digits.jsonl, cifar_subset.jsonl, cifar.json, log.txt.
set -u
DATA=$1; OUT=$2
CIFAR_SECONDS=${CIFAR_SECONDS:-90}; CIFAR_KIMG=${CIFAR_KIMG:-64}
RUNS=${RUNS_DIR:-/tmp/wsl-runs}
DIGITS_RUNS=${DIGITS_RUNS:-"sym-40:fixed:0 sym-40:prune:0 sym-40:refit:0 sym-40:fixed:1 sym-40:prune:1 sym-40:refit:1
  partial-0.5:fixed:0 partial-0.5:prune:0 partial-0.5:refit:0 partial-0.5:fixed:1 partial-0.5:prune:1
  partial-0.5:refit:1 asym-40:prune:0 semi-5:prune:0"}
mkdir -p "$OUT" "$RUNS"
log() { echo "[$(date +%T)] $*" >> "$OUT/log.txt"; }

supervision() {  # a setting's label flags
  case $1 in
    sym-40) echo "--supervision noisy --noise sym --rate 0.4" ;;
    asym-40) echo "--supervision noisy --noise asym --rate 0.4" ;;
    partial-0.5) echo "--supervision partial --q 0.5" ;;
    semi-5) echo "--supervision semi --labelled-fraction 0.05" ;;
    *) echo "unknown setting $1" >&2; return 1 ;;
  esac
}

record() {  # name, run dir: the summary plus the E-step trace (table true-class rate, fitted schedule)
  python - "$1" "$2" <<'EOF'
import json, sys
name, run = sys.argv[1], sys.argv[2]
try:
    rec = json.load(open(f"{run}/summary.json"))
    trace = [json.loads(l) for l in open(f"{run}/stats.jsonl") if '"refresh"' in l]
    keys = ("kimg", "table_true_class_rate", "sigma_lo", "sigma_hi", "num_sigmas", "keep_classes",
            "transition_error_max", "transition_error_mean", "temperature")
    rec["refreshes"] = [{k: r[k] for k in keys if k in r} for r in trace]
except Exception as exc:  # keep going: a failed run is reported, not fatal
    rec = {"error": repr(exc)}
print(json.dumps({"name": name, **rec}))
EOF
}

digits() {  # setting, fit, seed
  local name="$1_$2_s$3"
  # shellcheck disable=SC2046,SC2086
  OMP_NUM_THREADS=1 wsl-diff train --dataset digits $(supervision "$1") --label-seed "$3" --seed "$3" \
    --posterior-fit "$2" ${EXTRA_TRAIN:-} --threads 1 --quiet --json --samples-per-class 0 --out "$RUNS/$name" \
    > /dev/null 2> "$RUNS/$name.err"
  record "$name" "$RUNS/$name" >> "$OUT/digits.jsonl"
  log "digits $name done"
}

log "start"
for spec in $DIGITS_RUNS; do
  IFS=: read -r setting fit seed <<< "$spec"
  digits "$setting" "$fit" "$seed" &
done

if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv >> "$OUT/log.txt"; fi
for variant in vanilla:fixed dmis:fixed dmis:prune dmis:refit; do
  IFS=: read -r method fit <<< "$variant"
  name="cifar200_${method}_$fit"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=2 wsl-diff train --dataset "$DATA" --subset 200 --supervision noisy --rate 0.4 --method "$method" \
    --posterior-fit "$fit" --kimg "$CIFAR_KIMG" --device cuda --threads 2 --quiet --json --samples-per-class 0 \
    ${EXTRA_TRAIN:-} --out "$RUNS/$name" > /dev/null 2> "$RUNS/$name.err"
  record "$name" "$RUNS/$name" >> "$OUT/cifar_subset.jsonl"
  log "$name done"
done
# shellcheck disable=SC2086
OMP_NUM_THREADS=2 python benchmarks/accelerator_cifar.py --data "$DATA" --out "$RUNS/cifar" \
  --seconds "$CIFAR_SECONDS" --refresh-kimg 32 ${EXTRA_CIFAR:-} --json > "$OUT/cifar.json" 2> "$RUNS/cifar.err"
log "cifar done (exit $?)"; tail -3 "$RUNS/cifar.err" >> "$OUT/log.txt"
wait
log "all done"
for f in "$RUNS"/*.err; do [ -s "$f" ] && { echo "== $f"; tail -2 "$f"; } >> "$OUT/log.txt"; done
exit 0
