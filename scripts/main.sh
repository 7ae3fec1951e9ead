#!/usr/bin/env bash
# The main job: install, tune by cross-validation on the RouterBench train files, train, evaluate
# on the test files, print the comparison table and write runs/routerbench/{results.json,tradeoff.png}.
# The light install is enough (no torch): the encoder runs on ONNX Runtime fp32, which gives the torch
# path's vectors (docs/encoders.md). MIXLLM_SETUP=full installs everything, as scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
MIXLLM_SETUP=${MIXLLM_SETUP:-light} bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA=${MIXLLM_DATA:-../shared/data/routerbench}
time mixllm eval --data "$DATA" --out runs/routerbench --tune --decisions runs/routerbench/decisions.jsonl "$@"
