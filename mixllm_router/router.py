"""``MixLLMRouter``: learn from recorded outcomes, route each query, save and load.

The router follows scikit-learn's estimator contract: ``__init__`` only stores settings, ``fit``
learns and returns ``self``, learned state ends in ``_``, and using an unfitted router raises
:class:`~mixllm_router.NotFittedError`.

Pipeline for one query: encode → ``x = [e, z, 1]`` → per-candidate quality, cost, uncertainty →
meta score ``S = q − λ·c + α·u − β·P + γ·κ·s`` → the eligible candidate with the highest ``S``.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._exceptions import ConfigError, DataError, NotFittedError
from ._validate import candidate_names, finite_real
from .candidates import Candidate, CandidatePool
from .config import RouterConfig, make_config
from .encoders.backends import build_encoder
from .encoders.base import count_tokens_of
from .learning.learner import OnlineLearner
from .model import FittedModel, Outcomes, Predictions, PredictorSettings, fold_assignment
from .policy.decision import DecisionLog, RoutingDecision
from .policy.load import LoadTracker
from .policy.meta_score import ScoreTerms
from .policy.routing import Exploration, RoutingRequest, decide, eligibility, latency_terms
from .policy.tradeoff import TradeoffCurve
from .router_calls import CallingMixin
from .router_live import LiveStateMixin
from .state.base import InProcessState, SharedState
from .state.host import register_checkpoint_loader

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .clients.base import ChatClient
    from .clients.fallback import FallbackCaller
    from .data import RoutingDataset
    from .encoders.base import QueryEncoder
    from .predictors import CandidatePredictor

__all__ = ["MixLLMRouter", "Predictions", "build_encoder", "fold_assignment"]

#: Serialises the lazy construction of routers' encoders (cheap: loading happens on first use).
_ENCODER_BUILD_LOCK = threading.Lock()


def _as_dataset(data: Any) -> RoutingDataset:
    """``data`` if it is a :class:`RoutingDataset`; a clear error for anything else."""
    from .data import RoutingDataset

    if isinstance(data, RoutingDataset):
        return data
    hint = ""
    if isinstance(data, (str, Path)):
        hint = " (for a file, use RoutingDataset.from_csv(path) or load_routerbench(path))"
    elif isinstance(data, (list, tuple, dict)):
        hint = " (for records, use RoutingDataset.from_records(rows))"
    elif type(data).__name__ == "DataFrame":
        hint = " (for a DataFrame, use RoutingDataset.from_pandas(frame))"
    raise TypeError(f"fit() takes a RoutingDataset, got {type(data).__name__}{hint}")


class MixLLMRouter(CallingMixin, LiveStateMixin):
    """Routes each query to the candidate LLM with the best predicted quality for its cost.

    Parameters
    ----------
    candidates:
        Candidates (or plain names) to route among. When empty, ``fit`` takes every model of the
        training data as a candidate (with unknown prices: cost is then predicted from the
        recorded cost directly).
    config:
        A :class:`RouterConfig` or a dict; keyword ``overrides`` are applied on top.
    encoder:
        Any :class:`~mixllm_router.encoders.QueryEncoder`; default: the one ``config.encoder``
        describes (bundled all-MiniLM-L6-v2 with an on-disk cache).
    clients:
        How to call each candidate (``{name: ChatClient}``), for :meth:`invoke` and friends;
        also settable later with :meth:`set_client`. Never saved in checkpoints.
    load_tracker, caller:
        Share a :class:`~mixllm_router.policy.load.LoadTracker` or a
        :class:`~mixllm_router.clients.fallback.FallbackCaller` (retries, cooldowns, spending guard)
        between routers, or inject ones with a manual clock in tests.
    state:
        Where live state (load, feedback, published checkpoints) lives: None for this process
        only, or a URL such as ``"redis://localhost:6379/0"`` / a
        :class:`~mixllm_router.state.SharedState` to share it between worker processes
        (see :meth:`share_state`).
    """

    def __init__(
        self,
        candidates: Iterable[Candidate | str] | None = None,
        *,
        config: RouterConfig | dict[str, Any] | None = None,
        encoder: QueryEncoder | None = None,
        clients: Mapping[str, ChatClient] | None = None,
        load_tracker: LoadTracker | None = None,
        caller: FallbackCaller | None = None,
        state: SharedState | str | None = None,
        **overrides: Any,
    ) -> None:
        self.config = make_config(config, **overrides)
        self.model = FittedModel(CandidatePool(candidates or ()), PredictorSettings.of(self.config))
        self._encoder = encoder
        self.load_tracker = load_tracker if load_tracker is not None else LoadTracker()
        self._caller = caller
        self._clients: dict[str, ChatClient] = {}
        self.answer_listeners: list[Any] = []  # called with every delivered answer (online scoring)
        self.decisions = DecisionLog(capacity=self.config.decision_log_size)
        self._rng = np.random.default_rng(self.config.seed)  # Thompson-sampling draws
        self.learning = OnlineLearner(self.config.learning, seed=self.config.seed)  # feedback, journal, s_l(e)
        for name, client in (clients or {}).items():
            self.set_client(name, client)
        self.state: SharedState = InProcessState()
        if state is not None:
            self.share_state(state)

    # ------------------------------------------------------------------------------ properties
    @property
    def encoder(self) -> QueryEncoder:
        """The query encoder, built on first use; threads that arrive together share one."""
        if self._encoder is None:
            with _ENCODER_BUILD_LOCK:
                if self._encoder is None:
                    self._encoder = build_encoder(self.config.encoder)
        return self._encoder

    @property
    def built_encoder(self) -> QueryEncoder | None:
        """The encoder if one was given or already built; None otherwise (nothing is built)."""
        return self._encoder

    @property
    def clients(self) -> Mapping[str, ChatClient]:
        """The attached clients by candidate name (read-only; attach with :meth:`set_client`)."""
        return MappingProxyType(self._clients)

    @property
    def candidate_names(self) -> list[str]:
        return self.pool.names

    @property
    def is_fitted(self) -> bool:
        return self.model.is_fitted

    # The learnt state lives on ``self.model`` (:class:`~mixllm_router.model.FittedModel`); these
    # names follow scikit-learn's trailing-underscore convention for fitted attributes.
    @property
    def predictors_(self) -> dict[str, CandidatePredictor]:
        return self.model.predictors

    @predictors_.setter
    def predictors_(self, value: dict[str, CandidatePredictor]) -> None:
        self.model.predictors = value

    @property
    def bank_(self) -> np.ndarray | None:
        return self.model.bank

    @bank_.setter
    def bank_(self, value: np.ndarray | None) -> None:
        self.model.bank = value

    @property
    def calibration_(self) -> TradeoffCurve | None:
        return self.model.calibration

    @calibration_.setter
    def calibration_(self, value: TradeoffCurve | None) -> None:
        self.model.calibration = value

    @property
    def reference_(self) -> str | None:
        return self.model.reference

    @reference_.setter
    def reference_(self, value: str | None) -> None:
        self.model.reference = value

    @property
    def encoder_fingerprint_(self) -> str | None:
        return self.model.encoder_fingerprint

    @encoder_fingerprint_.setter
    def encoder_fingerprint_(self, value: str | None) -> None:
        self.model.encoder_fingerprint = value

    # ------------------------------------------------------------------------------ training
    def embed(self, queries: Sequence[str], *, show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (n, d) and prompt token counts (n,) of ``queries``."""
        if isinstance(queries, str):
            raise TypeError("embed() takes a sequence of queries; wrap a single query in a list")
        embeddings = np.asarray(self.encoder.encode(list(queries), show_progress=show_progress), dtype=np.float32)
        return embeddings, self.count_tokens(queries)

    def count_tokens(self, queries: Sequence[str]) -> np.ndarray:
        """Prompt tokens of each query, by the encoder's tokenizer (the known ``t_in`` of the cost)."""
        return np.array(count_tokens_of(self.encoder, list(queries)), dtype=np.float64)

    def fit(
        self,
        data: RoutingDataset,
        *,
        embeddings: np.ndarray | None = None,
        show_progress: bool = False,
        calibrate: bool = True,
    ) -> MixLLMRouter:
        """Learn each candidate's predictors from recorded outcomes.

        ``data`` is a :class:`~mixllm_router.RoutingDataset`. Candidates not in the pool are
        taken from the data when the pool is empty; otherwise models of the data that are not
        candidates are ignored (with a warning). ``embeddings`` (aligned with
        ``data.query_ids``) skips encoding. With ``calibrate``, out-of-fold predictions map the
        friendly ``cost_share`` handle to λ (see :meth:`route`), scored on recorded costs; when
        fewer than ``4 × calibration_folds`` queries have every candidate's outcome (sparse logs),
        on the predicted costs of the training queries instead, as :meth:`recalibrate` does.
        """
        data = _as_dataset(data)
        if len(data) == 0:
            raise DataError("cannot fit on an empty dataset")
        if len(self.pool) == 0:
            for name in data.models:
                self.pool.add(Candidate(name=name))
        names = self.pool.names
        unused = [m for m in data.models if m not in self.pool]
        if unused:
            warnings.warn(f"ignoring models of the data that are not candidates: {unused}", stacklevel=2)
        missing = [n for n in names if n not in data.models]
        if missing:
            raise DataError(
                f"candidates with no outcomes in the training data: {missing}; "
                "fit without them and add them later with add_candidate()"
            )
        texts = data.queries
        if embeddings is None:
            embeddings, tokens = self.embed(texts, show_progress=show_progress)
        else:
            embeddings = np.asarray(embeddings, dtype=np.float32)
            if embeddings.shape[0] != len(texts):
                raise DataError(f"got {embeddings.shape[0]} embeddings for {len(texts)} queries")
            tokens = self.count_tokens(texts)
        quality = data.matrix("quality", names)
        cost = data.matrix("cost", names)
        out_tokens = data.matrix("output_tokens", names) if data.has_column("output_tokens") else None
        self.model.settings = PredictorSettings.of(self.config)
        self.model.fit(Outcomes(embeddings, tokens, quality, cost, out_tokens), encoder_fingerprint=self.encoder.fingerprint,
                       reference_model=self.config.reference_model, calibrate=calibrate)
        return self

    def recalibrate(self, queries: Sequence[str], *, embeddings: np.ndarray | None = None) -> TradeoffCurve:
        """Re-solve the ``cost_share`` → λ map on recent, unlabelled queries with the current predictors.

        Why: ``fit`` calibrates ``cost_share`` on held-out training predictions against recorded
        costs. Once feedback moves the predictors (or traffic drifts), the same λ buys another
        spend: on the RouterBench replay a λ fixed at 25% of GPT-4's cost slid to 7% while the
        router learnt (docs/online_learning.md). Live queries have no recorded outcome for every
        candidate, so each λ's spend is estimated from the predictions themselves::

            pick_i(λ) = argmax_l q̂_il − λ·ĉ_il
            cost share(λ)    = Σ_i ĉ[i, pick_i] / Σ_i ĉ[i, ref]
            quality share(λ) = mean_i q̂[i, pick_i] / mean_i q̂[i, ref]

        over a λ grid scaled to the queries' predicted costs; the curve replaces ``calibration_``,
        so ``route(q, cost_share=s)`` again aims at ``s``. Call it every few hundred decisions on
        the last few hundred queries (the replay does, with ``recalibrate_every``).
        """
        if self.reference_ is None or self.reference_ not in self.pool:
            raise ConfigError(f"recalibrate needs the reference candidate {self.reference_!r} in the pool")
        if len(queries) < 2:
            raise DataError(f"recalibrate needs at least 2 queries, got {len(queries)}")
        embeddings, tokens = self._embed_checked(queries, embeddings)
        with self.learning.lock:
            preds = self.model.predict(embeddings, tokens)
        curve = self.model.calibration_on_predictions(preds)
        with self.learning.lock:
            self.model.calibration = curve
        return curve

    def out_of_fold(
        self,
        names: list[str],
        embeddings: np.ndarray,
        tokens: np.ndarray,
        quality: np.ndarray,
        cost: np.ndarray,
        out_tokens: np.ndarray | None = None,
        *,
        folds: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Quality and cost predicted for each query by predictors that never saw it (k-fold), with
        this router's config and pool; see :meth:`FittedModel.out_of_fold <mixllm_router.model.FittedModel.out_of_fold>`."""
        self.model.settings = PredictorSettings.of(self.config)
        return self.model.out_of_fold(names, Outcomes(embeddings, tokens, quality, cost, out_tokens), folds=folds)

    # ------------------------------------------------------------------------------ prediction
    def predict(
        self,
        queries: Sequence[str],
        *,
        embeddings: np.ndarray | None = None,
        show_progress: bool = False,
    ) -> Predictions:
        """Predicted quality, cost (USD) and uncertainty of every candidate for each query."""
        embeddings, tokens = self._embed_checked(queries, embeddings, show_progress)
        with self.learning.lock:  # feedback may be growing the bank and the kNN rows right now
            return self.model.predict(embeddings, tokens)

    def _embed_checked(
        self, queries: Sequence[str], embeddings: np.ndarray | None, show_progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and prompt tokens of ``queries`` (the slow part: runs outside any lock)."""
        self.model.check_fitted()
        if isinstance(queries, str):
            raise TypeError("predict() takes a sequence of queries; use route() for one query")
        if embeddings is None:
            return self.embed(queries, show_progress=show_progress)
        return np.asarray(embeddings, dtype=np.float32), self.count_tokens(queries)

    # ------------------------------------------------------------------------------ routing
    def resolve_cost_weight(self, cost_weight: float | None = None, cost_share: float | None = None) -> float:
        """λ from an explicit weight, a target share of the reference cost, or the config."""
        if cost_weight is not None and cost_share is not None:
            raise ConfigError("give cost_weight or cost_share, not both")
        if cost_weight is not None:
            return finite_real(cost_weight, "cost_weight")
        if cost_share is not None:
            cost_share = finite_real(cost_share, "cost_share")
            if self.calibration_ is None:
                raise NotFittedError("cost_share needs a calibrated router: fit(data, calibrate=True)")
            return self.calibration_.cost_weight_for_share(cost_share)
        return self.config.cost_weight

    def route(
        self,
        query: str,
        *,
        cost_weight: float | None = None,
        cost_share: float | None = None,
        max_cost_usd: float | None = None,
        candidates: Sequence[str] | None = None,
    ) -> RoutingDecision:
        """Pick a candidate for one query; the decision explains every candidate's score.

        ``cost_weight`` is λ (quality per USD). ``cost_share`` instead asks for the setting that,
        on held-out training queries, spent at most that share of the reference model's cost with
        the best quality. ``max_cost_usd`` excludes candidates whose predicted cost exceeds it
        (the cheapest stays eligible). ``candidates`` restricts the choice to those names.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        return self.route_batch([query], cost_weight=cost_weight, cost_share=cost_share,
                                max_cost_usd=max_cost_usd, candidates=candidates)[0]

    def route_batch(
        self,
        queries: Sequence[str],
        *,
        cost_weight: float | None = None,
        cost_share: float | None = None,
        max_cost_usd: float | None = None,
        candidates: Sequence[str] | None = None,
        embeddings: np.ndarray | None = None,
    ) -> list[RoutingDecision]:
        """:meth:`route` for many queries at once (one encoder batch, one matrix product)."""
        request = RoutingRequest(
            cost_weight=self.resolve_cost_weight(cost_weight, cost_share),
            max_cost_usd=None if max_cost_usd is None else finite_real(max_cost_usd, "max_cost_usd"),
            candidates=candidate_names(candidates),
        )
        embeddings, tokens = self._embed_checked(queries, embeddings)
        self.load_tracker.refresh()  # other workers' load (shared state): a round trip, outside the lock
        cfg = self.config
        with self.learning.lock:  # one consistent view of the pool, the predictors and the feedback net
            preds = self.model.predict(embeddings, tokens)
            eligible = eligibility(preds.names, preds.cost, request.max_cost_usd, request.candidates)
            for name in preds.names:
                self._track(name)
            waits = self.load_tracker.waits(preds.names, refresh=False)
            penalty, eligible = latency_terms(waits, cfg.latency, eligible)
            fb = self.learning.score_terms(preds.embeddings, preds.names) if cfg.feedback_weight else None
            terms = ScoreTerms(quality=preds.quality, cost=preds.cost, uncertainty=preds.uncertainty,
                               penalty=np.broadcast_to(penalty, preds.quality.shape),
                               feedback=None if fb is None else fb[0], confidence=None if fb is None else fb[1])
            exploration = Exploration(cfg.exploration_policy, cfg.exploration, cfg.thompson_scale, cfg.feedback_weight)
            made = decide(queries, preds.names, terms, preds.input_tokens, preds.embeddings, request=request,
                          eligible=eligible, waits=waits, latency=cfg.latency, exploration=exploration,
                          rng=self._rng, now=time.time())
        for _, record in made:
            self.decisions.add(record)
        return [decision for decision, _ in made]

    # ------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write a checkpoint folder (JSON manifest + safetensors), atomically."""
        from .checkpoint.save_load import save_router

        self.model.check_fitted()
        self.learning.flush(self)  # queued feedback first, so the checkpoint's applied_seq is exact
        return save_router(self, Path(path))

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoder: QueryEncoder | None = None,
        journal_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        model_path: str | Path | None = None,
        state: SharedState | str | None = None,
        **state_options: Any,
    ) -> MixLLMRouter:
        """Load a checkpoint written by :meth:`save`; never unpickles anything.

        A checkpoint never chooses a host path (docs/guarantees.md): whatever its manifest says,
        ``journal_path`` (the feedback journal to replay and keep appending to; None: feedback is
        not journaled), ``cache_dir`` (the embedding cache; None: the default folder) and
        ``model_path`` (the local model folder of an ``encoder.kind="hf"`` router) are the ones
        given here. The encoder must be the one the router was trained with: pass ``encoder=``
        when it is not what ``config.encoder`` builds; a wrong one raises :class:`CheckpointError`.

        ``state`` (a ``redis://`` URL or a :class:`~mixllm_router.state.SharedState`, with
        ``state_options``) shares the loaded router's live state at once (:meth:`share_state`).
        """
        from .checkpoint.save_load import load_router

        router = load_router(cls, Path(path), encoder=encoder, journal_path=journal_path, cache_dir=cache_dir,
                             model_path=model_path)
        if state is not None:
            router.share_state(state, **state_options)
        elif state_options:
            raise ConfigError(f"state options {sorted(state_options)} given without state=")
        return router

    @classmethod
    def from_source(
        cls,
        router: MixLLMRouter | None = None,
        checkpoint_path: str | Path | None = None,
        *,
        state: SharedState | str | None = None,
        owner: str = "this integration",
    ) -> MixLLMRouter:
        """The router a wrapper (LangChain, LlamaIndex) was configured with: ``router`` as given,
        else the checkpoint at ``checkpoint_path``; then shared through ``state`` when given.

        Raises :class:`ConfigError` naming ``owner`` when neither is given or ``router`` is not a
        :class:`MixLLMRouter`.
        """
        if router is not None:
            if not isinstance(router, MixLLMRouter):
                raise ConfigError(f"router must be a MixLLMRouter, got {type(router).__name__}")
            chosen = router
        elif checkpoint_path:
            chosen = cls.load(checkpoint_path)
        else:
            raise ConfigError(
                f"{owner} needs router=<fitted MixLLMRouter> or checkpoint_path=<folder> (or $MIXLLM_CHECKPOINT)"
            )
        already = chosen.state is state or (isinstance(state, str) and getattr(chosen.state, "url", None) == state)
        if state is not None and not already:  # two wrappers around one router share one connection
            chosen.share_state(state)
        return chosen

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"MixLLMRouter({self.pool.names!r}, {state})"


# the state layer never imports this module: it loads the checkpoints it fetches with this loader
# when it knows no router of its own (``RedisState(url).fetch_checkpoint()`` in a fresh process)
register_checkpoint_loader(MixLLMRouter.load)
