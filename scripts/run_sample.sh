#!/usr/bin/env bash
# The main job on a fresh machine: environment, sample images, frontalization, evaluation, report.
#
# Usage: bash scripts/run_sample.sh [--liveportrait] [--no-setup] [OUT_ROOT]   (default OUT_ROOT: outputs/sample)
#
# Without a flag nothing is downloaded (package installation aside): the sample faces come from photos that
# installed packages ship (plus synthetic posed views of them, rendered by the geometric frontalizer at known
# yaw), they are frontalized by the geometric 3D-model backend (--frontalize mesh) and by the identity baseline
# (crop/align only), and both output trees are evaluated with the offline RetinaFace-MobileNet x dlib pair.
# --liveportrait also downloads the LivePortrait and InsightFace weights, adds a LivePortrait output tree and
# evaluates all three trees with the seed study's combinations (configs/eval.yaml).
# --no-setup uses the active Python environment instead of creating/updating .venv (scripts/setup_env.sh).
# Writes OUT_ROOT/report/report.md and report.html. Exit code: 0 done (some inputs may have failed: see each
# tree's manifest and the report's no-face counts), otherwise the failing command's code.
set -euo pipefail
cd "$(dirname "$0")/.."

liveportrait=0
setup=1
out=""
for arg in "$@"; do
  case "$arg" in
    --liveportrait) liveportrait=1 ;;
    --no-setup) setup=0 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    -*) echo "run_sample.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "run_sample.sh: one OUT_ROOT only" >&2; exit 2; }; out="$arg" ;;
  esac
done
out="${out:-outputs/sample}"

# inference.py exits 1 when some inputs failed (e.g. no face found): that is a result, reported, not a stop
frontalize_tree() {
  local status=0
  python inference.py "$@" || status=$?
  if [ "$status" -eq 1 ]; then
    echo "run_sample.sh: some inputs were not frontalized (their manifest rows give the reason)" >&2
  elif [ "$status" -ne 0 ]; then
    exit "$status"
  fi
}

if [ "$setup" -eq 1 ]; then
  bash scripts/setup_env.sh offline
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
started=$(date +%s)
python scripts/make_samples.py "$out/data"
inputs=(--source_dir "$out/data" --list-file "$out/data/angled.txt")
frontalize_tree --config configs/offline.yaml "${inputs[@]}" -o "$out/frontal/identity"
frontalize_tree --config configs/offline.yaml "${inputs[@]}" -o "$out/frontal/mesh" --frontalize mesh
trees=(--frontal-dir "$out/frontal/identity" --frontal-dir "$out/frontal/mesh")
eval_config=configs/eval-offline.yaml
if [ "$liveportrait" -eq 1 ]; then
  python scripts/download_weights.py --only liveportrait insightface_buffalo_l insightface_antelopev2 facexlib
  frontalize_tree "${inputs[@]}" -o "$out/frontal/liveportrait" --frontalize liveportrait
  trees+=(--frontal-dir "$out/frontal/liveportrait")
  eval_config=configs/eval.yaml
fi
python evaluate.py --config "$eval_config" --layout generic --data "$out/data" "${trees[@]}" -o "$out/report"
echo "main job: $(( $(date +%s) - started )) s from sample data to report"
echo "report: $out/report/report.md (browse: $out/report/report.html)"
