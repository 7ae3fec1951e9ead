"""Online learning: user feedback, the dynamic feedback score, the feedback journal, a changing pool.

A deployed router keeps learning from what users say about its answers (a contextual bandit: only
the candidate that answered is observed). One feedback event ``(e, a, r)`` — the decision's query
embedding ``e``, the candidate ``a`` that answered, a score ``r ∈ [0, 1]`` (thumbs up = 1, down = 0,
or graded) — does three things, in this order:

1. **Journal.** With ``config.learning.journal_path`` set, the event (with everything replay needs,
   the embedding included: decisions live in memory only) is appended to a JSON-lines journal and
   fsynced *before* :meth:`MixLLMRouter.feedback` returns. A crash after that loses nothing:
   :meth:`MixLLMRouter.load` replays every entry whose sequence number the checkpoint has not
   applied yet.
2. **Predictors of ``a``.** ``x = [e, z, 1]`` is added to candidate ``a``'s LinUCB ridge by one
   Sherman-Morrison step (``A⁻¹ ← A⁻¹ − (A⁻¹x)(A⁻¹x)ᵀ/(1 + xᵀA⁻¹x)``, ``b ← b + [r, log cost]·x``:
   O(d²), no refit) and ``e`` is appended to the shared embedding bank for its kNN. The uncertainty
   ``u_a(e) = sqrt(xᵀA_a⁻¹x)`` shrinks where ``a`` has now been seen, so the exploration bonus
   ``α·u`` keeps pushing traffic to candidates and regions with little data.
3. **Dynamic feedback score** ``s_l(e)`` (:class:`FeedbackScoreNet`): a small network with a shared
   trunk ``h = tanh(U e + c)`` and one head per candidate ``s_l = w_lᵀh + b_l``. It defines a policy
   ``π(l|e) = softmax_l s_l(e)`` trained by REINFORCE with a baseline:

       ρ = r − q̂_a(e)                 residual reward: what the predictors got wrong
       δ = ρ − b̄,   b̄ ← b̄ + β(ρ − b̄)  advantage against a running-mean baseline
       θ ← θ + η · Σ_l (κ_l/κ0) · (1[l = a] − π_l) · δ · ∇_θ s_l(e)   (= ∇ log π(a|e)·δ, per-candidate κ)

   Rewarding the *residual* ``ρ`` (not ``r``) makes ``s_l`` learn where candidate ``l`` does
   better (``s > 0``) or worse than its predicted quality, which is what an additive term of the
   meta score ``S_l = q_l − λc_l + α·u_l − β·P_l + γ·κ_l·s_l`` needs (a policy trained on raw
   ``r`` would count quality twice). The confidence ``κ_l = 1/(Var[s_l] + ε)`` uses as ``Var[s_l]``
   the variance of the signal ``s_l`` is trained on, the residuals of ``l``'s feedback, shrunk
   towards a prior variance ``v0`` with ``n0`` pseudo-observations:
   ``Var_l = (n0·v0 + Σ(ρ − ρ̄_l)²) / (n0 + n_l)``. Noisy feedback (a candidate whose outcomes its
   predictors cannot anticipate) therefore weighs less, in the score and in the gradient (there
   relative to the prior's ``κ0 = 1/(v0 + ε)``, so ``η`` keeps its meaning).

   What enters the meta score is not the logit but the centred policy probability
   ``π(l|e) − 1/m`` (:meth:`FeedbackScoreNet.routing_scores`): REINFORCE leaves the logits'
   scale unanchored, and raw logits made routing collapse onto one candidate; the probability is
   bounded in ``(−1/m, 1 − 1/m)`` and zero for an untrained network.

Exploration. The router's ``route`` adds the LinUCB bonus ``α·u``. :func:`thompson_scores`
samples instead from the ridge posterior (``q + σ·u·ξ − λ·c``, ``ξ ~ N(0, 1)``), which on RouterBench
finds a candidate added with no examples where the small UCB bonus never tries it
(``docs/online_learning.md``); the replay simulation uses it with ``thompson=σ``.

Updates run inline (``learning.batch_size = 1``, default; about 0.1–1 ms per event without the
journal's fsync, see ``docs/online_learning.md``) or are queued and applied every ``batch_size``
events; queued events are journaled at once, applied on :meth:`OnlineLearner.flush` and on save.

Changing pool. :meth:`OnlineLearner.add_candidate` builds a predictor for a new candidate from a
*prior*: the ridge weights ``w₀`` of the most similar candidate (nearest in log prices, or one the
user names, or the mean of all), with ``A⁻¹ = I/ρ0`` and ``b = ρ0·w₀``, i.e. the ridge estimate
``argmin_w ‖Xw − y‖² + ρ0‖w − w₀‖²``: predictions start at the donor's, the uncertainty starts at
its maximum, and every example or feedback moves it by Sherman-Morrison. Its kNN joins the quality
ensemble once it holds ``knn_k`` examples of its own (before that, a mean of one or two 0/1 outcomes
would swamp the estimate). Removing a candidate drops its predictor and its head, nothing else.

Concurrency. One :class:`threading.RLock` (``OnlineLearner.lock``) serialises feedback with routing's
reads of the predictors. Two routers never share a journal file, whatever path reaches it: the
first append takes an exclusive ``flock`` on the journal file itself (its inode, so symlinks and
hard links lead to the same lock) for the life of the router (released by :meth:`close` or at
exit); another router or process that tries to append gets a :class:`FeedbackError` instead of
interleaving lines (``mixllm_router.learning.journal``). Reading a journal (replay on load) takes no lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import ConfigError, FeedbackError
from .._validate import finite_real
from .change import ResidualChangeDetector
from .feedback_net import FeedbackScoreNet, thompson_scores
from .host import FeedbackSink, LearnerHost  # noqa: F401 - re-exported
from .journal import FeedbackEvent, FeedbackJournal, _canonical, _checksum  # noqa: F401 - re-exported
from .priors import candidate_examples, fitted_prior, named_prior
from .settings import PRIOR_MAX, PRIOR_MIN, JournalWarning, LearningSettings, _path_text  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from ..candidates import Candidate
    from ..data import RoutingDataset
    from ..predictors import CandidatePredictor

__all__ = [
    "thompson_scores",
    "FeedbackEvent",
    "FeedbackJournal",
    "FeedbackScoreNet",
    "JournalWarning",
    "LearningSettings",
    "LearnerHost",
    "OnlineLearner",
    "ResidualChangeDetector",
    "parse_score",
]

logger = logging.getLogger(__name__)

def parse_score(score: Any) -> float:
    """A feedback score as a float in [0, 1]; ``True``/``False`` are thumbs up/down."""
    if isinstance(score, (bool, np.bool_)):
        return 1.0 if score else 0.0
    return finite_real(score, "feedback score (1 = good)", FeedbackError, minimum=0.0, maximum=1.0)


def _finite_or_none(value: Any) -> float | None:
    """A number recorded by a client (output tokens, cost), or None when it is absent or unusable."""
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None


#: Largest output length or latency a feedback event may carry (far above any real call; keeps the
#: log-cost targets and the load statistics finite).
_MAX_TOKENS = 1e9
_MAX_LATENCY_S = 1e7


def _optional_nonneg(value: Any, what: str, maximum: float) -> float | None:
    if value is None:
        return None
    return finite_real(value, what, FeedbackError, minimum=0.0, maximum=maximum)


# ---------------------------------------------------------------------------------- score net
class OnlineLearner:
    """Everything the router learns after ``fit``: feedback, journal, feedback scores, pool changes.

    One per router (``router.learning``). Its public methods are reached through the router
    (:meth:`MixLLMRouter.feedback`, :meth:`~MixLLMRouter.add_candidate`); :meth:`flush`,
    :meth:`close` and :attr:`stats` are for operators.
    """

    def __init__(self, settings: LearningSettings | None = None, *, seed: int = 0) -> None:
        self.settings = settings or LearningSettings()
        self.seed = seed
        self.lock = threading.RLock()
        self.net: FeedbackScoreNet | None = None
        self.applied_seq = 0  # highest sequence number applied to the predictors
        self._next_seq = 1
        self.pending: list[FeedbackEvent] = []
        self.journal: FeedbackJournal | None = (
            FeedbackJournal(self.settings.journal_path, fsync=self.settings.journal_fsync)
            if self.settings.journal_path else None
        )
        self.warming: set[str] = set()  # candidates whose kNN waits for knn_k own examples
        self.priors: dict[str, str] = {}  # new candidate -> where its prior came from
        self._rated: OrderedDict[str, None] = OrderedDict()
        self._bank_buf: np.ndarray | None = None
        self._spare_net: FeedbackScoreNet | None = None  # allocated by _prepare before the first event
        self.n_events = 0
        self.apply_seconds = 0.0
        self.detector = ResidualChangeDetector(self.settings)

    # -- feedback ------------------------------------------------------------------------------
    def feedback(
        self,
        router: LearnerHost,
        key: str,
        score: Any,
        *,
        output_tokens: float | None = None,
        latency_s: float | None = None,
    ) -> FeedbackEvent:
        """Validate, journal, then apply (or queue) one feedback event. See MixLLMRouter.feedback."""
        value = parse_score(score)
        out_tokens = _optional_nonneg(output_tokens, "output_tokens", _MAX_TOKENS)
        latency = _optional_nonneg(latency_s, "latency_s", _MAX_LATENCY_S)
        router.model.check_fitted()
        record = router.decisions.get(str(key))
        if record is None:
            raise FeedbackError(
                f"no routing decision with id or alias {key!r}: unknown, made by another process or before a "
                f"restart, or expired from the log of the last {router.decisions.capacity} decisions"
            )
        candidate = record.answered_by or record.chosen
        with self.lock:  # the pool cannot change from here until the event is applied or queued
            if candidate not in router.model.pool:
                raise FeedbackError(
                    f"decision {record.decision_id} was answered by {candidate!r}, which has been removed since"
                )
            if record.decision_id in self._rated:
                raise FeedbackError(f"decision {record.decision_id} already received feedback; each decision is rated once")
            if out_tokens is None:
                out_tokens = _finite_or_none(record.output_tokens)
            embedding = np.asarray(record.embedding, dtype=np.float32).reshape(-1)
            shared = router.state.shares_feedback
            if not shared and self.journal is not None:
                self.journal.open()  # before numbering: a refused or damaged journal allocates nothing
            if not shared:
                self._prepare(router, embedding)  # everything that can fail, before the journal line
            event = FeedbackEvent(
                seq=0 if shared else self._allocate_seq(),
                decision_id=record.decision_id,
                candidate=candidate,
                score=value,
                embedding=embedding,
                input_tokens=float(record.input_tokens),
                output_tokens=out_tokens,
                latency_s=latency,
                cost_usd=_finite_or_none(record.cost_usd),
                created_at=time.time(),
            )
            if shared:
                # the shared learner applies it; the stream entry id becomes its sequence number
                event = replace(event, seq=router.state.publish_feedback(event))
            elif self.journal is not None:
                try:
                    self.journal.append(event)
                except BaseException as exc:
                    self._next_seq = event.seq  # not acknowledged: the number is free again
                    if isinstance(exc, OSError):
                        raise FeedbackError(f"could not write the feedback journal {self.journal.path}: {exc}") from exc
                    raise
            self._remember(record.decision_id)
            if latency is not None and record.latency_s is None and candidate in router.load_tracker:
                router.load_tracker.observe(candidate, latency, out_tokens)  # a call made outside the router
            if not shared:
                self.pending.append(event)
                if len(self.pending) >= self.settings.batch_size:
                    self.flush(router)
        return event

    def _prepare(self, router: LearnerHost, embedding: np.ndarray) -> None:
        """Check and allocate what applying one more event needs, before it is journaled.

        An event is applied all or nothing: what can fail (a wrong embedding, the memory for the
        feedback network and the bank's next rows) fails here, before the journal line is written
        and before any learnt state changes; what is left in :meth:`apply` is arithmetic on
        validated, finite numbers. The allocations change no prediction (an untrained network
        adds nothing to the meta score; the bank's new capacity holds no rows yet).
        """
        bank = router.model.bank
        assert bank is not None
        if embedding.shape != (bank.shape[1],) or not np.isfinite(embedding).all():
            raise FeedbackError(f"the decision's embedding has shape {embedding.shape} or non-finite values; "
                                f"the router's bank has dimension {bank.shape[1]}")
        if self.net is None and self._spare_net is None:  # built now, adopted by the first apply
            self._spare_net = FeedbackScoreNet(bank.shape[1], self.settings, seed=self.seed)
        self._reserve_bank(router, len(self.pending) + 1)

    def _allocate_seq(self) -> int:
        if self.journal is not None:
            self._next_seq = max(self._next_seq, self.journal.last_seq + 1)
        seq = max(self._next_seq, self.applied_seq + 1)
        self._next_seq = seq + 1
        return seq

    def _remember(self, decision_id: str) -> None:
        self._rated[decision_id] = None
        while len(self._rated) > self.settings.remember_feedback_ids:
            self._rated.popitem(last=False)

    def flush(self, router: LearnerHost) -> int:
        """Apply every queued event now; returns how many were applied."""
        with self.lock:
            events, self.pending = self.pending, []
            for event in events:
                self.apply(router, event)
            return len(events)

    def apply(self, router: LearnerHost, event: FeedbackEvent) -> None:
        """Apply one event to the predictors of its candidate and to the feedback network."""
        from ..predictors import features

        with self.lock:
            if event.seq <= self.applied_seq:
                return
            if event.candidate not in router.model.pool:
                warnings.warn(f"feedback #{event.seq} for removed candidate {event.candidate!r} skipped",
                              JournalWarning, stacklevel=3)
                self.applied_seq = event.seq
                return
            t0 = time.perf_counter()
            model = router.model.predictors[event.candidate]
            e = event.embedding.reshape(1, -1)
            x = features(e, np.array([event.input_tokens]))
            assert router.model.bank is not None
            q_hat = float(model.predict_quality(x, e, e.astype(np.float64) @ router.model.bank.T)[0])
            row = self._append_bank(router, event.embedding)
            cost = None if event.cost_usd is None else np.array([event.cost_usd])
            out = None if event.output_tokens is None else np.array([event.output_tokens])
            if model.cost_mode == "tokens" and out is None:
                cost = out = None  # unknown output length: keep the current length prediction
            model.update(x, np.array([row]), np.array([event.score]), cost, out)
            self._maybe_finish_warming(router, event.candidate)
            if self.settings.change_detection and self.detector.update(event.candidate, event.score, q_hat):
                self._after_change(router, event.candidate)
                logger.info("feedback #%d: the outcomes of %r changed; its predictors are softened", event.seq,
                            event.candidate)
            net = self._net(router)
            net.step(event.embedding, router.model.pool.names, event.candidate, event.score - q_hat)
            self.applied_seq = event.seq
            self.n_events += 1
            self.apply_seconds += time.perf_counter() - t0

    def _net(self, router: LearnerHost) -> FeedbackScoreNet:
        if self.net is None:
            assert router.model.bank is not None
            spare, self._spare_net = self._spare_net, None
            if spare is None or spare.dim != router.model.bank.shape[1]:
                spare = FeedbackScoreNet(router.model.bank.shape[1], self.settings, seed=self.seed)
            self.net = spare
        return self.net

    def _reserve_bank(self, router: LearnerHost, extra: int) -> None:
        """Make room for ``extra`` more rows in the buffer ``router.model.bank`` is a view of."""
        bank = router.model.bank
        assert bank is not None
        n = bank.shape[0]
        buf = self._bank_buf
        if buf is not None and bank.base is buf and np.shares_memory(bank, buf) and n + extra <= buf.shape[0]:
            return
        grown = np.empty((max(2 * (n + extra), 1024), bank.shape[1]), dtype=bank.dtype)
        grown[:n] = bank
        self._bank_buf = grown
        router.model.bank = grown[:n]

    def _append_bank(self, router: LearnerHost, embedding: np.ndarray) -> int:
        """Append to ``router.model.bank`` with amortised O(d) cost (a growing buffer, the bank a view of it)."""
        self._reserve_bank(router, 1)
        assert router.model.bank is not None and self._bank_buf is not None
        n = router.model.bank.shape[0]
        self._bank_buf[n] = embedding
        router.model.bank = self._bank_buf[: n + 1]
        return n

    def _after_change(self, router: LearnerHost, name: str) -> None:
        """The detector says ``name``'s outcomes changed: make its predictors follow the new ones.

        The ridge keeps its prior and ``change_softening`` of its data (:meth:`LinUCBRidge.soften`).
        kNN keeps only the last ``change_warmup`` outcomes, the ones around the alarm, and leaves the
        ensemble until it again holds ``knn_k`` of them (as a new candidate's does). A fitted MLP,
        which is never updated online, is dropped.
        """
        model = router.model.predictors[name]
        model.linear.soften(self.settings.change_softening)
        model.knn.keep_recent(self.settings.change_warmup)
        self._warm_knn_if_short(name, model)
        model.mlp = None

    def _warm_knn_if_short(self, name: str, model: CandidatePredictor) -> None:
        """Leave kNN out of ``name``'s ensemble until it holds ``knn_k`` examples of its own (a mean
        of a few 0/1 outcomes would swamp the estimate); :meth:`_maybe_finish_warming` brings it back."""
        if "knn" in model.kinds and model.knn.targets.size < model.knn_k:
            model.kinds = tuple(k for k in model.kinds if k != "knn")
            self.warming.add(name)

    def _maybe_finish_warming(self, router: LearnerHost, name: str) -> None:
        if name in self.warming:
            model = router.model.predictors[name]
            if model.knn.targets.size >= model.knn_k:
                model.kinds = router.model.settings.kinds
                self.warming.discard(name)

    # -- routing -------------------------------------------------------------------------------
    def score_terms(self, embeddings: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """``(π − 1/m, κ)`` for the meta score's ``γ·κ·s`` term, shapes (n, m); None before any feedback.

        ``s`` here is the centred policy probability (:meth:`FeedbackScoreNet.routing_scores`), a
        bounded stand-in for the raw logits.
        """
        with self.lock:
            if self.net is None or self.net.n_updates == 0:
                return None
            s = self.net.routing_scores(embeddings, names)
            kappa = np.broadcast_to(self.net.confidence(names), s.shape)
            return s, kappa

    # -- pool changes --------------------------------------------------------------------------
    def add_candidate(
        self,
        router: LearnerHost,
        candidate: Candidate | str,
        *,
        examples: RoutingDataset | Iterable[Mapping[str, Any]] | None = None,
        prior: str | None = "similar",
    ) -> str:
        """See :meth:`MixLLMRouter.add_candidate`; returns where the prior came from."""
        from ..candidates import Candidate
        from ..predictors import CandidatePredictor, features

        router.model.check_fitted()
        if isinstance(candidate, str):
            candidate = Candidate(name=candidate)
        if not isinstance(candidate, Candidate):
            raise ConfigError(f"expected a Candidate or a name, got {type(candidate).__name__}")
        if candidate.name in router.model.pool:
            raise ConfigError(f"candidate {candidate.name!r} is already in the pool")
        ex = candidate_examples(router, candidate.name, examples) if examples is not None else None
        has_prices = candidate.input_price > 0 or candidate.output_price > 0
        cost_mode = "tokens" if has_prices and ex is not None and ex[4] is not None else "direct"
        if prior == "fitted":  # a mix of the other candidates fitted to the examples (opt-in, see onboarding.py)
            source, w0, m0 = fitted_prior(router, ex, cost_mode)
        else:
            source, w0, m0 = named_prior(router, candidate, prior, cost_mode)
        cfg = router.model.settings
        kinds = router.model.settings.kinds
        assert router.model.bank is not None
        model = CandidatePredictor(
            candidate.name, dim=router.model.bank.shape[1], kinds=kinds, cost_mode=cost_mode,  # type: ignore[arg-type]
            prior_strength=cfg.prior_strength, knn_k=cfg.knn_k, mlp_hidden=cfg.mlp_hidden,
            mlp_alpha=cfg.mlp_alpha, seed=cfg.seed,
        )
        rho = self.settings.new_candidate_prior_weight or cfg.prior_strength
        model.linear.a_inv = np.eye(model.linear.dim) / rho
        model.linear.b = rho * w0
        model.linear.offset = m0  # ŷ = m + xᵀw: the donor's centre, too
        model.linear._weights = None
        with self.lock:
            if ex is not None:
                emb, tokens, quality, cost, out_tokens = ex
                rows = np.array([self._append_bank(router, e) for e in emb])
                model.update(features(emb, tokens), rows, quality, cost, out_tokens)
                if "mlp" in kinds and len(quality) >= 50:
                    from ..predictors import MLPRegressorNP

                    model.mlp = MLPRegressorNP(cfg.mlp_hidden, cfg.mlp_alpha, seed=cfg.seed).fit(emb, quality)
            self._warm_knn_if_short(candidate.name, model)
            router.model.pool.add(candidate)
            router.model.predictors[candidate.name] = model
            if candidate.name not in router.load_tracker:
                router.load_tracker.register(candidate.name, candidate.max_concurrency)
            if self.net is not None:
                self.net.add(candidate.name)
            self.priors[candidate.name] = source
        return source

    def forget(self, name: str) -> None:
        """Drop a removed candidate's feedback head and bookkeeping (nothing else changes)."""
        with self.lock:
            if self.net is not None:
                self.net.remove(name)
            self.warming.discard(name)
            self.priors.pop(name, None)
            self.detector.forget(name)

    def adopt(self, other: OnlineLearner) -> None:
        """Take ``other``'s learnt model (a newer published checkpoint's); keep this object's journal,
        settings and the ids of decisions already rated. The caller holds both routers' locks."""
        with self.lock:
            self.net = other.net
            self.applied_seq = max(self.applied_seq, other.applied_seq)
            self._next_seq = max(self._next_seq, self.applied_seq + 1)
            self.warming = set(other.warming)
            self.priors = dict(other.priors)
            self.n_events = other.n_events
            self.detector = other.detector
            self.pending = []
            self._bank_buf = None
            self._spare_net = None

    # -- persistence ---------------------------------------------------------------------------
    def state(self, router: LearnerHost) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Checkpoint state; queued events are applied first so ``applied_seq`` is exact."""
        with self.lock:
            self.flush(router)
            meta: dict[str, Any] = {
                "applied_seq": self.applied_seq,
                "warming": sorted(self.warming),
                "priors": dict(self.priors),
                "n_events": self.n_events,
                "net": None,
                "change_detector": self.detector.to_json(),
            }
            arrays: dict[str, np.ndarray] = {}
            if self.net is not None:
                net_meta, net_arrays = self.net.state()
                meta["net"] = net_meta
                arrays = {f"net.{k}": v for k, v in net_arrays.items()}
            return {"learning": meta}, {f"learning.{k}": v for k, v in arrays.items()}

    def restore(self, router: LearnerHost, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        """Inverse of :meth:`state`, then replay the journal's entries the checkpoint lacks."""
        learning = meta.get("learning")
        if learning:
            self.applied_seq = int(learning["applied_seq"])
            self._next_seq = self.applied_seq + 1
            self.warming = {str(n) for n in learning["warming"]} & set(router.model.pool.names)
            self.priors = {str(k): str(v) for k, v in learning["priors"].items()}
            self.n_events = int(learning["n_events"])
            if learning.get("change_detector"):  # absent in checkpoints written before it existed
                self.detector.load_json(learning["change_detector"])
            if learning.get("net"):
                prefix = "learning.net."
                sub = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
                self.net = FeedbackScoreNet.from_state(learning["net"], sub, self.settings)
        self.replay(router)

    def replay(self, router: LearnerHost) -> int:
        """Apply journal entries newer than ``applied_seq``; returns how many were applied."""
        if self.journal is None or not self.journal.path.exists():
            return 0
        with self.lock:
            applied = 0
            for event in self.journal.read():
                if event.seq > self.applied_seq:
                    self.apply(router, event)
                    applied += 1
                    self._remember(event.decision_id)
            self._next_seq = max(self._next_seq, self.journal.last_seq + 1)
            return applied

    def close(self) -> None:
        """Release the journal (file and inter-process lock)."""
        if self.journal is not None:
            self.journal.close()

    @property
    def stats(self) -> dict[str, float]:
        """Events applied, events queued, the mean time to apply one (seconds), changes detected."""
        return {
            "applied": float(self.n_events),
            "pending": float(len(self.pending)),
            "applied_seq": float(self.applied_seq),
            "mean_apply_s": self.apply_seconds / self.n_events if self.n_events else 0.0,
            "changes_detected": float(sum(self.detector.alarms.values())),
        }

