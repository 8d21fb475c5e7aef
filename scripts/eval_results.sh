#!/usr/bin/env bash
# The evaluations behind RESULTS.md: bundled MediaPipe selfie models on the bundled example images.
# Resumable: rerun after an interruption and finished (image, attack, ε, seed) results are reused.
#   STEPS=100 SEEDS=0 OUT=runs/results bash scripts/eval_results.sh          # what RESULTS.md's CPU tables ran
#   STEPS=300 SEEDS=0,1,2 OUT=runs/results-300 DEVICE=cuda bash scripts/eval_results.sh   # the paper's protocol
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-runs/results}
STEPS=${STEPS:-100}
SEEDS=${SEEDS:-0}
DEVICE=${DEVICE:-cpu}
EPS=${EPS:-0.25/255,0.5/255,1/255}
PARTS=${PARTS:-gt landscape ablation all}
COMMON=(--eps "$EPS" --steps "$STEPS" --seeds "$SEEDS" --device "$DEVICE" --batch-size 8)
[[ -n "${NO_PROGRESS:-}" ]] && COMMON+=(--no-progress)
SCHEDULES=linear:-2:1,const:-2,const:-1,const:0,const:0.5,const:1

for part in $PARTS; do
  case $part in
    gt)        # the one bundled image with a ground-truth person mask (Pascal VOC 2012), all six attacks
      $PY -m attack_engine eval --model mediapipe-selfie --data examples "${COMMON[@]}" --out "$OUT/selfie-gt" ;;
    landscape) # same image, the landscape variant (144×256 crop): a second model for the rank table
      $PY -m attack_engine eval --model mediapipe-selfie-landscape --data examples "${COMMON[@]}" --out "$OUT/landscape-gt" ;;
    ablation)  # fixed q against the paper's linear schedule (the paper's ablation), same image
      $PY -m attack_engine eval --model mediapipe-selfie --data examples --attacks tsallis --tsallis-schedules "$SCHEDULES" \
        "${COMMON[@]}" --out "$OUT/selfie-ablation" ;;
    all)       # every bundled image, labels = the clean prediction (clean ACC = 100 % by construction)
      $PY -m attack_engine eval --model mediapipe-selfie --data examples:all --labels clean "${COMMON[@]}" --out "$OUT/selfie-all" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
dirs=()
for d in selfie-gt landscape-gt selfie-all; do [[ -f "$OUT/$d/metrics.json" ]] && dirs+=("$OUT/$d"); done
if [[ ${#dirs[@]} -gt 1 ]]; then
  $PY -m attack_engine eval report "${dirs[@]}" --out "$OUT/combined" --title "Selfie models, all settings" >/dev/null
  echo "combined report: $OUT/combined/report.md"
fi
