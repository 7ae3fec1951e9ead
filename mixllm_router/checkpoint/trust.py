"""What a checkpoint may decide, and what belongs to the host that loads it.

A checkpoint folder can come from anyone (a colleague, a download, an attacker). The router runs in
the host's process with the host's rights, so a manifest must never choose a path the library then
reads or writes. Three settings name host paths:

=========================  ==========================================  ===========================
setting                    what the library does with it               on load it comes from
=========================  ==========================================  ===========================
``learning.journal_path``  reads it (replay), creates its folder and   ``load(journal_path=...)``
                           a ``.lock`` beside it, truncates and        (None: no journal)
                           appends to it
``encoder.cache_dir``      writes embedding shards under it            ``load(cache_dir=...)``
                                                                       (None: the default cache)
``encoder.model_path``     reads a Hugging Face model folder (kind     ``load(model_path=...)`` or
                           ``"hf"``)                                   ``load(encoder=...)``
=========================  ==========================================  ===========================

The rule is the simplest that holds: **a manifest's path settings are never used as paths.** ``save``
writes ``journal_path`` and ``cache_dir`` as ``null`` and keeps only the *folder name* of
``model_path`` (a hint for the person who loads it, which the library never opens); ``load`` puts the
host's values in their place whatever the manifest says (an old checkpoint, or a hand-edited one).
Whether the router had a journal travels as a plain flag (``"journaled": true``) so that loading it
without ``journal_path=`` warns instead of silently dropping durability.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from .._exceptions import CheckpointError, EncoderError

if TYPE_CHECKING:
    from ..encoders.base import QueryEncoder
    from .host import CheckpointHost

__all__ = ["strip_host_paths", "apply_host_paths", "check_encoder"]

PathArg = str | os.PathLike[str] | None


def strip_host_paths(config: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``config`` (a ``RouterConfig.model_dump(mode="json")``) without host paths, and whether it
    had a journal. ``model_path`` keeps its last component only, so a kind ``"hf"`` config stays
    valid and says which model it wants."""
    out = copy.deepcopy(config)
    learning = out.get("learning") or {}
    journaled = bool(learning.get("journal_path"))
    learning["journal_path"] = None
    encoder = out.get("encoder") or {}
    encoder["cache_dir"] = None
    if encoder.get("model_path"):
        encoder["model_path"] = PurePath(str(encoder["model_path"]).rstrip("/\\")).name or "model"
    return out, journaled


def apply_host_paths(
    config: Any,
    where: object,
    *,
    journal_path: PathArg,
    cache_dir: PathArg,
    model_path: PathArg,
    encoder_given: bool,
    journaled: bool,
) -> Any:
    """The manifest's config with every path setting replaced by the host's (see the module doc).

    Raises :class:`CheckpointError` for a kind ``"hf"`` router loaded with neither ``encoder=`` nor
    ``model_path=``: the model folder it was trained with is the host's to name."""
    if not isinstance(config, dict):
        return config  # make_config refuses it with a clear error
    out = dict(config)
    learning = out.get("learning")
    learning = dict(learning) if isinstance(learning, dict) else {}
    had_journal = journaled is True or bool(learning.get("journal_path"))
    learning["journal_path"] = None if journal_path is None else os.fspath(journal_path)
    out["learning"] = learning
    encoder = out.get("encoder")
    encoder = dict(encoder) if isinstance(encoder, dict) else {}
    encoder["cache_dir"] = None if cache_dir is None else os.fspath(cache_dir)
    if model_path is not None:
        encoder["model_path"] = os.fspath(model_path)
    elif encoder.get("kind") == "hf":
        hint = encoder.get("model_path")
        if not encoder_given:
            raise CheckpointError(
                f"{where}: this router encodes queries with a local Hugging Face model"
                f"{f' (folder {hint!r})' if isinstance(hint, str) else ''}; a checkpoint never chooses a folder "
                "to read: pass load(path, model_path=<that model folder>) or encoder=<the encoder>"
            )
        encoder["model_path"] = "<given encoder>"  # never opened: the given encoder is used
    else:
        encoder["model_path"] = None
    out["encoder"] = encoder
    if had_journal and journal_path is None:
        warnings.warn(
            f"{where}: this router was saved with a feedback journal; a checkpoint never names one, so feedback "
            "is not journaled now: pass MixLLMRouter.load(path, journal_path=<your journal>) to replay it and "
            "keep feedback durable",
            UserWarning,
            stacklevel=4,
        )
    return out


def check_encoder(router: CheckpointHost, encoder: QueryEncoder | None, where: object) -> None:
    """Refuse, at load, an encoder that cannot serve this router.

    Without ``encoder=`` the config's encoder is built now (not at the first route) and must have the
    fingerprint the router was trained with. A given encoder must have the embedding bank's
    dimension; a different fingerprint of the right dimension only warns (a deliberate swap)."""
    assert router.model.bank is not None
    want_dim = int(router.model.bank.shape[1])
    trained = router.model.encoder_fingerprint
    if encoder is None:
        try:
            built = router.encoder  # builds from config.encoder (paths: the host's)
        except EncoderError:
            return  # not installed here: the first route says so, as for a router never saved
        if trained and built.fingerprint != trained:
            raise CheckpointError(
                f"{where}: the router was trained with encoder {trained}, its config builds {built.fingerprint}; "
                "pass the encoder it was trained with: MixLLMRouter.load(path, encoder=...)"
            )
        encoder = built
    try:
        dim = int(encoder.dim)
    except (EncoderError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: cannot read the encoder's dimension: {exc}") from exc
    if dim != want_dim:
        raise CheckpointError(
            f"{where}: the encoder gives {dim}-dim embeddings ({encoder.fingerprint}); the router was trained on "
            f"{want_dim}-dim ones ({trained or 'unknown encoder'}): pass the encoder it was trained with"
        )
    if trained and encoder.fingerprint != trained:
        warnings.warn(
            f"the encoder given to load() ({encoder.fingerprint}) differs from the one the router was "
            f"trained with ({trained}); predictions may be off",
            stacklevel=4,
        )
