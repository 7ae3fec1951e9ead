#!/usr/bin/env bash
# Install everything, then run the test suites (core and both integrations), offline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -m ruff check mixllm_router integrations tests benchmarks examples   # lint rules: pyproject.toml
lint-imports   # the architecture contract: layers of docs/design.md, no import cycle (pyproject [tool.importlinter])
python -m pytest tests "$@"
# each integration package has its own pytest config (same offline rules)
python -m pytest integrations/langchain-mixllm/tests "$@"
python -m pytest integrations/llama-index-llms-mixllm/tests "$@"
