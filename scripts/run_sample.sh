#!/usr/bin/env bash
# The main job on a fresh machine: environment, weights, sample images, frontalization, evaluation, report.
# Usage: bash scripts/run_sample.sh [OUT_ROOT]     (default: outputs/sample; needs internet for the weights)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-outputs/sample}"
bash scripts/setup_env.sh offline
# shellcheck disable=SC1091
. .venv/bin/activate
python scripts/download_weights.py --only liveportrait insightface_buffalo_l insightface_antelopev2 facexlib
python scripts/make_samples.py "$out/data"
python inference.py --source_dir "$out/data" --list-file "$out/data/angled.txt" -o "$out/frontal" --frontalize
python evaluate.py --config configs/eval.yaml --layout generic --data "$out/data" --frontal-dir "$out/frontal" \
  -o "$out/report"
echo "report: $out/report/report.md (browse: $out/report/report.html)"
