#!/usr/bin/env bash
# The main job: install, tune by cross-validation on the RouterBench train files, train, evaluate
# on the test files, print the comparison table and write runs/routerbench/{results.json,tradeoff.png}.
# The light install is enough (no torch): the encoder runs on ONNX Runtime. It embeds with dynamic int8
# weights, the fastest backend (1.7x fp32 here; its table is within 0.2 AUC of fp32's, docs/benchmarks.md
# §13), and the table names the encoder it came from. `bash scripts/main.sh --encoder-backend onnx` (or
# MIXLLM_ENCODER_BACKEND=onnx, which overrides any flag) embeds with fp32, the torch path's exact vectors
# (§1's table). MIXLLM_SETUP=full installs everything, as scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
MIXLLM_SETUP=${MIXLLM_SETUP:-light} bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA=${MIXLLM_DATA:-../shared/data/routerbench}
time mixllm eval --data "$DATA" --out runs/routerbench --tune --decisions runs/routerbench/decisions.jsonl \
  --encoder-backend onnx-int8 "$@"
