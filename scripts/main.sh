#!/usr/bin/env bash
# The main job: install, tune by cross-validation on the RouterBench train files, train, evaluate
# on the test files, print the comparison table and write runs/routerbench/{results.json,tradeoff.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA=${MIXLLM_DATA:-../shared/data/routerbench}
time mixllm eval --data "$DATA" --out runs/routerbench --tune --decisions runs/routerbench/decisions.jsonl "$@"
