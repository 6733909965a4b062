#!/usr/bin/env bash
# The real-scale checks, as one prepared script for a machine with one GPU and >= 16 CPU cores:
#   * CIFAR-10 sym-40, DMIS vs vanilla, `base` model on the GPU (benchmarks/accelerator_cifar.py);
#   * at the same time, the digits default runs on the CPU cores, 2 threads each (vanilla vs DMIS at
#     sym-40 and partial q=0.3; the EM vs weighted-DSM forms at an equal 64 kimg; semi 10%).
# Usage: benchmarks/device_checks.sh DATA OUTDIR [CIFAR_SECONDS]
# EXTRA_TRAIN / EXTRA_CIFAR (env): flags appended to every digits run / the CIFAR script (the last
# occurrence of a flag wins), e.g. for a quick local dry run with tiny budgets.
# Everything it reports lands in OUTDIR (few files): cifar.json, digits.jsonl, log.txt, two runs' files.
set -u
DATA=$1; OUT=$2; SECONDS_PER_METHOD=${3:-150}
RUNS=${RUNS_DIR:-/tmp/wsl-runs}
mkdir -p "$OUT" "$RUNS"
log() { echo "[$(date +%T)] $*" >> "$OUT/log.txt"; }

digits() {  # name, then wsl-diff train flags
  local name=$1; shift
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=2 wsl-diff train --dataset digits "$@" ${EXTRA_TRAIN:-} --threads 2 --quiet --json --out "$RUNS/$name" \
    > "$RUNS/$name.json" 2> "$RUNS/$name.err"
  python - "$name" "$RUNS/$name.json" >> "$OUT/digits.jsonl" <<'EOF'
import json, sys
try:
    rec = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
except Exception as exc:  # keep going: a failed run is reported, not fatal
    rec = {"error": repr(exc)}
print(json.dumps({"name": sys.argv[1], **rec}))
EOF
  log "digits $name done"
  if [ "$name" = sym40_dmis ]; then  # kept for posterior benchmarks on the developer machine
    for f in checkpoint.pt labels.npz; do cp "$RUNS/$name/$f" "$OUT/${name}_$f" 2>/dev/null; done
  fi
}

log "start"
digits sym40_vanilla --supervision noisy --rate 0.4 --method vanilla &
digits sym40_dmis --supervision noisy --rate 0.4 --method dmis &
digits partial03_vanilla --supervision partial --q 0.3 --method vanilla &
digits partial03_dmis --supervision partial --q 0.3 --method dmis &
digits sym40_em_64k --supervision noisy --rate 0.4 --method dmis --gen-form em --kimg 64 &
digits sym40_wdsm_64k --supervision noisy --rate 0.4 --method dmis --gen-form wdsm --kimg 64 &
digits semi10_dmis --supervision semi --labelled-fraction 0.1 --method dmis &

if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv >> "$OUT/log.txt"; fi
OMP_NUM_THREADS=2 python benchmarks/accelerator_cifar.py --data "$DATA" --out "$RUNS/cifar" \
  --seconds "$SECONDS_PER_METHOD" ${EXTRA_CIFAR:-} --json > "$OUT/cifar.json" 2> "$RUNS/cifar.err"
log "cifar done (exit $?)"; tail -3 "$RUNS/cifar.err" >> "$OUT/log.txt"
wait
log "all done"
cp "$RUNS/cifar/dmis/samples.png" "$OUT/cifar_dmis_samples.png" 2>/dev/null
for f in "$RUNS"/*.err; do [ -s "$f" ] && { echo "== $f"; tail -2 "$f"; } >> "$OUT/log.txt"; done
exit 0
