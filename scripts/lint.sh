#!/usr/bin/env bash
# Static checks: ruff (also run by scripts/test.sh) and mypy over the package and both integrations.
# mypy is not part of the test command: its verdict depends on the installed versions of numpy,
# langchain-core and llama-index-core, which the package does not pin.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m ruff check mixllm_router integrations tests benchmarks examples
python -m mypy mixllm_router
python -m mypy integrations/langchain-mixllm/langchain_mixllm
# llama_index is a namespace package: check ours from its own folder, with the core package on the path
(cd integrations/llama-index-llms-mixllm && MYPYPATH=.:../.. python -m mypy --namespace-packages \
  --explicit-package-bases llama_index/llms/mixllm llama_index/embeddings/mixllm)
