#!/usr/bin/env bash
# Create .venv and install mixllm-router with every extra. torch goes FIRST and pinned: an
# unpinned torch (or one pulled in by transformers) would fetch a multi-GB CUDA build.
# A stamp of the packaging files skips the pip steps when nothing changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.mixllm-install-stamp
want=$(cat pyproject.toml integrations/*/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)-$TORCH_VERSION
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==${TORCH_VERSION}"
  python -m pip install -q -e ".[all,test,lint]"
  for pkg in integrations/*/; do
    if [ -f "$pkg/pyproject.toml" ]; then
      python -m pip install -q -e "$pkg"
    fi
  done
  echo "$want" > "$stamp"
fi
python -c "import torch, mixllm_router; print('mixllm-router', mixllm_router.__version__, '| torch', torch.__version__)"
